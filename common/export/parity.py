"""Parity and metrics: how closely an exported model follows the Keras model it came from.

Every target is checked the same way: its file runs (LiteRT, `common.tflite_runtime`) on up to
`PARITY_EXAMPLES` held-out examples beside the float Keras model; the report gets decision
agreement (argmax for classifiers, the 0.5 threshold per element for a single-channel output),
largest and mean absolute difference, the task's metric for both models and batch-1 latency.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import DataError

#: The one parity limit: most held-out examples an export compares the exported model on.
PARITY_EXAMPLES = 256
#: An export whose model departs this much from Keras finishes with a warning line.
MIN_AGREEMENT = 0.95
MAX_METRIC_DROP = 0.05


@dataclass
class Scorer:
    """The task's scores for parity: `metric(labels, probs) -> float` named `metric_name`, and
    optionally `metrics(labels, probs) -> dict` (the headline and secondary scores)."""

    metric: object = None
    metric_name: str = None
    metrics: object = None


def examples(data, limit=None, what="data"):
    """Input examples from an array, a tuple (x, y) or a tf.data.Dataset (the first `limit`, or
    all when `limit` is None).

    A dataset may yield input batches or (x, y) batches (x is taken). Returns an array
    (N, *input_shape), float32 when the input is floating point.

    Raises:
        DataError: no data, an empty data set, or an object that is neither.
    """
    if data is None:
        raise DataError(f"{what}: no data given")
    if isinstance(data, (tuple, list)) and len(data) == 2 and not np.isscalar(data[0]):
        data = data[0]
    x = np.asarray(data)[:limit] if isinstance(data, np.ndarray) else _dataset_examples(data, limit, what)
    if len(x) == 0:
        raise DataError(f"{what}: no examples")
    return x.astype(np.float32) if x.dtype.kind == "f" else x


def _dataset_examples(data, limit, what):
    try:
        iterator = iter(data)
    except TypeError as err:
        raise DataError(f"{what}: expected an array or a tf.data.Dataset, got {type(data).__name__}") from err
    batches, count = [], 0
    for batch in iterator:
        batch = np.asarray(batch[0] if isinstance(batch, (tuple, list)) else batch)
        batches.append(batch)
        count += len(batch)
        if limit is not None and count >= limit:
            break
    if not batches:
        raise DataError(f"{what}: the data set is empty")
    return np.concatenate(batches, axis=0)[:limit]


def first_output(predictions):
    """The first output of a model's predictions (array, list/tuple or dict) as float32."""
    if isinstance(predictions, (list, tuple)):
        predictions = predictions[0]
    if isinstance(predictions, dict):
        predictions = next(iter(predictions.values()))
    return np.asarray(predictions, dtype=np.float32)


def keras_outputs(model, x, batch_size=32):
    """Float32 first output of a Keras model on `x`, in inference mode, no progress bar."""
    return first_output(model.predict(x, batch_size=batch_size, verbose=0))


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


def closeness(reference, other):
    """Decision agreement and mean/max absolute difference between two output arrays."""
    diff = np.abs(reference - other)
    return {"agreement": prediction_agreement(reference, other), "mean_abs_diff": float(diff.mean()),
            "max_abs_diff": float(diff.max())}


def scores(scorer, labels, keras_out, other_out):
    """The task's metric (and metrics) of both models: keras_metric, tflite_metric, keras_metrics,
    tflite_metrics (None where the scorer or the labels are missing)."""
    result = dict.fromkeys(("keras_metric", "tflite_metric", "keras_metrics", "tflite_metrics"))
    if labels is None:
        return result
    y = np.asarray(labels)[: len(keras_out)]
    if scorer.metric is not None:
        result["keras_metric"] = float(scorer.metric(y, keras_out))
        result["tflite_metric"] = float(scorer.metric(y, other_out))
    if scorer.metrics is not None:
        result["keras_metrics"], result["tflite_metrics"] = scorer.metrics(y, keras_out), scorer.metrics(y, other_out)
    return result


def run_litert(path, x, num_threads=2):
    """A TFLite file run by LiteRT on `x`: outputs, op types, delegate, input/output dtypes."""
    from common.tflite_runtime import TFLiteModel

    runtime = TFLiteModel(path, num_threads=num_threads)
    return {"outputs": runtime.predict(x), "ops": runtime.op_dtypes(), "delegate": runtime.delegate,
            "input_dtype": runtime.input_dtype.name, "output_dtype": runtime.output_dtype.name,
            "runtime": runtime}


def check_litert(job, path, keras_out=None):
    """The parity section every LiteRT target reports for its file at `path` (a staged file).

    Args:
        job: the ExportJob (model, heldout, heldout_labels, scorer, settings).
        path: the .tflite file. keras_out: the Keras outputs on job.heldout, when known.

    Returns:
        dict: tflite_bytes, agreement, max_abs_diff, mean_abs_diff, parity_examples, the scores
        (see `scores`), float_ops, input_dtype, output_dtype, delegate, latency_ms (batch 1).
    """
    x = job.heldout
    keras_out = keras_outputs(job.model, x) if keras_out is None else keras_out
    started = time.perf_counter()
    run = run_litert(path, x, int(job.settings.get("num_threads", 2)))
    close = closeness(keras_out, run["outputs"])
    return {
        "tflite_bytes": Path(path).stat().st_size,
        "agreement": close["agreement"], "max_abs_diff": close["max_abs_diff"],
        "mean_abs_diff": close["mean_abs_diff"], "parity_examples": len(x),
        **scores(job.scorer, job.heldout_labels, keras_out, run["outputs"]),
        "float_ops": sorted({name for name, dtype in run["ops"] if dtype == "float32"} - {"DEQUANTIZE"}),
        "input_dtype": run["input_dtype"], "output_dtype": run["output_dtype"], "delegate": run["delegate"],
        "latency_ms": run["runtime"].latency_ms(x[0]),
        "parity_seconds": round(time.perf_counter() - started, 2),
    }


def warnings(report, min_agreement=MIN_AGREEMENT):
    """Lines saying how far the exported model departs from Keras, when it does."""
    lines = []
    if report["agreement"] < min_agreement:
        lines.append(f"the exported model agrees with Keras on only {report['agreement']:.3f} of predictions "
                     f"(under {min_agreement}); train longer or try --set export.mode=ptq/qat")
    keras_metric, tflite_metric = report.get("keras_metric"), report.get("tflite_metric")
    if keras_metric is not None and tflite_metric is not None and abs(keras_metric - tflite_metric) > MAX_METRIC_DROP:
        lines.append(f"exported {report['metric_name']} {tflite_metric:.3f} differs from the Keras model's "
                     f"{keras_metric:.3f} by more than {MAX_METRIC_DROP}")
    return lines


def one_line(err):
    """`Type: message` on one line; TensorFlow's multi-line errors end with the useful line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"[:300]
