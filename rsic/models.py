"""Scene classifiers: keras.applications backbones with the head of paper 3, or the multi-level
attention model of paper 4.

Paper 3 (arXiv 2302.13028): backbone without top -> global average pooling -> Dense(512, relu,
"embedding") -> Dense(classes, "logits") -> softmax ("probs").
Paper 4 (arXiv 2211.02820): three feature maps of the backbone (strides 8, 16, 32), each through an
optional 1x1 convolution (fewer channels) and `common.layers.attention_block`, pooled,
concatenated -> Dense "embedding" -> logits -> probs.

Every model takes raw RGB images, float in [0, 255], of shape (S, S, 3): the backbone's own
preprocessing is the first layer (a `Rescaling`, or the backbone's built-in normalisation for
EfficientNet and ConvNeXt), so the exported TFLite model takes the same raw input. The backbone is
built on the model's own input tensor, so its layers sit in the model's one functional graph (no
nested model), which quantization needs.

ImageNet weights (`model.weights: imagenet`) come the way keras.applications gets them: the no-top
file is downloaded once with `keras.utils.get_file` from the URL keras.applications publishes,
checked against its published hash, and cached in the Keras cache (`$KERAS_HOME/models`, default
`~/.keras/models`), where keras.applications finds it too; later builds reuse it. One line says
which ("downloading ..." or "using cached ..."). Without network and without the cached file, a
`DataError` names the file, its URL and the folder to put it in (`python -m rsic download
--weights NAME` fills the cache ahead of time). `model.weights_path` loads a given file instead.
`model.weights: null` (the schema default, and the tiny configs) trains from scratch.

Example:
    from rsic.config import DEFAULTS
    model = build_model({**DEFAULTS["model"], "backbone": "MobileNetV2", "alpha": 0.35,
                         "input_size": 96}, num_classes=45)
"""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tf_keras as keras

from common.errors import ConfigError, DataError
from common.layers import ATTENTION_NORMS, attention_block

# ImageNet statistics of the "torch" and "caffe" preprocessing modes (RGB order, 0-255 scale).
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
_IMAGENET_STD = np.array([0.229, 0.224, 0.225])
_CAFFE_MEAN_RGB = np.array([123.68, 116.779, 103.939])


@dataclass(frozen=True)
class Backbone:
    """One registry entry.

    Attributes:
        name: the name used in configs (`model.backbone`).
        constructor: the function name in `tf_keras.applications`.
        preprocess: "tf" (x / 127.5 - 1), "torch" (x / 255, ImageNet mean/std), "caffe" (ImageNet
            mean subtracted; the first convolution's input channels are reversed when ImageNet
            weights are loaded, because those weights expect BGR) or "builtin" (the backbone
            normalises its raw 0-255 input itself).
        min_size: smallest input side in pixels that keras.applications accepts.
        weights_file: no-top ImageNet weights file name in the Keras cache (`{alpha}`/`{rows}`
            filled in for MobileNet/MobileNetV2).
        feature_layers: layer names of the stride 8, 16 and 32 feature maps (paper 4).
        has_alpha: accepts the width multiplier `alpha`.
        paper_accuracy: NWPU-RESISC45 accuracy (%) reported in paper 3, or None.
        compact: one of paper 4's candidates under 5M parameters.
    """

    name: str
    constructor: str
    preprocess: str
    min_size: int
    weights_file: str
    feature_layers: tuple = ()
    has_alpha: bool = False
    paper_accuracy: float = None
    compact: bool = False


BACKBONES = {
    b.name: b
    for b in (
        Backbone("MobileNet", "MobileNet", "tf", 32, "mobilenet_{alpha}_{rows}_tf_no_top.h5",
                 ("conv_pw_5_relu", "conv_pw_11_relu", "conv_pw_13_relu"), True, 90.8, True),
        Backbone("MobileNetV2", "MobileNetV2", "tf", 32,
                 "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows}_no_top.h5",
                 ("block_5_add", "block_12_add", "out_relu"), True, 88.0, True),
        Backbone("NASNetMobile", "NASNetMobile", "tf", 32, "nasnet_mobile_no_top.h5",
                 ("normal_concat_3", "normal_concat_8", "normal_concat_12"), False, None, True),
        Backbone("EfficientNetB0", "EfficientNetB0", "builtin", 32, "efficientnetb0_notop.h5",
                 ("block3b_add", "block5c_add", "top_activation"), False, 92.3, True),
        Backbone("EfficientNetB7", "EfficientNetB7", "builtin", 32, "efficientnetb7_notop.h5",
                 ("block3g_add", "block5j_add", "top_activation"), False, 93.6),
        Backbone("ResNet50", "ResNet50", "caffe", 32,
                 "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 ("conv3_block4_out", "conv4_block6_out", "conv5_block3_out"), False, 91.8),
        Backbone("ResNet152V2", "ResNet152V2", "tf", 32,
                 "resnet152v2_weights_tf_dim_ordering_tf_kernels_notop.h5", (), False, 92.4),
        Backbone("InceptionV3", "InceptionV3", "tf", 75,
                 "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", (), False, 86.9),
        Backbone("InceptionResNetV2", "InceptionResNetV2", "tf", 75,
                 "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5", (), False, 90.5),
        Backbone("DenseNet121", "DenseNet121", "torch", 32,
                 "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5", (), False, 92.0),
        Backbone("DenseNet201", "DenseNet201", "torch", 32,
                 "densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5", (), False, 93.3),
        Backbone("ConvNeXtTiny", "ConvNeXtTiny", "builtin", 32, "convnext_tiny_notop.h5", (), False, 93.0),
        Backbone("ConvNeXtLarge", "ConvNeXtLarge", "builtin", 32, "convnext_large_notop.h5", (), False, 95.3),
    )
}

# Width multipliers (and input sizes) for which ImageNet weight files exist.
_MOBILENET_ALPHAS = {0.25: "2_5", 0.5: "5_0", 0.75: "7_5", 1.0: "1_0"}
_MOBILENETV2_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)

# Where keras.applications publishes each backbone's no-top ImageNet weights (`{file}` is the file
# name of `Backbone.weights_file`) and the hash its `get_file` call checks, copied from
# tf_keras/src/applications/*.py (md5, or sha256 for ConvNeXt). keras.applications publishes no
# hash for MobileNet and MobileNetV2 (their many alpha/size files): those are not checked.
# A module-level table so that a test (or a mirror) can point a backbone elsewhere.
_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"
IMAGENET_WEIGHTS = {
    "MobileNet": (_KERAS_APPS + "mobilenet/{file}", None),
    "MobileNetV2": (_KERAS_APPS + "mobilenet_v2/{file}", None),
    "NASNetMobile": (_KERAS_APPS + "nasnet/NASNet-mobile-no-top.h5", "1ed92395b5b598bdda52abe5c0dbfd63"),
    "EfficientNetB0": ("https://storage.googleapis.com/keras-applications/{file}",
                       "50bc09e76180e00e4465e1a485ddc09d"),
    "EfficientNetB7": ("https://storage.googleapis.com/keras-applications/{file}",
                       "cbcfe4450ddf6f3ad90b1b398090fe4a"),
    "ResNet50": (_KERAS_APPS + "resnet/{file}", "4d473c1dd8becc155b73f8504c6f6626"),
    "ResNet152V2": (_KERAS_APPS + "resnet/{file}", "ed17cf2e0169df9d443503ef94b23b33"),
    "InceptionV3": (_KERAS_APPS + "inception_v3/{file}", "bcbd6486424b2319ff4ef7d526e38f63"),
    "InceptionResNetV2": (_KERAS_APPS + "inception_resnet_v2/{file}", "d19885ff4a710c122648d3b5c3b684e4"),
    "DenseNet121": (_KERAS_APPS + "densenet/{file}", "30ee3e1110167f948a6b9946edeeb738"),
    "DenseNet201": (_KERAS_APPS + "densenet/{file}", "c13680b51ded0fb44dff2d8f86ac8bb1"),
    "ConvNeXtTiny": (_KERAS_APPS + "convnext/{file}",
                     "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1"),
    "ConvNeXtLarge": (_KERAS_APPS + "convnext/{file}",
                      "96f02b6f0753d4f543261bc9d09bed650f24dd6bc02ddde3066135b63d23a1cd"),
}


def get_backbone(name):
    """The registry entry of `name` (case-insensitive); ConfigError listing the choices."""
    for key, spec in BACKBONES.items():
        if key.lower() == str(name).lower():
            return spec
    raise ConfigError(f"config key 'model.backbone': unknown backbone {name!r}; choose one of "
                      + ", ".join(BACKBONES))


def build_model(model_cfg, num_classes):
    """Build the classifier a `model:` config section describes.

    Args:
        model_cfg: dict, the `model:` section (see `rsic.config.DEFAULTS["model"]`).
        num_classes: int >= 2.

    Returns:
        An uncompiled functional keras.Model: raw RGB (B, S, S, 3) float in [0, 255] ->
        class probabilities (B, num_classes), with layers "embedding", "logits" and "probs".
    """
    spec = get_backbone(model_cfg["backbone"])
    size = int(model_cfg["input_size"])
    if size < spec.min_size:
        raise ConfigError(f"config key 'model.input_size': {spec.name} needs at least "
                          f"{spec.min_size} pixels, got {size}")
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}")
    alpha = float(model_cfg.get("alpha", 1.0))
    if alpha != 1.0 and not spec.has_alpha:
        raise ConfigError(f"config key 'model.alpha' applies to MobileNet and MobileNetV2 only, "
                          f"not {spec.name}")
    weights = model_cfg.get("weights")
    if weights not in (None, "none", "imagenet"):
        raise ConfigError(f"config key 'model.weights' must be null or imagenet, got {weights!r}")

    inputs = keras.Input((size, size, 3), name="image")
    x = _preprocess(spec, inputs, imagenet=weights == "imagenet")
    kwargs = {"include_top": False, "weights": None, "input_tensor": x, "input_shape": (size, size, 3)}
    if spec.has_alpha:
        kwargs["alpha"] = alpha
    backbone = getattr(keras.applications, spec.constructor)(**kwargs)
    if weights == "imagenet":
        load_imagenet_weights(backbone, spec, model_cfg, alpha, size)

    attention = model_cfg["attention"]
    if attention["enabled"]:
        features = _attention_features(backbone, spec, attention, size)
    else:
        features = keras.layers.GlobalAveragePooling2D(name="pool")(backbone.output)
    x = features
    if model_cfg["dropout"] > 0:
        x = keras.layers.Dropout(model_cfg["dropout"], name="head_dropout")(x)
    x = keras.layers.Dense(int(model_cfg["embedding_dim"]), activation="relu", name="embedding")(x)
    if model_cfg["dropout"] > 0:
        x = keras.layers.Dropout(model_cfg["dropout"], name="embedding_dropout")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    probs = keras.layers.Activation("softmax", dtype="float32", name="probs")(logits)
    suffix = "_attention" if attention["enabled"] else ""
    model = keras.Model(inputs, probs, name=f"rsic_{spec.name.lower()}{suffix}")
    if model_cfg.get("bn_momentum"):
        # The moving averages (momentum 0.99-0.999) lag far behind in a short run from scratch, so
        # evaluation would see stale statistics; a lower momentum catches up. Every
        # BatchNormalization: the backbone's and the attention blocks' (`attention.norm: batch`).
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = float(model_cfg["bn_momentum"])
    return model


def _preprocess(spec, inputs, imagenet):
    """The backbone's input normalisation as a TFLite-convertible layer (raw 0-255 RGB in)."""
    layers = keras.layers
    if spec.preprocess == "tf":
        return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(inputs)
    if spec.preprocess == "torch":
        scale = 1.0 / (255.0 * _IMAGENET_STD)
        offset = -_IMAGENET_MEAN / _IMAGENET_STD
        return layers.Rescaling(scale.tolist(), offset=offset.tolist(), name="preprocess")(inputs)
    if spec.preprocess == "caffe":
        return layers.Rescaling(1.0, offset=(-_CAFFE_MEAN_RGB).tolist(), name="preprocess")(inputs)
    if spec.preprocess == "builtin" and imagenet and spec.constructor.startswith("EfficientNet"):
        # tf_keras' EfficientNet adds a Rescaling(1/sqrt(std)) after its Normalization only when it
        # loads ImageNet weights itself; the same per-channel affine map, applied here before its
        # x/255 -> (x - mean)/sqrt(var) steps, gives the network the input those weights expect.
        root = np.sqrt(_IMAGENET_STD)
        offset = 255.0 * _IMAGENET_MEAN * (1.0 - 1.0 / root)
        return layers.Rescaling((1.0 / root).tolist(), offset=offset.tolist(), name="preprocess")(inputs)
    return inputs


def _attention_features(backbone, spec, attention, size):
    """Paper 4: attention over several backbone feature maps, each pooled; one concatenated vector."""
    layers = keras.layers
    names = attention["layers"] or list(spec.feature_layers)
    if not names:
        raise ConfigError(f"config key 'model.attention.layers': no default feature layers for "
                          f"{spec.name}; name them, or use one of "
                          + ", ".join(b.name for b in BACKBONES.values() if b.feature_layers))
    _check_attention(attention)
    pooled = []
    for index, layer_name in enumerate(names):
        try:
            x = backbone.get_layer(layer_name).output
        except ValueError:
            raise ConfigError(f"config key 'model.attention.layers': {spec.name} has no layer "
                              f"{layer_name!r}") from None
        if attention["reduce_channels"] > 0:
            x = layers.Conv2D(int(attention["reduce_channels"]), 1, use_bias=False,
                              name=f"att{index}_reduce")(x)
            x = layers.BatchNormalization(name=f"att{index}_reduce_bn")(x)
            x = layers.ReLU(name=f"att{index}_reduce_relu")(x)
        x = attention_block(x, num_heads=int(attention["num_heads"]), key_dim=int(attention["key_dim"]),
                            position_embedding=bool(attention["position_embedding"]),
                            dropout=float(attention["dropout"]), name=f"att{index}",
                            kv_size=_grid(size, attention["kv_stride"]),
                            query_size=_grid(size, attention["query_stride"]),
                            norm=attention["norm"])
        pooled.append(layers.GlobalAveragePooling2D(name=f"att{index}_pool")(x))
    return layers.Concatenate(name="att_concat")(pooled) if len(pooled) > 1 else pooled[0]


def _check_attention(attention):
    """ConfigError naming the `model.attention` key whose value the attention block cannot take."""
    for key in ("kv_stride", "query_stride", "reduce_channels"):
        value = attention[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"config key 'model.attention.{key}': expected an integer >= 0, got {value!r}")
    for key in ("num_heads", "key_dim"):
        value = attention[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"config key 'model.attention.{key}': expected an integer >= 1, got {value!r}")
    if attention["norm"] not in ATTENTION_NORMS:
        raise ConfigError(f"config key 'model.attention.norm': expected one of {', '.join(ATTENTION_NORMS)}, "
                          f"got {attention['norm']!r}")


def _grid(size, stride):
    """Side of the grid of input stride `stride` on a `size`-pixel input (0: no pooling)."""
    return max(1, size // int(stride)) if int(stride) > 0 else 0


def keras_cache_dir():
    """The folder keras.applications caches weights in: `$KERAS_HOME/models` (default ~/.keras/models)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "models"


def imagenet_weights_origin(spec, alpha=1.0, size=224):
    """(file name in the Keras cache, URL, expected hash or None) of `spec`'s no-top ImageNet weights."""
    filename = _weights_filename(spec, alpha, size)
    origin, file_hash = IMAGENET_WEIGHTS[spec.name]
    return filename, origin.format(file=filename), file_hash


def imagenet_weights_path(spec, model_cfg, alpha=1.0, size=224, log=None):
    """The no-top ImageNet weights file of `spec`: `model.weights_path`, else the Keras cache
    (downloaded there first if it is not; see `fetch_imagenet_weights`).

    Raises:
        DataError: the given file is missing, or the download failed (the message names the file,
            its URL and where to put it).
    """
    given = model_cfg.get("weights_path")
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise DataError(f"{path}: ImageNet weights file (model.weights_path) not found")
        return path
    return fetch_imagenet_weights(spec, alpha, size, log=log)


def fetch_imagenet_weights(spec, alpha=1.0, size=224, log=None):
    """The cached no-top ImageNet weights file of `spec`, downloaded with `keras.utils.get_file` if absent.

    A cached file whose hash does not match is downloaded again (as Keras does). The download goes
    to `<file>.part` and is renamed once complete and verified, so an interrupted one never leaves
    a file that looks cached.

    Args:
        spec: a `Backbone`. alpha, size: width multiplier and input side (they pick the MobileNet
            and MobileNetV2 file; other backbones have one file).
        log: callable taking one line (default `common.runner.say`).

    Returns:
        Path of the file in `keras_cache_dir()`.

    Raises:
        DataError: no network (or a bad download) and no cached file: one line naming the file, its
            URL and the folder to put it in.
    """
    if log is None:
        from common.runner import say as log
    filename, origin, file_hash = imagenet_weights_origin(spec, alpha, size)
    folder = keras_cache_dir()
    path = folder / filename
    if path.is_file():
        if file_hash is None or _hash_matches(path, file_hash):
            log(f"rsic: using cached ImageNet weights of {spec.name}: {path}")
            return path
        log(f"rsic: {path}: hash differs from the published {file_hash}; downloading it again")
    log(f"rsic: downloading ImageNet weights of {spec.name}: {origin} -> {path}")
    # get_file falls back to /tmp/.keras when the cache folder is missing: make it first.
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f"{filename}.part"
    part.unlink(missing_ok=True)  # a left-over of a killed download is never taken as the file
    interactive = keras.utils.is_interactive_logging_enabled()
    keras.utils.disable_interactive_logging()  # get_file's own "Downloading data from" and progress bar
    try:
        got = Path(keras.utils.get_file(part.name, origin, file_hash=file_hash, cache_subdir="models",
                                        cache_dir=str(folder.parent)))
    except Exception as error:  # get_file raises bare Exception (network) or ValueError (hash)
        part.unlink(missing_ok=True)
        reason = str(error).splitlines()[0].split(" -- ")[-1] if str(error) else type(error).__name__
        raise DataError(
            f"{path}: cannot download {spec.name}'s ImageNet weights from {origin} ({reason}); download "
            f"that URL where there is network (or run `python -m rsic download --weights {spec.name}` "
            f"there) and put the file in {folder}/, set model.weights_path, or train from scratch "
            f"with model.weights=null"
        ) from None
    finally:
        if interactive:
            keras.utils.enable_interactive_logging()
    final = got.with_name(filename)
    os.replace(got, final)
    return final


def _hash_matches(path, expected):
    """Whether the file's md5 (32 hex digits) or sha256 (64) equals `expected`, as get_file checks."""
    digest = hashlib.sha256() if len(expected) == 64 else hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest() == expected


def _weights_filename(spec, alpha, size):
    if spec.constructor == "MobileNet":
        if alpha not in _MOBILENET_ALPHAS:
            raise ConfigError(f"config key 'model.alpha': no ImageNet weights for MobileNet alpha {alpha}")
        rows = size if size in (128, 160, 192, 224) else 224
        return spec.weights_file.format(alpha=_MOBILENET_ALPHAS[alpha], rows=rows)
    if spec.constructor == "MobileNetV2":
        if alpha not in _MOBILENETV2_ALPHAS:
            raise ConfigError(f"config key 'model.alpha': no ImageNet weights for MobileNetV2 alpha {alpha}")
        rows = size if size in (96, 128, 160, 192, 224) else 224
        return spec.weights_file.format(alpha=float(alpha), rows=rows)
    return spec.weights_file


def load_imagenet_weights(backbone, spec, model_cfg, alpha=1.0, size=224):
    """Load no-top ImageNet weights into `backbone` (the keras.applications model), downloading
    them into the Keras cache first if needed (`imagenet_weights_path`)."""
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
