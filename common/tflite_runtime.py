"""Run a TFLite model the way an edge device does, without TensorFlow.

Uses `ai_edge_litert.interpreter.Interpreter` (package `ai-edge-litert`, the runtime that ships
to devices). This module must never import tensorflow: a device has only the LiteRT runtime, and a
test checks `sys.modules` after importing and running it. Only when `ai_edge_litert` is not
installed does it fall back to `tf.lite.Interpreter`.

The project's exported models take and return float32 (int8 inside); a model with int8 or uint8
input/output is also accepted: inputs are quantized and outputs dequantized with the tensor's
(scale, zero_point), so `predict` is always float in, float out.

Example:
    model = TFLiteModel("run/model_int8.tflite")
    probs = model.predict(x)            # x: (N, *input_shape) float
"""

import time
from pathlib import Path

import numpy as np

from common.errors import DataError

#: model_int8.tflite -> model_int8.front.json: the settings of an input front the host computes
#: before the model (common.task.Task.host_front), written by the edge export beside the file.
FRONT_SUFFIX = ".front.json"


def front_path(tflite_path):
    """Where the host-front settings of the .tflite at `tflite_path` are kept (beside it)."""
    tflite_path = Path(tflite_path)
    return tflite_path.with_name(tflite_path.stem + FRONT_SUFFIX)


def _delegate_failed(error):
    text = str(error)
    return "XNNPACK" in text or "Delegate" in text or "delegate" in text


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - ai-edge-litert is in requirements.txt
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter


def _builtin_only():
    try:
        from ai_edge_litert.interpreter import OpResolverType
    except ImportError:  # pragma: no cover
        import tensorflow as tf

        OpResolverType = tf.lite.experimental.OpResolverType
    return OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES


def default_threads(cores=None):
    """LiteRT threads when a caller names none: EDGE_THREADS from the environment (the project's
    one thread knob, which also caps TensorFlow's pools), else every core this process may use
    (`cores`, None: common.cpuinfo's count; XNNPACK splits each operator over them, where
    LiteRT's own default is one thread)."""
    import os

    from common.cpuinfo import cpu_info

    return int(os.environ.get("EDGE_THREADS") or 0) or int(cores or cpu_info()["cores"] or 1)


class TFLiteModel:
    """A TFLite model file with a Keras-like `predict`.

    Args:
        path: str or Path, the `.tflite` file.
        num_threads: int, CPU threads for the interpreter; None: `default_threads()` (the
            environment's EDGE_THREADS, else every core this process may use).
        batch_size: int, examples per interpreter call when `predict` is not told (default 1).

    Attributes:
        input_shape: tuple, the model's input shape without the batch axis, e.g. (96, 96, 3).
        input_dtype, output_dtype: numpy dtypes of the model's own input/output tensors.
        delegate: "xnnpack", or "none" when XNNPACK refused the graph and the builtin kernels run.

    For a model with several outputs, `predict` returns the first output only (the project's
    models have one output: class probabilities or a (H, W, 1) probability map).
    """

    def __init__(self, path, num_threads=None, batch_size=1):
        self.path = Path(path)
        self.num_threads = int(num_threads or default_threads())
        self.batch_size = int(batch_size)
        if not self.path.is_file():
            raise DataError(f"{self.path}: TFLite model file not found")
        self.delegate = "xnnpack"
        try:
            self._open(builtin_only=False)
        except (ValueError, RuntimeError) as err:
            if not _delegate_failed(err):
                raise DataError(f"{self.path}: not a readable TFLite model ({err})") from err
            self._open(builtin_only=True)
        self.input_shape = tuple(int(d) for d in self._input["shape"][1:])
        self.input_dtype = np.dtype(self._input["dtype"])
        self.output_dtype = np.dtype(self._output["dtype"])

    def _open(self, builtin_only):
        """(Re)create the interpreter; `builtin_only` skips XNNPACK (which refuses some graphs)."""
        options = {"experimental_op_resolver_type": _builtin_only()} if builtin_only else {}
        self._interpreter = _interpreter_class()(model_path=str(self.path), num_threads=self.num_threads, **options)
        self._interpreter.allocate_tensors()
        if builtin_only:
            self.delegate = "none"
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._batch = int(self._input["shape"][0]) or 1

    def _resize(self, batch):
        if batch != self._batch:
            shape = [batch, *self.input_shape]
            self._interpreter.resize_tensor_input(self._input["index"], shape)
            self._interpreter.allocate_tensors()
            self._input = self._interpreter.get_input_details()[0]
            self._output = self._interpreter.get_output_details()[0]
            self._batch = batch

    def _invoke(self, chunk):
        """One interpreter call. XNNPACK may refuse a graph only when it is prepared for a batch
        (seen on EfficientNetB0 int8, and on NASNetMobile while QAT left its separable convolutions
        float: "failed to prepare"); then the builtin kernels take over for good."""
        try:
            self._resize(len(chunk))
            self._interpreter.set_tensor(self._input["index"], self._quantize_input(chunk))
            self._interpreter.invoke()
        except RuntimeError as err:
            if self.delegate == "none" or not _delegate_failed(err):
                raise
            self._open(builtin_only=True)
            self._resize(len(chunk))
            self._interpreter.set_tensor(self._input["index"], self._quantize_input(chunk))
            self._interpreter.invoke()
        return self._dequantize_output(self._interpreter.get_tensor(self._output["index"]))

    def _quantize_input(self, x):
        if self.input_dtype.kind in "iu":
            scale, zero = self._input["quantization"]
            info = np.iinfo(self.input_dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        return x.astype(self.input_dtype)

    def _dequantize_output(self, y):
        if self.output_dtype.kind in "iu":
            scale, zero = self._output["quantization"]
            return (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32)

    def predict(self, x, batch_size=None):
        """Run the model on a batch of examples.

        Args:
            x: array (N, *input_shape), float (raw model input, as for the Keras model).
            batch_size: int or None; examples per interpreter call. None: the model's
                `batch_size` (1 unless set: batch 1 is what an edge device runs).

        Returns:
            float32 array (N, *output_shape) of the first output.
        """
        x = np.asarray(x)
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise DataError(
                f"{self.path}: input of shape {x.shape[1:]} given, model expects {self.input_shape}"
            )
        batch_size = int(batch_size or self.batch_size)
        outputs = []
        for start in range(0, len(x), batch_size):
            outputs.append(self._invoke(x[start:start + batch_size]))
        if not outputs:
            return np.zeros((0, *self._output["shape"][1:]), np.float32)
        return np.concatenate(outputs, axis=0)

    def latency_ms(self, x=None, repeats=20):
        """Median wall time of one batch-1 inference, in milliseconds.

        Args:
            x: one example (*input_shape) or None (zeros). repeats: int, timed runs after one warm-up.
        """
        return batch_one_latency_ms(self, x, repeats)

    def op_dtypes(self):
        """List of (op name, dtype of its first output) for every op in the graph.

        Shows which parts of an exported model run in int8 and which were left in float.
        """
        # Without the XNNPACK delegate: it would hide the ops behind one DELEGATE node.
        plain = _interpreter_class()(
            model_path=str(self.path), experimental_op_resolver_type=_builtin_only()
        )
        plain.allocate_tensors()
        tensors = {t["index"]: t for t in plain.get_tensor_details()}
        result = []
        for op in plain._get_ops_details():
            outs = [i for i in op["outputs"] if i in tensors]
            dtype = np.dtype(tensors[outs[0]]["dtype"]).name if outs else "none"
            result.append((op["op_name"], dtype))
        return result


def batch_one_latency_ms(model, x=None, repeats=20):
    """Median wall time of one batch-1 `model.predict`, in milliseconds, after one warm-up;
    `x`: one example (model.input_shape) or None (zeros)."""
    example = np.zeros(model.input_shape, np.float32) if x is None else np.asarray(x)
    batch = example.reshape(1, *model.input_shape)
    model.predict(batch)
    times = []
    for _ in range(max(1, int(repeats))):
        start = time.perf_counter()
        model.predict(batch)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


def open_model(path, num_threads=None, batch_size=1):
    """An exported model file ready to `predict`: a TFLiteModel, or for a `.onnx` file (the edge
    export's ONNX Runtime copy, common.export.to_onnx) a common.onnx_runtime.OnnxModel; the same
    arguments and interface."""
    if Path(path).suffix.lower() == ".onnx":
        from common.onnx_runtime import OnnxModel

        return OnnxModel(path, num_threads=num_threads, batch_size=batch_size)
    return TFLiteModel(path, num_threads=num_threads, batch_size=batch_size)


class FrontedModel:
    """A TFLite model behind an input front computed in numpy on the host (a task's feature
    front end that int8 kernels cannot run): `predict(x)` = `model.predict(front(x))`.

    Args:
        front: callable, float array (N, *input_shape) -> float array (N, *model.input_shape).
        model: a TFLiteModel.
        input_shape: tuple, what `front` takes, without the batch axis.

    Attributes mirror TFLiteModel's (`path`, `delegate`, `num_threads`), with this input shape.
    """

    def __init__(self, front, model, input_shape):
        self.front, self.model, self.input_shape = front, model, tuple(input_shape)
        self.path, self.num_threads = model.path, model.num_threads

    @property
    def delegate(self):
        return self.model.delegate

    def predict(self, x, batch_size=None):
        """Front then model: float (N, *input_shape) -> float32 (N, *output_shape)."""
        x = np.asarray(x)
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise DataError(f"{self.path}: input of shape {x.shape[1:]} given, model expects {self.input_shape}")
        return self.model.predict(self.front(x), batch_size=batch_size)

    def latency_ms(self, x=None, repeats=20):
        """Median wall time of one batch-1 inference, front included, in milliseconds."""
        return batch_one_latency_ms(self, x, repeats)
