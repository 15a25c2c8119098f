"""The asc config schema (`DEFAULTS`): every key a config file under configs/asc/ may set.

Never imports TensorFlow (the edge `predict --tflite` path reads a config). A YAML file states
only what differs (`common.config.load_config`); `--set distill.embedding_weight=0.5` overrides.
"""

from asc.features import FEATURE_DEFAULTS
from common.config import EXPORT_DEFAULTS, TRAIN_DEFAULTS

DEFAULTS = {
    "data": {
        "root": "",  # the data set folder; `--data` sets it and the run remembers it
        "classes": [],  # class names in index order; []: the 10 DCASE scenes / sorted folder names
        "val_fraction": 0.25,  # folder-per-class layout only: share of each class for evaluation
        # train.select_on=inner: this share of each class's recordings of the training fold (every
        # segment and device of a recording together) chooses the epoch.
        "inner_val_fraction": 0.15,
        # The inner split's seed: apart from train.seed, so that teachers trained with other seeds
        # share one split and can be distilled from as an ensemble.
        "split_seed": 0,
        # Features of a split up to this size (float32) are loaded into memory, else streamed from
        # the HDF5 cache (the full TAU 2022 training fold is about 19 GB).
        "in_memory_gb": 4.0,
    },
    "features": FEATURE_DEFAULTS,
    "model": {
        "kind": "student",  # teacher | student
        "widths": [16, 32, 48, 64],  # channels of the stem and of each following stage, per branch
        "embedding_dim": 0,  # teacher: Dense embedding units per branch (0: the pooled features)
        "dropout": 0.2,
        # BatchNormalization momentum (0.9 = PyTorch's default; Keras' 0.99 leaves the moving
        # statistics near their initial values after a short run on small data).
        "bn_momentum": 0.9,
    },
    "augment": {"mixup_alpha": 0.4},  # 0 turns mixup off
    "distill": {
        "embedding_weight": 1.0,  # lambda of the embedding MSE (the paper's phase II)
        "kd_weight": 0.0,  # Hinton KL on temperature-softened outputs (the alternative)
        "temperature": 4.0,
        "label_weight": 1.0,
        # true: the student starts from the (first) teacher's weights in every layer of the same
        # name and shape (common.distill.init_from_teacher); for a student of the teacher's family
        "init_from_teacher": False,
    },
    "train": {
        **TRAIN_DEFAULTS,
        "epochs": 60,
        "monitor": "val_accuracy",
        "monitor_mode": "max",
        # Training batches for BatchNorm re-estimation (asc.models.RecalibrateBatchNorm); 0 = off.
        "bn_recalibration_batches": 16,
    },
    "export": {
        **EXPORT_DEFAULTS,
        "calibration_examples": 128,
        "size_budget_mb": 1.0,
    },
}


def load(path=None, overrides=(), data=None):
    """Resolve a config (`common.config.load_config` with `DEFAULTS`), `data.root` set from `data`."""
    from common.config import load_config

    cfg = load_config(path, overrides, defaults=DEFAULTS)
    if data:
        cfg["data"]["root"] = str(data)
    return cfg
