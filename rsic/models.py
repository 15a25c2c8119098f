"""Scene classifiers: a keras.applications backbone with paper 3's head, or paper 4's attention.

Paper 3 (arXiv 2302.13028): backbone without top -> global average pooling -> Dense(512, relu,
"embedding") -> Dense(classes, "logits") -> softmax ("probs").
Paper 4 (arXiv 2211.02820), `model.attention.form`:
- triplane (the authors' network): EfficientNetB0's blocks 5, 6 and 7 (`block5c_add`,
  `block6d_add`, `top_activation`), each brought to the last map's grid and 1280 channels (2x2
  stride-2 convolution; 1x1; none), `common.layers.TriPlaneAttention` (mean + max pooling, 32
  heads x key size 4), global average pooled, summed -> the same head: 9,505,896 parameters at
  246 px and 45 classes.
- se, cbam: the same maps and alignment with squeeze-excitation or CBAM instead (its Table 2).
- tokens (our fast edge form): three maps (strides 8, 16, 32), each through an optional 1x1
  convolution and `common.layers.attention_block`, pooled, concatenated -> the same head.
Paper 3's cut students (`model.cut_after`): the backbone up to a named layer, then the head.

Every model takes raw RGB, float in [0, 255], of shape (S, S, 3): the backbone's preprocessing is
its first layer, so the exported TFLite model takes the same raw input. The backbone is built on
the model's own input tensor: one flat functional graph (no nested model), which quantization needs.

ImageNet weights (`model.weights: imagenet`): keras.applications' no-top file, downloaded once
into the Keras cache (`fetch_imagenet_weights`), or the file `model.weights_path` names.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tf_keras as keras

from common.augment import SquareCrop
from common.errors import ConfigError, DataError, did_you_mean
from common.layers import (
    ATTENTION_NORMS,
    TriPlaneAttention,
    attention_block,
    cbam_block,
    squeeze_excitation,
)

# ImageNet statistics of the "torch" and "caffe" preprocessing modes (RGB order).
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
_IMAGENET_STD = np.array([0.229, 0.224, 0.225])
_CAFFE_MEAN_RGB = np.array([123.68, 116.779, 103.939])  # 0-255 scale


@dataclass(frozen=True)
class Backbone:
    """One backbone: `name` is its config name and its `tf_keras.applications` constructor.

    preprocess: "tf" (x / 127.5 - 1), "torch" (x / 255, ImageNet mean/std), "caffe" (ImageNet mean
    subtracted; the first convolution's input channels reversed for ImageNet weights, which expect
    BGR) or "builtin" (the backbone normalises raw 0-255 input itself). min_size: smallest input
    side keras.applications accepts. weights_file: the no-top ImageNet file in the Keras cache
    (`{alpha}`, `{rows}` filled in for MobileNet(V2)). feature_layers: the stride 8, 16, 32 maps
    (paper 4). paper_accuracy: NWPU-RESISC45 accuracy (%) in paper 3, or None.
    """

    name: str
    preprocess: str
    min_size: int
    weights_file: str
    feature_layers: tuple = ()
    paper_accuracy: float = None

    @property
    def has_alpha(self):
        """Whether the backbone takes the width multiplier `model.alpha`."""
        return self.name in _WEIGHT_ALPHAS


_NOTOP = "_weights_tf_dim_ordering_tf_kernels_notop.h5"
BACKBONES = {b.name: b for b in (
    Backbone("MobileNet", "tf", 32, "mobilenet_{alpha}_{rows}_tf_no_top.h5",
             ("conv_pw_5_relu", "conv_pw_11_relu", "conv_pw_13_relu"), 90.8),
    Backbone("MobileNetV2", "tf", 32,
             "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows}_no_top.h5",
             ("block_5_add", "block_12_add", "out_relu"), 88.0),
    Backbone("NASNetMobile", "tf", 32, "nasnet_mobile_no_top.h5",
             ("normal_concat_3", "normal_concat_8", "normal_concat_12")),
    Backbone("EfficientNetB0", "builtin", 32, "efficientnetb0_notop.h5",
             ("block3b_add", "block5c_add", "top_activation"), 92.3),
    Backbone("EfficientNetB7", "builtin", 32, "efficientnetb7_notop.h5",
             ("block3g_add", "block5j_add", "top_activation"), 93.6),
    Backbone("ResNet50", "caffe", 32, "resnet50" + _NOTOP,
             ("conv3_block4_out", "conv4_block6_out", "conv5_block3_out"), 91.8),
    Backbone("ResNet152V2", "tf", 32, "resnet152v2" + _NOTOP, (), 92.4),
    Backbone("InceptionV3", "tf", 75, "inception_v3" + _NOTOP, (), 86.9),
    Backbone("InceptionResNetV2", "tf", 75, "inception_resnet_v2" + _NOTOP, (), 90.5),
    Backbone("DenseNet121", "torch", 32, "densenet121" + _NOTOP, (), 92.0),
    Backbone("DenseNet201", "torch", 32, "densenet201" + _NOTOP, (), 93.3),
    Backbone("ConvNeXtTiny", "builtin", 32, "convnext_tiny_notop.h5", (), 93.0),
    Backbone("ConvNeXtLarge", "builtin", 32, "convnext_large_notop.h5", (), 95.3),
)}

# MobileNet(V2): the width multipliers (as the file names spell them) and input sides with an
# ImageNet file; another side takes the 224 file.
_WEIGHT_ALPHAS = {"MobileNet": {0.25: "2_5", 0.5: "5_0", 0.75: "7_5", 1.0: "1_0"},
                  "MobileNetV2": {a: str(a) for a in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)}}
_WEIGHT_ROWS = {"MobileNet": (128, 160, 192, 224), "MobileNetV2": (96, 128, 160, 192, 224)}

# Where keras.applications publishes each no-top file (`{file}`: `Backbone.weights_file`) and the
# hash it checks, from tf_keras/src/applications/*.py (md5; sha256 for ConvNeXt; none
# published for MobileNet(V2)). A module-level table so that a test (or a mirror) can repoint it.
_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"
IMAGENET_WEIGHTS = {
    "MobileNet": (_APPS + "mobilenet/{file}", None),
    "MobileNetV2": (_APPS + "mobilenet_v2/{file}", None),
    "NASNetMobile": (_APPS + "nasnet/NASNet-mobile-no-top.h5", "1ed92395b5b598bdda52abe5c0dbfd63"),
    "EfficientNetB0": ("https://storage.googleapis.com/keras-applications/{file}",
                       "50bc09e76180e00e4465e1a485ddc09d"),
    "EfficientNetB7": ("https://storage.googleapis.com/keras-applications/{file}",
                       "cbcfe4450ddf6f3ad90b1b398090fe4a"),
    "ResNet50": (_APPS + "resnet/{file}", "4d473c1dd8becc155b73f8504c6f6626"),
    "ResNet152V2": (_APPS + "resnet/{file}", "ed17cf2e0169df9d443503ef94b23b33"),
    "InceptionV3": (_APPS + "inception_v3/{file}", "bcbd6486424b2319ff4ef7d526e38f63"),
    "InceptionResNetV2": (_APPS + "inception_resnet_v2/{file}", "d19885ff4a710c122648d3b5c3b684e4"),
    "DenseNet121": (_APPS + "densenet/{file}", "30ee3e1110167f948a6b9946edeeb738"),
    "DenseNet201": (_APPS + "densenet/{file}", "c13680b51ded0fb44dff2d8f86ac8bb1"),
    "ConvNeXtTiny": (_APPS + "convnext/{file}",
                     "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1"),
    "ConvNeXtLarge": (_APPS + "convnext/{file}",
                      "96f02b6f0753d4f543261bc9d09bed650f24dd6bc02ddde3066135b63d23a1cd"),
}


HEAD_INITS = ("glorot", "truncated_normal")

# Paper 4's feature maps (blocks 5, 6, 7) of the backbones it names; `form: triplane | se | cbam`
# takes a backbone's stride 8, 16, 32 maps (`Backbone.feature_layers`) when it is not listed here.
PAPER4_LAYERS = {"EfficientNetB0": ("block5c_add", "block6d_add", "top_activation"),
                 "EfficientNetB7": ("block5j_add", "block6m_add", "top_activation")}
ATTENTION_FORMS = ("tokens", "triplane", "se", "cbam")
FUSIONS = ("sum", "concat")


def get_backbone(name):
    """The registry entry of `name` (case-insensitive); ConfigError listing the choices."""
    for key, spec in BACKBONES.items():
        if key.lower() == str(name).lower():
            return spec
    raise ConfigError(f"config key 'model.backbone': unknown backbone {name!r}; choose one of "
                      + ", ".join(BACKBONES))


def build_model(model_cfg, num_classes, *, image_size=0, test_crop="center"):
    """The classifier of a `model:` config section (`rsic.config.DEFAULTS["model"]`).

    `image_size` > `model.input_size` (`data.image_size`): the model takes images of that side
    and its first layer (common.augment.SquareCrop, "crop") cuts its input out of them: a random
    window in training, `test_crop` (center | random) at inference.

    Returns:
        An uncompiled functional keras.Model: raw RGB (B, S, S, 3) float in [0, 255] (S the
        image side) -> class probabilities (B, num_classes), with layers "embedding", "logits"
        and "probs".
    """
    spec = get_backbone(model_cfg["backbone"])
    size, alpha = int(model_cfg["input_size"]), float(model_cfg.get("alpha", 1.0))
    weights, attention = model_cfg.get("weights"), model_cfg["attention"]
    if size < spec.min_size:
        raise ConfigError(f"config key 'model.input_size': {spec.name} needs at least "
                          f"{spec.min_size} pixels, got {size}")
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}")
    if alpha != 1.0 and not spec.has_alpha:
        raise ConfigError(f"config key 'model.alpha' applies to MobileNet and MobileNetV2 only, "
                          f"not {spec.name}")
    if weights not in (None, "none", "imagenet"):
        raise ConfigError(f"config key 'model.weights' must be null or imagenet, got {weights!r}")
    cut_after = model_cfg.get("cut_after") or ""
    if cut_after and attention["enabled"]:
        raise ConfigError("config key 'model.cut_after': a cut backbone takes the plain head; "
                          "set model.attention.enabled=false")
    form = attention.get("form", "tokens") if attention["enabled"] else ""
    if form and form != "tokens":
        _check_gated_keys(attention, form)

    layers = keras.layers
    # `image_size` > `size` (data.image_size): the model crops its input out of larger images
    image_size = max(int(image_size or 0), size)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    cropped = inputs if image_size == size else SquareCrop(size, test_crop, name="crop")(inputs)
    backbone = getattr(keras.applications, spec.name)(
        include_top=False, weights=None, input_shape=(size, size, 3),
        input_tensor=_preprocess(spec, cropped, imagenet=weights == "imagenet"),
        **({"alpha": alpha} if spec.has_alpha else {}))
    if weights == "imagenet":
        load_imagenet_weights(backbone, spec, model_cfg, alpha, size)
    if form == "tokens":
        x = _attention_features(backbone, spec, attention, size)
    elif form:
        x = _gated_features(backbone, spec, attention, form)
    else:
        end = _layer_output(backbone, spec, cut_after, "model.cut_after") if cut_after else backbone.output
        x = layers.GlobalAveragePooling2D(name="pool")(end)
    dropout = model_cfg["dropout"]
    if dropout > 0:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Dense(int(model_cfg["embedding_dim"]), activation="relu", name="embedding",
                     **head_dense_options(model_cfg))(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name="embedding_dropout")(x)
    probs = layers.Activation("softmax", dtype="float32", name="probs")(
        layers.Dense(num_classes, name="logits", **head_dense_options(model_cfg))(x))
    suffix = f"_{form}" if form else f"_to_{cut_after}" if cut_after else ""
    model = keras.Model(inputs, probs, name=f"rsic_{spec.name.lower()}{suffix}")
    if model_cfg.get("bn_momentum"):
        # Moving averages of momentum 0.99-0.999 lag far behind in a short run from scratch, so
        # evaluation would see stale statistics; a lower momentum catches up. Every
        # BatchNormalization: the backbone's and the attention blocks' (`attention.norm: batch`).
        for layer in model.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = float(model_cfg["bn_momentum"])
    return model


def head_dense_options(model_cfg):
    """Initialisers and L2 regularisers of the head's two Dense layers (`model.head_init`,
    `model.dense_l2`; the papers' code: truncated normal stddev 0.1 and L2 1e-5 on kernels and
    biases). An L2 factor l adds l * sum(w^2) to the loss. New initialiser instances on every call:
    Keras gives one unseeded instance the same values each time it is called."""
    init, l2 = model_cfg.get("head_init", "glorot"), float(model_cfg.get("dense_l2", 0.0))
    if init not in HEAD_INITS:
        raise ConfigError(f"config key 'model.head_init' must be one of {', '.join(HEAD_INITS)}, "
                          f"got {init!r}")
    if l2 < 0:
        raise ConfigError(f"config key 'model.dense_l2' must be >= 0, got {l2}")
    options = {}
    if init == "truncated_normal":
        options.update(kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.1),
                       bias_initializer=keras.initializers.TruncatedNormal(stddev=0.1))
    if l2 > 0:
        options.update(kernel_regularizer=keras.regularizers.L2(l2),
                       bias_regularizer=keras.regularizers.L2(l2))
    return options


def _preprocess(spec, inputs, imagenet):
    """The backbone's input normalisation as a TFLite-convertible Rescaling (raw 0-255 RGB in)."""
    mean, std = _IMAGENET_MEAN, _IMAGENET_STD
    scale, offset = {"tf": (1.0 / 127.5, -1.0), "torch": (1.0 / (255.0 * std), -mean / std),
                     "caffe": (1.0, -_CAFFE_MEAN_RGB)}.get(spec.preprocess, (None, None))
    if scale is None and imagenet and spec.name.startswith("EfficientNet"):
        # tf_keras' EfficientNet adds a Rescaling(1/sqrt(std)) after its Normalization only when it
        # loads ImageNet weights itself; the same per-channel affine map, applied here before its
        # x/255 -> (x - mean)/sqrt(var) steps, gives the network the input those weights expect.
        scale, offset = 1.0 / np.sqrt(std), 255.0 * mean * (1.0 - 1.0 / np.sqrt(std))
    if scale is None:
        return inputs
    scale, offset = (np.asarray(v).tolist() for v in (scale, offset))
    return keras.layers.Rescaling(scale, offset=offset, name="preprocess")(inputs)


def _attention_features(backbone, spec, attention, size):
    """Paper 4: attention over several backbone feature maps, each pooled; one concatenation."""
    layers = keras.layers
    names = attention["layers"] or list(spec.feature_layers)
    if not names:
        raise ConfigError(f"config key 'model.attention.layers': no default feature layers for "
                          f"{spec.name}; name them, or use one of "
                          + ", ".join(b.name for b in BACKBONES.values() if b.feature_layers))
    for key, low in (("kv_stride", 0), ("query_stride", 0), ("reduce_channels", 0),
                     ("num_heads", 1), ("key_dim", 1)):
        value = attention[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"config key 'model.attention.{key}': expected an integer >= {low}, "
                              f"got {value!r}")
    if attention["norm"] not in ATTENTION_NORMS:
        raise ConfigError(f"config key 'model.attention.norm': expected one of "
                          f"{', '.join(ATTENTION_NORMS)}, got {attention['norm']!r}")

    def grid(stride):  # side of the grid of input stride `stride` (0: no pooling)
        return max(1, size // stride) if stride > 0 else 0

    pooled = []
    for index, layer_name in enumerate(names):
        x = _layer_output(backbone, spec, layer_name, "model.attention.layers")
        if attention["reduce_channels"] > 0:
            x = layers.Conv2D(attention["reduce_channels"], 1, use_bias=False,
                              name=f"att{index}_reduce")(x)
            x = layers.BatchNormalization(name=f"att{index}_reduce_bn")(x)
            x = layers.ReLU(name=f"att{index}_reduce_relu")(x)
        x = attention_block(x, num_heads=attention["num_heads"], key_dim=attention["key_dim"],
                            position_embedding=bool(attention["position_embedding"]),
                            dropout=float(attention["dropout"]), name=f"att{index}",
                            kv_size=grid(attention["kv_stride"]),
                            query_size=grid(attention["query_stride"]), norm=attention["norm"])
        pooled.append(layers.GlobalAveragePooling2D(name=f"att{index}_pool")(x))
    return layers.Concatenate(name="att_concat")(pooled) if len(pooled) > 1 else pooled[0]


def _layer_output(backbone, spec, layer_name, key):
    """The output tensor of the backbone's layer `layer_name`; a ConfigError naming `key` with
    the closest names and a few of the block ends when there is no such layer."""
    try:
        return backbone.get_layer(layer_name).output
    except ValueError:
        names = [layer.name for layer in backbone.layers]
        # Block ends (residual adds, ResNet's *_out) and the last layer, a handful spread evenly.
        ends = [name for name in names[:-1] if name.endswith(("_add", "_out"))] + names[-1:]
        examples = ", ".join(ends[::max(1, len(ends) // 6)][:6] + ends[-1:])
        raise ConfigError(f"config key '{key}': {spec.name} has no layer {layer_name!r}"
                          f"{did_you_mean(layer_name, names)}; for example {examples}") from None


def _check_gated_keys(attention, form):
    """ConfigError naming the first bad `model.attention` key of the forms triplane, se, cbam
    (checked before the backbone is built)."""
    if form not in ATTENTION_FORMS:
        raise ConfigError(f"config key 'model.attention.form': expected one of "
                          f"{', '.join(ATTENTION_FORMS)}, got {form!r}")
    for key in ("num_heads", "key_dim", "channels"):
        value = attention[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"config key 'model.attention.{key}': expected an integer >= 1, "
                              f"got {value!r}")
    for key, choices in (("pooling", TriPlaneAttention.POOLINGS), ("fusion", FUSIONS)):
        if attention[key] not in choices:
            raise ConfigError(f"config key 'model.attention.{key}': expected one of "
                              f"{', '.join(choices)}, got {attention[key]!r}")
    ratio_key = {"se": "se_ratio", "cbam": "cbam_ratio"}.get(form)
    if ratio_key and not 0 < float(attention[ratio_key]) <= 1:
        raise ConfigError(f"config key 'model.attention.{ratio_key}': expected a fraction in "
                          f"(0, 1], got {attention[ratio_key]!r}")


def _alignment(names, shapes, channels):
    """How each map is brought to the last map's grid and `channels`, as the authors did: a map r
    times the last one's side (r = side / last side, rounded) goes through a Conv2D with kernel =
    stride = r, "valid" (EfficientNetB0 at 246 px: 16 -> 8 by 2x2 stride 2, 31 -> 7 by 4x4
    stride 4); one of the last one's side through a 1x1 Conv2D unless it already has `channels`.

    Args: names: the maps' layer names; shapes: their (H, W, C); channels: int.
    Returns: per map (kernel or 0 for none, aligned (H, W, channels)).
    """
    last = int(shapes[-1][0])
    plan = []
    for name, (height, width, depth) in zip(names, shapes):
        if height < last:
            raise ConfigError(f"config key 'model.attention.layers': {name!r} ({height}x{width}) "
                              f"is smaller than the last map {names[-1]!r} ({last}x{last}); list "
                              f"the maps from the largest to the smallest")
        ratio = max(1, round(height / last))
        if ratio == 1 and depth == channels:
            plan.append((0, (height, width, depth)))
        else:
            plan.append((ratio, ((height - ratio) // ratio + 1, (width - ratio) // ratio + 1,
                                 channels)))
    return plan


def gated_parameter_count(map_shapes, attention, embedding_dim, num_classes):
    """Parameters of everything the forms triplane, se and cbam add after the backbone, from the
    backbone maps' shapes alone (no model built): alignment convolutions, the gates, the head.

    Args:
        map_shapes: (H, W, C) of each map of `attention.layers`, largest first (EfficientNetB0 at
            246 px: blocks 5, 6, 7 = (16, 16, 112), (8, 8, 192), (8, 8, 1280)).
        attention: a `model.attention` section (form, channels, num_heads, key_dim, fusion,
            se_ratio, cbam_ratio). embedding_dim, num_classes: the head's widths.
    Returns:
        int; plus the backbone's own count (EfficientNetB0 no-top: 4,049,571) = the model's.
    """
    form, channels = attention["form"], int(attention["channels"])
    _check_gated_keys(attention, form)
    inner = int(attention["num_heads"]) * int(attention["key_dim"])
    plan = _alignment([f"map {i}" for i in range(len(map_shapes))], map_shapes, channels)
    total = 0
    for (kernel, (_, width, depth)), (_, _, source) in zip(plan, map_shapes):
        if kernel:
            total += kernel * kernel * source * depth + depth
        if form == "triplane":  # per plane: Q, K, V (+ biases) and the output projection
            total += sum(4 * d * inner + 3 * inner + d for d in (width, depth, depth))
        else:
            ratio = float(attention["se_ratio" if form == "se" else "cbam_ratio"])
            hidden = max(1, int(depth * ratio))
            total += depth * hidden + hidden + hidden * depth + depth
            total += 2 * 7 * 7 + 1 if form == "cbam" else 0
    pooled = channels * (len(map_shapes) if attention["fusion"] == "concat" else 1)
    return total + pooled * embedding_dim + embedding_dim + embedding_dim * num_classes + num_classes


def _gated_features(backbone, spec, attention, form):
    """Paper 4's network (`form` triplane) and its Table 2 rows (se, cbam): the maps of
    `attention.layers`, each aligned to the last map's grid and `attention.channels`
    (`_alignment`), gated, global average pooled, then summed (or concatenated:
    `attention.fusion`). Returns the (B, channels) tensor (B, channels x maps under concat)."""
    layers = keras.layers
    names = list(attention["layers"] or PAPER4_LAYERS.get(spec.name, spec.feature_layers))
    if not names:
        raise ConfigError(f"config key 'model.attention.layers': no default feature layers for "
                          f"{spec.name}; name them (Keras layer names)")
    maps = [_layer_output(backbone, spec, name, "model.attention.layers") for name in names]
    plan = _alignment(names, [tuple(int(d) for d in x.shape[1:]) for x in maps],
                      int(attention["channels"]))
    pooled = []
    for index, (x, (kernel, _)) in enumerate(zip(maps, plan)):
        if kernel:
            x = layers.Conv2D(int(attention["channels"]), kernel, strides=kernel,
                              name=f"att{index}_align")(x)
        if form == "triplane":
            x = TriPlaneAttention(attention["num_heads"], attention["key_dim"],
                                  pooling=attention["pooling"], name=f"att{index}_triplane")(x)
        elif form == "se":
            x = squeeze_excitation(x, ratio=float(attention["se_ratio"]), name=f"att{index}_se")
        else:
            x = cbam_block(x, ratio=float(attention["cbam_ratio"]), name=f"att{index}_cbam")
        pooled.append(layers.GlobalAveragePooling2D(name=f"att{index}_pool")(x))
    if len(pooled) == 1:
        return pooled[0]
    if attention["fusion"] == "sum":
        return layers.Add(name="att_sum")(pooled)
    return layers.Concatenate(name="att_concat")(pooled)


def imagenet_weights_origin(spec, alpha=1.0, size=224):
    """(file name in the Keras cache, URL, expected hash or None) of `spec`'s no-top weights;
    `alpha` and `size` pick the MobileNet(V2) file (other backbones have one)."""
    filename = spec.weights_file
    if spec.has_alpha:
        alphas = _WEIGHT_ALPHAS[spec.name]
        if alpha not in alphas:
            raise ConfigError(f"config key 'model.alpha': no ImageNet weights for {spec.name} "
                              f"alpha {alpha}")
        rows = size if size in _WEIGHT_ROWS[spec.name] else 224
        filename = filename.format(alpha=alphas[alpha], rows=rows)
    origin, file_hash = IMAGENET_WEIGHTS[spec.name]
    return filename, origin.format(file=filename), file_hash


def imagenet_weights_path(spec, model_cfg, alpha=1.0, size=224):
    """`model.weights_path`, else the Keras cache's file (`fetch_imagenet_weights`)."""
    if not model_cfg.get("weights_path"):
        return fetch_imagenet_weights(spec, alpha, size)
    path = Path(model_cfg["weights_path"]).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: ImageNet weights file (model.weights_path) not found")
    return path


def fetch_imagenet_weights(spec, alpha=1.0, size=224, log=None):
    """The cached no-top ImageNet weights file of `spec` (a Path in the Keras cache),
    downloaded first when absent or when its hash differs from the published one.

    The download (common.download.download_file) goes to `<file>.part`, renamed once complete and
    verified, so an interrupted one never leaves a file that looks cached. No network (or a bad
    download) and no cached file: a DataError naming the file, its URL and the folder to put it in.
    """
    from common.download import checksum_ok, download_file

    if log is None:
        from common.runner import say as log
    filename, origin, file_hash = imagenet_weights_origin(spec, alpha, size)
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()
    path = keras_home / "models" / filename  # where keras.applications caches them too
    digest = {} if file_hash is None else {"sha256" if len(file_hash) == 64 else "md5": file_hash}
    if path.is_file():
        if checksum_ok(path, **digest):
            log(f"rsic: using cached ImageNet weights of {spec.name}: {path}")
            return path
        log(f"rsic: {path}: hash differs from the published {file_hash}; downloading it again")
    log(f"rsic: downloading ImageNet weights of {spec.name}: {origin} -> {path}")
    try:
        return download_file(origin, path, quiet=True, **digest)
    except Exception as error:  # DataError, or a connection dropped mid-transfer
        reason = str(error).removeprefix(f"{origin}: ").split(";")[0] or type(error).__name__
        raise DataError(
            f"{path}: cannot download {spec.name}'s ImageNet weights from {origin} ({reason}); "
            f"download that URL where there is network (or run `python -m rsic download --weights "
            f"{spec.name}` there) and put the file in {path.parent}/, set model.weights_path, or "
            f"train from scratch with model.weights=null") from None


def load_imagenet_weights(backbone, spec, model_cfg, alpha=1.0, size=224):
    """Load no-top ImageNet weights into `backbone` (the keras.applications model)."""
    path = imagenet_weights_path(spec, model_cfg, alpha, size)
    try:
        backbone.load_weights(str(path))
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: cannot load as {spec.name} no-top weights "
                        f"({str(error).splitlines()[0]})") from None
    if spec.preprocess == "caffe":
        # Caffe weights expect BGR; reversing the first kernel's input channels lets them take RGB.
        conv = backbone.get_layer("conv1_conv")
        kernel, *rest = conv.get_weights()
        conv.set_weights([kernel[:, :, ::-1, :], *rest])


def compile_classifier(model, optimizer):
    """Compile with sparse categorical cross-entropy on the probabilities and accuracy."""
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"])
    return model
