"""`make bench` helpers: timings (medians over repeats after a warm-up, with the spread) and the
rows every task's bench.py makes the same way (speed, accuracy); a task keeps what differs."""

import logging
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path


def spread(values):
    """{"median", "min", "max"} of a list of numbers."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def timings(call, repeats, warmup=0, scale=1.0):
    """`call()` `warmup` times untimed, then `repeats` times: the seconds of each, x `scale`."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(scale * (time.perf_counter() - start))
    return times


def machine():
    """Where and when the numbers were made: the date, the CPU (common.cpuinfo.cpu_info: model,
    cores, instruction-set flags, a oneDNN cap), Python and TensorFlow versions."""
    import tensorflow as tf

    from common.cpuinfo import cpu_info

    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        **cpu_info(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
    }


def write_outputs(out, results, json_name, markdown_name, text):
    """A benchmark's outputs: OUT/json_name (the `results` dict) and OUT/markdown_name (its table
    `text`), both written atomically; `text` is printed too."""
    from common.io import write_json, write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / json_name, results)
    write_text(out / markdown_name, text)
    print(text, end="")


def train_examples_per_s(model, x, y, batch_size, steps=5, repeats=3, train_cfg=None):
    """Training throughput of a compiled Keras model on in-memory batches (examples/s).

    One warm-up step traces the graph, with convolution weight gradients as `train_cfg` says
    (`train.weight_gradients`, default auto, as `train` computes them); then `repeats` runs of
    `steps` steps are timed.
    """
    import tensorflow as tf

    from common.weight_gradients import weight_gradients

    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size, drop_remainder=True)
    data = data.repeat()
    with weight_gradients(train_cfg or {}):
        model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)
    times = timings(lambda: model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0), repeats)
    return spread([steps * batch_size / t for t in times])


def pipeline_examples_per_s(make_dataset, batches=20, repeats=3):
    """Throughput of an input pipeline alone (examples/s): `batches` batches of a fresh dataset."""
    rates = []
    for _ in range(repeats + 1):
        count = 0
        start = time.perf_counter()
        for index, (x, _) in enumerate(make_dataset()):
            count += int(x.shape[0])
            if index + 1 >= batches:
                break
        rates.append(count / (time.perf_counter() - start))
    return spread(rates[1:])  # the first pass warms caches and traces


def int8_export(model, calibration, path, **checks):
    """A benchmark's int8 TFLite file (its export report beside it) of an in-memory float32 Keras
    model: post-training quantization (minutes faster to make than QAT, the same graph) calibrated
    on the numpy inputs `calibration`. `checks`: `common.export.export_tflite`'s (heldout,
    heldout_labels, metric, metric_name, labels, size_budget_mb). Returns the export report."""
    from common.export import export_tflite

    return export_tflite(model, calibration, path, mode="ptq", **checks)


def speed_row(task, cfg, name, model, input, *, build, x, y, batch, calibration, out, pipeline,
              pipeline_desc, unit, heavy=False, quick=False, **checks):
    """The `kind: speed` row of one model: training throughput, Keras and int8 TFLite batch-1
    latency, sizes, and the input pipeline alone, with a note saying whether it keeps up.

    Training runs at the precision a user's `train` would pick (`train.precision`, auto by default);
    latency and the export use the float32 model, as `export` does.

    Args:
        task: the Task (its name, and `compile` for the training model); cfg: the config.
        name, model, input: str: the config's name (log lines), the row's labels.
        build: () -> the model, or (training model, inference model); called (after seeding) under
            the training precision policy.
        x, y: numpy training examples and targets (a few batches); batch: the training batch size;
            calibration: numpy inputs for the int8 export.
        out: folder of the int8 file (model_int8.tflite) and its report.
        pipeline: () -> the task's training tf.data pipeline on the same examples, at `batch`.
        pipeline_desc: what the pipeline does, e.g. "the tf.data pipeline (cached features)";
            unit: what an example is, plural ("patches", "images", "clips").
        heavy: fewer steps and repeats (models of several GMACs); quick: one repeat of each.
        checks: passed on to `int8_export`.
    """
    import tf_keras as keras

    from common.tflite_runtime import TFLiteModel
    from common.train import float32_copy, make_optimizer, resolve_precision, set_seed

    log = logging.getLogger(f"{task.name}.bench").info
    precision = resolve_precision(cfg["train"])[0]
    keras.mixed_precision.set_global_policy(precision)
    try:
        set_seed(0)
        models = build()
        training, inference = models if isinstance(models, tuple) else (models, models)
        task.compile(training, cfg, make_optimizer(cfg["train"], 100))
        log(f"bench {name}: training throughput (batch {batch}, {precision})")
        train = train_examples_per_s(training, x, y, batch, steps=2 if heavy else 5,
                                     repeats=1 if quick else (2 if heavy else 3), train_cfg=cfg["train"])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    if precision != "float32":
        inference = float32_copy(inference)
    example = x[:1]
    log(f"bench {name}: Keras latency")
    keras_ms = spread(timings(lambda: inference(example, training=False),  # no predict() overhead
                              5 if quick or heavy else 20, 2 if heavy else 3, 1000))
    log(f"bench {name}: int8 export (PTQ)")
    report = int8_export(inference, calibration, Path(out) / "model_int8.tflite", **checks)
    tflite = TFLiteModel(report["path"], num_threads=2)
    tflite_ms = spread(timings(lambda: tflite.predict(example), 10 if quick or heavy else 50,
                               2 if heavy else 5, 1000))
    log(f"bench {name}: input pipeline")
    piped = pipeline_examples_per_s(pipeline, max(1, len(x) // batch), repeats=1 if quick else 3)
    ratio = piped["median"] / train["median"]
    verdict = "the input is not the bottleneck" if ratio > 1 else "the input IS the bottleneck"
    return {
        "kind": "speed",
        "task": task.name,
        "model": model,
        "input": input,
        "params": report["params"],
        "macs": report["macs"],
        "float_bytes": report["float_keras_bytes"],
        "int8_bytes": report["tflite_bytes"],
        "train_precision": precision,
        "train_examples_per_s": train,
        "keras_latency_ms": keras_ms,
        "tflite_latency_ms": tflite_ms,
        "pipeline_examples_per_s": piped,
        "train_batch": batch,
        "note": (f"{task.name} {model}: {pipeline_desc} delivers {ratio:.1f}x the {unit}/s that "
                 f"training at batch {batch} ({precision}) consumes ({verdict}); int8 TFLite "
                 f"{report['tflite_bytes'] / 1e6:.2f} MB"),
    }


def accuracy_row(task, model, data, float_metric, report, **extra):
    """The `kind: accuracy` row: a model's float metric beside its int8 export's (`report`)."""
    return {
        "kind": "accuracy",
        "task": task.name,
        "model": f"{model}, int8 {report['quantization']}",
        "data": data,
        "metric_name": task.metric_name,
        "float_metric": float_metric,
        "int8_metric": report["tflite_metric"],
        "agreement": report["agreement"],
        **extra,
    }


def trained_row(task, cfg, out, model, data, *, float_from_export=False, **extra):
    """`train` then `export` of `cfg` into the run `out` (replaced), as the demo does: an
    `accuracy_row` whose float metric is the run's (or, with `float_from_export`, the export's)."""
    from common import runner

    result = runner.train(task, cfg, out, overwrite=True)
    report = runner.export(task, result.run)
    metric = report["keras_metric"] if float_from_export else result.metrics[task.metric_name]
    return accuracy_row(task, model, data, metric, report, **extra)


def demo_reports(task, out):
    """`python -m TASK demo` into `out`: (summary row, export report) of each exported demo run."""
    import json

    from common import runner

    rows = runner.demo(task, out)  # one row per step of the plan, in its order
    return [(row, json.loads((Path(out) / step.name / runner.REPORT_FILE).read_text()))
            for step, row in zip(task.demo_plan(), rows) if step.export]


def config(task, name, overrides=(), data=None):
    """configs/TASK/NAME.yaml with `train.verbose=0` and `overrides` (and `data`, its data.root)."""
    from common.runner import load_task_config

    path = task.config_dir / f"{name}.yaml"
    return load_task_config(task, path, ["train.verbose=0", *overrides], data)


def sample_data(folder, marker, write):
    """`folder`, written by `write(folder)` unless it holds `marker` (its last file) already."""
    if not (Path(folder) / marker).is_file():
        write(folder)
    return Path(folder)


def find_data(real_data, names, *parts, root=None):
    """The first folder `real_data/NAME` (NAME: the data set's usual folder names) holding every
    path of `parts`, or None. `root(folder)`, when given, turns it into the data set's root or
    raises DataError (then the next name is tried)."""
    from common.errors import DataError

    for name in names if real_data else ():
        folder = Path(real_data) / name
        if folder.is_dir() and all((folder / part).exists() for part in parts):
            try:
                return root(folder) if root else folder
            except DataError:
                continue
    return None
