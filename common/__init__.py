"""Shared core of the project: layers, losses, metrics, distillation, training, export.

Nothing here imports a task package (landslide, rsic, asc).
"""
