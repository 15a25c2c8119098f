"""Papers 3 and 4's tables as commands: `python -m rsic paper3 / paper4 --data D --out R`.

paper3: the backbone benchmark (paper 3's backbones, `rsic benchmark`'s runs) -> teacher(s): the
N best benchmark runs by validation accuracy (`--teachers N`, default 1; N > 1 an ensemble, mean
probabilities) -> a compact student distilled from them (student.yaml) -> int8 export -> the int8
model scored on the whole test split.

paper4: the benchmark of paper 4's four compact candidates (or `--benchmark DIR`: a finished
benchmark, e.g. paper3's R/benchmark) -> the attention model (attention.yaml) on the best of them
(`model.backbone=best:R/benchmark`) -> int8 export within the 20 MB budget -> the int8 model
scored on the whole test split; sizes before (float Keras) and after (int8 TFLite).

Both are resumable through common.papers: a killed command, run again, continues where it stopped.

    R/settings.json                 data folder, configs, backbones, --quick, --set (a rerun must match)
    R/data/                         --quick only: the sample data set (`python -m rsic sample`)
    R/benchmark/<backbone>/         one `train` run per backbone, exported; benchmark_row.json its row
    R/benchmark/benchmark.json/.md  the benchmark table (`python -m rsic benchmark`'s files)
    R/student/ (paper3)             the distilled student: metrics.json (with teacher_accuracy, the
                                    teachers' on the test split), model_int8.tflite,
                                    export_report.json, metrics_int8.json
    R/attention/ (paper4)           the attention run, exported and scored the same way
    R/paper3.md, paper3.json        the tables with the published numbers beside, the data named
    R/paper4.md, paper4.json
"""

from pathlib import Path

from common import papers
from common.errors import ConfigError, RunDirError
from rsic import bench

PAPER3 = "Pham, Le, Ngo, Nguyen, Lampert, Schindler, McLoughlin, ISPA 2023 (arXiv 2302.13028)"
PAPER4 = "Le, Pham, NVN, Nguyen, Trang, ICIIT 2022 (arXiv 2211.02820)"
# ../shared/docs/PAPERS.md: paper 3's accuracies are on each backbone (rsic.models.BACKBONES,
# paper_accuracy); it gives no number for the distilled student. Paper 4: candidates under 5M
# parameters, the int8 model within 20 MB; no accuracy there. The group's earlier NWPU-RESISC45
# result is the reference line of both tables.
PAPER4_PUBLISHED = {"max_params": 5e6, "size_budget_mb": 20.0}
EARLIER = {"train_10": 0.926, "train_20": 0.947}
# --quick: tiny.yaml's MobileNetV2 / MobileNet (alpha 0.35, 64 px, from scratch: nothing is
# downloaded) for two epochs, int8 by post-training quantization, on the 5-class sample.
QUICK_BENCH = "tiny.yaml"
QUICK_STUDENT = "tiny_student.yaml"
QUICK_ATTENTION = "tiny_attention.yaml"
QUICK_BACKBONES = ["MobileNetV2", "MobileNet"]
QUICK_OVERRIDES = ["train.epochs=2", "train.verbose=0", "model.weights=null", "export.mode=ptq",
                   "export.calibration_examples=32"]
INT8_METRICS = "metrics_int8.json"


def add_arguments(parser, paper):
    """Options of `python -m rsic paper3` (paper=3) and `paper4` (paper=4)."""
    from common.cli import add_set_arg

    parser.add_argument("--data", help="NWPU-RESISC45 folder (one folder per class); not needed with --quick")
    parser.add_argument("--out", required=True, help="folder of the runs and tables (resumable)")
    parser.add_argument("--config", help="the benchmark's config (default paper3.yaml; --quick: tiny.yaml)")
    parser.add_argument("--backbones", help="comma-separated backbones to benchmark (default: "
                        + ("the config's benchmark.backbones, paper 3's" if paper == 3 else "paper 4's four candidates")
                        + "; --quick: MobileNetV2,MobileNet)")
    if paper == 3:
        parser.add_argument("--student-config", help="student config (default student.yaml; --quick: tiny_student.yaml)")
        parser.add_argument("--teachers", type=int, default=1,
                            help="distill from the N best benchmark runs (default 1; N > 1: an ensemble)")
    else:
        parser.add_argument("--attention-config", help="attention model config (default attention.yaml; "
                                                       "--quick: tiny_attention.yaml)")
        parser.add_argument("--benchmark", help="a finished benchmark folder (e.g. paper3's OUT/benchmark) to take "
                                                "the best candidate from, instead of benchmarking here")
    parser.add_argument("--quick", action="store_true",
                        help="tiny models, two epochs, sample data made in OUT/data (minutes)")
    add_set_arg(parser)


def _start(task, args, command, settings, data_default=None):
    """Check the options and the plan folder; write the quick sample. Returns (out, data, overrides).

    `data_default`: the data folder when neither --data nor --quick gives one (a benchmark's)."""
    from common.runner import say

    out = Path(args.out)
    if not args.data and not args.quick and not data_default:
        raise ConfigError(f"{command}: give --data DIR (the NWPU-RESISC45 folder), or --quick for sample data")
    data = Path(args.data or data_default or out / "data").resolve()
    overrides = [*(QUICK_OVERRIDES if args.quick else []), *(args.overrides or [])]
    papers.check_settings(out, {"command": f"rsic {command}", "data": str(data), "quick": bool(args.quick),
                                **settings, "overrides": overrides}, f"python -m rsic {command}")
    if args.quick and not args.data and not data_default and not (data.is_dir() and any(data.iterdir())):
        say(f"rsic: {task.sample(data, None)}")  # `python -m rsic sample`'s defaults: 5 classes x 40, 64x64
    return out, data, overrides


def _backbones(args, default, allowed):
    if args.backbones:
        return papers.parse_list(args.backbones, list(allowed), "--backbones")
    return list(QUICK_BACKBONES if args.quick else default)


def benchmark_steps(task, cfg, folder, names):
    """One step per backbone (train, score, export: `bench.benchmark_one`), then the table."""
    from rsic.models import get_backbone  # TensorFlow: not at parser build

    steps = []
    for name in names:
        spec = get_backbone(name)
        steps.append(papers.Step(f"benchmark {name}", "call", Path(folder) / name, output=bench.ROW_FILE,
                                 call=lambda run_dir, spec=spec: bench.benchmark_one(task, cfg, spec, run_dir),
                                 verb="training, scoring and exporting"))
    steps.append(papers.Step("benchmark table", "call", folder, output=bench.BENCHMARK_MD,
                             call=lambda run_dir: bench.write_benchmark(task, cfg, run_dir, names), verb="writing"))
    return steps


def benchmark_rows(folder, names=None):
    """The benchmark's rows: from its benchmark.json when `names` is None (a finished benchmark),
    else from the row files of the backbones `names` finished so far (in that order)."""
    folder = Path(folder)
    if names is None:
        return bench.read_benchmark_rows(folder, key="--benchmark")
    rows = [papers.read_json(folder / name / bench.ROW_FILE) for name in names]
    return [row for row in rows if row is not None]


def best_runs(folder, names, n):
    """The run directories of the `n` best benchmark backbones (validation accuracy, `bench.selection_score`; a tie: the smaller)."""
    ranked = bench.rank_rows(benchmark_rows(folder, names))
    if len(ranked) < n:
        raise RunDirError(f"{folder}: {len(ranked)} finished benchmark run(s), fewer than the {n} teachers asked "
                          "for (--teachers)")
    return [Path(folder) / row["backbone"] for row in ranked[:n]]


def _data_counts(task, cfg, run_dirs):
    """Examples per split: the first finished run's split.json, else the listed data set."""
    for run in run_dirs:
        counts = papers.split_counts(run)
        if counts:
            return counts
    return {"images": len(task.open_data(cfg).files)}


# ---------------------------------------------------------------------------------------------
# paper 3


def run_paper3(task, args, *, max_steps=None):
    """`python -m rsic paper3`: benchmark -> teacher(s) -> distilled student -> int8. `max_steps`
    stops after that many steps that did work (a test hook). Returns True when finished."""
    from common.runner import load_task_config, say
    from rsic.models import BACKBONES, get_backbone  # TensorFlow: not at parser build

    bench_config = args.config or (QUICK_BENCH if args.quick else "paper3.yaml")
    student_config = args.student_config or (QUICK_STUDENT if args.quick else task.distill_config)
    probe = load_task_config(task, bench_config, [*(QUICK_OVERRIDES if args.quick else []), *(args.overrides or [])])
    names = _backbones(args, probe["benchmark"]["backbones"], BACKBONES)
    if not 1 <= args.teachers <= len(names):
        raise ConfigError(f"--teachers: {args.teachers} is not between 1 and the {len(names)} benchmarked backbones")
    out, data, overrides = _start(task, args, "paper3", {
        "config": bench_config, "student_config": student_config, "backbones": names, "teachers": args.teachers})
    cfg = load_task_config(task, bench_config, overrides, data)
    cfg["benchmark"]["backbones"] = names
    student_cfg = load_task_config(task, student_config, overrides, data)
    bench.fetch_weights(cfg, [get_backbone(name) for name in names])
    bench.fetch_weights(student_cfg, [get_backbone(student_cfg["model"]["backbone"])])

    folder, student = out / "benchmark", out / "student"
    steps = [*benchmark_steps(task, cfg, folder, names),
             papers.Step("student from the best benchmark run(s)", "distill", student, config=student_cfg,
                         teacher=lambda: best_runs(folder, names, args.teachers)),
             papers.Step("student int8", "export", student),
             papers.Step("student int8 scores", "evaluate", student, options={"tflite": True}, output=INT8_METRICS)]

    def write_tables():
        content = paper3_table(out, data, names, args.teachers, _data_counts(task, cfg, [folder / n for n in names]),
                               quick=bool(args.quick))
        papers.write_table(out, "paper3", content, paper3_markdown(content))

    with bench.reuse_listing(task, cfg):  # every image is listed and checked once, not once per run
        finished = papers.run_plan(task, steps, write_tables, max_steps=max_steps)
    if finished:
        say(f"rsic: paper 3 done -> {out / 'paper3.md'}, {out / 'paper3.json'}")
    return finished


def _bench_row(row, folder):
    """A benchmark row of the paper tables (accuracies as fractions, paper 3's beside)."""
    from rsic.models import BACKBONES  # TensorFlow: not at parser build

    spec = BACKBONES[row["backbone"]]
    return {"model": row["backbone"], "kind": "benchmark", "run": str(Path(folder) / row["backbone"]),
            "params": row.get("params"), "accuracy": row.get("accuracy"), "int8_accuracy": row.get("int8_accuracy"),
            "tflite_bytes": row.get("tflite_bytes"), "latency_ms": row.get("latency_ms"),
            "published_accuracy": _fraction(spec.paper_accuracy), "note": row.get("note", "")}


def _planned(name, folder, kind="benchmark"):
    """The row of a backbone not benchmarked yet."""
    from rsic.models import BACKBONES  # TensorFlow: not at parser build

    spec = BACKBONES[name]
    return {"model": name, "kind": kind, "run": str(Path(folder) / name), "params": None, "accuracy": None,
            "int8_accuracy": None, "tflite_bytes": None, "latency_ms": None,
            "published_accuracy": _fraction(spec.paper_accuracy), "note": "not run yet"}


def _fraction(percent):
    """Paper 3's accuracy in % (rsic.models.BACKBONES) as a fraction: 90.8 -> 0.908."""

    return None if percent is None else round(percent / 100, 4)


def _export_cells(run):
    """int8 columns of an exported run: size, latency, int8 accuracy on the whole reported split."""
    report = papers.read_json(Path(run) / "export_report.json") or {}
    int8 = papers.read_json(Path(run) / INT8_METRICS) or {}
    return {"params": report.get("params"), "tflite_bytes": report.get("tflite_bytes"),
            "latency_ms": report.get("latency_ms"), "int8_accuracy": int8.get("accuracy"),
            "quantization": report.get("quantization"), "agreement": report.get("agreement")}


def _float_and_int8_rows(name, kind, run, metrics, exported, **extra):
    """The two table rows of one trained and exported run: its float model (`metrics`, the run's
    metrics.json) and its int8 TFLite file (`exported`, `_export_cells`); `extra` goes on the float row."""
    return [
        {"model": f"{name} (float)", "kind": kind, "run": str(run), "params": exported["params"],
         "accuracy": metrics.get("accuracy"), "int8_accuracy": None, "tflite_bytes": None, "latency_ms": None,
         "published_accuracy": None, **extra, "note": ""},
        {"model": f"{name} (int8 TFLite)", "kind": f"{kind} int8", "run": str(run), **exported,
         "accuracy": exported["int8_accuracy"], "int8_accuracy": None, "published_accuracy": None,
         "note": "int8 accuracy on the whole test split"},
    ]


def paper3_table(out, data, names, n_teachers, counts, *, quick):
    """Paper 3's table as JSON (accuracies as fractions), built from the run directories."""
    from rsic.models import BACKBONES  # TensorFlow: not at parser build

    folder, student = Path(out) / "benchmark", Path(out) / "student"
    done = {row["backbone"]: row for row in benchmark_rows(folder, names)}
    rows = [_bench_row(done[name], folder) if name in done else _planned(name, folder) for name in names]
    # The teachers the student was distilled from (its split.json), else the ones it will be.
    split = papers.read_json(student / "split.json") or {}
    teachers = [Path(path).name for path in split.get("teachers", [])]
    if not teachers and len(bench.rank_rows(list(done.values()))) >= n_teachers:
        teachers = [Path(run).name for run in best_runs(folder, names, n_teachers)]
    metrics = papers.read_json(student / "metrics.json") or {}
    for name in teachers:
        row = dict(_bench_row(done[name], folder) if name in done else _planned(name, folder))
        rows.append({**row, "model": f"teacher: {name}", "kind": "teacher"})
    if len(teachers) > 1:
        rows.append({**_planned(teachers[0], folder, "teacher ensemble"), "published_accuracy": None, "note": "",
                     "model": f"teacher ensemble ({len(teachers)}, mean probabilities)", "run": None,
                     "accuracy": metrics.get("teacher_accuracy")})
    exported = _export_cells(student)
    rows += _float_and_int8_rows("student", "student", student, metrics, exported,
                                 teacher_agreement=metrics.get("teacher_agreement"))
    return {
        "paper": PAPER3,
        "table": "backbone benchmark -> best run(s) as teacher(s) -> distilled student -> int8 (test accuracy, "
                 "fractions)",
        "quick": quick,
        "data": {"path": str(data), "examples_per_split": counts, "reported_split": "test"},
        "rows": rows,
        "teachers": teachers,
        "published": {"benchmark": {name: _fraction(BACKBONES[name].paper_accuracy) for name in names
                                    if BACKBONES[name].paper_accuracy is not None},
                      "student": None, "earlier_result": EARLIER},
        "best": bench._best_entry(list(done.values())),
    }


def _row_cells(row):
    size = f"{row['tflite_bytes'] / 1e6:.2f}" if row.get("tflite_bytes") else "-"
    latency = f"{row['latency_ms']:.1f}" if row.get("latency_ms") is not None else "-"
    params = f"{row['params'] / 1e6:.2f}M" if row.get("params") else "-"
    return [row["model"], params, papers.percent(row["accuracy"]), papers.percent(row.get("published_accuracy")),
            papers.percent(row.get("int8_accuracy")), size, latency, row.get("note") or ""]


HEADER = ["model", "params", "accuracy", "paper 3", "int8 accuracy", "int8 MB", "int8 ms", "note"]


def _data_line(content):
    d = content["data"]
    counts = ", ".join(f"{name} {n:,}" for name, n in d["examples_per_split"].items())
    return f"Data: `{d['path']}` ({counts} images); scores on the {d['reported_split']} split, in percent."


def _quick_lines(content):
    if not content["quick"]:
        return []
    return ["**--quick**: tiny models from scratch, two epochs, sample data: this shows the machinery, not the "
            "papers' numbers.", ""]


def paper3_markdown(content):
    """Paper 3's table for people: percent, paper 3's accuracies beside."""
    e = content["published"]["earlier_result"]
    lines = [f"# Paper 3: light-weight scene classification with teacher-student ({content['paper']})", "",
             _data_line(content) + " `paper 3`: the published NWPU-RESISC45 accuracy (../shared/docs/PAPERS.md; "
             "20% of each class for training).", "", *_quick_lines(content),
             papers.markdown_table(HEADER, [_row_cells(row) for row in content["rows"]]), ""]
    if content["teachers"]:
        lines.append(f"Teacher(s): the {len(content['teachers'])} best benchmark run(s) by validation accuracy: "
                     f"{', '.join(content['teachers'])}" + (" (an ensemble: mean probabilities)."
                                                           if len(content["teachers"]) > 1 else "."))
    student = next(row for row in content["rows"] if row["kind"] == "student")
    if student.get("teacher_agreement") is not None:
        lines.append(f"The student agrees with its teacher(s) on {100 * student['teacher_agreement']:.1f}% of the "
                     "test images.")
    lines += ["Paper 3 publishes no accuracy for its distilled student in ../shared/docs/PAPERS.md, so the student "
              f"rows have none beside them. Reference: the group's earlier NWPU-RESISC45 result, "
              f"{papers.percent(e['train_10'])}% (10% training) and {papers.percent(e['train_20'])}% (20%)."]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# paper 4


def run_paper4(task, args, *, max_steps=None):
    """`python -m rsic paper4`: benchmark of the candidates -> attention model on the best -> int8.
    `max_steps` stops after that many steps that did work (a test hook). Returns True when finished."""
    from common.runner import load_task_config, say
    from rsic.models import get_backbone  # TensorFlow: not at parser build

    bench_config = args.config or (QUICK_BENCH if args.quick else "paper3.yaml")
    attention_config = args.attention_config or (QUICK_ATTENTION if args.quick else "attention.yaml")
    settings, benchmark_data = {"config": bench_config, "attention_config": attention_config}, None
    if args.benchmark:
        folder, names = Path(args.benchmark).resolve(), None
        rows = benchmark_rows(folder)  # ConfigError when it is not a finished benchmark
        if not bench.rank_rows(rows, bench.PAPER4_BACKBONES):
            raise ConfigError(f"--benchmark: {folder / bench.BENCHMARK_JSON} holds none of paper 4's candidates "
                              f"({', '.join(bench.PAPER4_BACKBONES)})")
        settings["benchmark"] = str(folder)
        content = papers.read_json(folder / bench.BENCHMARK_JSON)
        benchmark_data = content.get("data") if isinstance(content, dict) and not args.data else None
    else:
        names = _backbones(args, bench.PAPER4_BACKBONES, bench.PAPER4_BACKBONES)
        settings["backbones"] = names
    out, data, overrides = _start(task, args, "paper4", settings, benchmark_data)
    if names is not None:
        folder = out / "benchmark"
    cfg = load_task_config(task, bench_config, overrides, data)
    if names is not None:
        cfg["benchmark"]["backbones"] = names
        bench.fetch_weights(cfg, [get_backbone(name) for name in names])
    load_task_config(task, attention_config, overrides, data)  # its keys checked before anything trains
    attention = out / "attention"

    def attention_cfg():
        """attention.yaml on the best candidate of the benchmark (alpha and input size made legal for it)."""
        loaded = load_task_config(task, attention_config, [*overrides, f"model.backbone=best:{folder}"], data)
        return bench._run_config(loaded, get_backbone(loaded["model"]["backbone"]))[0]

    steps = [*(benchmark_steps(task, cfg, folder, names) if names is not None else []),
             papers.Step("attention model on the best candidate", "train", attention, config=attention_cfg),
             papers.Step("attention int8", "export", attention),
             papers.Step("attention int8 scores", "evaluate", attention, options={"tflite": True}, output=INT8_METRICS)]

    def write_tables():
        runs = [attention] + [folder / n for n in (names or [])]
        content = paper4_table(out, data, folder, names, _data_counts(task, cfg, runs), quick=bool(args.quick))
        papers.write_table(out, "paper4", content, paper4_markdown(content))

    with bench.reuse_listing(task, cfg):
        finished = papers.run_plan(task, steps, write_tables, max_steps=max_steps)
    if finished:
        say(f"rsic: paper 4 done -> {out / 'paper4.md'}, {out / 'paper4.json'}")
    return finished


def paper4_table(out, data, folder, names, counts, *, quick):
    """Paper 4's table as JSON (accuracies as fractions, sizes in bytes), from the run directories."""
    from common.config import read_saved_config

    attention = Path(out) / "attention"
    done = {row["backbone"]: row for row in benchmark_rows(folder, names)
            if names is not None or row["backbone"] in bench.PAPER4_BACKBONES}
    planned = names if names is not None else list(done)  # the benchmark's own order
    rows = []
    for name in planned:
        row = _bench_row(done[name], folder) if name in done else _planned(name, folder)
        row["kind"] = "candidate"
        row["under_5m"] = None if row["params"] is None else row["params"] < PAPER4_PUBLISHED["max_params"]
        rows.append(row)
    backbone = None
    if (attention / "config.yaml").is_file():
        backbone = read_saved_config(attention / "config.yaml")["model"]["backbone"]
    metrics = papers.read_json(attention / "metrics.json") or {}
    exported = _export_cells(attention)
    model_file = attention / "model.keras"
    float_bytes = model_file.stat().st_size if model_file.is_file() else None
    name = f"attention on {backbone}" if backbone else "attention model"
    rows += _float_and_int8_rows(name, "attention", attention, metrics, exported)
    budget = PAPER4_PUBLISHED["size_budget_mb"]
    report = papers.read_json(attention / "export_report.json") or {}
    budget = float(report.get("size_budget_mb", budget))
    int8_bytes = exported["tflite_bytes"]
    return {
        "paper": PAPER4,
        "table": "paper 4's candidates benchmarked -> attention model on the best -> int8 within the size budget "
                 "(test accuracy, fractions; sizes in bytes)",
        "quick": quick,
        "data": {"path": str(data), "examples_per_split": counts, "reported_split": "test"},
        "benchmark": str(folder),
        "rows": rows,
        "best_candidate": backbone or (bench._best_entry(list(done.values()), bench.PAPER4_BACKBONES) or {}).get(
            "backbone"),
        "size": {"float_keras_bytes": float_bytes, "int8_tflite_bytes": int8_bytes, "budget_mb": budget,
                 "within_budget": None if int8_bytes is None else int8_bytes <= budget * 1e6},
        "published": {**PAPER4_PUBLISHED, "earlier_result": EARLIER},
    }


def paper4_markdown(content):
    """Paper 4's table for people: percent, sizes in MB, the 20 MB budget."""
    p, s = content["published"], content["size"]
    header = [*HEADER[:-1], "< 5M params", "note"]
    body = []
    for row in content["rows"]:
        cells = _row_cells(row)
        under = row.get("under_5m")
        body.append([*cells[:-1], "-" if under is None else ("yes" if under else "no"), cells[-1]])
    lines = [f"# Paper 4: robust low-complexity scene classification with attention ({content['paper']})", "",
             _data_line(content) + " Paper 4 publishes no accuracy in ../shared/docs/PAPERS.md; `paper 3` is "
             "paper 3's published accuracy of each candidate backbone.", "", *_quick_lines(content),
             papers.markdown_table(header, body), ""]
    if content["best_candidate"]:
        lines.append(f"Best candidate by validation accuracy in `{content['benchmark']}`: {content['best_candidate']} "
                     f"(paper 4: candidates under {p['max_params'] / 1e6:.0f}M parameters).")
    if s["int8_tflite_bytes"]:
        before = f"{s['float_keras_bytes'] / 1e6:.2f} MB" if s["float_keras_bytes"] else "-"
        lines.append(f"Size: {before} float Keras (model.keras) -> {s['int8_tflite_bytes'] / 1e6:.2f} MB int8 TFLite, "
                     f"{'within' if s['within_budget'] else 'OVER'} the {s['budget_mb']:g} MB budget "
                     f"(paper 4: at most {p['size_budget_mb']:g} MB).")
    e = p["earlier_result"]
    lines.append(f"Reference: the group's earlier NWPU-RESISC45 result, {papers.percent(e['train_10'])}% (10% "
                 f"training) and {papers.percent(e['train_20'])}% (20%).")
    return "\n".join(lines)
