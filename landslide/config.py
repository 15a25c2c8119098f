"""The landslide config schema: every key a YAML file under configs/landslide/ may set (each rung
of paper 1's ladder, configs/landslide/RUNG.yaml, switches on one more of them: the authors' input
channels, `model.family: rau_net`, its block attention, its three heads, `loss.name: focal_iou`).
Never imports TensorFlow.
"""

from common.config import EXPORT_DEFAULTS, TRAIN_DEFAULTS

# The engineered bands (landslide/features.py computes them), in the order they are stacked.
# The engineered bands (landslide/features.py computes them), in the order they are stacked: ours
# are ndvi, nbr, ndwi, gray, gray_gradient, dem_gradient; paper 1's authors' 23-channel input is
# rgb_minmax (3 bands), ndvi, nbr, b8_b11_index, grey_mean, grey_box_blur, grey_median_blur with
# feature_options.ratio: authors.
FEATURE_NAMES = ["rgb_minmax", "ndvi", "nbr", "b8_b11_index", "ndwi", "gray", "grey_mean",
                 "grey_box_blur", "grey_median_blur", "gray_gradient", "dem_gradient"]

DEFAULTS = {
    "data": {
        "root": "",  # the data set folder; `--data` sets it and the run remembers it
        "patch_size": 128,
        "split": "kfold",  # kfold (the paper's protocol) | holdout
        "folds": 5,
        "fold": 0,
        # kfold: random = seeded random folds; contiguous = paper 1's authors' blocks of the
        # naturally sorted names (fold 0 = their fold 1 = the last 1/folds, fold 1 the block before,
        # ...), so neighbouring patches of one scene stay on one side.
        "fold_order": "random",
        "val_fraction": 0.2,  # holdout only
        # train.select_on=inner: this seeded share of the training patches (at least one) becomes
        # the inner split that chooses the epoch; the fold or holdout share is reported.
        "inner_val_fraction": 0.1,
        "split_seed": 0,
        # official | computed (from the training split) | none (raw values, paper 1's authors)
        "normalization": "official",
        "augment": True,  # the augment: section's flips, rotations and CutMix on the training split
        "cache": "auto",  # auto (when it fits in half the free memory) | memory | none
    },
    "features": {name: False for name in FEATURE_NAMES},
    "feature_options": {
        # The ratios (a - b) / (a + b): floor = divide by max(|a| + |b|, 5% of the bands' spread)
        # (ours, bounded); authors = divide by max(a + b, 1e-8) as the authors' code does.
        "ratio": "floor",
        # Sizes (pixels) of the authors' grey-level blurs: box (cv2.blur), median (cv2.medianBlur).
        "box_blur_size": 10,
        "median_blur_size": 15,
    },
    "augment": {
        "flips": True,  # a random left-right flip
        # A random rotation by k x 90 degrees, k in 1..3, with this probability (0.75 = k in
        # 0..3 uniformly; the authors: 0.7).
        "rotation_probability": 0.75,
        # Landslide CutMix (the authors'): 0..cutmix_max times per patch, the landslide pixels of
        # another training patch with landslides are pasted in; mask = OR of both masks.
        "cutmix_max": 0,
        "off_last_epochs": 0,  # no augmentation in the last N epochs (the authors: 4)
    },
    "model": {
        # unet (ours: the official baseline's U-Net and the switches below) | authors_unet (paper
        # 1's authors' U-Net 64..1024, 2-class softmax) | rau_net (their RAU-Net)
        "family": "unet",
        "filters": 128,  # rau_net: constant width (128 = the paper's model, 40 = their small one)
        "block_attention": "se",  # rau_net: none | se (their logs) | triplane_mha (the paper's)
        "triplane_heads": 6,
        "triplane_key_dim": 12,
        "dropout": 0.25,  # rau_net: before the heads; authors_unet: 0.2 in its config
        # rau_net: output scales relative to the input (2 = twice the size) and their loss weights
        "head_scales": [1.0],
        "head_weights": [1.0],
        "inference_head": "1x",  # rau_net: 1x (the authors) | average (of all heads at 1x)
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
        "focal_alpha": 0.25,  # weight of the landslide class (1 - alpha for background)
        # Per-class weights [background, landslide] instead of focal_alpha; [1.0, 1.0] = none
        # (the authors); [] = use focal_alpha.
        "focal_class_alpha": [],
        "iou_form": "one_minus",  # one_minus: 1 - IoU | neglog: -log(IoU) (the authors)
        "iou_classes": "landslide",  # landslide | both (mean over background and landslide)
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
