"""The int8 quantization choice: QAT, PTQ, or the fallback from one to the other.

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

A QAT model's TFLite file is also compared with the fake-quantized Keras model it was converted
from (`qat_conversion` in the report): fake quantization simulates the int8 arithmetic, so the two
should agree to a few quantization steps. When they do not (decision agreement under 0.95 or mean
absolute difference over 0.05), `mode="auto"` also converts the float model by PTQ and keeps
whichever int8 model is closer to the float model (`qat_vs_ptq_mean_abs_diff`, `fallback_reason`).
"""

import contextlib
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.errors import ExportError
from common.export.graph import has_nested_models, inline_nested_models
from common.export.parity import closeness, first_output, keras_outputs, one_line, run_litert

#: Examples in the one pass that starts the QAT activation ranges (see
#: `calibrate_quantizer_ranges`).
CALIBRATION_BATCH = 64
#: QAT runs this many steps or fewer eagerly (see `_fit_qat`).
EAGER_QAT_STEPS = 8
MODES = ("auto", "qat", "ptq")

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



_NoOpQuantizeConfig = None


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
# Conversion


def convert_int8(model, calibration):
    """int8 TFLite bytes of `model` (float32 input/output), calibrated on every example of
    `calibration`; returns (bytes, number of examples the converter read)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative = Representative(calibration)
    return converter.convert(), representative.yielded


class Representative:
    """The converter's representative data: each example as a batch of 1, float32 (NaN -> 0 with
    `nan_to_zero`). `yielded` counts the examples the last pass read, so a report states the
    calibration count that was used, not the one that was asked for."""

    def __init__(self, calibration, nan_to_zero=False):
        self.calibration, self.nan_to_zero, self.yielded = calibration, nan_to_zero, 0

    def __call__(self):
        self.yielded = 0
        for example in self.calibration:
            example = example[None].astype(np.float32)
            self.yielded += 1
            yield [np.nan_to_num(example, nan=0.0) if self.nan_to_zero else example]


def convert_full_integer(model, calibration, float_ops=()):
    """Full-integer TFLite bytes of `model`: int8 input and output tensors, int8 inside.

    The microcontroller target (`common.export.mcu`) uses this. The converter calibrates on
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
    converter.representative_dataset = Representative(calibration, nan_to_zero=True)
    converter._experimental_calibrate_only = True  # noqa: SLF001 - calibrate, then quantize below
    calibrated = converter.convert()
    return tflite_convert.mlir_quantize(
        calibrated, fully_quantize=True, input_data_type=tf.int8, output_data_type=tf.int8,
        denylisted_ops=sorted(float_ops) or None,
    )



#: A QAT model's TFLite conversion counts as faithful to its fake-quantized Keras model when they
#: agree on at least this share of decisions with at most this mean absolute difference (in output
#: units: probabilities for the project's models). Fake quantization simulates the int8 arithmetic,
#: so a faithful conversion differs by a few quantization steps (0.01-0.07 measured).
FAITHFUL_AGREEMENT = 0.95
FAITHFUL_MEAN_ABS_DIFF = 0.05


def conversion_is_faithful(closeness):
    return closeness["agreement"] >= FAITHFUL_AGREEMENT and closeness["mean_abs_diff"] <= FAITHFUL_MEAN_ABS_DIFF


def _predict_in_batches(model, x, batch_size=32):
    """Outputs of `model` in inference mode, called eagerly (tracing a QAT graph for `predict`
    costs more than the call)."""
    outputs = [first_output(model(x[i:i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
    return np.concatenate(outputs, axis=0)


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


def _fit_qat(qat_model, qat):
    """Fine-tune the fake-quantized model as `qat` (QATSettings) says. A handful of steps runs
    eagerly: tracing the QAT graph (autograph on every wrapper) costs more than a few eager steps."""
    import tf_keras as keras

    from common.weight_gradients import weight_gradients

    few_steps = qat.steps is not None and int(qat.steps) * int(qat.epochs) <= EAGER_QAT_STEPS
    qat_model.compile(optimizer=keras.optimizers.Adam(qat.lr), loss=qat.loss, run_eagerly=few_steps)
    with weight_gradients({"weight_gradients": qat.weight_gradients}):
        qat_model.fit(_train_dataset(qat.train_data), epochs=int(qat.epochs), steps_per_epoch=qat.steps, verbose=0)



def _train_dataset(train_data):
    """A tf.data.Dataset of (x, y) batches from a dataset or a tuple of arrays (batches of 32)."""
    import tensorflow as tf

    if isinstance(train_data, (tuple, list)) and len(train_data) == 2:
        return tf.data.Dataset.from_tensor_slices(tuple(train_data)).batch(32)
    return train_data


# ---------------------------------------------------------------------------------------------
# The choice


@dataclass
class QATSettings:
    """How QAT fine-tunes: `train_data` (tf.data of (x, y) batches or a tuple of arrays), `loss`,
    epochs, steps per epoch (None: the whole data set), the Adam learning rate and how convolution
    weight gradients are computed (the run's `train.weight_gradients`, common/weight_gradients.py)."""

    train_data: object = None
    loss: object = None
    epochs: int = 1
    steps: int = None
    lr: float = 1e-4
    weight_gradients: str = "auto"


@dataclass
class Quantized:
    """The int8 model `quantize_int8` chose and why (the report's quantization fields)."""

    tflite: bytes
    quantization: str
    quantization_reason: str
    calibration_examples: int
    fallback_reason: str = None
    float_layers: list = field(default_factory=list)
    qat_conversion: dict = None
    qat_vs_ptq_mean_abs_diff: dict = None
    qat_epochs: int = 0
    seconds: dict = field(default_factory=dict)

    def report(self):
        """The report fields (everything but the bytes)."""
        return {key: value for key, value in vars(self).items() if key != "tflite"}


class _Clock:
    def __init__(self):
        self.seconds, self.last = {}, time.perf_counter()

    def lap(self, step):
        now = time.perf_counter()
        self.seconds[step] = round(now - self.last, 2)
        self.last = now


def quantize_int8(model, calibration, parity_x, mode="auto", qat=None, num_threads=2, where="model"):
    """int8 TFLite bytes of `model` (float32 input and output), by QAT, PTQ or the fallback.

    Args:
        model: tf_keras float32 model (not modified: QAT trains a copy).
        calibration: float array (N, *input_shape): every example calibrates the converter.
        parity_x: float array (M, *input_shape): decides, under mode "auto", whether a QAT model
            converted faithfully (else the closer of QAT and PTQ is kept).
        mode: "auto" (QAT when `qat` has train_data and loss, else PTQ; a QAT failure falls back
            to PTQ), "qat" or "ptq". qat: QATSettings or None.
        num_threads: LiteRT threads for the faithfulness check. where: names the output in errors.

    Returns:
        Quantized.

    Raises:
        ExportError: an unknown mode, mode "qat" without training data or failing, or a failed
            conversion.
    """
    qat = qat or QATSettings()
    if mode not in MODES:
        raise ExportError(f"config key 'export.mode': expected one of {', '.join(MODES)}, got {mode!r}")
    has_data = qat.train_data is not None and qat.loss is not None
    if mode == "qat" and not has_data:
        raise ExportError("mode 'qat' needs train_data and loss")
    clock = _Clock()
    if mode == "ptq" or not has_data:
        reason = "PTQ asked (mode='ptq')" if mode == "ptq" else "PTQ: mode 'auto' without train_data and loss"
        return _ptq(model, calibration, reason, where, clock)
    try:
        result, qat_model = _qat(model, calibration, qat, clock)
    except Exception as err:  # noqa: BLE001 - any tfmot/converter failure means "use PTQ"
        if mode == "qat":
            raise ExportError(f"{where}: quantization-aware training failed: {one_line(err)}") from err
        result = _ptq(model, calibration, f"PTQ fallback: QAT failed: {one_line(err)}", where, clock)
        result.fallback_reason = f"QAT failed: {one_line(err)}"
        return result
    return _check_faithful(model, qat_model, result, calibration, parity_x, mode, num_threads, clock)


def _ptq(model, calibration, reason, where, clock):
    try:
        tflite, count = convert_int8(model, calibration)
    except Exception as err:  # noqa: BLE001 - the converter raises many types
        raise ExportError(f"{where}: TFLite conversion failed: {one_line(err)}") from err
    clock.lap("convert")
    return Quantized(tflite, "ptq", reason, count, seconds=clock.seconds)


def _qat(model, calibration, qat, clock):
    qat_model, float_layers = quantize_for_training(model)
    calibrate_quantizer_ranges(qat_model, calibration)
    clock.lap("qat_wrap")
    _fit_qat(qat_model, qat)
    clock.lap("qat_fit")
    tflite, count = convert_int8(qat_model, calibration)
    clock.lap("convert")
    result = Quantized(tflite, "qat", "QAT: train_data and loss given", count, float_layers=float_layers,
                       qat_epochs=int(qat.epochs), seconds=clock.seconds)
    return result, qat_model


def _check_faithful(model, qat_model, result, calibration, parity_x, mode, num_threads, clock):
    """Compare the QAT file with its fake-quantized model; under "auto", keep PTQ instead when the
    conversion was not faithful and PTQ is closer to the float model."""
    with tempfile.TemporaryDirectory(prefix="export-") as folder:
        qat_out = _litert(result.tflite, parity_x, num_threads, Path(folder) / "qat.tflite")
        result.qat_conversion = fidelity = closeness(_predict_in_batches(qat_model, parity_x), qat_out)
        if mode != "auto" or conversion_is_faithful(fidelity):
            return result
        clock.lap("parity_qat")
        ptq_tflite, count = convert_int8(model, calibration)
        ptq_out = _litert(ptq_tflite, parity_x, num_threads, Path(folder) / "ptq.tflite")
    keras_out = keras_outputs(model, parity_x)
    qat_gap, ptq_gap = (closeness(keras_out, out)["mean_abs_diff"] for out in (qat_out, ptq_out))
    result.qat_vs_ptq_mean_abs_diff = {"qat": qat_gap, "ptq": ptq_gap}
    unfaithful = (f"the QAT int8 model differs from its fake-quantized Keras model (agreement "
                  f"{fidelity['agreement']:.3f}, mean_abs_diff {fidelity['mean_abs_diff']:.4f})")
    gaps = f"(mean_abs_diff {ptq_gap:.4f} against {qat_gap:.4f})"
    if ptq_gap >= qat_gap:
        result.quantization_reason += f"; {unfaithful}, PTQ was no closer to the float model {gaps}"
        return result
    result.tflite, result.quantization, result.float_layers, result.qat_epochs = ptq_tflite, "ptq", [], 0
    result.calibration_examples = count
    result.fallback_reason = f"{unfaithful}; PTQ is closer to the float model {gaps}"
    result.quantization_reason = f"PTQ fallback: {result.fallback_reason}"
    return result


def _litert(tflite, x, num_threads, path):
    Path(path).write_bytes(tflite)
    return run_litert(path, x, num_threads)["outputs"]
