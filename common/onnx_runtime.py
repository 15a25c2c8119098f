"""Run the edge export's ONNX file (`model_int8.onnx`, common.export.to_onnx) with ONNX Runtime,
behind the same small interface as common.tflite_runtime.TFLiteModel.

The file is the int8 edge model for host CPUs where ONNX Runtime's int8 kernels beat LiteRT's
(x86 without AVX-512 VNNI: benchmarks/INT8_RUNTIMES_x86-64-v3.md); `predict --tflite RUN` picks
it only where it times faster (common.tflite_choice). Like tflite_runtime, this module never
imports TensorFlow. Loading runs no code from the file: ONNX is data, and only ONNX Runtime's
built-in CPU kernels are registered (no custom-operator libraries). The file is handed over as
bytes, so it cannot make ONNX Runtime read other files ("external data" paths).

Example:
    model = OnnxModel("run/model_int8.onnx")
    probs = model.predict(x)            # x: (N, *input_shape) float, NHWC as for the .tflite
"""

from pathlib import Path

import numpy as np

from common.errors import DataError
from common.tflite_runtime import batch_one_latency_ms, default_threads

#: ONNX metadata key naming the SHA-256 of the .tflite the file was converted from (to_onnx.SOURCE_KEY).
SOURCE_KEY = "source_tflite_sha256"


def _session(path, num_threads, optimize=True):
    try:
        import onnxruntime as ort
    except ImportError as err:  # pragma: no cover - onnxruntime is in requirements.txt
        raise DataError(f"{path}: running an ONNX file needs the onnxruntime package ({err})") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(num_threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: the terminal shows our lines
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:  # from bytes: tensors stored as "external data" beside the file cannot be resolved
        return ort.InferenceSession(Path(path).read_bytes(), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ONNX Runtime raises its own exception types for bad files
        text = " ".join(str(err).split())[:300]
        raise DataError(f"{path}: not a readable ONNX model ({type(err).__name__}: {text})") from None


def source_sha256(path):
    """The SHA-256 of the .tflite an ONNX file was converted from (its metadata), or None."""
    session = _session(path, 1, optimize=False)
    return session.get_modelmeta().custom_metadata_map.get(SOURCE_KEY)


class OnnxModel:
    """An ONNX file with a Keras-like `predict`, float32 in and out (NHWC, as the .tflite).

    Args:
        path: str or Path, the `.onnx` file.
        num_threads: int, ONNX Runtime's intra-op threads; None: `default_threads()`.
        batch_size: int, examples per run when `predict` is not told (default 1).

    Attributes:
        input_shape: tuple, the input shape without the batch axis, e.g. (128, 128, 14).
        input_dtype, output_dtype: numpy float32. delegate: "onnxruntime" (what runs the file).
        source_sha256: the SHA-256 of the .tflite it was converted from, or None.
    """

    delegate = "onnxruntime"

    def __init__(self, path, num_threads=None, batch_size=1):
        self.path = Path(path)
        self.num_threads = int(num_threads or default_threads())
        self.batch_size = int(batch_size)
        if not self.path.is_file():
            raise DataError(f"{self.path}: ONNX model file not found")
        self._session = _session(self.path, self.num_threads)
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(float)" or outputs[0].type != "tensor(float)":
            raise DataError(f"{self.path}: expected one float32 input and a float32 output, got "
                            f"{[i.type for i in inputs]} -> {[o.type for o in outputs]}")
        shape = inputs[0].shape[1:]
        if not all(isinstance(d, int) for d in shape):
            raise DataError(f"{self.path}: input shape {inputs[0].shape} is not fixed beyond the batch axis")
        self.input_shape = tuple(shape)
        self._input, self._output = inputs[0].name, outputs[0].name
        self.input_dtype = self.output_dtype = np.dtype(np.float32)
        self.source_sha256 = self._session.get_modelmeta().custom_metadata_map.get(SOURCE_KEY)

    def predict(self, x, batch_size=None):
        """Run the model: x (N, *input_shape) float -> float32 (N, *output_shape), `batch_size`
        examples per run (None: the model's `batch_size`)."""
        x = np.asarray(x)
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise DataError(f"{self.path}: input of shape {x.shape[1:]} given, model expects {self.input_shape}")
        batch_size = int(batch_size or self.batch_size)
        outputs = [self._session.run([self._output], {self._input: x[start:start + batch_size].astype(np.float32)})[0]
                   for start in range(0, len(x), batch_size)]
        if not outputs:
            shape = [d if isinstance(d, int) else 0 for d in self._session.get_outputs()[0].shape[1:]]
            return np.zeros((0, *shape), np.float32)
        return np.concatenate(outputs, axis=0).astype(np.float32, copy=False)

    def latency_ms(self, x=None, repeats=20):
        """Median wall time of one batch-1 inference, in milliseconds."""
        return batch_one_latency_ms(self, x, repeats)
