"""Landslide4Sense segmentation (paper 1: Le et al., IGARSS 2024, arXiv 2312.16717).

Rooms: `data.py` (on-disk layout, validation, splits, tf.data), `sample.py` (a small sample data
set in the real layout), `features.py` (NaN replacement, engineered bands and normalisation as
model layers), `models.py` (U-Net and the paper's improvements), `config.py` (the config schema),
`cli.py` (`python -m landslide COMMAND`).
"""
