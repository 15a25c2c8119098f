"""The landslide config schema: every key a YAML file under configs/landslide/ may set (each rung
of paper 1's ladder switches on one more of `features.*`, `model.residual`, `model.attention`,
`model.multires`, `loss.name: focal_iou`). Never imports TensorFlow.
"""

from common.config import EXPORT_DEFAULTS, TRAIN_DEFAULTS

# The engineered bands (landslide/features.py computes them), in the order they are stacked.
FEATURE_NAMES = ["ndvi", "nbr", "ndwi", "gray", "gray_gradient", "dem_gradient"]

DEFAULTS = {
    "data": {
        "root": "",  # the data set folder; `--data` sets it and the run remembers it
        "patch_size": 128,
        "split": "kfold",  # kfold (the paper's protocol) | holdout
        "folds": 5,
        "fold": 0,
        "val_fraction": 0.2,  # holdout only
        # train.select_on=inner: this seeded share of the training patches (at least one) becomes
        # the inner split that chooses the epoch; the fold or holdout share is reported.
        "inner_val_fraction": 0.1,
        "split_seed": 0,
        "normalization": "official",  # official | computed (from the training split)
        "augment": True,  # random flips and 90-degree rotations
        "cache": "auto",  # auto (when it fits in half the free memory) | memory | none
    },
    "features": {name: False for name in FEATURE_NAMES},
    "model": {
        "width": 1.0,  # multiplies the filters 64-128-256-512-512
        "residual": False,
        "attention": False,
        "attention_heads": 4,
        "attention_key_dim": 32,
        "multires": False,
        "bn_momentum": 0.99,  # BatchNormalization moving-statistics momentum
    },
    "loss": {
        "name": "ce",  # ce | focal | iou | focal_iou
        "focal_alpha": 0.25,
        "focal_gamma": 2.0,
        "focal_weight": 1.0,
        "iou_weight": 1.0,
    },
    "train": {**TRAIN_DEFAULTS, "monitor": "val_f1", "monitor_mode": "max", "epochs": 50},
    "predict": {
        "threshold": 0.5,  # landslide probability above which a pixel is 1 (`--threshold`)
        "overlap": 32,  # GeoTIFF scenes: pixels shared by neighbouring tiles (`--overlap`)
    },
    "export": {
        **EXPORT_DEFAULTS,
        "calibration_examples": 64,
        "size_budget_mb": 40.0,
    },
}
