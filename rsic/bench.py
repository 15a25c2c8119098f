"""rsic's benchmarks: paper 3's backbone table (`python -m rsic benchmark`) and `make bench`.

`python -m rsic benchmark --config CONFIG --data DIR --out OUT [--backbones A,B]` trains every
backbone of `benchmark.backbones` (by default paper 3's twelve and NASNetMobile, from ImageNet
weights: paper3.yaml) with the same config (data split, input size, training), each in
`OUT/<backbone>/` through common.runner (train, then export), and writes `OUT/benchmark.json` and
`OUT/benchmark.md`: backbone, parameters, test accuracy, int8 TFLite size, int8 accuracy and
latency, and the accuracy paper 3 reports on NWPU-RESISC45; then the best backbone by this run's
validation accuracy (the inner split; the test split is only reported), and the best of paper 4's four compact candidates among those benchmarked (what
`--set model.backbone=best:OUT` picks for attention.yaml). A backbone that already has a finished
run in `OUT` is not trained again (delete its folder, or give --overwrite, to redo it), one killed
mid-training resumes; each finished backbone leaves its row in `OUT/<backbone>/benchmark_row.json`
(what `python -m rsic paper3 / paper4` build their tables from, rsic/paper.py). With
ImageNet weights, every backbone's file is fetched before the first training starts.

`make bench` (rows: benchmarks/run.py), on sample data in benchmarks/tmp/rsic/: speed rows of
untrained MobileNetV2 and EfficientNetB0 (paper 3) and paper 4's attention model on MobileNetV2 at
224x224 with 45 classes (NWPU-RESISC45's shape), the pipeline being JPEG decode + resize + augment;
accuracy rows of `python -m rsic demo` (and of a short training on NWPU-RESISC45 under
`real_data`); paper 4's rows (`paper4_rows`): each compact candidate beside the attention model on
it, int8 at 224x224 timed in alternation, and both trained from scratch on 5 classes x 40 images.
`quick=True`: the tiny model only (64x64, 2 epochs, PTQ); paper 4 for MobileNetV2 alpha 0.35 at 64.
"""

import copy
import json
import logging
from functools import partial
from pathlib import Path

from common import bench as harness
from common.errors import ExportError
from common.io import write_json, write_text
from rsic.task import RsicTask

TASK = RsicTask()
log = logging.getLogger("rsic.bench")
WORK = Path(__file__).resolve().parents[1] / "benchmarks" / "tmp" / "rsic"
NUM_CLASSES = 45
SIZE_BUDGET_MB = 64.0  # a report, not paper 4's 20 MB check (all three are well under it)
MODELS = {
    "tiny": "MobileNetV2 alpha 0.35, 64px (tiny.yaml)",
    "mobilenetv2": "MobileNetV2 (paper 3, mobilenetv2.yaml)",
    "efficientnetb0": "EfficientNetB0 (paper 3, efficientnetb0.yaml)",
    "attention": "MobileNetV2 + multi-level attention (paper 4, attention.yaml)",
}
PAPER4_BACKBONES = ("MobileNet", "MobileNetV2", "NASNetMobile", "EfficientNetB0")
SMALL = 64  # the small sample's image side (5 classes x 40 images): quick runs, paper 4's accuracy
PAPER4_KINDS = ("backbone", "attention")


def _config(name, overrides=(), data=None):
    """configs/rsic/NAME.yaml for `make bench`: untrained (weights null: nothing downloaded)."""
    return harness.config(TASK, name, ["model.weights=null", *overrides], data)


def small_sample(work=WORK):
    """5 classes x 40 JPEGs of 64x64 (written once) under `work`."""
    from rsic.sample import write_sample

    return harness.sample_data(Path(work) / "sample_paper4", "beach/beach_040.jpg",
                               partial(write_sample, classes=5, per_class=40, size=SMALL, seed=0))


def _paper4_configs(backbone, size, overrides=()):
    """attention.yaml on `backbone` at `size` px: {"backbone": without attention, "attention"}."""
    common = [f"model.backbone={backbone}", f"model.input_size={size}", *overrides]
    return {"backbone": _config("attention", [*common, "model.attention.enabled=false"]),
            "attention": _config("attention", common)}


def speed_row(name, folder, quick=False):
    """Speed and size of one config's (untrained) model on the images of an ImageFolder."""
    from rsic.features import load_images, make_dataset
    from rsic.models import build_model

    # The attention row stays on MobileNetV2 (attention.yaml now defaults to EfficientNetB0), so
    # that it compares with the committed results and the MobileNetV2 row.
    cfg = _config(name, ["model.backbone=MobileNetV2"] if name == "attention" else [])
    size = int(cfg["model"]["input_size"])
    classes = len(folder.class_names)
    batch = min(int(cfg["train"]["batch_size"]), 16)
    x = load_images(folder.files, size)
    return harness.speed_row(
        TASK, cfg, name, MODELS[name], f"{size}x{size}x3, {classes} classes",
        build=lambda: build_model(cfg["model"], classes), x=x, y=folder.labels, batch=batch,
        calibration=x[:32], out=WORK / name, unit="images", heavy=size >= 224, quick=quick,
        pipeline=lambda: make_dataset(folder.files, folder.labels, image_size=size, training=True,
                                      batch_size=batch, augment=cfg["data"]["augment"], seed=0,
                                      cache=False),
        pipeline_desc=f"the tf.data pipeline (JPEG decode + resize + augment at {size}, no cache)",
        heldout=x[-16:], size_budget_mb=SIZE_BUDGET_MB,
    )


def demo_rows(out):
    """The demo's tiny teacher and distilled student (`python -m rsic demo`): accuracy rows."""
    rows = []
    for row, report in harness.demo_reports(TASK, out):
        student = " (distilled)" if row["model"].startswith("student:") else ""
        data = f"sample (5 classes x 40 images of 64x64, test split of {report['parity_examples']})"
        rows.append(harness.accuracy_row(TASK, row["model"] + student, data, report["keras_metric"],
                                         report))
    return rows


def accuracy_row(data, out, label, overrides=(), mode="ptq"):
    """The tiny config trained on `data` and exported int8 (`mode`): one row."""
    cfg = _config("tiny", [f"export.mode={mode}", *overrides], data)
    with reuse_listing(TASK, cfg):  # one listing (every image decoded once) for both steps
        return harness.trained_row(TASK, cfg, out, MODELS["tiny"], label, float_from_export=True)


def _interleaved_latency_ms(paths, example, rounds=5, per_round=10):
    """Batch-1 int8 latency (2 LiteRT threads) of several TFLite files: the spread of each one's
    round medians, every round timing `per_round` calls of each model in turn. Alternating makes a
    busy machine slow every model alike, so ratios between them hold better than absolute ms."""
    from common.tflite_runtime import TFLiteModel

    calls = {name: TFLiteModel(path, num_threads=2).predict for name, path in paths.items()}
    for call in calls.values():
        harness.timings(lambda c=call: c(example), 0, warmup=3)
    medians = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            times = harness.timings(lambda c=call: c(example), per_round, scale=1000)
            medians[name].append(sorted(times)[per_round // 2])
    return {name: harness.spread(values) for name, values in medians.items()}


def sample_accuracy(cfg, images, labels, split, out_dir, *, epochs=6, seed=0, batch=16, lr=3e-3):
    """Train `cfg["model"]` from scratch on in-memory images, float32 (N, S, S, 3) raw RGB at the
    model's input size, labels int (N,), `split`: "train" and "test" index arrays; export int8
    into `out_dir`. Returns float_metric, int8_metric (test accuracy), agreement (Keras vs int8
    decisions), quantization, train_s."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from common.train import set_seed
    from rsic.models import build_model, compile_classifier

    set_seed(seed)
    train, test = split["train"], split["test"]
    model = build_model(cfg["model"], int(labels.max()) + 1)
    steps = epochs * int(np.ceil(len(train) / batch))
    schedule = keras.optimizers.schedules.CosineDecay(lr, steps)
    compile_classifier(model, keras.optimizers.Adam(schedule))

    def augment(image, label):  # aerial scenes: flips and quarter turns
        turns = tf.random.uniform((), 0, 4, tf.int32, seed=seed)
        return tf.image.rot90(tf.image.random_flip_left_right(image, seed=seed), turns), label

    data = tf.data.Dataset.from_tensor_slices((images[train], labels[train]))
    data = data.shuffle(len(train), seed=seed).map(augment).batch(batch)
    (train_s,) = harness.timings(lambda: model.fit(data, epochs=epochs, verbose=0), 1)
    report = harness.int8_export(
        model, images[train][:64], Path(out_dir) / "model_int8.tflite", heldout=images[test],
        heldout_labels=labels[test], metric=TASK.metric, metric_name="accuracy",
        size_budget_mb=SIZE_BUDGET_MB)
    return {"float_metric": report["keras_metric"], "int8_metric": report["tflite_metric"],
            "agreement": report["agreement"], "quantization": report["quantization"],
            "train_s": train_s}


def paper4_rows(quick=False, backbones=PAPER4_BACKBONES, epochs=6, work=WORK, log=log.info):
    """Paper 4's attention model beside its backbone, one row (kind "paper4") per candidate:
    backbone, input, attention (the `model.attention` formulation), then for "backbone" and
    "attention": KIND_macs, KIND_int8_bytes, KIND_int8_ms (`harness.spread`), latency_ratio
    (attention / backbone median), KIND_accuracy (`sample_accuracy`). Files go under `work`."""
    import numpy as np

    from common.train import set_seed
    from rsic.data import make_split, scan_image_folder
    from rsic.features import load_images
    from rsic.models import build_model

    size = 64 if quick else 224  # of the speed measurements
    tiny = ["model.alpha=0.35", "model.embedding_dim=64", "model.attention.reduce_channels=32"]
    tiny = tiny if quick else []
    folder = scan_image_folder(small_sample(work), log=log)
    images, labels = load_images(folder.files, SMALL), np.asarray(folder.labels)
    split = make_split(labels, 0.5, seed=0)
    calibration = np.random.default_rng(0).uniform(0, 255, (16, size, size, 3)).astype(np.float32)
    rows = []
    for backbone in backbones:
        speed_cfgs, reports = _paper4_configs(backbone, size, tiny), {}
        for kind, cfg in speed_cfgs.items():
            log(f"bench paper4 {backbone} {kind}: int8 export (PTQ) at {size}")
            set_seed(0)
            reports[kind] = harness.int8_export(
                build_model(cfg["model"], NUM_CLASSES), calibration,
                Path(work) / "paper4" / f"{backbone}_{kind}" / "model_int8.tflite",
                heldout=calibration[:4], size_budget_mb=SIZE_BUDGET_MB)
        paths = {kind: report["path"] for kind, report in reports.items()}
        latency = _interleaved_latency_ms(paths, calibration[:1], rounds=3 if quick else 7)
        accuracy = {}
        more = [*tiny, "model.bn_momentum=0.5", "model.embedding_dim=128"]
        for kind, cfg in _paper4_configs(backbone, SMALL, more).items():
            log(f"bench paper4 {backbone} {kind}: sample-data training ({epochs} epochs)")
            out = Path(work) / "paper4_acc" / f"{backbone}_{kind}"
            accuracy[kind] = sample_accuracy(cfg, images, labels, split, out, epochs=epochs)
        att = speed_cfgs["attention"]["model"]["attention"]
        rows.append({
            "kind": "paper4",
            "task": "rsic",
            "backbone": backbone + (" alpha 0.35" if quick else ""),
            "input": f"{size}x{size}x3, {NUM_CLASSES} classes",
            "attention": {key: att[key] for key in ("kv_stride", "query_stride", "norm",
                                                     "reduce_channels", "num_heads", "key_dim")},
            **{f"{kind}_macs": reports[kind]["macs"] for kind in PAPER4_KINDS},
            **{f"{kind}_int8_bytes": reports[kind]["tflite_bytes"] for kind in PAPER4_KINDS},
            **{f"{kind}_int8_ms": latency[kind] for kind in PAPER4_KINDS},
            "latency_ratio": latency["attention"]["median"] / latency["backbone"]["median"],
            "accuracy_data": f"sample, 5 classes x 40 images at {SMALL}x{SMALL}, "
                             f"half for training, {epochs} epochs from scratch",
            **{f"{kind}_accuracy": accuracy[kind] for kind in PAPER4_KINDS},
        })
    return rows


def run(quick=False, real_data=None):
    """All rsic benchmark rows (see the module docstring). `quick`: tiny only, few repeats."""
    from rsic.data import scan_image_folder
    from rsic.download import find_data_root
    from rsic.sample import write_sample

    if quick:
        small = small_sample()
        label = "sample (5 classes x 40 images of 64x64), 2 epochs"
        return [speed_row("tiny", scan_image_folder(small, log=log.info), quick=True),
                accuracy_row(small, WORK / "accuracy_quick", label, ["train.epochs=2"]),
                *paper4_rows(quick=True, backbones=("MobileNetV2",), epochs=2)]
    # 45 classes x 2 JPEGs of 256x256 (NWPU-RESISC45's image size)
    sample = harness.sample_data(WORK / "sample", "wetland/wetland_002.jpg",
                                 partial(write_sample, classes=NUM_CLASSES, per_class=2, size=256))
    folder = scan_image_folder(sample, log=log.info)
    rows = [speed_row(name, folder) for name in ("mobilenetv2", "efficientnetb0", "attention")]
    rows += demo_rows(WORK / "demo") + paper4_rows()
    names = ("NWPU-RESISC45", "nwpu-resisc45", "resisc45", "NWPU_RESISC45")
    real = harness.find_data(real_data, names, root=find_data_root)
    if real is not None:
        rows.append(accuracy_row(
            real, WORK / "accuracy_real",
            f"NWPU-RESISC45 ({real}), 20% train split, short training: 3 epochs x 100 steps at "
            "64x64",
            ["train.epochs=3", "train.steps_per_epoch=100", "data.train_ratio=0.2",
             "data.val_ratio=0.1", "data.cache=false"],
        ))
    return rows


# ---------------------------------------------------------------------------------------------
# `python -m rsic benchmark`: paper 3's backbone table


class reuse_listing:
    """Within the block, `task.open_data` returns one listing of `cfg`'s data set (every image is
    checked once, not once per backbone)."""

    def __init__(self, task, cfg):
        self.task, self.cfg = task, cfg

    def __enter__(self):
        d = self.cfg["data"]
        self.key = (str(Path(d["root"]).resolve()), bool(d["skip_bad"]))
        self.task._folders[self.key] = self.task.open_data(self.cfg)
        return self.task._folders[self.key]

    def __exit__(self, *exc):
        self.task._folders.pop(self.key, None)


def run_benchmark(task, cfg, out, *, overwrite=False):
    """Train, evaluate and export every backbone of `cfg["benchmark"]` into the folder `out`.

    Writes OUT/benchmark.json (`benchmark_summary`: the rows, the ranking, `best` and
    `best_paper4`) after every backbone, and OUT/benchmark.md at the end.

    Returns:
        list of row dicts: backbone, input_size, params, macs, accuracy (test split, fraction),
        int8_accuracy, tflite_bytes, latency_ms, paper_accuracy (paper 3, %), note.
    """
    from common.runner import need_data, say
    from rsic.models import get_backbone

    specs = [get_backbone(name) for name in cfg["benchmark"]["backbones"]]  # all names checked first
    need_data(cfg)
    out = Path(out)
    fetch_weights(cfg, specs)
    rows = []
    with reuse_listing(task, cfg):
        out.mkdir(parents=True, exist_ok=True)
        for spec in specs:
            say(f"rsic: benchmark {spec.name} ({len(rows) + 1} of {len(specs)})")
            rows.append(benchmark_one(task, cfg, spec, out / spec.name, overwrite=overwrite))
            # after every backbone: a long run shows progress
            write_json(out / BENCHMARK_JSON, benchmark_summary(rows, cfg))
    table = markdown_table(rows, cfg, out=out)
    write_text(out / BENCHMARK_MD, table)
    say(table)
    return rows


BENCHMARK_JSON = "benchmark.json"
BENCHMARK_MD = "benchmark.md"
ROW_FILE = "benchmark_row.json"  # OUT/<backbone>/: its table row, written once the run is finished


def fetch_weights(cfg, specs):
    """With `model.weights: imagenet`, every backbone's ImageNet weights before the first training:
    an offline machine stops now (one line naming the file), not after hours of training."""
    if cfg["model"]["weights"] == "imagenet" and not cfg["model"]["weights_path"]:
        from rsic.models import fetch_imagenet_weights

        for spec in specs:
            model_cfg = _run_config(cfg, spec)[0]["model"]
            fetch_imagenet_weights(spec, model_cfg["alpha"], model_cfg["input_size"])


def write_benchmark(task, cfg, out, names):
    """OUT/benchmark.json and OUT/benchmark.md from the row files of the backbones `names` (in that
    order; a backbone without a finished row is left out). Returns the rows."""
    from common.papers import read_json

    rows = [row for row in (read_json(Path(out) / name / ROW_FILE) for name in names) if row is not None]
    write_json(Path(out) / BENCHMARK_JSON, benchmark_summary(rows, cfg))
    write_text(Path(out) / BENCHMARK_MD, markdown_table(rows, cfg, out=out))
    return rows


def _run_config(cfg, spec):
    """(config of `spec`'s run, notes): `cfg` on that backbone, alpha and input size made legal for it."""
    run_cfg = copy.deepcopy(cfg)
    model_cfg = run_cfg["model"]
    model_cfg["backbone"] = spec.name
    notes = []
    if model_cfg["alpha"] != 1.0 and not spec.has_alpha:
        model_cfg["alpha"] = 1.0
        notes.append("alpha 1.0")
    if model_cfg["input_size"] < spec.min_size:
        model_cfg["input_size"] = spec.min_size
        notes.append(f"input {spec.min_size}")
    return run_cfg, notes


def benchmark_one(task, cfg, spec, run_dir, *, overwrite=False):
    """Train (or resume), evaluate and export one backbone into `run_dir`; its row.

    A finished run is reused; one killed mid-training resumes from its last epoch; one trained but
    not scored is scored. An export refused (over `export.size_budget_mb`) is noted in the row.
    Writes RUN/benchmark_row.json (ROW_FILE), the row, last.

    Returns:
        the row dict (see `run_benchmark`).
    """
    from common import runner
    from common.complexity import model_complexity

    run_dir = Path(run_dir)
    run_cfg, notes = _run_config(cfg, spec)
    model_cfg = run_cfg["model"]
    trained = (run_dir / "model.keras").is_file()
    if trained and (run_dir / runner.METRICS_FILE).is_file() and not overwrite:
        runner.say(f"rsic: {run_dir}: finished run found, reusing it")
        metrics = json.loads((run_dir / runner.METRICS_FILE).read_text())
    elif trained and not overwrite:
        metrics = runner.evaluate(task, run_dir)[0]  # trained, stopped before its scores were written
    else:
        # config.yaml without model.keras: a killed run; the same config resumes it.
        resume = not overwrite and (run_dir / "config.yaml").is_file()
        metrics = runner.train(task, run_cfg, run_dir, resume=resume, overwrite=overwrite).metrics
    complexity = model_complexity(runner.keras_model(task, run_dir))
    row = {
        "backbone": spec.name,
        "input_size": model_cfg["input_size"],
        "params": complexity["params"],
        "macs": complexity["macs"],
        "accuracy": metrics["accuracy"],
        "val_accuracy": _selection_accuracy(run_dir),
        "int8_accuracy": None,
        "tflite_bytes": None,
        "latency_ms": None,
        "paper_accuracy": spec.paper_accuracy,
        "note": ", ".join(notes),
    }
    if run_cfg["benchmark"]["export"]:
        report_path = run_dir / runner.REPORT_FILE
        try:
            if report_path.is_file() and (run_dir / runner.TFLITE_FILE).is_file() and not overwrite:
                report = json.loads(report_path.read_text())
            else:
                report = runner.export(task, run_dir)
            row.update(int8_accuracy=report["tflite_metric"], tflite_bytes=report["tflite_bytes"],
                       latency_ms=report.get("latency_ms"))
        except ExportError as error:
            row["note"] = ", ".join(notes + [f"not exported: {str(error).split(': ', 1)[-1]}"])
            runner.say(f"rsic: {spec.name}: {error}")
    write_json(run_dir / ROW_FILE, row)
    return row


def _selection_accuracy(run_dir):
    """The accuracy on the inner validation split at the epoch the run kept (the best one), or None
    for a run that chose its epoch on the test split (`train.select_on: reported`)."""
    from common.train import read_history

    split = json.loads((Path(run_dir) / "split.json").read_text()) if (Path(run_dir) / "split.json").is_file() else {}
    values = [v for v in read_history(run_dir).get("val_accuracy", []) if v == v]  # NaN: a missing epoch
    return max(values) if split.get("selection_split") == "val" and values else None


def selection_score(row):
    """What ranks a benchmark row: its inner validation accuracy when it has one, so that the test
    split that is reported never picks the best backbone or the teachers; else (runs trained with
    `train.select_on: reported`, or older benchmark files) its test accuracy."""
    return row["val_accuracy"] if row.get("val_accuracy") is not None else row.get("accuracy")


def rank_rows(rows, candidates=None):
    """Rows best first by `selection_score` (a tie goes to the smaller model).

    Args:
        rows: benchmark row dicts (backbone, accuracy, val_accuracy, params). candidates: backbone
            names to keep (None: every row).
    """
    kept = [row for row in rows if selection_score(row) is not None
            and (candidates is None or row["backbone"] in candidates)]
    return sorted(kept, key=lambda row: (-selection_score(row), row.get("params") or 0))


def _best_entry(rows, candidates=None):
    ranked = rank_rows(rows, candidates)
    if not ranked:
        return None
    row = ranked[0]
    return {key: row.get(key) for key in ("backbone", "accuracy", "params", "paper_accuracy")}


def benchmark_summary(rows, cfg):
    """The content of benchmark.json: what was run, the rows, the ranking and the best backbones.

    `best`: the most accurate row (`selection_score`: validation accuracy); `best_paper4`: the most accurate of
    paper 4's four candidates among the rows (None if none was benchmarked); `ranking`: every
    backbone, best first.
    """
    return {
        "data": cfg["data"]["root"],
        "train_ratio": cfg["data"]["train_ratio"],
        "input_size": cfg["model"]["input_size"],
        "weights": cfg["model"]["weights"] or "none",
        "metric": "accuracy on the test split",
        "ranked_on": "inner validation accuracy (test accuracy where a run has none)",
        "rows": rows,
        "ranking": [row["backbone"] for row in rank_rows(rows)],
        "best": _best_entry(rows),
        "best_paper4": _best_entry(rows, PAPER4_BACKBONES),
    }


def read_benchmark_rows(folder, key="model.backbone"):
    """The rows of FOLDER/benchmark.json (also the older form, a bare list of rows).

    Raises:
        ConfigError naming `key`: the folder holds no benchmark.json, or it is unreadable.
    """
    from common.errors import ConfigError

    path = Path(folder).expanduser() / BENCHMARK_JSON
    if not path.is_file():
        raise ConfigError(f"config key '{key}': {Path(folder).expanduser()} is not a benchmark run (no "
                          f"{BENCHMARK_JSON}); run `python -m rsic benchmark --out {folder}` first")
    try:
        content = json.loads(path.read_text())
        rows = content if isinstance(content, list) else content["rows"]
        if not all(isinstance(row, dict) and "backbone" in row for row in rows):
            raise ValueError("a row without a backbone")
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"config key '{key}': {path}: not a benchmark table ({error})") from None
    return rows


def best_benchmarked(folder, candidates=PAPER4_BACKBONES, key="model.backbone"):
    """The best row of the benchmark in `folder` among `candidates` (`rank_rows`).

    Raises:
        ConfigError naming `key`: not a benchmark run, or none of `candidates` is in it.
    """
    from common.errors import ConfigError

    rows = read_benchmark_rows(folder, key)
    ranked = rank_rows(rows, candidates)
    if not ranked:
        raise ConfigError(f"config key '{key}': {Path(folder).expanduser() / BENCHMARK_JSON} holds none of "
                          f"{', '.join(candidates)} (it has {', '.join(r['backbone'] for r in rows) or 'no rows'})")
    return ranked[0]


def markdown_table(rows, cfg, out=None):
    """The benchmark rows as a Markdown table (accuracies in %, sizes in MB), then the best backbones.

    `out`: the benchmark folder, named in the `best:` hint line (None: no hint).
    """
    size = cfg["model"]["input_size"]
    weights = "ImageNet weights" if cfg["model"]["weights"] == "imagenet" else "from scratch"
    lines = [
        f"Backbones at {size}x{size}, {weights}, train ratio {cfg['data']['train_ratio']:g} of each class; "
        f"accuracy on the test split. Paper 3 %: NWPU-RESISC45 accuracy reported in paper 3.",
        "",
        "| backbone | params | accuracy % | int8 accuracy % | int8 TFLite MB | latency ms | paper 3 % | note |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['backbone']} | {row['params'] / 1e6:.2f}M | {_percent(row['accuracy'])} | "
            f"{_percent(row['int8_accuracy'])} | {_mb(row['tflite_bytes'])} | {_ms(row['latency_ms'])} | "
            f"{row['paper_accuracy'] if row['paper_accuracy'] is not None else '-'} | {row['note']} |"
        )
    best, best4 = _best_entry(rows), _best_entry(rows, PAPER4_BACKBONES)
    if best:
        lines += ["", f"Best: {_named(best)}, by this run's validation accuracy (inner split; a tie goes to the smaller model)."]
    if best4:
        hint = f" (`--set model.backbone=best:{out}` gives it to attention.yaml)" if out else ""
        lines.append(f"Best of paper 4's candidates ({', '.join(PAPER4_BACKBONES)}): {_named(best4)}{hint}.")
    return "\n".join(lines) + "\n"


def _named(entry):
    """"EfficientNetB0 (92.1%; paper 3: 92.3%)"."""
    paper = f"; paper 3: {entry['paper_accuracy']}%" if entry["paper_accuracy"] is not None else ""
    return f"{entry['backbone']} ({_percent(entry['accuracy'])}%{paper})"


def _percent(value):
    return "-" if value is None else f"{100 * value:.1f}"


def _mb(value):
    return "-" if value is None else f"{value / 1e6:.2f}"


def _ms(value):
    return "-" if value is None else f"{value:.1f}"
