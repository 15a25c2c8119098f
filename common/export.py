"""Quantization-aware training and int8 TFLite export, with parity and size checks.

Two paths lead to an int8 model:

* QAT (quantization-aware training, `mode="qat"`): the model is cloned with every layer wrapped in
  `tfmot.quantization.keras.quantize_annotate_layer`. Layers that the default 8-bit registry of
  tensorflow-model-optimization supports get its config (fake-quantized weights and activations);
  SeparableConv2D is quantized too (tfmot splits it into a depthwise and a 1x1 convolution and
  folds the BatchNormalization that follows). The rest (MultiHeadAttention, LayerNormalization,
  Rescaling/Normalization, a BatchNormalization that does not follow a convolution, custom layers
  such as `PositionEmbedding`) get `NoOpQuantizeConfig`, which quantizes nothing: they are trained
  in float. `quantize_apply` runs inside `quantize_scope` with that config registered; the
  activation ranges are started from one pass over the representative data (tfmot starts them at
  [-6, 6]), the model is fine-tuned a short while (eagerly when 8 steps or fewer: cheaper than
  tracing) and converted. Nested models (a keras.applications backbone used as a layer) are first
  inlined into one flat functional graph, because tfmot refuses nested models.
* PTQ (post-training full-integer quantization, `mode="ptq"`): the float model is converted with a
  representative data set that calibrates every activation range.

Both conversions use `Optimize.DEFAULT` with a representative data set, so the parts that QAT left
in float are calibrated too and run in int8 where TFLite has an int8 kernel; ops without one stay
float. The TFLite model keeps float32 input and output (a QUANTIZE op at the entry and a
DEQUANTIZE op at the exit): callers feed the same raw input as the Keras model, and it is int8
inside. `mode="auto"` takes QAT when `train_data` and `loss` are given, else PTQ; a QAT failure
falls back to PTQ and the report says why (`fallback_reason`).

After conversion the TFLite model runs (LiteRT, `common.tflite_runtime`) on held-out examples and
is compared with the float Keras model; `export_report.json` is written beside the `.tflite`. A
model over the size budget is refused with `ExportError` and nothing is written.

A QAT model's TFLite file is also compared with the fake-quantized Keras model it was converted
from (`qat_conversion` in the report): fake quantization simulates the int8 arithmetic, so the two
should agree to a few quantization steps. When they do not (decision agreement under 0.95 or mean
absolute difference over 0.05), `mode="auto"` also converts the float model by PTQ and keeps
whichever int8 model is closer to the float model (`qat_vs_ptq_mean_abs_diff`, `fallback_reason`).
"""

import argparse
import contextlib
import re
import time
from pathlib import Path

import numpy as np

from common.errors import DataError, ExportError
from common.io import atomic_path, write_json, write_text

#: Most examples used to calibrate the converter (batch 1 each) and to check parity.
CALIBRATION_EXAMPLES = 128
PARITY_EXAMPLES = 256
#: Examples in the one pass that starts the QAT activation ranges (see
#: `calibrate_quantizer_ranges`).
CALIBRATION_BATCH = 64
#: QAT runs this many steps or fewer eagerly (see `_fit_qat`).
EAGER_QAT_STEPS = 8

#: Keys every `export_report.json` has (other keys add detail).
REPORT_KEYS = (
    "path", "tflite_bytes", "params", "macs", "float_keras_bytes", "metric_name", "keras_metric",
    "tflite_metric", "agreement", "max_abs_diff", "quantization", "fallback_reason", "float_layers",
)

# Layers that follow one of these are folded by tfmot's Conv+BatchNorm transforms.
# SeparableConv2D is first split into DepthwiseConv2D + a 1x1 Conv2D, whose BatchNorm then folds.
_FOLDING_LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense", "SeparableConv2D")
# Quantized by tfmot's layout transforms (split in two), not by its registry, which rejects them:
# taking the registry's word left all of NASNetMobile's separable convolutions in float.
_TRANSFORMED_LAYERS = ("SeparableConv1D", "SeparableConv2D")


def _noop_config_class():
    """The QuantizeConfig that leaves a layer in float (built lazily: tfmot is heavy to import)."""
    global _NoOpQuantizeConfig
    if _NoOpQuantizeConfig is None:
        import tensorflow_model_optimization as tfmot

        class NoOpQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
            """Quantizes nothing: the layer is trained and converted as float."""

            def get_weights_and_quantizers(self, layer):
                return []

            def get_activations_and_quantizers(self, layer):
                return []

            def set_quantize_weights(self, layer, quantize_weights):
                pass

            def set_quantize_activations(self, layer, quantize_activations):
                pass

            def get_output_quantizers(self, layer):
                return []

            def get_config(self):
                return {}

        _NoOpQuantizeConfig = NoOpQuantizeConfig
    return _NoOpQuantizeConfig


_NoOpQuantizeConfig = None


# ---------------------------------------------------------------------------------------------
# Data


def _examples(data, limit, what):
    """Up to `limit` input examples from an array, a tuple (x, y) or a tf.data.Dataset.

    A dataset may yield input batches or (x, y) batches (x is taken). Returns a float32 array
    (N, *input_shape).
    """
    if data is None:
        raise DataError(f"{what}: no data given")
    if isinstance(data, (tuple, list)) and len(data) == 2 and not np.isscalar(data[0]):
        data = data[0]
    if isinstance(data, np.ndarray):
        x = data[:limit]
    else:
        batches, count = [], 0
        try:
            iterator = iter(data)
        except TypeError as err:
            raise DataError(f"{what}: expected an array or a tf.data.Dataset, got {type(data).__name__}") from err
        for batch in iterator:
            if isinstance(batch, (tuple, list)):
                batch = batch[0]
            batch = np.asarray(batch)
            batches.append(batch)
            count += len(batch)
            if count >= limit:
                break
        if not batches:
            raise DataError(f"{what}: the data set is empty")
        x = np.concatenate(batches, axis=0)[:limit]
    x = np.asarray(x)
    if len(x) == 0:
        raise DataError(f"{what}: no examples")
    return x.astype(np.float32) if x.dtype.kind == "f" else x


def _train_dataset(train_data):
    """A tf.data.Dataset of (x, y) batches from a dataset or a tuple of arrays (batches of 32)."""
    import tensorflow as tf

    if isinstance(train_data, (tuple, list)) and len(train_data) == 2:
        return tf.data.Dataset.from_tensor_slices(tuple(train_data)).batch(32)
    return train_data


# ---------------------------------------------------------------------------------------------
# Graph surgery


def _is_graph_model(layer):
    import tf_keras as keras

    return isinstance(layer, keras.Model) and getattr(layer, "_is_graph_network", False)


def has_nested_models(model):
    """True when a layer of `model` is itself a Keras model."""
    import tf_keras as keras

    return any(isinstance(layer, keras.Model) for layer in model.layers)


def inline_nested_models(model):
    """A functional model computing the same as `model`, with nested models inlined.

    Every layer of a nested functional/Sequential model (a keras.applications backbone used as a
    layer) becomes a layer of the returned flat model. Layer objects are shared with `model` (same
    weights); a layer whose name clashes with one already in the flat model is copied under the
    name `<submodel>/<layer>`. Call arguments such as `training=False` given to the nested model
    are dropped.

    Raises:
        ExportError: a nested model is subclassed (no graph to inline).
    """
    import tf_keras as keras

    used_names, renamed = set(), {}
    inputs = [
        keras.Input(shape=t.shape[1:], dtype=t.dtype, name=layer.name)
        for t, layer in zip(model.inputs, model._input_layers)
    ]
    used_names.update(layer.name for layer in model._input_layers)
    outputs = _inline(model, inputs if len(inputs) > 1 else inputs[0], used_names, renamed, prefix="")
    return keras.Model(inputs, outputs, name=model.name)


def _inline(model, inputs, used_names, renamed, prefix):
    """Replay `model`'s graph on `inputs`, recursing into nested models (cf. tf_keras
    Functional._run_internal_graph)."""
    import tensorflow as tf
    import tf_keras as keras

    if not _is_graph_model(model):
        raise ExportError(f"layer {model.name}: a subclassed nested model cannot be inlined for export")
    flat_inputs = model._flatten_to_reference_inputs(inputs)
    usage = model._tensor_usage_count
    tensors = {}
    for ref, value in zip(model.inputs, flat_inputs):
        tensors[str(id(ref))] = [value] * usage[str(id(ref))]
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input or any(i not in tensors for i in node.flat_input_ids):
                continue
            args, kwargs = node.map_arguments(tensors)
            layer = node.layer
            if isinstance(layer, keras.Model):
                outputs = _inline(layer, args[0], used_names, renamed, prefix=f"{prefix}{layer.name}/")
            else:
                outputs = _call_unique(layer, args, kwargs, used_names, renamed, prefix)
            for out_id, value in zip(node.flat_output_ids, tf.nest.flatten(outputs)):
                tensors[out_id] = [value] * usage[out_id]
    results = [tensors[str(id(ref))].pop() for ref in model.outputs]
    return tf.nest.pack_sequence_as(model._nested_outputs, results)


def _call_unique(layer, args, kwargs, used_names, renamed, prefix):
    """Call `layer`, or a same-weights copy of it when its name is taken in the flat graph."""
    if id(layer) in renamed:
        return renamed[id(layer)](*args, **kwargs)
    if layer.name not in used_names:
        used_names.add(layer.name)
        renamed[id(layer)] = layer
        return layer(*args, **kwargs)
    config = layer.get_config()
    name = f"{prefix}{layer.name}"
    while name in used_names:
        name += "_"
    config["name"] = name
    copy = layer.__class__.from_config(config)
    used_names.add(name)
    renamed[id(layer)] = copy
    outputs = copy(*args, **kwargs)
    copy.set_weights(layer.get_weights())
    return outputs


def _float_layer_names(model):
    """Names of the layers of a flat model that tfmot's default registry cannot quantize.

    These get `NoOpQuantizeConfig`. A BatchNormalization is quantizable only right after a
    convolution or dense layer whose only consumer it is (tfmot folds it there). Separable
    convolutions are quantizable although the registry says no: a layout transform splits them.
    """
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    consumers = {}
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            for inbound in node.inbound_layers if isinstance(node.inbound_layers, list) else [node.inbound_layers]:
                consumers[id(inbound)] = consumers.get(id(inbound), 0) + 1
    names = []
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            layer = node.layer
            kind = layer.__class__.__name__
            if node.is_input or layer.name in names:
                continue
            if kind in ("BatchNormalization", "SyncBatchNormalization"):
                inbound = node.inbound_layers
                folds = (not isinstance(inbound, list)
                         and inbound.__class__.__name__ in _FOLDING_LAYERS
                         and consumers.get(id(inbound)) == 1)
                if not folds:
                    names.append(layer.name)
            elif kind not in _TRANSFORMED_LAYERS and not registry.supports(layer):
                names.append(layer.name)
    return names


def quantize_for_training(model, float_layers=None, max_retries=20):
    """Wrap `model` for quantization-aware training.

    Args:
        model: functional or Sequential tf_keras model (nested models are inlined first).
        float_layers: names of layers to leave in float; None: those the default registry
            rejects (see `_float_layer_names`).
        max_retries: a layer tfmot still rejects at `quantize_apply` is added to the float
            layers and the wrap retried, at most this many times.

    Returns:
        (qat_model, float_layers): the tfmot model (a copy; `model`'s weights are untouched) and
        the sorted names of the layers left in float.
    """
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    quantize = tfmot.quantization.keras
    if has_nested_models(model):
        # Inline a deep copy: inlining adds graph nodes to the layers it reuses.
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        model = inline_nested_models(copy)
    float_layers = set(_float_layer_names(model) if float_layers is None else float_layers)
    noop = _noop_config_class()

    for _ in range(max_retries + 1):
        def annotate(layer, _float=frozenset(float_layers)):
            if layer.name in _float:
                return quantize.quantize_annotate_layer(layer, quantize_config=noop())
            return quantize.quantize_annotate_layer(layer)

        annotated = keras.models.clone_model(model, clone_function=annotate)
        try:
            with quantize.quantize_scope({"NoOpQuantizeConfig": noop}):
                return quantize.quantize_apply(annotated), sorted(float_layers)
        except RuntimeError as err:
            match = re.search(r"Layer ([^:\s]+):", str(err))
            if not match or match.group(1) in float_layers:
                raise
            float_layers.add(match.group(1))
    raise ExportError(f"model {model.name}: tfmot still rejects layers after {max_retries} retries")


# ---------------------------------------------------------------------------------------------
# Conversion and parity


def _convert(model, calibration):
    """int8 TFLite bytes of `model` (float32 input/output), calibrated on `calibration` examples."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _representative(calibration)
    return converter.convert()


def _representative(calibration, nan_to_zero=False):
    """The converter's representative-data generator: each example as a batch of 1, float32."""
    def representative():
        for example in calibration:
            example = example[None].astype(np.float32)
            yield [np.nan_to_num(example, nan=0.0) if nan_to_zero else example]

    return representative


def convert_full_integer(model, calibration, float_ops=()):
    """Full-integer TFLite bytes of `model`: int8 input and output tensors, int8 inside.

    The microcontroller export (`common.mcu`) uses this. The converter calibrates on
    `calibration` (array (N, *input_shape), raw inputs; NaNs count as 0) and then quantizes every
    op it can, input and output included, except the TFLite op types named in `float_ops` (e.g.
    "SQRT"), which stay float between a DEQUANTIZE and a QUANTIZE (for ops the target runtime has
    only a float kernel for).

    Args:
        model: tf_keras model (float32).
        calibration: float array (N, *input_shape).
        float_ops: iterable of TFLite builtin op names to leave in float.

    Returns:
        bytes of the .tflite flatbuffer.
    """
    import tensorflow as tf
    from tensorflow.lite.python import convert as tflite_convert

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    # NaN -> 0 here: an int8 input tensor cannot hold NaN, so the firmware quantizes NaN as 0.0.
    converter.representative_dataset = _representative(calibration, nan_to_zero=True)
    converter._experimental_calibrate_only = True  # noqa: SLF001 - calibrate, then quantize below
    calibrated = converter.convert()
    return tflite_convert.mlir_quantize(
        calibrated, fully_quantize=True, input_data_type=tf.int8, output_data_type=tf.int8,
        denylisted_ops=sorted(float_ops) or None,
    )


def prediction_agreement(reference, other):
    """Share of equal predictions between two output arrays of the same shape.

    Multi-class outputs (last axis > 1): argmax over the last axis, one decision per example (or
    per pixel). Single-channel outputs (e.g. segmentation probabilities (B, H, W, 1)): threshold
    0.5 per element.
    """
    if reference.shape[-1] > 1:
        equal = reference.argmax(axis=-1) == other.argmax(axis=-1)
    else:
        equal = (reference >= 0.5) == (other >= 0.5)
    return float(np.mean(equal))


def _first_output(predictions):
    if isinstance(predictions, (list, tuple)):
        predictions = predictions[0]
    if isinstance(predictions, dict):
        predictions = next(iter(predictions.values()))
    return np.asarray(predictions, dtype=np.float32)


#: A QAT model's TFLite conversion counts as faithful to its fake-quantized Keras model when they
#: agree on at least this share of decisions with at most this mean absolute difference (in output
#: units: probabilities for the project's models). Fake quantization simulates the int8 arithmetic,
#: so a faithful conversion differs by a few quantization steps (0.01-0.07 measured).
FAITHFUL_AGREEMENT = 0.95
FAITHFUL_MEAN_ABS_DIFF = 0.05


def _closeness(reference, other):
    """Decision agreement and mean/max absolute difference between two output arrays."""
    diff = np.abs(reference - other)
    return {"agreement": prediction_agreement(reference, other), "mean_abs_diff": float(diff.mean()),
            "max_abs_diff": float(diff.max())}


def _conversion_is_faithful(closeness):
    return closeness["agreement"] >= FAITHFUL_AGREEMENT and closeness["mean_abs_diff"] <= FAITHFUL_MEAN_ABS_DIFF


def _predict_in_batches(model, x, batch_size=32):
    """Outputs of `model` in inference mode, called eagerly (tracing a QAT graph for `predict`
    costs more than the call)."""
    outputs = [_first_output(model(x[i:i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
    return np.concatenate(outputs, axis=0)


def _run_tflite(tflite, x, num_threads, scratch):
    """Outputs and op types of TFLite model bytes on `x`; the file lives in a temporary folder
    that `scratch` (an ExitStack) removes."""
    import tempfile

    from common.tflite_runtime import TFLiteModel

    folder = Path(scratch.enter_context(tempfile.TemporaryDirectory(prefix="export-")))
    path = folder / "candidate.tflite"
    path.write_bytes(tflite)
    runtime = TFLiteModel(path, num_threads=num_threads)
    return {"outputs": runtime.predict(x), "ops": runtime.op_dtypes(), "delegate": runtime.delegate,
            "input_dtype": runtime.input_dtype.name, "output_dtype": runtime.output_dtype.name}


@contextlib.contextmanager
def _ranges_follow_batch():
    """Make tfmot's activation quantizers take the current batch's range (EMA decay 0)."""
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

    original = quant_ops.MovingAvgQuantize

    def follow_batch(*args, **kwargs):
        kwargs["ema_decay"] = 0.0
        return original(*args, **kwargs)

    quant_ops.MovingAvgQuantize = follow_batch
    try:
        yield
    finally:
        quant_ops.MovingAvgQuantize = original


def calibrate_quantizer_ranges(qat_model, x):
    """Start the activation ranges of a tfmot model at the ranges seen on `x`.

    tfmot starts every activation range at [-6, 6] and moves it with an exponential moving
    average of decay 0.999, so a short QAT run (a few hundred steps) converts with ranges that
    still are mostly [-6, 6]: agreement with the float model dropped to 0.44 on MobileNetV2. One
    eager training-mode pass with decay 0 sets them from data, as post-training calibration
    would; QAT then refines them.

    Args:
        qat_model: a model returned by `quantize_for_training`.
        x: array (N, *input_shape) of representative inputs (N up to 64 is used).
    """
    with _ranges_follow_batch():
        qat_model(x[:CALIBRATION_BATCH], training=True)


def _fit_qat(qat_model, train_data, loss, epochs, steps, lr):
    """Fine-tune the fake-quantized model. A handful of steps runs eagerly: tracing the QAT graph
    (autograph on every wrapper) costs more than a few eager steps."""
    import tf_keras as keras

    few_steps = steps is not None and int(steps) * int(epochs) <= EAGER_QAT_STEPS
    qat_model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, run_eagerly=few_steps)
    qat_model.fit(_train_dataset(train_data), epochs=int(epochs), steps_per_epoch=steps, verbose=0)


# ---------------------------------------------------------------------------------------------
# Public entry point


def export_tflite(model, representative_data, out_path, *, mode="auto", train_data=None, loss=None,
                  qat_epochs=1, qat_steps=None, qat_lr=1e-4, heldout=None, heldout_labels=None,
                  metric=None, metric_name=None, metrics=None, size_budget_mb=20.0, labels=None,
                  num_threads=2):
    """Quantize `model` to int8 TFLite, check it against the Keras model, write it and a report.

    Args:
        model: tf_keras functional or Sequential model (float32). It is not modified: QAT trains
            a copy.
        representative_data: array (N, *input_shape) of raw inputs, or a tf.data.Dataset of input
            batches or (x, y) batches. Calibrates the converter (first 128 examples) and is what
            parity is checked on when `heldout` is None.
        out_path: str or Path of the `.tflite` file; `export_report.json` (and `labels.txt` when
            `labels` is given) go beside it.
        mode: "qat", "ptq" or "auto" (QAT when `train_data` and `loss` are given, else PTQ; a QAT
            failure falls back to PTQ with `fallback_reason` in the report).
        train_data: tf.data.Dataset of (x, y) batches, or a tuple (x, y) of arrays, for QAT.
        loss: Keras loss for QAT (a loss object or name).
        qat_epochs, qat_steps: QAT epochs and steps per epoch (None: the whole data set).
        qat_lr: float, Adam learning rate for QAT.
        heldout: array (M, *input_shape) or dataset to check parity on (first 256 examples).
        heldout_labels: array of labels of `heldout`, for `metric`.
        metric: callable(labels, probs) -> float, computed for both models when labels are given.
        metric_name: str, its name in the report.
        metrics: optional callable(labels, probs) -> dict of named scores, computed for both
            models when labels are given (the report's keras_metrics and tflite_metrics).
        size_budget_mb: float, the largest TFLite file allowed, in MB (10**6 bytes).
        labels: list of class names, written one per line to `labels.txt`.
        num_threads: int, LiteRT interpreter threads for the parity check.

    Returns:
        The report dict (also in `export_report.json`): tflite_bytes, params, macs, keras_metric,
        tflite_metric, metric_name, keras_metrics, tflite_metrics (None without `metrics`), agreement, max_abs_diff, quantization ("qat" | "ptq"),
        fallback_reason, float_layers, float_keras_bytes, path, and details.

    Raises:
        ExportError: the model is over the size budget (the message gives its size; no file is
            left), or `mode="qat"` was asked and QAT failed, or the conversion failed.
        DataError: empty or malformed data.
    """
    from common.complexity import model_complexity

    out_path = Path(out_path)
    if mode not in ("auto", "qat", "ptq"):
        raise ExportError(f"mode: expected 'auto', 'qat' or 'ptq', got {mode!r}")
    if mode == "qat" and (train_data is None or loss is None):
        raise ExportError("mode 'qat' needs train_data and loss")
    use_qat = mode == "qat" or (mode == "auto" and train_data is not None and loss is not None)
    calibration = _examples(representative_data, CALIBRATION_EXAMPLES, "representative_data")
    if heldout is None:
        parity_x = _examples(representative_data, PARITY_EXAMPLES, "representative_data")
    else:
        parity_x = _examples(heldout, PARITY_EXAMPLES, "heldout")

    seconds, clock = {}, time.perf_counter()

    def lap(step):
        nonlocal clock
        now = time.perf_counter()
        seconds[step] = round(now - clock, 2)
        clock = now

    quantization, fallback_reason, float_layers, tflite = "ptq", None, [], None
    if mode == "ptq":
        reason = "PTQ asked (mode='ptq')"
    elif not use_qat:
        reason = "PTQ: mode 'auto' without train_data and loss"
    else:
        reason = "QAT: train_data and loss given"
        try:
            qat_model, float_layers = quantize_for_training(model)
            calibrate_quantizer_ranges(qat_model, calibration)
            lap("qat_wrap")
            _fit_qat(qat_model, train_data, loss, qat_epochs, qat_steps, qat_lr)
            lap("qat_fit")
            tflite = _convert(qat_model, calibration)
            lap("convert")
            quantization = "qat"
        except Exception as err:  # noqa: BLE001 - any tfmot/converter failure means "use PTQ"
            if mode == "qat":
                raise ExportError(f"{out_path}: quantization-aware training failed: {_one_line(err)}") from err
            fallback_reason = f"QAT failed: {_one_line(err)}"
            reason = f"PTQ fallback: {fallback_reason}"
            float_layers = []
    if tflite is None:
        try:
            tflite = _convert(model, calibration)
        except Exception as err:  # noqa: BLE001
            raise ExportError(f"{out_path}: TFLite conversion failed: {_one_line(err)}") from err
        lap("convert")

    _check_budget(out_path, len(tflite), size_budget_mb)

    keras_out = _first_output(model.predict(parity_x, batch_size=32, verbose=0))
    with contextlib.ExitStack() as scratch:
        candidate = _run_tflite(tflite, parity_x, num_threads, scratch)
        qat_fidelity = compared = None
        if quantization == "qat":
            qat_out = _predict_in_batches(qat_model, parity_x)
            qat_fidelity = _closeness(qat_out, candidate["outputs"])
            if mode == "auto" and not _conversion_is_faithful(qat_fidelity):
                lap("parity_qat")
                ptq_tflite = _convert(model, calibration)
                ptq = _run_tflite(ptq_tflite, parity_x, num_threads, scratch)
                qat_gap = _closeness(keras_out, candidate["outputs"])["mean_abs_diff"]
                ptq_gap = _closeness(keras_out, ptq["outputs"])["mean_abs_diff"]
                compared = {"qat": qat_gap, "ptq": ptq_gap}
                unfaithful = (f"the QAT int8 model differs from its fake-quantized Keras model (agreement "
                              f"{qat_fidelity['agreement']:.3f}, mean_abs_diff {qat_fidelity['mean_abs_diff']:.4f})")
                if ptq_gap < qat_gap:
                    tflite, candidate, quantization, float_layers = ptq_tflite, ptq, "ptq", []
                    fallback_reason = (f"{unfaithful}; PTQ is closer to the float model (mean_abs_diff "
                                       f"{ptq_gap:.4f} against {qat_gap:.4f})")
                    reason = f"PTQ fallback: {fallback_reason}"
                else:
                    reason += (f"; {unfaithful}, PTQ was no closer to the float model (mean_abs_diff "
                               f"{ptq_gap:.4f} against {qat_gap:.4f})")
        size = len(tflite)
        _check_budget(out_path, size, size_budget_mb)  # a PTQ fallback may be a few bytes larger
        tflite_out = candidate["outputs"]
        with atomic_path(out_path) as tmp:
            Path(tmp).write_bytes(tflite)
    lap("parity")
    float_ops = sorted({name for name, dtype in candidate["ops"] if dtype == "float32"} - {"DEQUANTIZE"})

    keras_metric = tflite_metric = None
    if metric is not None and heldout_labels is not None:
        y = np.asarray(heldout_labels)[: len(parity_x)]
        keras_metric = float(metric(y, keras_out))
        tflite_metric = float(metric(y, tflite_out))
    keras_metrics = tflite_metrics = None
    if metrics is not None and heldout_labels is not None:
        y = np.asarray(heldout_labels)[: len(parity_x)]
        keras_metrics, tflite_metrics = metrics(y, keras_out), metrics(y, tflite_out)

    complexity = model_complexity(model)
    report = {
        "path": str(out_path),
        "tflite_bytes": size,
        "params": complexity["params"],
        "macs": complexity["macs"],
        "float_keras_bytes": complexity["params"] * 4,
        "metric_name": metric_name,
        "keras_metric": keras_metric,
        "tflite_metric": tflite_metric,
        "keras_metrics": keras_metrics,
        "tflite_metrics": tflite_metrics,
        "agreement": prediction_agreement(keras_out, tflite_out),
        "max_abs_diff": float(np.max(np.abs(keras_out - tflite_out))),
        "mean_abs_diff": float(np.mean(np.abs(keras_out - tflite_out))),
        "parity_examples": len(parity_x),
        "quantization": quantization,
        "mode": mode,
        "fallback_reason": fallback_reason,
        "quantization_reason": reason,
        "float_layers": float_layers,
        "float_ops": float_ops,
        "qat_conversion": qat_fidelity,
        "qat_vs_ptq_mean_abs_diff": compared,
        "input_dtype": candidate["input_dtype"],
        "delegate": candidate["delegate"],
        "output_dtype": candidate["output_dtype"],
        "size_budget_mb": float(size_budget_mb),
        "qat_epochs": int(qat_epochs) if quantization == "qat" else 0,
        "seconds": seconds,
    }
    if labels is not None:
        labels_path = out_path.with_name("labels.txt")
        write_text(labels_path, "".join(f"{label}\n" for label in labels))
        report["labels_path"] = str(labels_path)
    write_json(out_path.with_name("export_report.json"), report)
    return report


def _check_budget(out_path, size, size_budget_mb):
    """Refuse a model of `size` bytes over `size_budget_mb` (MB of 10**6 bytes)."""
    if size > float(size_budget_mb) * 1e6:
        raise ExportError(
            f"{out_path}: int8 TFLite model is {size / 1e6:.2f} MB ({size} bytes), over the size "
            f"budget of {float(size_budget_mb):g} MB; nothing written"
        )


def _one_line(err):
    """`Type: message` on one line; TensorFlow's multi-line errors end with the useful line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"[:300]


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv=None):
    """`python -m common.export --model model.keras --representative x.npy --out model.tflite`."""
    from common.model_files import add_unsafe_load_arg

    parser = argparse.ArgumentParser(prog="python -m common.export", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a .keras model file")
    parser.add_argument("--representative", required=True, help="a .npy array of raw inputs (N, ...)")
    parser.add_argument("--out", required=True, help="the .tflite file to write")
    parser.add_argument("--budget-mb", type=float, default=20.0, help="size budget in MB (default 20)")
    parser.add_argument("--mode", choices=("auto", "ptq"), default="auto",
                        help="auto = ptq here (QAT needs training data)")
    add_unsafe_load_arg(parser)
    args = parser.parse_args(argv)
    model_path, data_path = Path(args.model), Path(args.representative)
    if not model_path.is_file():
        raise DataError(f"{model_path}: model file not found")
    if not data_path.is_file():
        raise DataError(f"{data_path}: representative data file not found")
    try:
        x = np.load(data_path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataError(f"{data_path}: not a readable .npy array ({err})") from err
    model = _load_model(model_path, args.unsafe_load)
    expected = tuple(model.inputs[0].shape[1:])
    if x.ndim != len(expected) + 1 or any(e is not None and e != d for e, d in zip(expected, x.shape[1:])):
        raise DataError(f"{data_path}: inputs of shape {x.shape[1:]}, the model expects {expected}")
    report = export_tflite(model, x, args.out, mode=args.mode, size_budget_mb=args.budget_mb)
    print(f"{report['path']}: {report['tflite_bytes']} bytes int8 ({report['quantization']}), "
          f"agreement {report['agreement']:.3f}, max_abs_diff {report['max_abs_diff']:.4f}")
    return 0


def _load_model(path, unsafe_load=False):
    from common.model_files import load_model_file

    return load_model_file(path, unsafe_load=unsafe_load)


if __name__ == "__main__":
    from common.cli import run_cli

    run_cli(main)
