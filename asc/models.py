"""Teacher and student models for acoustic scenes: one CNN per spectrogram, late fusion.

Input: the spectrogram stack of `asc.features` (batch, n_bins, frames, kinds). Branch i reads
channel i (a slice, so the exported TFLite model keeps one input) and ends with
`Dense(num_classes, name="<kind>_logits")` and a softmax; the fused output `probs` is the average
of the branch probabilities (float32). The concatenation of the branch embeddings is the layer
named `embedding`, which distillation reads. With a single branch the names are the project's
plain `logits`, `probs` and `embedding`.

- Teacher (Pham et al. phase I): per branch a stride-2 stem, residual blocks
  (`common.layers.residual_conv_block`) with max pooling, global average pooling, optionally a
  Dense embedding (`model.embedding_dim`), dropout and the classifier.
- Student (phase II): the same with depthwise-separable blocks and no Dense embedding; it must
  stay under the DCASE 2023 limits of 128,000 parameters and 30 M MACs per 1-s clip.
"""

from pathlib import Path

import tf_keras as keras

from common.errors import ConfigError

MAX_PARAMS = 128_000
MAX_MACS = 30_000_000
layers = keras.layers


@keras.saving.register_keras_serializable(package="asc")
class SliceLastAxis(layers.Layer):
    """Take `size` entries of the last axis starting at `start`: (..., C) -> (..., size): a
    branch's spectrogram channel, or a branch's part of the fused embedding. A layer (not a
    tensor slice) so that it serializes plainly and quantization-aware training can clone it."""

    def __init__(self, start, size, **kwargs):
        super().__init__(**kwargs)
        self.start, self.size = int(start), int(size)

    def call(self, inputs):
        return inputs[..., self.start : self.start + self.size]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.size)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "size": self.size}


def _conv_bn_relu(x, conv, name):
    """conv (a layer) -> BatchNormalization NAME_bn -> ReLU NAME_relu."""
    return layers.ReLU(name=f"{name}_relu")(layers.BatchNormalization(name=f"{name}_bn")(conv(x)))


def _separable_block(x, filters, name):
    dw = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_dw")
    x = _conv_bn_relu(x, dw, f"{name}_dw")
    pw = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pw")
    return _conv_bn_relu(x, pw, f"{name}_pw")


def _branch(x, kind, widths, embedding_dim, name, emb_name):
    """One spectrogram's CNN up to its embedding (batch, features)."""
    from common.layers import residual_conv_block

    stem = layers.Conv2D(widths[0], 3, strides=2, padding="same", use_bias=False,
                         name=f"{name}_stem_conv")
    x = _conv_bn_relu(x, stem, f"{name}_stem")
    for stage, filters in enumerate(widths[1:], start=1):
        block = f"{name}_res{stage}" if kind == "teacher" else f"{name}_ds{stage}"
        if kind == "teacher":
            x = residual_conv_block(x, filters, name=block)
        else:
            x = _separable_block(x, filters, block)
        if stage < len(widths) - 1:
            pool = f"{name}_pool{stage}" if kind == "teacher" else f"{block}_pool"
            x = layers.MaxPooling2D(2, padding="same", name=pool)(x)
    if kind == "teacher" and embedding_dim > 0:
        x = layers.GlobalAveragePooling2D(name=f"{name}_gap")(x)
        return layers.Dense(embedding_dim, activation="relu", name=emb_name)(x)
    return layers.GlobalAveragePooling2D(name=emb_name)(x)


def build_model(input_shape, num_classes, model_cfg, kinds):
    """Build the teacher or student of `model_cfg` (the `model:` config section), not compiled.

    Args:
        input_shape: (n_bins, frames, len(kinds)); `kinds`: spectrogram names, one branch each,
            in channel order.

    Returns:
        keras.Model (batch, *input_shape) float32 -> (batch, num_classes) float32 probabilities.
    """
    kind = model_cfg["kind"]
    if kind not in ("teacher", "student"):
        raise ConfigError(f"config key 'model.kind' must be teacher or student, got {kind!r}")
    widths = [int(w) for w in model_cfg["widths"]]
    if not widths or min(widths) < 1:
        raise ConfigError("config key 'model.widths' must be a non-empty list of positive ints, "
                          f"got {widths}")
    if len(kinds) != input_shape[-1]:
        raise ConfigError(f"config key 'features.kinds': {len(kinds)} kinds for {input_shape[-1]} "
                          "input channels")
    inputs = keras.Input(input_shape, name="spectrograms")
    single = len(kinds) == 1
    heads = [_branch(inputs if single else SliceLastAxis(i, 1, name=f"{name}_input")(inputs),
                     kind, widths, model_cfg["embedding_dim"], name,
                     "embedding" if single else f"{name}_embedding")
             for i, name in enumerate(kinds)]
    if not single:
        # The heads read their branch's part of the concatenation, so the `embedding` layer is on
        # the path to the output (and found by name) while the branches stay independent.
        fused = layers.Concatenate(name="embedding")(heads)
        sizes = [int(e.shape[-1]) for e in heads]
        heads = [SliceLastAxis(sum(sizes[:i]), n, name=f"{k}_head_input")(fused)
                 for i, (n, k) in enumerate(zip(sizes, kinds))]
    probs = []
    for name, emb in zip(kinds, heads):
        y = layers.Dropout(model_cfg["dropout"], name=f"{name}_dropout")(emb)
        logits = layers.Dense(num_classes, name="logits" if single else f"{name}_logits")(y)
        probs.append(layers.Activation("softmax", dtype="float32",
                                       name="probs" if single else f"{name}_probs")(logits))
    outputs = probs[0] if single else layers.Average(name="probs", dtype="float32")(probs)
    model = keras.Model(inputs, outputs, name=f"asc_{kind}")
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = float(model_cfg["bn_momentum"])
    return model


def embedding_model(model):
    """A model mapping the input to the `embedding` layer's output (batch, embedding size)."""
    return keras.Model(model.input, model.get_layer("embedding").output)


def complexity(model, tflite=None):
    """Parameters and MACs per clip of `model` against the DCASE limits, and its int8 size: that
    of the `tflite` file when it exists, else one byte per parameter."""
    from common.complexity import model_complexity

    c = model_complexity(model)
    params, macs = int(c["params"]), int(c["macs"])
    exported = tflite is not None and Path(tflite).is_file()
    return {"params": params, "macs": macs, "int8_bytes_estimate": params, "max_params": MAX_PARAMS,
            "max_macs": MAX_MACS, "within_limits": params <= MAX_PARAMS and macs <= MAX_MACS,
            "int8_bytes": Path(tflite).stat().st_size if exported else params,
            "int8_bytes_source": str(tflite) if exported else "estimate: 1 byte per parameter"}


class RecalibrateBatchNorm(keras.callbacks.Callback):
    """BatchNorm re-estimation before each validation (and at the end of a run without one).

    In a short run on little data the moving averages lag far behind weights that still change
    fast, and inference (which uses them) falls to chance while training-mode predictions are
    right. Setting every trainable BatchNormalization's moving mean and variance to the average
    batch statistics of the current weights over some training batches removes the lag (the "BN
    re-estimation" of SWA and NAS).

    Args:
        x: float array (N, bins, frames, kinds), the training clips to use (a seeded pick).
        batch_size: int, clips per batch.
    """

    def __init__(self, x, batch_size):
        super().__init__()
        self.x, self.batch_size = x, int(batch_size)

    def _recalibrate(self):
        net = getattr(self.model, "student", self.model)  # a Distiller: its student
        norms = [m for m in net.submodules
                 if isinstance(m, layers.BatchNormalization) and m.trainable]
        saved = [n.momentum for n in norms]
        try:
            for k, start in enumerate(range(0, len(self.x), self.batch_size), start=1):
                for n in norms:
                    n.momentum = (k - 1) / k  # running mean of the batch statistics
                net(self.x[start : start + self.batch_size], training=True)
        finally:
            for n, momentum in zip(norms, saved):
                n.momentum = momentum

    def on_test_begin(self, logs=None):
        self._recalibrate()

    def on_train_end(self, logs=None):
        if self.params.get("do_validation") is False:
            self._recalibrate()
