"""Paper 2's table: `python -m asc paper2 --data D --out R` (common.papers).

teacher -> student distilled from its embeddings (as `asc distill`) -> parameters and MACs against
the DCASE 2023 limits -> int8 export -> the int8 model scored.

    R/settings.json          data folder, configs, --quick, --set overrides (a rerun must match)
    R/data/                  --quick only: the sample data set (`python -m asc sample`)
    R/teacher/               the teacher run (`train`); complexity.json
    R/student/               the student run (`distill`): metrics.json (overall, per device,
                             per class, 3-class), complexity.json, model_int8.tflite,
                             export_report.json, metrics_int8.json (the int8 model's scores)
    R/paper2.md, paper2.json the table with paper 2's published numbers beside, the data named
"""

from pathlib import Path

from common import papers

# Paper 2 (arXiv 2305.09463) and the DCASE 2023 Task 1 baseline, from docs/papers.md
# (fractions; the paper reports no teacher accuracy and no per-device scores there).
PUBLISHED = {"accuracy": 0.574, "accuracy_evaluation_set": 0.556, "groups_accuracy": 0.823,
             "macs": 29.27e6, "size": "88.7 KB"}
BASELINE = {"accuracy": 0.429, "log_loss": 1.575, "params": 46512, "macs": 29234920}
PAPER = "Pham, Ngo, Le, Jalali, Schindler, DCASE 2023 Task 1 (arXiv 2305.09463)"
# --quick: teacher_tiny.yaml and student.yaml (the DCASE-sized student, so the complexity row is
# the real one) for two epochs each, int8 by post-training quantization, on 10 sample clips per
# scene. Shows the machinery end to end in minutes, not the paper's numbers.
QUICK_TEACHER = "teacher_tiny.yaml"
QUICK_OVERRIDES = ["train.epochs=2", "train.batch_size=16", "train.verbose=0", "export.mode=ptq",
                   "export.calibration_examples=32"]
QUICK_PER_CLASS = 10
COMPLEXITY_FILE = "complexity.json"
HEADER = ["model", "accuracy", "paper", "log loss", "3-class acc.", "paper", "params", "MACs",
          "paper MACs", "int8 size", "paper size"]


def add_arguments(parser):
    """Options of `python -m asc paper2`."""
    papers.add_arguments(parser, "TAU Urban Acoustic Scenes 2022 Mobile development folder",
                         "tiny teacher, two epochs, sample data made in OUT/data")
    parser.add_argument("--teacher-config",
                        help="teacher config (default teacher.yaml; --quick: teacher_tiny.yaml)")
    parser.add_argument("--student-config", default="student.yaml",
                        help="student config (default student.yaml)")


def run(task, args, *, max_steps=None):
    """`python -m asc paper2`: the plan and its table. `max_steps` stops after that many steps
    that did work (a test hook)."""
    from common.runner import load_task_config

    teacher_config = args.teacher_config or (QUICK_TEACHER if args.quick else task.train_config)
    settings = {"teacher_config": teacher_config, "student_config": args.student_config}
    out, data, overrides = papers.start(
        task, args, "paper2", "the TAU 2022 development folder", QUICK_OVERRIDES,
        {"per_class": QUICK_PER_CLASS, "seed": 0}, settings)
    teacher_cfg = load_task_config(task, teacher_config, overrides, data)
    student_cfg = load_task_config(task, args.student_config, overrides, data)
    opened = task.open_data(teacher_cfg)  # checks the data before anything trains
    examples = {"train": len(opened.train), "evaluate": len(opened.evaluate)}

    teacher, student = out / "teacher", out / "student"
    steps = [
        papers.Step("teacher", "train", teacher, config=teacher_cfg),
        papers.Step("student from the teacher's embeddings", "distill", student, config=student_cfg,
                    teacher=teacher),
        *[papers.Step(f"{run.name} complexity", "call", run, output=COMPLEXITY_FILE,
                      call=lambda run_dir: write_complexity(task, run_dir),
                      verb="counting parameters and MACs") for run in (teacher, student)],
        *papers.int8_steps("student", student),
    ]
    return papers.run_tables(task, steps, out, "paper2",
                             lambda: table(out, data, examples, quick=args.quick), markdown,
                             "paper 2", max_steps=max_steps)


def write_complexity(task, run):
    """RUN/complexity.json: parameters and MACs of the run's model against the DCASE limits."""
    from asc.task import complexity_report
    from common.io import write_json
    from common.runner import keras_model, say

    report = complexity_report(keras_model(task, run),
                               say=lambda line: say(f"asc: {Path(run).name}: {line}"))
    write_json(Path(run) / COMPLEXITY_FILE, report)


def _row(model, run, metrics, params, macs, size=None, published=None):
    """A table row: the columns of one metrics.json content (None: the step has not run)."""
    metrics = metrics or {}
    devices = metrics.get("per_device") or {}
    return {"model": model, "run": str(run), "accuracy": metrics.get("accuracy"),
            "log_loss": metrics.get("log_loss"),
            "groups_accuracy": (metrics.get("groups") or {}).get("accuracy"),
            "per_device": {d: part["accuracy"] for d, part in devices.items()},
            "params": params, "macs": macs, "bytes": size, "published": published}


def table(out, data, examples, *, quick):
    """Paper 2's table as JSON (accuracies as fractions), built from the run directories."""
    teacher, student = Path(out) / "teacher", Path(out) / "student"
    c_teacher = papers.read_json(teacher / COMPLEXITY_FILE) or {}
    c_student = papers.read_json(student / COMPLEXITY_FILE) or {}
    report = papers.read_json(student / "export_report.json") or {}
    rows = [
        _row("teacher", teacher, papers.read_json(teacher / "metrics.json"),
             c_teacher.get("params"), c_teacher.get("macs")),
        _row("student (float)", student, papers.read_json(student / "metrics.json"),
             c_student.get("params"), c_student.get("macs"),
             published={key: PUBLISHED[key] for key in ("accuracy", "groups_accuracy", "macs")}),
        _row("student (int8 TFLite)", student, papers.read_json(student / "metrics_int8.json"),
             report.get("params"), report.get("macs"), report.get("tflite_bytes"),
             published={"size": PUBLISHED["size"]}),
    ]
    limits = ("params", "macs", "max_params", "max_macs", "within_limits")
    export = ("path", "tflite_bytes", "quantization", "agreement", "latency_ms")
    return {
        "paper": PAPER,
        "table": "teacher -> distilled student -> int8; accuracy overall, per device, 3-class "
                 "(fractions)",
        "quick": quick,
        # The teacher's split.json once it is trained (it may carve a validation split from train).
        "data": {"path": str(data), "examples_per_split": papers.split_counts(teacher) or examples,
                 "reported_split": "evaluate (fold1_evaluate on TAU 2022)"},
        "rows": rows,
        "published": PUBLISHED,
        "baseline": BASELINE,
        "complexity": {key: c_student[key] for key in limits} if c_student else None,
        "export": {key: report.get(key) for key in export} if report else None,
    }


def markdown(content):
    """Paper 2's table for people: percent, the paper's numbers beside."""
    rows, pct = content["rows"], papers.percent
    body = []
    for row in rows:
        published = row["published"] or {}
        size = f"{row['bytes'] / 1e3:.1f} KB" if row["bytes"] else "-"
        loss = "-" if row["log_loss"] is None else f"{row['log_loss']:.3f}"
        body.append([row["model"], pct(row["accuracy"]), pct(published.get("accuracy")), loss,
                     pct(row["groups_accuracy"]), pct(published.get("groups_accuracy")),
                     _count(row["params"]), _count(row["macs"]), _count(published.get("macs")),
                     size, published.get("size", "-")])
    b = content["baseline"]
    body.append(["DCASE 2023 baseline (published)", "-", pct(b["accuracy"]), f"{b['log_loss']:.3f}",
                 "-", "-", _count(b["params"]), _count(b["macs"]), "-", "-", "-"])
    d, c, e = content["data"], content["complexity"], content["export"]
    clips = ", ".join(f"{name} {n:,} clips" for name, n in d["examples_per_split"].items())
    intro = (f"Data: `{d['path']}`, {clips}; scores on the {d['reported_split']} split, in "
             "percent. `paper`: the published numbers (docs/papers.md; 57.4% on the "
             "development set, 55.6% on the evaluation set).")
    notes = []
    devices = sorted({d for row in rows for d in row["per_device"]})
    if devices:
        device_body = [[row["model"], *[pct(row["per_device"].get(d)) for d in devices]]
                       for row in rows]
        notes += ["Accuracy per device (the paper publishes none):", "",
                  papers.markdown_table(["model", *devices], device_body), ""]
    if c:
        notes.append(f"Student complexity: {c['params']:,} parameters (limit {c['max_params']:,}), "
                     f"{c['macs'] / 1e6:.2f} M MACs per 1-s clip (limit "
                     f"{c['max_macs'] / 1e6:.0f} M): "
                     f"{'within' if c['within_limits'] else 'OVER'} the DCASE 2023 Task 1 limits.")
    if e:
        notes.append(f"Exported `{e['path']}`: {e['tflite_bytes'] / 1e3:.1f} KB "
                     f"({e['quantization']}), agreement with Keras {e['agreement']:.3f}, "
                     f"{e['latency_ms']:.2f} ms per clip.")
    return papers.page(content, "Paper 2: low-complexity acoustic scene classification", intro,
                       "tiny teacher, two epochs, sample data", HEADER, body, notes)


def _count(value):
    if value is None:
        return "-"
    return f"{value / 1e6:.2f}M" if value >= 1e5 else f"{value / 1e3:.1f}K"
