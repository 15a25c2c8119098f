"""Paper 2's table as one command: `python -m asc paper2 --data D --out R`.

teacher (phase I) -> student distilled from the teacher's embeddings (phase II; the Distiller
runs the frozen teacher on every batch, as `asc distill` does) -> complexity (parameters and MACs
against the DCASE 2023 limits) -> int8 export -> the int8 model evaluated. Resumable through
common.papers: a killed command, run again, continues where it stopped.

    R/settings.json          data folder, configs, --quick, --set overrides (a rerun must match)
    R/data/                  --quick only: the sample data set (`python -m asc sample`)
    R/teacher/               the teacher run (`train`); complexity.json
    R/student/               the student run (`distill`): metrics.json (overall, per device,
                             per class, 3-class), complexity.json, model_int8.tflite,
                             export_report.json, metrics_int8.json (the int8 model's scores)
    R/paper2.md, paper2.json the table with paper 2's published numbers beside, the data named
"""

import argparse
from pathlib import Path

from common import papers
from common.errors import ConfigError

# Paper 2 (arXiv 2305.09463) and the DCASE 2023 Task 1 baseline, from ../shared/docs/PAPERS.md
# (fractions; the paper reports no teacher accuracy and no per-device scores there).
PUBLISHED = {"accuracy": 0.574, "accuracy_evaluation_set": 0.556, "groups_accuracy": 0.823, "macs": 29.27e6,
             "size": "88.7 KB"}
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


def add_arguments(parser):
    """Options of `python -m asc paper2`."""
    from common.cli import add_set_arg

    parser.add_argument("--data", help="TAU Urban Acoustic Scenes 2022 Mobile development folder; not needed with --quick")
    parser.add_argument("--out", required=True, help="folder of the runs and tables (resumable)")
    parser.add_argument("--teacher-config", help="teacher config (default teacher.yaml; --quick: teacher_tiny.yaml)")
    parser.add_argument("--student-config", default="student.yaml", help="student config (default student.yaml)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny teacher, two epochs, sample data made in OUT/data (minutes)")
    add_set_arg(parser)


def run(task, args, *, max_steps=None):
    """`python -m asc paper2`: the plan and its table. `max_steps` stops after that many steps
    that did work (a test hook)."""
    from common.runner import load_task_config, say

    out = Path(args.out)
    if not args.data and not args.quick:
        raise ConfigError("paper2: give --data DIR (the TAU 2022 development folder), or --quick for sample data")
    data = Path(args.data).resolve() if args.data else (out / "data").resolve()
    overrides = [*(QUICK_OVERRIDES if args.quick else []), *(args.overrides or [])]
    teacher_config = args.teacher_config or (QUICK_TEACHER if args.quick else task.train_config)
    papers.check_settings(out, {"command": "asc paper2", "data": str(data), "quick": bool(args.quick),
                                "teacher_config": teacher_config, "student_config": args.student_config,
                                "overrides": overrides}, "python -m asc paper2")
    if args.quick and not args.data and not (data.is_dir() and any(data.iterdir())):
        say(f"asc: {task.sample(data, argparse.Namespace(per_class=QUICK_PER_CLASS, seed=0))}")
    teacher_cfg = load_task_config(task, teacher_config, overrides, data)
    student_cfg = load_task_config(task, args.student_config, overrides, data)
    opened = task.open_data(teacher_cfg)  # checks the data before anything trains
    examples = {"train": len(opened.train), "evaluate": len(opened.evaluate)}

    teacher, student = out / "teacher", out / "student"
    steps = [
        papers.Step("teacher", "train", teacher, config=teacher_cfg),
        papers.Step("student from the teacher's embeddings", "distill", student, config=student_cfg,
                    teacher=teacher),
        papers.Step("teacher complexity", "call", teacher, output=COMPLEXITY_FILE,
                    call=lambda run_dir: write_complexity(task, run_dir), verb="counting parameters and MACs"),
        papers.Step("student complexity", "call", student, output=COMPLEXITY_FILE,
                    call=lambda run_dir: write_complexity(task, run_dir), verb="counting parameters and MACs"),
        papers.Step("student int8", "export", student),
        papers.Step("student int8 scores", "evaluate", student, options={"tflite": True}, output="metrics_int8.json"),
    ]

    def write_tables():
        content = table(out, data, examples, quick=bool(args.quick))
        papers.write_table(out, "paper2", content, markdown(content))

    finished = papers.run_plan(task, steps, write_tables, max_steps=max_steps)
    if finished:
        say(f"asc: paper 2 done -> {out / 'paper2.md'}, {out / 'paper2.json'}")
    return finished


def write_complexity(task, run):
    """RUN/complexity.json: parameters and MACs of the run's model against the DCASE limits."""
    from asc.task import complexity_report
    from common.io import write_json
    from common.runner import keras_model, say

    report = complexity_report(keras_model(task, run), say=lambda line: say(f"asc: {Path(run).name}: {line}"))
    write_json(Path(run) / COMPLEXITY_FILE, report)


def _scores(metrics):
    """The table's columns of one metrics.json content (None when the step has not run)."""
    if metrics is None:
        return {"accuracy": None, "log_loss": None, "groups_accuracy": None, "per_device": {}}
    groups = metrics.get("groups") or {}
    return {"accuracy": metrics.get("accuracy"), "log_loss": metrics.get("log_loss"),
            "groups_accuracy": groups.get("accuracy"),
            "per_device": {d: part["accuracy"] for d, part in (metrics.get("per_device") or {}).items()}}


def table(out, data, examples, *, quick):
    """Paper 2's table as JSON (accuracies as fractions), built from the run directories."""
    out = Path(out)
    teacher, student = out / "teacher", out / "student"
    c_teacher = papers.read_json(teacher / COMPLEXITY_FILE) or {}
    c_student = papers.read_json(student / COMPLEXITY_FILE) or {}
    report = papers.read_json(student / "export_report.json") or {}
    rows = [
        {"model": "teacher", "run": str(teacher), **_scores(papers.read_json(teacher / "metrics.json")),
         "params": c_teacher.get("params"), "macs": c_teacher.get("macs"), "bytes": None, "published": None},
        {"model": "student (float)", "run": str(student), **_scores(papers.read_json(student / "metrics.json")),
         "params": c_student.get("params"), "macs": c_student.get("macs"), "bytes": None,
         "published": {key: PUBLISHED[key] for key in ("accuracy", "groups_accuracy", "macs")}},
        {"model": "student (int8 TFLite)", "run": str(student),
         **_scores(papers.read_json(student / "metrics_int8.json")),
         "params": report.get("params"), "macs": report.get("macs"), "bytes": report.get("tflite_bytes"),
         "published": {"size": PUBLISHED["size"]}},
    ]
    complexity = None
    if c_student:
        complexity = {key: c_student[key] for key in ("params", "macs", "max_params", "max_macs", "within_limits")}
    return {
        "paper": PAPER,
        "table": "teacher -> distilled student -> int8; accuracy overall, per device, 3-class (fractions)",
        "quick": quick,
        # The teacher's split.json once it is trained (it may carve a validation split from train).
        "data": {"path": str(data), "examples_per_split": papers.split_counts(teacher) or examples,
                 "reported_split": "evaluate (fold1_evaluate on TAU 2022)"},
        "rows": rows,
        "published": PUBLISHED,
        "baseline": BASELINE,
        "complexity": complexity,
        "export": {key: report.get(key) for key in ("path", "tflite_bytes", "quantization", "agreement",
                                                     "latency_ms")} if report else None,
    }


def markdown(content):
    """Paper 2's table for people: percent, the paper's numbers beside."""
    rows = content["rows"]
    body = []
    for row in rows:
        published = row["published"] or {}
        size = f"{row['bytes'] / 1e3:.1f} KB" if row["bytes"] else "-"
        body.append([row["model"], papers.percent(row["accuracy"]), papers.percent(published.get("accuracy")),
                     "-" if row["log_loss"] is None else f"{row['log_loss']:.3f}",
                     papers.percent(row["groups_accuracy"]), papers.percent(published.get("groups_accuracy")),
                     _count(row["params"]), _count(row["macs"]), _count(published.get("macs")),
                     size, published.get("size", "-")])
    b = content["baseline"]
    body.append(["DCASE 2023 baseline (published)", "-", papers.percent(b["accuracy"]), f"{b['log_loss']:.3f}",
                 "-", "-", _count(b["params"]), _count(b["macs"]), "-", "-", "-"])
    header = ["model", "accuracy", "paper", "log loss", "3-class acc.", "paper", "params", "MACs", "paper MACs",
              "int8 size", "paper size"]
    devices = sorted({d for row in rows for d in row["per_device"]})
    device_body = [[row["model"], *[papers.percent(row["per_device"].get(d)) for d in devices]] for row in rows]
    d = content["data"]
    lines = [f"# Paper 2: low-complexity acoustic scene classification ({content['paper']})", "",
             f"Data: `{d['path']}`, " + ", ".join(f"{name} {n:,} clips" for name, n in d["examples_per_split"].items())
             + f"; scores on the {d['reported_split']} split, in percent. `paper`: the published numbers "
             "(../shared/docs/PAPERS.md; 57.4% on the development set, 55.6% on the evaluation set).", ""]
    if content["quick"]:
        lines += ["**--quick**: tiny teacher, two epochs, sample data: this shows the machinery, not the paper's "
                  "numbers.", ""]
    lines += [papers.markdown_table(header, body), ""]
    if devices:
        lines += ["Accuracy per device (the paper publishes none):", "",
                  papers.markdown_table(["model", *devices], device_body), ""]
    c = content["complexity"]
    if c:
        lines.append(f"Student complexity: {c['params']:,} parameters (limit {c['max_params']:,}), "
                     f"{c['macs'] / 1e6:.2f} M MACs per 1-s clip (limit {c['max_macs'] / 1e6:.0f} M): "
                     f"{'within' if c['within_limits'] else 'OVER'} the DCASE 2023 Task 1 limits.")
    e = content["export"]
    if e:
        lines.append(f"Exported `{e['path']}`: {e['tflite_bytes'] / 1e3:.1f} KB ({e['quantization']}), agreement "
                     f"with Keras {e['agreement']:.3f}, {e['latency_ms']:.2f} ms per clip.")
    return "\n".join(lines)


def _count(value):
    if value is None:
        return "-"
    return f"{value / 1e6:.2f}M" if value >= 1e5 else f"{value / 1e3:.1f}K"
