"""Timing helpers for `make bench`: medians over repeats after a warm-up, with the spread."""

import os
import platform
import statistics
import time
from datetime import datetime, timezone


def measure(fn, *, repeats=5, warmup=1):
    """Call `fn()` `warmup` times untimed, then `repeats` times; seconds per call.

    Returns:
        dict with `median_s`, `min_s`, `max_s` and `repeats`.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": repeats}


def rate(timing, items):
    """Items per second at the median, and the spread (min..max) as rates."""
    return {
        "per_s": items / timing["median_s"],
        "per_s_min": items / timing["max_s"],
        "per_s_max": items / timing["min_s"],
    }


def machine():
    """Where and when the numbers were made."""
    import tensorflow as tf

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
    }


def spread(values):
    """{"median", "min", "max"} of a list of numbers."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def keras_latency_ms(model, example, repeats=20, warmup=3):
    """Batch-1 latency of a Keras model in ms: `example` is one input with its batch axis of 1."""
    call = lambda: model(example, training=False)  # noqa: E731  (direct call: no predict() overhead)
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - start))
    return spread(times)


def tflite_latency_ms(path, example, repeats=50, warmup=5, num_threads=2):
    """Batch-1 latency of a TFLite model in ms, through the edge runtime (ai-edge-litert)."""
    from common.tflite_runtime import TFLiteModel

    model = TFLiteModel(path, num_threads=num_threads)
    for _ in range(warmup):
        model.predict(example)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(example)
        times.append(1000 * (time.perf_counter() - start))
    return spread(times)


def train_examples_per_s(model, x, y, batch_size, steps=5, repeats=3):
    """Training throughput of a compiled Keras model on in-memory batches (examples/s).

    One warm-up step traces the graph; then `repeats` runs of `steps` steps are timed.
    """
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size, drop_remainder=True).repeat()
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
        rates.append(steps * batch_size / (time.perf_counter() - start))
    return spread(rates)


def pipeline_examples_per_s(make_dataset, batches=20, repeats=3):
    """Throughput of an input pipeline alone (examples/s): iterate `batches` batches of a fresh dataset."""
    rates = []
    for _ in range(repeats + 1):
        dataset = make_dataset()
        count = 0
        start = time.perf_counter()
        for index, (x, _) in enumerate(dataset):
            count += int(x.shape[0]) if not isinstance(x, (tuple, list, dict)) else int(next(iter(_leaves(x))).shape[0])
            if index + 1 >= batches:
                break
        rates.append(count / (time.perf_counter() - start))
    return spread(rates[1:])  # the first pass warms caches and traces


def int8_export(model, calibration, path, **checks):
    """A benchmark's int8 TFLite file of an in-memory Keras model: post-training quantization
    (minutes faster to make than QAT, and the same graph), calibrated on `calibration`.

    Args:
        model: a float32 Keras model; calibration: numpy inputs with their batch axis.
        path: where the .tflite file goes (its export report beside it).
        checks: passed on to `common.export.export_tflite` (heldout, heldout_labels, metric,
            metric_name, labels, size_budget_mb).

    Returns:
        the export report (dict): path, tflite_bytes, params, macs, agreement, ...
    """
    from common.export import export_tflite

    return export_tflite(model, calibration, path, mode="ptq", **checks)


def model_speed(*, build, train_cfg, x, y, batch, calibration, path, heavy=False, quick=False, log=print,
                name="", **checks):
    """Training throughput, Keras and int8 TFLite batch-1 latency, sizes: one model's speed measurements.

    Training runs at the precision a user's `train` would pick (`train.precision`, auto by default);
    latency and the export use the float32 model, as `export` does.

    Args:
        build: () -> (training model, inference model), both compiled as needed; called under the
            training precision policy. They may be the same model.
        train_cfg: the config's `train:` section (for `precision`).
        x, y: numpy training examples and targets (a few batches); batch: training batch size.
        calibration: numpy inputs for the int8 export; path: the .tflite file to write.
        heavy: fewer steps and repeats (models of several GMACs); quick: one repeat of each.
        checks: passed on to `int8_export`.

    Returns:
        dict: precision (str), train (spread of examples/s), keras_ms and tflite_ms (spreads in ms),
        report (the export report).
    """
    import tf_keras as keras

    from common.train import float32_copy, resolve_precision

    precision = resolve_precision(train_cfg)[0]
    keras.mixed_precision.set_global_policy(precision)
    try:
        training, inference = build()
        log(f"bench {name}: training throughput (batch {batch}, {precision})")
        train = train_examples_per_s(training, x, y, batch, steps=2 if heavy else 5,
                                     repeats=1 if quick else (2 if heavy else 3))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    if precision != "float32":
        inference = float32_copy(inference)
    example = x[:1]
    log(f"bench {name}: Keras latency")
    keras_ms = keras_latency_ms(inference, example, repeats=5 if quick or heavy else 20, warmup=2 if heavy else 3)
    log(f"bench {name}: int8 export (PTQ)")
    report = int8_export(inference, calibration, path, **checks)
    tflite_ms = tflite_latency_ms(report["path"], example, repeats=10 if quick or heavy else 50,
                                  warmup=2 if heavy else 5, num_threads=2)
    return {"precision": precision, "train": train, "keras_ms": keras_ms, "tflite_ms": tflite_ms, "report": report}


def speed_row(*, task, model, input, speed, pipeline, batch, pipeline_desc, unit):
    """The `kind: speed` row of a task's bench: sizes from the export report, the timings, and a note
    saying whether the input pipeline keeps up with training.

    Args:
        task, model, input: str, the row's labels.
        speed: dict returned by `model_speed`.
        pipeline: `spread` dict of examples/s of the input pipeline alone.
        batch: int, the training batch size.
        pipeline_desc: str, what the pipeline does, e.g. "the tf.data pipeline (cached features)".
        unit: str, what an example is, plural ("patches", "images", "clips").
    """
    report, train = speed["report"], speed["train"]
    ratio = pipeline["median"] / train["median"]
    verdict = "the input is not the bottleneck" if ratio > 1 else "the input IS the bottleneck"
    return {
        "kind": "speed",
        "task": task,
        "model": model,
        "input": input,
        "params": report["params"],
        "macs": report["macs"],
        "float_bytes": report["float_keras_bytes"],
        "int8_bytes": report["tflite_bytes"],
        "train_precision": speed["precision"],
        "train_examples_per_s": train,
        "keras_latency_ms": speed["keras_ms"],
        "tflite_latency_ms": speed["tflite_ms"],
        "pipeline_examples_per_s": pipeline,
        "train_batch": batch,
        "note": (f"{task} {model}: {pipeline_desc} delivers {ratio:.1f}x the {unit}/s that training at batch "
                 f"{batch} ({speed['precision']}) consumes ({verdict}); int8 TFLite "
                 f"{report['tflite_bytes'] / 1e6:.2f} MB"),
    }


def _leaves(structure):
    if isinstance(structure, dict):
        for value in structure.values():
            yield from _leaves(value)
    elif isinstance(structure, (tuple, list)):
        for value in structure:
            yield from _leaves(value)
    else:
        yield structure
