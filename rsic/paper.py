"""The backbone benchmark (backbones trained under one config, exported to int8, ranked by
validation accuracy) and papers 3 and 4's tables built on it: `python -m rsic benchmark/paper3/
paper4`, each a plan of common.papers steps (resumable).

    B/<backbone>/            (a benchmark folder B) one `train` run per backbone, exported, and
                             benchmark_row.json, its row, written once the run is finished
    B/benchmark.json, .md    the table: the rows, the ranking, `best`, `best_paper4`
    R/settings.json          data folder, configs, backbones, --quick, --set (a rerun must match)
    R/data/                  --quick only: the sample data set (`python -m rsic sample`)
    R/benchmark/             the paper's benchmark folder B
    R/teacher/ (paper3)      the combined teacher of the --teachers best benchmark runs
                             (common/teacher.py; none for --teachers 1: the best run teaches)
    R/student_alone/         the student config trained alone (Table II's "EfficientNetB0 alone")
    R/student/ (paper3)      the distilled student: metrics.json (with teacher_accuracy, the
                             teacher's on the test split), model_int8.tflite,
                             export_report.json, metrics_int8.json
    R/student_6b/ ... _3b/   the cut students (model.cut_after), distilled the same way
                             (--repeats N: each of these R/<row>/seed_K, K < N, train.seed=K)
    R/paper3.md, .json       the tables with the published numbers beside, the data named
    R/paper4.md, .json
"""

import copy
import json
from functools import partial
from pathlib import Path

from common import papers
from common.errors import ConfigError, ExportError, RunDirError
from common.io import write_json, write_text
from rsic import bench
from rsic.bench import PAPER4_BACKBONES

# Each paper: its citation, what its table shows.
PAPERS = {3: ("Pham, Le, Ngo, Nguyen, Lampert, Schindler, McLoughlin, ISPA 2023 (arXiv 2302.13028)",
              "backbone benchmark -> best run(s) as teacher(s) -> distilled student -> int8 (test "
              "accuracy, fractions)"),
          4: ("Le, Pham, NVN, Nguyen, Trang, ICIIT 2022 (arXiv 2211.02820)",
              "paper 4's candidates benchmarked -> attention model on the best -> int8 within the "
              "size budget (test accuracy, fractions; sizes in bytes)")}
# docs/papers.md: paper 3's accuracies are on each backbone (rsic.models.BACKBONES,
# paper_accuracy); it gives no number for the distilled student. Paper 4: candidates under 5M
# parameters, the int8 model within 20 MB; no accuracy there. The group's earlier NWPU-RESISC45
# result is the reference line of both tables.
EARLIER = {"train_10": 0.926, "train_20": 0.947}
EARLIER_LINE = (f"Reference: the group's earlier NWPU-RESISC45 result, "
                f"{papers.percent(EARLIER['train_10'])}% (10% training) and "
                f"{papers.percent(EARLIER['train_20'])}% (20%).")
# --quick: tiny.yaml's MobileNetV2 / MobileNet (alpha 0.35, 64 px, from scratch: nothing is
# downloaded) for two epochs, int8 by post-training quantization, on the 5-class sample.
QUICK_BACKBONES = ["MobileNetV2", "MobileNet"]
QUICK_OVERRIDES = ["train.epochs=2", "train.verbose=0", "model.weights=null", "export.mode=ptq",
                   "export.calibration_examples=32"]
# The config options of paper3/paper4: (default, --quick default); None: task.distill_config.
CONFIGS = {"config": ("paper3.yaml", "tiny.yaml"), "student_config": (None, "tiny_student.yaml"),
           "teacher_config": ("teacher.yaml", "tiny_teacher.yaml")}
# Paper 3's Table II (docs/papers.md; NWPU-RESISC45, 20% training): accuracy %, params M per row.
TABLE2_PUBLISHED = {"teacher": (96.2, 280.8), "alone": (92.3, 4.7), "distilled": (94.8, 4.7),
                    "6B": (94.4, 3.0), "5B": (93.5, 0.93), "4B": (91.3, 0.37), "3B": (85.6, 0.11)}
# The cut students: the student's backbone up to a layer (`model.cut_after`). EfficientNetB0's are
# the paper's; the --quick student (MobileNetV2) is cut at the ends of its stages of the same
# depth (160, 96, 64 and 32 channels against B0's 192, 112, 80 and 40).
CUT_LAYERS = {"EfficientNetB0": {"6B": "block6d_add", "5B": "block5c_add", "4B": "block4c_add",
                                 "3B": "block3b_add"},
              "MobileNetV2": {"6B": "block_15_add", "5B": "block_12_add", "4B": "block_9_add",
                              "3B": "block_5_add"}}
CUTS = ("6B", "5B", "4B", "3B")
# Table II's rows besides the teacher and the distilled student (`--rows`).
OPTIONAL_ROWS = ("alone", *CUTS)
DATA = "the NWPU-RESISC45 folder"  # what --data names
BENCHMARK_JSON, ROW_FILE = "benchmark.json", "benchmark_row.json"
# A paper table row's numbers (None: not run yet); `note` and `published_accuracy` come after.
VALUES = ("params", "accuracy", "int8_accuracy", "tflite_bytes", "latency_ms")
HEADER = ["model", "params", "accuracy", "paper 3", "int8 accuracy", "int8 MB", "int8 ms", "note"]


def run_benchmark(task, cfg, out, *, overwrite=False):
    """`python -m rsic benchmark`: every backbone of `cfg["benchmark"]` into OUT/<backbone>/,
    then OUT/benchmark.json and .md (also rewritten after every backbone)."""
    from common.runner import need_data, say
    from rsic.models import get_backbone

    names = [get_backbone(name).name for name in cfg["benchmark"]["backbones"]]  # checked first
    fetch_weights(need_data(cfg), names)
    for name in names if overwrite else []:  # every backbone's step runs again, over its run
        (Path(out) / name / ROW_FILE).unlink(missing_ok=True)
    with bench.reuse_listing(task, cfg):
        papers.run_plan(task, benchmark_steps(task, cfg, out, names, overwrite), lambda: None)
    say(write_benchmark(cfg, out, names))


def benchmark_steps(task, cfg, folder, names, overwrite=False):
    """One step per backbone: `benchmark_one`, then FOLDER/benchmark.json and .md rewritten."""
    def call(name, run):
        benchmark_one(task, cfg, name, run, overwrite=overwrite)
        write_benchmark(cfg, folder, names)

    return [papers.Step(f"benchmark {name}", "call", Path(folder) / name, output=ROW_FILE,
                        call=partial(call, name), verb="training, scoring and exporting")
            for name in names]


def fetch_weights(cfg, names):
    """With `model.weights: imagenet`, the ImageNet weights of backbones `names` before the first
    training: an offline machine stops now (one line naming the file), not after hours of it."""
    if cfg["model"]["weights"] == "imagenet" and not cfg["model"]["weights_path"]:
        from rsic.models import fetch_imagenet_weights, get_backbone

        for name in names:
            model_cfg = run_config(cfg, name)[0]["model"]
            fetch_imagenet_weights(get_backbone(name), model_cfg["alpha"], model_cfg["input_size"])


def run_config(cfg, name):
    """(config of backbone `name`'s run, notes): `cfg` on it, alpha and input size made legal."""
    from rsic.models import get_backbone

    spec, run_cfg, notes = get_backbone(name), copy.deepcopy(cfg), []
    model_cfg = run_cfg["model"]
    model_cfg["backbone"] = spec.name
    if model_cfg["alpha"] != 1.0 and not spec.has_alpha:
        model_cfg["alpha"] = 1.0
        notes.append("alpha 1.0")
    if model_cfg["input_size"] < spec.min_size:
        model_cfg["input_size"] = spec.min_size
        notes.append(f"input {spec.min_size}")
    return run_cfg, notes


def benchmark_one(task, cfg, name, run, *, overwrite=False):
    """Train (or resume, or score), then export backbone `name` into `run`; write its row last
    (RUN/benchmark_row.json): backbone, input_size, params, macs, accuracy (test split),
    val_accuracy, int8_accuracy, tflite_bytes, latency_ms, paper_accuracy (paper 3, %), note.
    An export refused (over `export.size_budget_mb`) is noted in the row."""
    from common import runner
    from common.complexity import model_complexity
    from rsic.models import BACKBONES

    run_cfg, notes = run_config(cfg, name)
    if overwrite:
        runner.train(task, run_cfg, run, overwrite=True)
    elif (run / "model.keras").is_file() and (run / runner.METRICS_FILE).is_file():
        runner.say(f"rsic: {run}: finished run found, reusing it")
    else:  # resumes a killed run, scores a trained one that was stopped before its scores
        papers.run_step(task, papers.Step(name, "train", run, config=run_cfg))
    complexity = model_complexity(runner.keras_model(task, run))
    row = {"backbone": name, "input_size": run_cfg["model"]["input_size"],
           "params": complexity["params"], "macs": complexity["macs"],
           "accuracy": papers.read_json(run / runner.METRICS_FILE)["accuracy"],
           "val_accuracy": inner_val_accuracy(run),
           **dict.fromkeys(("int8_accuracy", "tflite_bytes", "latency_ms")),
           "paper_accuracy": BACKBONES[name].paper_accuracy, "note": ", ".join(notes)}
    if run_cfg["benchmark"]["export"]:
        exported = not overwrite and (run / runner.TFLITE_FILE).is_file()
        try:
            report = exported and papers.read_json(run / runner.REPORT_FILE)
            report = report or runner.export(task, run)
            row.update(int8_accuracy=report["tflite_metric"], tflite_bytes=report["tflite_bytes"],
                       latency_ms=report.get("latency_ms"))
        except ExportError as error:
            row["note"] = ", ".join(notes + [f"not exported: {str(error).split(': ', 1)[-1]}"])
            runner.say(f"rsic: {name}: {error}")
    write_json(run / ROW_FILE, row)


def inner_val_accuracy(run):
    """The run's inner validation accuracy at the epoch it kept (the best one), from its
    history.csv; None for a run that chose its epoch on the test split (`train.select_on:
    reported`) or has no history yet."""
    from common.train import read_history

    val = [v for v in read_history(run).get("val_accuracy", []) if v == v]  # NaN: a missing epoch
    inner = (papers.read_json(Path(run) / "split.json") or {}).get("selection_split") == "val"
    return max(val) if inner and val else None


def rank_rows(rows, candidates=None):
    """Benchmark rows best first, of the backbones `candidates` (None: all). A row's score is its
    inner validation accuracy when it has one, so that the reported test split never picks the
    best backbone or the teachers; else (runs trained with `train.select_on: reported`, or older
    benchmark files) its test accuracy. A tie goes to the smaller model."""
    def score(row):
        return row["val_accuracy"] if row.get("val_accuracy") is not None else row.get("accuracy")

    kept = [row for row in rows
            if score(row) is not None and (candidates is None or row["backbone"] in candidates)]
    return sorted(kept, key=lambda row: (-score(row), row.get("params") or 0))


def _best_entry(rows, candidates=None):
    ranked = rank_rows(rows, candidates)
    keys = ("backbone", "accuracy", "params", "paper_accuracy")
    return {key: ranked[0].get(key) for key in keys} if ranked else None


def benchmark_rows(folder, names):
    """The rows of the backbones `names` finished so far in `folder` (their row files, in order)."""
    rows = [papers.read_json(Path(folder) / name / ROW_FILE) for name in names]
    return [row for row in rows if row is not None]


def write_benchmark(cfg, folder, names):
    """FOLDER/benchmark.json (what was run, the rows, the ranking, `best`: the best row, and
    `best_paper4`: the best of paper 4's candidates, or None) and FOLDER/benchmark.md, from the row
    files of `names`. Returns the Markdown."""
    rows, model = benchmark_rows(folder, names), cfg["model"]
    write_json(Path(folder) / BENCHMARK_JSON, {
        "data": cfg["data"]["root"], "train_ratio": cfg["data"]["train_ratio"],
        "input_size": model["input_size"], "weights": model["weights"] or "none",
        "metric": "accuracy on the test split",
        "ranked_on": "inner validation accuracy (test accuracy where a run has none)",
        "rows": rows, "ranking": [row["backbone"] for row in rank_rows(rows)],
        "best": _best_entry(rows), "best_paper4": _best_entry(rows, PAPER4_BACKBONES)})
    text = benchmark_markdown(rows, cfg, folder)
    write_text(Path(folder) / "benchmark.md", text)
    return text


def read_benchmark_rows(folder, key="model.backbone"):
    """The rows of FOLDER/benchmark.json ({"rows": [...], ...}); ConfigError
    naming `key` when the folder holds no benchmark.json, or an unreadable one."""
    folder = Path(folder).expanduser()
    path = folder / BENCHMARK_JSON
    if not path.is_file():
        raise ConfigError(f"config key '{key}': {folder} is not a benchmark run (no "
                          f"{BENCHMARK_JSON}); run `python -m rsic benchmark --out {folder}` first")
    try:
        content = json.loads(path.read_text())
        rows = content["rows"]
        if not all(isinstance(row, dict) and "backbone" in row for row in rows):
            raise ValueError("a row without a backbone")
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"config key '{key}': {path}: not a benchmark table ({error})") from None
    return rows


def best_benchmarked(folder, candidates=PAPER4_BACKBONES, key="model.backbone"):
    """The best row (`rank_rows`) among `candidates` of the benchmark in `folder`; ConfigError
    naming `key` when it is no benchmark or holds none of them."""
    rows = read_benchmark_rows(folder, key)
    ranked = rank_rows(rows, candidates)
    if not ranked:
        have = ", ".join(row["backbone"] for row in rows) or "no rows"
        raise ConfigError(f"config key '{key}': {Path(folder).expanduser() / BENCHMARK_JSON} holds "
                          f"none of {', '.join(candidates)} (it has {have})")
    return ranked[0]


def benchmark_markdown(rows, cfg, out=None):
    """The benchmark rows as a Markdown table (accuracies in %, sizes in MB), then the best
    backbones; `out`: the benchmark folder, named in the `best:` hint (None: no hint)."""
    size = cfg["model"]["input_size"]
    weights = "ImageNet weights" if cfg["model"]["weights"] == "imagenet" else "from scratch"
    header = ["backbone", "params", "accuracy %", "int8 accuracy %", "int8 TFLite MB",
              "latency ms", "paper 3 %", "note"]
    pct = papers.percent
    body = [[row["backbone"], _number(row["params"], ".2f", 1e6) + "M", pct(row["accuracy"]),
             pct(row["int8_accuracy"]), _number(row["tflite_bytes"], ".2f", 1e6),
             _number(row["latency_ms"], ".1f"), _number(row["paper_accuracy"], ""), row["note"]]
            for row in rows]
    lines = [f"Backbones at {size}x{size}, {weights}, train ratio {cfg['data']['train_ratio']:g} "
             "of each class; accuracy on the test split. Paper 3 %: NWPU-RESISC45 accuracy "
             "reported in paper 3.", "",
             papers.markdown_table(header, body, ["---"] + ["---:"] * 6 + ["---"])]

    def named(entry):  # "EfficientNetB0 (92.1%; paper 3: 92.3%)"
        paper = "" if entry["paper_accuracy"] is None else f"; paper 3: {entry['paper_accuracy']}%"
        return f"{entry['backbone']} ({pct(entry['accuracy'])}%{paper})"

    best, best4 = _best_entry(rows), _best_entry(rows, PAPER4_BACKBONES)
    if best:
        lines += ["", f"Best: {named(best)}, by this run's validation accuracy (inner split; a "
                      "tie goes to the smaller model)."]
    if best4:
        hint = f" (`--set model.backbone=best:{out}` gives it to attention.yaml)" if out else ""
        lines.append(f"Best of paper 4's candidates ({', '.join(PAPER4_BACKBONES)}): "
                     f"{named(best4)}{hint}.")
    return "\n".join(lines) + "\n"


def _number(value, spec, scale=1):
    return "-" if value is None else f"{value / scale:{spec}}"


def add_arguments(parser, paper):
    """Options of `python -m rsic paper3` (paper=3) and `paper4` (paper=4)."""
    papers.add_arguments(parser, "NWPU-RESISC45 folder (one folder per class)",
                         "tiny models, two epochs, sample data made in OUT/data")
    parser.add_argument("--config",
                        help="the benchmark's config (default paper3.yaml; --quick: tiny.yaml)")
    default = ("the config's benchmark.backbones, paper 3's" if paper == 3
               else "paper 4's four candidates")
    parser.add_argument("--backbones", help=f"comma-separated backbones to benchmark (default: "
                                            f"{default}; --quick: MobileNetV2,MobileNet)")
    if paper == 3:
        parser.add_argument("--student-config", help="student config (default student.yaml; "
                            "--quick: tiny_student.yaml)")
        parser.add_argument("--teacher-config", help="combined teacher config (default "
                            "teacher.yaml; --quick: tiny_teacher.yaml)")
        parser.add_argument("--teachers", type=int, help="the teacher: the N best benchmark runs "
                            "combined (`rsic teacher`; default 3, the paper's, at most the "
                            "benchmarked ones; 1: the best run alone)")
        parser.add_argument("--rows", help="Table II's rows besides the teacher and the distilled "
                            "student, from " + ",".join(OPTIONAL_ROWS) + " (default all; 'none': "
                            "none); the cut students need model.cut_after")
        parser.add_argument("--repeats", type=int, default=1, help="Table II's runs with N "
                            "seeds (train.seed 0..N-1), mean +- std (the paper averaged 10)")
    else:
        parser.add_argument("--attention-config", help="Tables 2 and 3's config, on "
                            "EfficientNetB0 (default attention.yaml; --quick: tiny_paper4.yaml)")
        parser.add_argument("--benchmark", help="a finished benchmark folder (e.g. paper3's "
                            "OUT/benchmark): Table 1 from its candidates, instead of "
                            "benchmarking here")
        parser.add_argument("--repeats", type=int, default=1, help="Tables 2 and 3 with N seeds "
                            "(train.seed 0..N-1), mean +- std (the papers averaged 10)")
        parser.add_argument("--blocks", help="Table 3's rows to train, from 7,6-7,5-7,4-7,3-7 "
                            "(default all; --quick: 7,5-7)")


def best_runs(folder, names, n):
    """The run directories of the `n` best benchmark backbones (`rank_rows`)."""
    ranked = rank_rows(benchmark_rows(folder, names))
    if len(ranked) < n:
        raise RunDirError(f"{folder}: {len(ranked)} finished benchmark run(s), fewer than the {n} "
                          "teachers asked for (--teachers)")
    return [Path(folder) / row["backbone"] for row in ranked[:n]]


def run_paper3(task, args, *, max_steps=None):
    """`python -m rsic paper3`: the benchmark, the combined teacher of the best run(s), the
    students of Table II, the distilled student's int8 steps, and the tables. `max_steps` stops
    after that many steps that did work (a test hook). Returns True when finished."""
    from common.runner import load_task_config
    from rsic.models import BACKBONES  # TensorFlow: not at parser build

    settings = {key: getattr(args, key) or CONFIGS[key][bool(args.quick)] or task.distill_config
                for key in ("config", "student_config")}  # each one given, its default or --quick's
    # its config's backbones (a bad --set stops here, before OUT is made)
    probe = [*(QUICK_OVERRIDES if args.quick else []), *(args.overrides or [])]
    default = load_task_config(task, settings["config"], probe)["benchmark"]["backbones"]
    names = settings["backbones"] = (
        papers.parse_list(args.backbones, list(BACKBONES), "--backbones") if args.backbones
        else list(QUICK_BACKBONES if args.quick else default))
    teachers = args.teachers or min(3, len(names))
    if not 1 <= teachers <= len(names):
        raise ConfigError(f"--teachers: {teachers} is not between 1 and the "
                          f"{len(names)} benchmarked backbones")
    settings["teachers"] = teachers
    settings["teacher_config"] = (getattr(args, "teacher_config", None)
                                  or CONFIGS["teacher_config"][bool(args.quick)])
    rows = getattr(args, "rows", None)
    rows = [] if rows == "none" else papers.parse_list(rows, list(OPTIONAL_ROWS), "--rows") \
        if rows else list(OPTIONAL_ROWS)
    repeats = int(getattr(args, "repeats", 1) or 1)
    papers.repeat_runs("", repeats)  # a bad count stops here
    if rows != list(OPTIONAL_ROWS):
        settings["rows"] = rows
    if repeats != 1:
        settings["repeats"] = repeats
    out, data, overrides = papers.start(task, args, "paper3", DATA, QUICK_OVERRIDES, None,
                                        settings)  # --quick: 5 classes x 40 images
    folder, model = out / "benchmark", out / "student"
    cfg = load_task_config(task, settings["config"], overrides, data)
    cfg["benchmark"]["backbones"] = names
    fetch_weights(cfg, names)
    model_cfg = load_task_config(task, settings["student_config"], overrides, data)  # checked now
    fetch_weights(model_cfg, [model_cfg["model"]["backbone"]])
    teacher_cfg = load_task_config(task, settings["teacher_config"], overrides, data)
    table2 = paper3_steps(task, out, folder, names, teachers, model_cfg, teacher_cfg, rows, repeats)
    table = partial(paper3_table, task, out, names, teachers, model_cfg, rows, repeats)
    steps = [*benchmark_steps(task, cfg, folder, names), *table2,
             *papers.int8_steps(model.name, papers.repeat_runs(model, repeats)[0][0])]
    runs = [folder / name for name in names]  # examples per split: the first run trained

    def content():
        counts = next((counts for counts in map(papers.split_counts, runs) if counts), None)
        counts = counts or {"images": len(task.open_data(cfg).files)}
        return {"paper": PAPERS[3][0], "table": PAPERS[3][1], "quick": args.quick,
                "data": {"path": str(data), "examples_per_split": counts, "reported_split": "test"},
                **table()}

    with bench.reuse_listing(task, cfg):  # every image is listed and checked once, not once per run
        return papers.run_tables(task, steps, out, "paper3", content, paper3_markdown,
                                 "paper 3", max_steps=max_steps)




def _row(model, kind, run, note="", **values):
    """A row of the paper tables: the `VALUES` given, the others None."""
    return {"model": model, "kind": kind, "run": None if run is None else str(run),
            **dict.fromkeys(VALUES), "published_accuracy": None, **values, "note": note}


def _bench_row(name, folder, found, kind="benchmark", model=None):
    """A benchmark backbone's row (paper 3's accuracy beside); `found`: its benchmark row, or None
    when it has not run yet."""
    from rsic.models import BACKBONES  # TensorFlow: not at parser build

    paper, found = BACKBONES[name].paper_accuracy, found or {"note": "not run yet"}
    return _row(model or name, kind, Path(folder) / name, found.get("note", ""),
                **{key: found.get(key) for key in VALUES},
                published_accuracy=None if paper is None else round(paper / 100, 4))


def _float_and_int8_rows(name, kind, run, **extra):
    """The two rows of one trained and exported run: its float model (metrics.json; `extra` goes
    on that row) and its int8 TFLite file (size, latency, accuracy on the whole reported split)."""
    metrics, report, int8 = (papers.read_json(Path(run) / name) or {} for name in
                             ("metrics.json", "export_report.json", "metrics_int8.json"))
    return [_row(f"{name} (float)", kind, run, params=report.get("params"),
                 accuracy=metrics.get("accuracy"), **extra),
            _row(f"{name} (int8 TFLite)", f"{kind} int8", run,
                 "int8 accuracy on the whole test split", params=report.get("params"),
                 tflite_bytes=report.get("tflite_bytes"), latency_ms=report.get("latency_ms"),
                 accuracy=int8.get("accuracy"), quantization=report.get("quantization"),
                 agreement=report.get("agreement"))]


def _cut_layers(task, student_cfg):
    """({cut: layer} of the student's backbone, why the cut rows do not run or "")."""
    backbone = student_cfg["model"]["backbone"]
    if "cut_after" not in task.defaults["model"]:
        return {}, "not run: this build has no model.cut_after"
    if backbone not in CUT_LAYERS:
        return {}, f"not run: no cut layers known for {backbone} ({', '.join(CUT_LAYERS)} have)"
    return CUT_LAYERS[backbone], ""


def _table2_runs(out, rows, repeats):
    """{Table II row key: [(run directory, seed), ...]} (`papers.repeat_runs`)."""
    out, cuts = Path(out), [cut for cut in CUTS if cut in rows]
    folders = {"teacher": out / "teacher", "alone": out / "student_alone",
               "distilled": out / "student", **{cut: out / f"student_{cut.lower()}" for cut in cuts}}
    return {key: papers.repeat_runs(folder, repeats) for key, folder in folders.items()}


def _combined_teacher(task, cfg, folder, names, n_teachers, run):
    """A call step: the combined teacher of the `n_teachers` best benchmark runs into `run`
    (a killed one resumes with its cached embeddings; a trained one is scored)."""
    from common import runner
    from common import teacher as combined

    if (run / "model.keras").is_file():
        runner.evaluate(task, run)
        return
    resolved = combined.teacher_config(task, cfg, best_runs(folder, names, n_teachers))
    combined.train_teacher(task, resolved, run, resume=(run / "config.yaml").is_file())


def paper3_steps(task, out, folder, names, n_teachers, student_cfg, teacher_cfg, rows, repeats):
    """Table II's steps, for each seed: the combined teacher (none for one teacher: the best run
    teaches), the student alone, distilled, and the cut students distilled (those of `rows`, the
    `OPTIONAL_ROWS` to run, that the student's backbone has: `_cut_layers`)."""
    from common.config import apply_override

    layers, _ = _cut_layers(task, student_cfg)
    runs, steps = _table2_runs(out, rows, repeats), []
    cuts = [cut for cut in CUTS if cut in rows]
    for k in range(repeats):
        seed = runs["distilled"][k][1]
        tag = "" if seed is None else f" (seed {seed})"
        student = papers.seeded(student_cfg, seed, task.defaults)
        teacher = lambda: best_runs(folder, names, 1)  # noqa: E731  (resolved at its turn)
        if n_teachers > 1:
            teacher = runs["teacher"][k][0]
            steps.append(papers.Step(
                f"combined teacher of the {n_teachers} best{tag}", "call", teacher,
                output="metrics.json", verb="combining",
                call=partial(_combined_teacher, task, papers.seeded(teacher_cfg, seed, task.defaults),
                             folder, names, n_teachers)))
        if "alone" in rows:
            steps.append(papers.Step(f"student alone{tag}", "train", runs["alone"][k][0],
                                     config=student))
        steps.append(papers.Step(f"student distilled{tag}", "distill", runs["distilled"][k][0],
                                 config=student, teacher=teacher))
        steps += [papers.Step(f"student -{cut} distilled{tag}", "distill", runs[cut][k][0],
                              config=apply_override(student, f"model.cut_after={layers[cut]}",
                                                    task.defaults), teacher=teacher)
                  for cut in cuts if cut in layers]
    return steps


def _table2_row(model, kind, runs, key, note="", **extra):
    """A Table II row over the runs of its seeds: accuracy mean (std when repeated), the
    parameters of its model file (read without loading it), the published pair beside."""
    from common.model_files import saved_param_count

    runs = [Path(run) for run in runs]
    scores = papers.mean_over(runs, lambda run: (papers.read_json(run / "metrics.json") or {})
                              .get("accuracy"))
    params = next((saved_param_count(run / "model.keras") for run in runs
                   if (run / "model.keras").is_file()), None)
    published_accuracy, published_params = TABLE2_PUBLISHED[key]
    if scores is None:
        note = note or "not run yet"
    elif len(runs) > 1:
        note = ", ".join(filter(None, [note, f"mean ± std of {scores['n']} of {len(runs)} seeds"]))
    run = None if not runs else runs[0] if len(runs) == 1 else runs[0].parent
    return _row(model, kind, run, note, params=params,
                accuracy=scores and scores["mean"],
                accuracy_std=scores["std"] if scores and len(runs) > 1 else None,
                published_accuracy=round(published_accuracy / 100, 4),
                published_params=int(published_params * 1e6), **extra)


def paper3_table(task, out, names, n_teachers, student_cfg, rows=OPTIONAL_ROWS, repeats=1):
    """Paper 3's tables (JSON entries after the data), built from the run directories: `rows`,
    Table I (the benchmark), and `table2`, Table II (teacher, student alone, distilled, its int8
    file, the cut students), each with its published numbers."""
    from common.config import read_saved_config

    out = Path(out)
    folder, runs, selected = out / "benchmark", _table2_runs(out, rows, repeats), rows
    done = {row["backbone"]: row for row in benchmark_rows(folder, names)}
    rows = [_bench_row(name, folder, done.get(name)) for name in names]
    ranked = [row["backbone"] for row in rank_rows(list(done.values()))]
    first_teacher = runs["teacher"][0][0]
    if (first_teacher / "config.yaml").is_file():  # the members it combined, best first
        teachers = [Path(m).name for m in read_saved_config(first_teacher / "config.yaml")
                    ["teacher"]["members"]]
    else:
        teachers = ranked[:n_teachers] if len(ranked) >= n_teachers else []
    backbone, table2 = student_cfg["model"]["backbone"], []
    if n_teachers > 1:
        table2.append(_table2_row(f"teacher: {' + '.join(teachers) or f'{n_teachers} best'} "
                                  "combined", "teacher", [run for run, _ in runs["teacher"]],
                                  "teacher"))
    else:
        table2.append(_table2_row(f"teacher: {teachers[0] if teachers else 'the best run'}",
                                  "teacher", [folder / name for name in teachers], "teacher",
                                  "one network (--teachers 1), not the paper's combination"))
    distilled = [run for run, _ in runs["distilled"]]
    metrics = papers.read_json(distilled[0] / "metrics.json") or {}
    if "alone" in selected:
        table2.append(_table2_row(f"{backbone} alone", "student alone",
                                  [run for run, _ in runs["alone"]], "alone"))
    table2 += [_table2_row(f"{backbone} + distillation", "student", distilled, "distilled",
                           teacher_agreement=metrics.get("teacher_agreement")),
               _float_and_int8_rows("student", "student", distilled[0])[1]]
    layers, why = _cut_layers(task, student_cfg)
    for cut in CUTS:
        if cut not in selected:
            continue
        name = f"{backbone}-{cut}" + (f" (cut after {layers[cut]})" if cut in layers else "")
        table2.append(_table2_row(name, "cut student", [run for run, _ in runs[cut]]
                                  if cut in layers else [], cut, "" if cut in layers else why))
    published = {row["model"]: row["published_accuracy"] for row in rows
                 if row["published_accuracy"] is not None}
    return {"teachers": teachers, "best": _best_entry(list(done.values())), "repeats": repeats,
            "published": {"benchmark": published, "table2": TABLE2_PUBLISHED,
                          "earlier_result": EARLIER},
            "rows": rows, "table2": table2}


def _cells(row):
    return [row["model"], _number(row["params"], ".2f", 1e6) + "M" if row["params"] else "-",
            papers.percent(row["accuracy"]), papers.percent(row["published_accuracy"]),
            papers.percent(row["int8_accuracy"]), _number(row["tflite_bytes"], ".2f", 1e6),
            _number(row["latency_ms"], ".1f"), row["note"]]


def _page(content, title, intro, header, body, notes):
    """A paper 3 or 4 page: the data line before `intro`."""
    d = content["data"]
    counts = ", ".join(f"{name} {n:,}" for name, n in d["examples_per_split"].items())
    intro = (f"Data: `{d['path']}` ({counts} images); scores on the {d['reported_split']} split, "
             f"in percent. {intro}")
    return papers.page(content, title, intro, "tiny models from scratch, two epochs, sample data",
                       header, body, notes, whose="papers'")


def paper3_markdown(content):
    """Paper 3's tables for people: percent, paper 3's accuracies and parameters beside."""
    notes, teachers = [], content["teachers"]
    if teachers:
        how = " (fused: `rsic teacher`)" if len(teachers) > 1 else ""
        notes.append(f"Teacher: the {len(teachers)} best benchmark run(s) by validation "
                     f"accuracy: {', '.join(teachers)}{how}.")
    student = next(row for row in content["table2"] if row["kind"] == "student")
    if student.get("teacher_agreement") is not None:
        notes.append(f"The distilled student agrees with its teacher on "
                     f"{100 * student['teacher_agreement']:.1f}% of the test images.")
    notes.append(EARLIER_LINE)
    repeats = content.get("repeats", 1)
    body = [[row["model"], _number(row["params"], ".2f", 1e6) + "M" if row["params"] else "-",
             papers.percent(row["accuracy"], row.get("accuracy_std")),
             papers.percent(row["published_accuracy"]),
             _number(row.get("published_params"), ".2f", 1e6) + "M"
             if row.get("published_params") else "-",
             _number(row["tflite_bytes"], ".2f", 1e6), row["note"]] for row in content["table2"]]
    table2 = ["", "## Table II: teacher and students", "",
              "Paper 3's Table II: the combined teacher, the student alone, distilled (cross-entropy "
              "+ MSE to the teacher's fused embedding) and cut after a block (-6B .. -3B); "
              + (f"mean ± std of {repeats} seeds; " if repeats > 1 else "")
              + "`paper 3`: its accuracy and parameters.", "",
              papers.markdown_table(["model", "params", "accuracy", "paper 3", "paper 3 params",
                                     "int8 MB", "note"], body,
                                    ["---"] + ["---:"] * 5 + ["---"])]
    return _page(content, "Paper 3: light-weight scene classification with teacher-student",
                 "Table I, the benchmark; `paper 3`: the published NWPU-RESISC45 accuracy "
                 "(docs/papers.md; 20% of each class for training).", HEADER,
                 [_cells(row) for row in content["rows"]], [*notes, *table2])


# ---------------------------------------------------------------------------------------------
# Paper 4's tables (`python -m rsic paper4`): Table 1, its four candidates benchmarked; Table 2,
# the attention form on EfficientNetB0's blocks 5-7; Table 3, which blocks feed the tri-plane
# attention; then the chosen model in int8 against the 20 MB budget.
#
#     R/benchmark/<candidate>/   Table 1 (the benchmark folder; or --benchmark DIR's)
#     R/se/, R/cbam/             Table 2's SE and CBAM rows (blocks 5-7)
#     R/triplane/                Table 2's tri-plane row = Table 3's blocks 5-7 row (trained once)
#     R/blocks_7/, _6-7/, _4-7/, _3-7/   Table 3's other rows
#                                (--repeats N: each R/<row>/seed_K, K < N, trained with train.seed=K)
#     R/chosen.json              the row exported: the best of Tables 2 and 3 by validation accuracy
#     R/<row>/[seed_0/]model_int8.tflite, export_report.json, metrics_int8.json   its int8 model

# PAPERS.md section 4 (NWPU-RESISC45, 20% of each class for training). Table 1: accuracy %,
# parameters (millions), MB (the float32 model: 4 bytes a parameter).
PAPER4_TABLE1 = {"MobileNet": (90.2, 3.7, 14.8), "MobileNetV2": (90.9, 2.9, 11.6),
                 "NASNetMobile": (91.7, 4.8, 19.2), "EfficientNetB0": (92.0, 4.6, 18.4)}
# Table 2: the attention form on blocks 5-7 -> (accuracy %, parameters in millions; the paper
# gives no exact counts here).
PAPER4_TABLE2 = {"se": (92.1, 10.4), "cbam": (92.3, 6.7), "triplane": (93.8, 9.4)}
# Table 3: the blocks whose maps feed the tri-plane attention -> (EfficientNetB0 layers, accuracy
# %, exact parameters at 246 px and 45 classes).
_BLOCKS_5_7 = ["block5c_add", "block6d_add", "top_activation"]
PAPER4_TABLE3 = {"7": (_BLOCKS_5_7[2:], 93.1, 6_047_064),
                 "6-7": (_BLOCKS_5_7[1:], 93.0, 7_612_640),
                 "5-7": (_BLOCKS_5_7, 93.8, 9_505_896),
                 "4-7": (["block4c_add", *_BLOCKS_5_7], 92.8, 11_235_312),
                 "3-7": (["block3b_add", "block4c_add", *_BLOCKS_5_7], 92.5, 13_373_815)}
# The chosen model: 37.6 MB (float) -> 9.4 MB (8-bit), within a 20 MB budget.
PAPER4_SIZE = {"float_mb": 37.6, "int8_mb": 9.4, "budget_mb": 20.0}
# The configs of paper4: (default, --quick default). Table 1 on `config` (the benchmark), Tables 2
# and 3 on `attention_config` (its backbone must be EfficientNetB0: Table 3 names its blocks).
PAPER4_CONFIGS = {"config": ("paper3.yaml", "tiny.yaml"),
                  "attention_config": ("attention.yaml", "tiny_paper4.yaml")}
# The run folder of each row of Tables 2 and 3: form -> folder, blocks -> folder.
PAPER4_FORM_RUNS = {"se": "se", "cbam": "cbam", "triplane": "triplane"}
PAPER4_BLOCK_RUNS = {"7": "blocks_7", "6-7": "blocks_6-7", "5-7": "triplane",
                     "4-7": "blocks_4-7", "3-7": "blocks_3-7"}
# --quick trains Table 3's blocks 7 and 5-7 rows (5-7 is Table 2's tri-plane row): an EfficientNetB0
# run costs about 40 s on 2 shared cores (most of it building and tracing the graph); all seven rows
# took --quick to 6.5 minutes, five to 5.4.
PAPER4_QUICK_BLOCKS = ("7", "5-7")
PAPER4_LEFT_OUT = "left out (--blocks)"
CHOSEN_FILE = "chosen.json"


def paper4_runs(out, repeats=1, blocks=tuple(PAPER4_TABLE3)):
    """{run folder name: [(run directory, seed), ...]} of Tables 2 and 3 (`papers.repeat_runs`)
    with Table 3's rows `blocks`, each folder once (the tri-plane row of Table 2 is Table 3's
    blocks 5-7 row)."""
    names = dict.fromkeys([*PAPER4_FORM_RUNS.values(),
                           *(PAPER4_BLOCK_RUNS[row] for row in blocks)])
    return {name: papers.repeat_runs(Path(out) / name, repeats) for name in names}


def paper4_row_config(task, cfg, name, seed=None):
    """The config of run folder `name` (PAPER4_FORM_RUNS / PAPER4_BLOCK_RUNS): `cfg` with its
    attention form and layers, and `train.seed=seed` (None: the config's)."""
    from common.config import apply_override

    form = next((form for form, run in PAPER4_FORM_RUNS.items() if run == name), "triplane")
    blocks = next((blocks for blocks, run in PAPER4_BLOCK_RUNS.items() if run == name), "5-7")
    for item in (f"model.attention.form={form}",
                 f"model.attention.layers=[{','.join(PAPER4_TABLE3[blocks][0])}]"):
        cfg = apply_override(cfg, item, task.defaults)
    return papers.seeded(cfg, seed, task.defaults)


def _mean_score(runs):
    """(inner validation accuracy, else test accuracy) of a row: mean over its seeds' runs."""
    scores = papers.mean_over(runs, inner_val_accuracy)
    scores = scores or papers.mean_over(
        runs, lambda run: (papers.read_json(run / "metrics.json") or {}).get("accuracy"))
    return scores and scores["mean"]


def choose_paper4_model(runs, out):
    """Write OUT/chosen.json: the row of Tables 2 and 3 (run folder name) with the best mean
    validation accuracy (inner split; the test accuracy for runs without one), a tie to the
    smaller model, and its first seed's run, which `paper4` exports."""
    from common.model_files import saved_param_count

    scored = {name: (_mean_score([run for run, _ in seeds]),
                     saved_param_count(seeds[0][0] / "model.keras")) for name, seeds in runs.items()}
    ranked = sorted((name for name in scored if scored[name][0] is not None),
                    key=lambda name: (-scored[name][0], scored[name][1] or 0))
    if not ranked:
        raise RunDirError(f"{out}: no finished run of Tables 2 and 3 to choose from")
    best = ranked[0]
    write_json(Path(out) / CHOSEN_FILE, {
        "row": best, "run": str(runs[best][0][0].relative_to(out)),
        "ranked_on": "mean inner validation accuracy (test accuracy where a run has none)",
        "scores": {name: scored[name][0] for name in ranked}})


def chosen_paper4_run(out):
    """The run directory OUT/chosen.json names (`choose_paper4_model`)."""
    chosen = papers.read_json(Path(out) / CHOSEN_FILE)
    if chosen is None:
        raise RunDirError(f"{Path(out) / CHOSEN_FILE}: not written yet")
    return Path(out) / chosen["run"]


def run_paper4(task, args, *, max_steps=None):
    """`python -m rsic paper4`: Table 1 (paper 4's candidates benchmarked, or --benchmark DIR's),
    Tables 2 and 3 (attention config with each form and each block choice, --repeats seeds each),
    the chosen model exported to int8 and scored; OUT/paper4.md and .json rewritten after every
    step. `max_steps` stops after that many steps that did work (a test hook). Returns True when
    finished."""
    from common.runner import load_task_config

    settings = {key: getattr(args, key) or PAPER4_CONFIGS[key][bool(args.quick)]
                for key in PAPER4_CONFIGS}
    repeats = int(args.repeats)
    papers.repeat_runs(".", repeats)  # a count below 1: stop now
    names, folder, data_default = None, None, None
    if args.benchmark:
        folder = Path(args.benchmark).resolve()
        best_benchmarked(folder, key="--benchmark")  # finished, with a candidate; else stop
        settings["benchmark"] = str(folder)
        content = papers.read_json(folder / BENCHMARK_JSON)
        data_default = content.get("data") if isinstance(content, dict) else None
    else:
        names = settings["backbones"] = (
            papers.parse_list(args.backbones, list(PAPER4_BACKBONES), "--backbones")
            if args.backbones else list(QUICK_BACKBONES if args.quick else PAPER4_BACKBONES))
    blocks = (papers.parse_list(args.blocks, list(PAPER4_TABLE3), "--blocks") if args.blocks
              else list(PAPER4_QUICK_BLOCKS if args.quick else PAPER4_TABLE3))
    settings.update(repeats=repeats, blocks=blocks)
    out, data, overrides = papers.start(task, args, "paper4", DATA, QUICK_OVERRIDES, None,
                                        settings, data_default)  # --quick: 5 classes x 40 images
    folder = folder or out / "benchmark"
    cfg = load_task_config(task, settings["config"], overrides, data)
    if names is not None:
        cfg["benchmark"]["backbones"] = names
        fetch_weights(cfg, names)
    attention_cfg = load_task_config(task, settings["attention_config"], overrides, data)
    if attention_cfg["model"]["backbone"] != "EfficientNetB0":
        raise ConfigError(f"{settings['attention_config']}: model.backbone: paper 4's Tables 2 "
                          f"and 3 name EfficientNetB0's blocks; this config has "
                          f"{attention_cfg['model']['backbone']}")
    fetch_weights(attention_cfg, ["EfficientNetB0"])
    runs = paper4_runs(out, repeats, blocks)
    steps = benchmark_steps(task, cfg, folder, names or [])
    for k in range(repeats):
        for name, seeds in runs.items():
            run, seed = seeds[k]
            tag = "" if seed is None else f" (seed {seed})"
            steps.append(papers.Step(f"{name}{tag}", "train", run,
                                     config=paper4_row_config(task, attention_cfg, name, seed)))
    steps += [papers.Step("choose the model to export", "call", out, output=CHOSEN_FILE,
                          call=partial(choose_paper4_model, runs), verb="choosing"),
              *papers.int8_steps("chosen model", partial(chosen_paper4_run, out))]
    first = [seeds[0][0] for seeds in runs.values()]
    train_ratio = attention_cfg["data"]["train_ratio"]

    def content():
        counts = next((c for c in map(papers.split_counts, first) if c), None)
        counts = counts or {"images": len(task.open_data(cfg).files)}
        return {"paper": PAPERS[4][0], "quick": args.quick, "repeats": repeats,
                "data": {"path": str(data), "examples_per_split": counts, "reported_split": "test",
                         "train_ratio": train_ratio},
                **paper4_tables(out, folder, names, repeats, blocks)}

    with bench.reuse_listing(task, cfg):  # every image is listed and checked once, not once per run
        return papers.run_tables(task, steps, out, "paper4", content, paper4_tables_markdown,
                                 "paper 4", max_steps=max_steps)


def _seeded_row(model, kind, runs, published_accuracy, published_params, note="", **extra):
    """A row of Table 2 or 3 over its seeds' runs: accuracy mean (and std when repeated), the
    parameters of its model file, the published pair beside."""
    from common.model_files import saved_param_count

    scores = papers.mean_over(runs, lambda run: (papers.read_json(run / "metrics.json") or {})
                              .get("accuracy"))
    if scores is None:
        note = note if note == PAPER4_LEFT_OUT else ", ".join(filter(None, [note, "not run yet"]))
    elif len(runs) > 1:
        note = ", ".join(filter(None, [note, f"mean ± std of {scores['n']} of {len(runs)} seeds"]))
    return _row(model, kind, runs[0] if len(runs) == 1 else runs[0].parent, note,
                params=saved_param_count(runs[0] / "model.keras"),
                accuracy=scores and scores["mean"],
                accuracy_std=scores["std"] if scores and len(runs) > 1 else None,
                published_accuracy=round(published_accuracy / 100, 4),
                published_params=published_params, **extra)


def paper4_tables(out, folder, names, repeats=1, blocks=tuple(PAPER4_TABLE3)):
    """Paper 4's tables (JSON entries after the data; sizes in bytes), from the run directories:
    `table1` (candidates; `names` None: the finished benchmark's, in its order), `table2` (forms),
    `table3` (blocks; the rows not in `blocks` say they are left out), `chosen` (the exported
    row: sizes, int8 accuracy, agreement, latency)."""
    out, folder = Path(out), Path(folder)
    found = benchmark_rows(folder, names) if names else read_benchmark_rows(folder, "--benchmark")
    done = {row["backbone"]: row for row in found if row["backbone"] in PAPER4_BACKBONES}
    table1 = []
    for name in names or done:
        accuracy, params, mb = PAPER4_TABLE1[name]
        row = _bench_row(name, folder, done.get(name), "candidate")
        row.update(published_accuracy=round(accuracy / 100, 4), published_params=int(params * 1e6),
                   published_mb=mb, float32_bytes=row["params"] and 4 * row["params"],
                   under_5m=row["params"] < 5e6 if row["params"] else None)
        table1.append(row)
    runs = {name: [run for run, _ in seeds] for name, seeds in paper4_runs(out, repeats).items()}
    table2 = [_seeded_row(form, "form", runs[run], PAPER4_TABLE2[form][0],
                          int(PAPER4_TABLE2[form][1] * 1e6),
                          "= Table 3's blocks 5-7" if form == "triplane" else "", form=form)
              for form, run in PAPER4_FORM_RUNS.items()]
    table3 = [_seeded_row(f"blocks {row}", "blocks", runs[run], PAPER4_TABLE3[row][1],
                          PAPER4_TABLE3[row][2],
                          "= Table 2's tri-plane row" if run == "triplane"
                          else "" if row in blocks else PAPER4_LEFT_OUT, layers=PAPER4_TABLE3[row][0])
              for row, run in PAPER4_BLOCK_RUNS.items()]
    chosen = papers.read_json(out / CHOSEN_FILE)
    if chosen:
        run = out / chosen["run"]
        report, int8 = (papers.read_json(run / name) or {}
                        for name in ("export_report.json", "metrics_int8.json"))
        metrics = papers.read_json(run / "metrics.json") or {}
        int8_bytes, params = report.get("tflite_bytes"), report.get("params")
        budget = float(report.get("size_budget_mb", PAPER4_SIZE["budget_mb"]))
        chosen = {**chosen, "params": params, "float32_bytes": params and 4 * params,
                  "int8_tflite_bytes": int8_bytes, "budget_mb": budget,
                  "within_budget": None if int8_bytes is None else int8_bytes <= budget * 1e6,
                  "accuracy": metrics.get("accuracy"), "int8_accuracy": int8.get("accuracy"),
                  "agreement": report.get("agreement"), "latency_ms": report.get("latency_ms"),
                  "quantization": report.get("quantization")}
    return {"benchmark": str(folder),
            "best_candidate": (_best_entry(list(done.values())) or {}).get("backbone"),
            "published": {"table1": PAPER4_TABLE1, "table2": PAPER4_TABLE2,
                          "table3": {blocks: list(entry[1:]) for blocks, entry in PAPER4_TABLE3.items()},
                          "size": PAPER4_SIZE},
            "table1": table1, "table2": table2, "table3": table3, "chosen": chosen}


def _run_label(name):
    """The rows a run folder of Tables 2 and 3 gives: "triplane" -> "Table 2's triplane row =
    Table 3's blocks 5-7 row"."""
    form = next((form for form, run in PAPER4_FORM_RUNS.items() if run == name), None)
    blocks = next((blocks for blocks, run in PAPER4_BLOCK_RUNS.items() if run == name), None)
    return " = ".join(filter(None, [form and f"Table 2's {form} row",
                                    blocks and f"Table 3's blocks {blocks} row"]))


def _params(count):
    """Parameters for people: 9,505,896 -> "9.51M"; "-" when absent."""
    return "-" if not count else f"{count / 1e6:.2f}M"


def paper4_tables_markdown(content):
    """Paper 4's three tables and the chosen int8 model for people: percent, millions, MB; each
    table says its data, protocol and whether it is --quick."""
    d, pct = content["data"], papers.percent
    counts = ", ".join(f"{name} {n:,}" for name, n in d["examples_per_split"].items())
    quick = " **--quick**: tiny models from scratch, two epochs, sample data." if content["quick"] else ""
    seeds = f" Mean ± std of {content['repeats']} seeds." if content["repeats"] > 1 else ""
    protocol = (f"Data `{d['path']}` ({counts} images), {d['train_ratio']:g} of each class for "
                f"training; accuracy on the {d['reported_split']} split, in percent.{quick}")
    right = ["---"] + ["---:"] * 4 + ["---", "---"]
    body1 = [[row["model"], _params(row["params"]), pct(row["accuracy"]),
              pct(row["published_accuracy"]), _params(row["published_params"]),
              _number(row["float32_bytes"], ".1f", 1e6), f"{row['published_mb']:g}",
              _number(row["tflite_bytes"], ".2f", 1e6), row["note"]] for row in content["table1"]]
    best = content["best_candidate"]
    lines = ["## Table 1: the candidates", "",
             f"Paper 4's compact candidates, benchmarked in `{content['benchmark']}` (rsic "
             f"benchmark). {protocol}", "",
             papers.markdown_table(["model", "params", "accuracy", "paper 4", "paper 4 params",
                                    "float32 MB", "paper 4 MB", "int8 MB", "note"], body1,
                                   ["---"] + ["---:"] * 7 + ["---"]),
             "", f"Best by validation accuracy: {best or '-'} (paper 4 chose EfficientNetB0; "
                 "Tables 2 and 3 are on EfficientNetB0 whichever is best here)."]
    for title, key, caption in (
            ("Table 2: the attention form", "table2", "SE, CBAM and the tri-plane attention on "
             "EfficientNetB0's blocks 5, 6 and 7 (`model.attention.form`)."),
            ("Table 3: which blocks", "table3", "The tri-plane attention on the maps of "
             "EfficientNetB0's blocks (`model.attention.layers`); paper 4's parameter counts are "
             "exact (246 px, 45 classes).")):
        body = [[row["model"], _params(row["params"]), pct(row["accuracy"], row["accuracy_std"]),
                 pct(row["published_accuracy"]), _params(row["published_params"]),
                 ", ".join(row["layers"]) if key == "table3" else row["form"], row["note"]]
                for row in content[key]]
        lines += ["", f"## {title}", "", f"{caption} {protocol}{seeds}", "",
                  papers.markdown_table(["model", "params", "accuracy", "paper 4",
                                         "paper 4 params", "layers" if key == "table3" else
                                         "form", "note"], body, right)]
    chosen, size = content["chosen"], content["published"]["size"]
    lines += ["", "## The chosen model in int8", ""]
    if not chosen:
        lines.append("Not chosen yet (the best row of Tables 2 and 3 by validation accuracy).")
    else:
        int8 = chosen["int8_tflite_bytes"]
        within = ("-" if chosen["within_budget"] is None
                  else "within" if chosen["within_budget"] else "OVER")
        lines += [f"`{chosen['run']}` ({_run_label(chosen['row'])}: the best of Tables 2 and 3 "
                  f"by {chosen['ranked_on']}). {protocol}", "",
                  papers.markdown_table(
                      ["", "params", "float32 MB", "int8 MB", f"budget {chosen['budget_mb']:g} MB",
                       "accuracy", "int8 accuracy", "agreement", "int8 ms"],
                      [["ours", _params(chosen["params"]), _number(chosen["float32_bytes"], ".1f", 1e6),
                        _number(int8, ".2f", 1e6), within, pct(chosen["accuracy"]),
                        pct(chosen["int8_accuracy"]), pct(chosen["agreement"]),
                        _number(chosen["latency_ms"], ".1f")],
                       ["paper 4", _params(PAPER4_TABLE3["5-7"][2]), f"{size['float_mb']:g}",
                        f"{size['int8_mb']:g}", "within", f"{PAPER4_TABLE3['5-7'][1]:g}", "-",
                        "-", "-"]],
                      ["---"] + ["---:"] * 8),
                  "", "Agreement: the share of test images on which the int8 model and the Keras "
                      "model give the same class. Paper 4 reports float accuracy only."]
    head = [f"# Paper 4: robust low-complexity scene classification with attention "
            f"({content['paper']})", ""]
    if content["quick"]:
        head += ["**--quick**: tiny models from scratch, two epochs, sample data: this shows the "
                 "machinery, not the paper's numbers.", ""]
    return "\n".join([*head, *lines, "", EARLIER_LINE]) + "\n"
