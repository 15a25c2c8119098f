"""The rsic config schema (`DEFAULTS`): every key a config file under configs/rsic/ may set.

A YAML file states only what differs (see `common.config.load_config`); the command line
overrides single values with `--set model.alpha=0.5`. Reading a config never imports TensorFlow.
"""

from common.config import EXPORT_DEFAULTS, TRAIN_DEFAULTS

DEFAULTS = {
    "data": {
        "root": "",  # the data set folder; `--data` sets it and the run remembers it
        "train_ratio": 0.2,  # share of each class for training (papers: 0.1 or 0.2); rest: test
        # share of each class's training images that chooses the epoch (train.select_on=inner)
        "val_ratio": 0.1,
        "split_file": "",  # a split JSON (train/val/test lists) instead of train_ratio
        "seed": 0,  # split seed
        "skip_bad": False,  # skip unreadable images instead of stopping (--skip-bad)
        "cache": False,  # keep decoded images in memory (small data sets)
        "shuffle_buffer": 2048,
        # Side (pixels) images are resized to before the model crops its input (model.input_size)
        # out of them: a random window in training, `test_crop` at evaluation, prediction and in
        # the exported model (papers 3 and 4's code: 256 images, 246 crops). 0 = model.input_size
        # (no crop).
        "image_size": 0,
        "test_crop": "center",  # center (deterministic) | random (the authors' code)
        "augment": {
            "flip": True,  # horizontal and vertical flips
            "rot90": True,  # random multiples of 90 degrees (aerial scenes have no "up")
            # Every training image in its four rotations (0, 90, 180, 270 degrees) each epoch: the
            # papers' offline 4x data set (an epoch is 4x longer; random rot90 is then skipped).
            "rot90_all": False,
            "crop": 0.8,  # random crop, smallest side as a share of the image; 1.0 = off
            # Mixup inside each batch (common.augment.mixup_batch), the labels become soft: each
            # image is mixed with the one half a batch later, keeping a share `ratio` of itself:
            # uniform in [low, high] (paper 3) or Beta(alpha, alpha) (paper 4); keep_originals:
            # the originals stay in the batch, which doubles (both papers).
            "mixup": {"enabled": False, "ratio": "uniform", "low": 0.1, "high": 0.3, "alpha": 0.4,
                      "keep_originals": True},
            # The last N epochs without flips, crops (augment.crop) and mixup: rotations only
            # (paper 4: 10 epochs at 1e-6 after 50 with augmentation); 0 = never off.
            "off_last_epochs": 0,
        },
    },
    "model": {
        "backbone": "MobileNetV2",  # see rsic.models.BACKBONES
        "input_size": 224,  # square input side in pixels
        "alpha": 1.0,  # width multiplier (MobileNet, MobileNetV2)
        # null: train from scratch; imagenet: keras.applications' no-top ImageNet weights,
        # downloaded once into the Keras cache ($KERAS_HOME/models, default ~/.keras/models)
        "weights": None,
        "weights_path": "",  # a no-top ImageNet weights file to load instead of the Keras cache
        "embedding_dim": 512,  # the Dense "embedding" of paper 3's head
        # Head: pooled features -> dropout -> Dense(embedding_dim, relu) -> dropout -> Dense(classes)
        "dropout": 0.0,  # both dropouts of the head (papers 3 and 4: 0.2; paper 3's student: 0.4)
        "dense_l2": 0.0,  # L2 factor on the head's Dense kernels and biases (papers: 1e-5)
        # The head's Dense initialisation: glorot (Keras' default) | truncated_normal (stddev 0.1,
        # kernels and biases: the papers' code)
        "head_init": "glorot",
        "bn_momentum": 0.0,  # > 0: override every BatchNormalization momentum (short runs)
        # Paper 3's cut students: the backbone up to this Keras layer (EfficientNetB0 -6B:
        # block6d_add, -5B: block5c_add, -4B: block4c_add, -3B: block3b_add), then the same head
        "cut_after": "",
        "attention": {  # paper 4: attention over several mid-level feature maps
            "enabled": False,
            # tokens: self-attention over the positions of each map (the fast edge form below);
            # triplane: paper 4's network (tri-plane gating, rsic.models); se, cbam: its Table 2 rows
            "form": "tokens",
            # [] = tokens: the registry's stride 8, 16, 32 layers; triplane, se, cbam: paper 4's
            # blocks 5, 6, 7 on EfficientNet (rsic.models.PAPER4_LAYERS), else the stride 8-32 ones
            "layers": [],
            # triplane, se, cbam: every map brought to the last map's grid and to `channels` (a
            # kernel = stride = size-ratio convolution; 1x1 at the same size), as the authors did
            "channels": 1280,
            "pooling": "mean_max",  # triplane: mean | mean_max (mean + max, paper 4)
            "fusion": "sum",  # triplane, se, cbam: the pooled maps summed (paper 4) or concat
            "se_ratio": 0.5,  # se: hidden width / channels
            "cbam_ratio": 0.125,  # cbam: hidden width / channels (reduction 8)
            "reduce_channels": 128,  # tokens: 1x1 convolution before attention; 0 = none
            # heads x key size (tokens and triplane; paper 4's published count needs 32 x 4)
            "num_heads": 4,
            "key_dim": 32,
            "position_embedding": True,
            "dropout": 0.0,
            # Edge speed (issue 16; README, "Paper 4 at edge speed"). The map is pooled to the grid
            # of input stride `query_stride` (16: 14 x 14 at 224; 0 = every position) and its keys
            # and values to the grid of stride `kv_stride` (32: 7 x 7; 0 = the queries' grid, which
            # makes (H*W)^2 scores: 22x the backbone's int8 latency at stride 8).
            "query_stride": 16,
            "kv_stride": 32,
            "norm": "batch",  # layer | batch (BatchNorm after the residual: XNNPACK's int8 MUL/ADD)
        },
    },
    "distill": {  # paper 3's teacher-student training (`distill --teacher RUN`)
        "label_weight": 1.0,
        "kd_weight": 1.0,  # Hinton KD on the softened outputs
        "temperature": 4.0,
        "embedding_weight": 0.0,  # MSE between embeddings (projected when sizes differ)
        # true: a learned Dense maps the student's embedding to the teacher's size when they
        # differ; false (paper 3): the sizes must match, the MSE compares them as they are
        "embedding_projection": True,
        # true: the student starts from the (first) teacher's weights in every layer of the same
        # name and shape (common.distill.init_from_teacher); for a student of the teacher's family
        "init_from_teacher": False,
    },
    "teacher": {  # paper 3's combined teacher (`python -m rsic teacher`, common/teacher.py)
        "members": [],  # finished rsic runs (--members RUN,RUN,RUN), frozen up to "embedding"
        # the fusion f = sum_n e_n * w_n + b, then dropout and the classifier, trained on the
        # members' cached embeddings (the authors' code: lr 1e-3, batch 200, 100 epochs)
        "dropout": 0.4,
        "epochs": 100,
        "batch_size": 200,
        "lr": 0.001,
    },
    "export": {
        **EXPORT_DEFAULTS,
        "calibration_examples": 128,  # training images (a seeded pick) calibrating the int8 ranges
        "size_budget_mb": 20.0,  # paper 4: at most 20 MB
    },
    "benchmark": {
        # `python -m rsic benchmark`: paper 3's twelve backbones and NASNetMobile, paper 4's fourth
        # compact candidate (rsic.models.BACKBONES); --backbones picks others
        "backbones": ["MobileNet", "MobileNetV2", "NASNetMobile", "EfficientNetB0",
                      "EfficientNetB7", "ResNet50", "ResNet152V2", "InceptionV3",
                      "InceptionResNetV2", "DenseNet121", "DenseNet201", "ConvNeXtTiny",
                      "ConvNeXtLarge"],
        "export": True,  # also export each to int8 TFLite (size and latency columns)
    },
    # loss: crossentropy | kl (KL divergence to the targets, the papers'). Labels are one-hot (soft
    # under mixup) when mixup is on or the loss is kl, class ids otherwise; on one-hot labels
    # the two losses have the same gradients.
    "train": {**TRAIN_DEFAULTS, "monitor": "val_accuracy", "monitor_mode": "max",
              "loss": "crossentropy"},
}
