"""Landslide4Sense segmentation (paper 1: Le et al., IGARSS 2024, arXiv 2312.16717).

The package's modules are those of every task (docs/ARCHITECTURE.md) plus `scene.py` (whole
GeoTIFF scenes); `python -m landslide COMMAND` runs `task.LandslideTask` through common/cli.py.
"""
