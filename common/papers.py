"""One command per paper table: an ordered plan of runner steps, resumable, with its table.

A paper's table (landslide `ladder`, asc `paper2`, rsic `paper3`/`paper4`) is a list of
`Step`s, each one call of the common runner (train, distill, evaluate, export) or a task's own
function, each writing into a run directory under the plan's output folder `OUT`:

    OUT/settings.json     what defines the runs (data, quick, --set overrides): a rerun with other
                          settings is refused instead of mixing two experiments in one table
    OUT/<run dirs>        one per train/distill step (config.yaml, model.keras, metrics.json, ...)
    OUT/NAME.md, NAME.json  the table, rewritten (atomically) after every step

`run_plan` skips a step whose output is there (a train step: the run's metrics.json; an export:
export_report.json), evaluates a run that finished training but has no metrics.json yet, and
resumes a run that was killed mid-training (common.train's BackupAndRestore state). So a killed
command, run again, continues where it stopped; the table is always built from what is on disk.

Example (what a task's command does):
    steps = [Step("teacher", "train", out / "teacher", config=teacher_cfg),
             Step("student", "distill", out / "student", config=student_cfg, teacher=out / "teacher"),
             Step("student int8", "export", out / "student")]
    run_plan(task, steps, lambda: write_table(out, "paper2", *build_table()))
"""

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.errors import ConfigError, RunDirError
from common.io import write_json, write_text

SETTINGS_FILE = "settings.json"
# The file in a step's run directory whose presence means the step is finished, per action.
DONE_FILE = {"train": "metrics.json", "distill": "metrics.json", "export": "export_report.json"}
VERB = {"train": "training", "distill": "distilling", "export": "exporting", "evaluate": "evaluating"}


@dataclass
class Step:
    """One step of a paper's plan.

    Attributes:
        label: what the progress line names, e.g. "residual fold 2".
        action: "train", "distill", "export", "evaluate" (common.runner) or "call" (`call`).
        run: the run directory the step writes into or reads (a Path), or a callable () -> Path
            resolved when the step's turn comes (e.g. the best run of the steps before).
        config: train/distill: the resolved config (a copy is trained, the plan's is untouched),
            or a callable () -> config resolved when the step's turn comes (e.g. a config that
            names the best run of the steps before: rsic's `model.backbone=best:DIR`).
        teacher: distill: the teacher's run directory, a list of them (an ensemble), or a
            callable () -> either, resolved when the step's turn comes.
        options: evaluate: keyword arguments of common.runner.evaluate (split, tflite, ...).
        output: the file in `run` whose presence means done; default DONE_FILE[action]
            (evaluate and call steps must name theirs).
        call: action "call": callable(run Path) -> None that writes `output`.
        verb: the progress line's word for a call step ("measuring").
    """

    label: str
    action: str
    run: object
    config: dict = None
    teacher: object = None
    options: dict = field(default_factory=dict)
    output: str = ""
    call: object = None
    verb: str = "running"

    def run_dir(self):
        return Path(self.run() if callable(self.run) else self.run)

    def output_path(self):
        name = self.output or DONE_FILE.get(self.action)
        if not name:
            raise ValueError(f"step {self.label!r}: an {self.action} step must name its output file")
        return self.run_dir() / name


def check_settings(out, settings, command):
    """Create the plan folder `out`, or reopen it when it holds a plan of the same `settings`.

    Args:
        out: the plan's output folder.
        settings: dict (JSON) of what defines the runs: data folder, quick, overrides.
        command: the command line for messages, e.g. "python -m landslide ladder".

    Raises:
        RunDirError: `out` holds other files, or a plan made with other settings.
    """
    out = Path(out)
    path = out / SETTINGS_FILE
    settings = json.loads(json.dumps(settings))  # as it reads back (tuples become lists)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a folder")
    if path.is_file():
        saved = read_json(path)
        differ = [key for key in sorted(set(saved) | set(settings)) if saved.get(key) != settings.get(key)]
        if differ:
            key = differ[0]
            raise RunDirError(f"{path}: this folder holds a run of `{command}` with {key} = "
                              f"{json.dumps(saved.get(key))}, not {json.dumps(settings.get(key))}; "
                              "run it again with the same settings to continue, or use another --out")
        return out
    if out.is_dir() and any(out.iterdir()):
        raise RunDirError(f"{out}: folder is not empty and holds no {SETTINGS_FILE}; use another --out")
    write_json(path, settings)
    return out


def run_plan(task, steps, write_tables, *, max_steps=None, say=None):
    """Run the unfinished `steps` in order; call `write_tables()` after each step.

    Args:
        task: the common.task.Task the steps run on.
        steps: list of Step.
        write_tables: callable () -> None that rebuilds the tables from the run directories.
        max_steps: stop after this many steps that did work (a test hook; None = all).
        say: the progress printer (default common.runner.say).

    Returns:
        True when every step is finished, False when `max_steps` stopped the plan early.
    """
    from common import runner

    say = say or runner.say
    worked = 0
    write_tables()
    for number, step in enumerate(steps, 1):
        prefix = f"[{number}/{len(steps)}] {step.label}"
        output = step.output_path()
        if output.is_file():
            say(f"{prefix}: done ({output.name}), skipped")
            continue
        if max_steps is not None and worked >= max_steps:
            say(f"{prefix}: not started (stopped after {worked} steps)")
            return False
        say(f"{prefix}: {step.verb if step.action == 'call' else VERB[step.action]} ...")
        run_step(task, step)
        worked += 1
        write_tables()
    return True


def run_step(task, step):
    """Do one step now, whether or not its output is there (a train step resumes a killed run, and
    scores a trained one instead of training it again)."""
    from common import runner

    run = step.run_dir()
    if step.action in ("train", "distill"):
        if (run / "model.keras").is_file():
            # Trained, stopped before its metrics were written: score it, do not train again.
            runner.evaluate(task, run)
            return
        # config.yaml without model.keras: a run that was killed; the same config resumes it.
        resume = (run / "config.yaml").is_file()
        cfg = copy.deepcopy(step.config() if callable(step.config) else step.config)
        if step.action == "train":
            runner.train(task, cfg, run, resume=resume)
        else:
            teacher = step.teacher() if callable(step.teacher) else step.teacher
            runner.distill(task, cfg, run, teacher, resume=resume)
    elif step.action == "export":
        runner.export(task, run)
    elif step.action == "evaluate":
        runner.evaluate(task, run, **step.options)
    elif step.action == "call":
        step.call(run)
    else:
        raise ValueError(f"step {step.label!r}: unknown action {step.action!r}")
    if not step.output_path().is_file():
        raise RunDirError(f"{step.output_path()}: step {step.label!r} finished without writing it")


# ---------------------------------------------------------------------------------------------
# Reading runs and writing tables


def read_json(path):
    """The JSON object in `path`, or None when the file is not there (a step not yet run)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise RunDirError(f"{path}: unreadable JSON ({error})") from None


def split_counts(run):
    """Examples per split of a run (its split.json): {split name: count}, {} when not trained."""
    content = read_json(Path(run) / "split.json") or {}
    names = content.get("splits") or []
    return {name: len(content[name]) for name in names if isinstance(content.get(name), list)}


def mean_std(values):
    """{"mean", "std", "n"} of the numbers in `values` (population std, as `evaluate --folds`);
    None when there are none."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def repeat_runs(run, repeats):
    """The run directories and seeds of a step repeated `repeats` times (`--repeats N`: the
    papers average N runs): [(RUN, None)] for one run, else [(RUN/seed_K, K) for K < N], each
    trained with `train.seed=K`."""
    run = Path(run)
    if int(repeats) < 1:
        raise ConfigError(f"--repeats: expected a count >= 1, got {repeats}")
    return [(run, None)] if int(repeats) == 1 else [(run / f"seed_{k}", k) for k in range(int(repeats))]


def seeded(config, seed, defaults):
    """`config` with `train.seed=seed` (a copy), or `config` itself when `seed` is None."""
    if seed is None:
        return config
    from common.config import apply_override

    return apply_override(config, f"train.seed={seed}", defaults)


def mean_over(runs, read):
    """`mean_std` of `read(run)` over the run directories `runs` (values of unfinished runs are
    None and left out): a repeated row's mean, std and how many runs gave it."""
    return mean_std([read(Path(run)) for run in runs])


def percent(value, std=None, digits=1):
    """A fraction as people read a paper's table: 0.8407 -> "84.1", with " ± 1.2" for a std;
    "-" when absent."""
    if value is None:
        return "-"
    text = f"{100 * value:.{digits}f}"
    return text + (f" ± {100 * std:.{digits}f}" if std is not None else "")


def markdown_table(header, rows, align=None):
    """Rows (lists of cell strings) under `header` (list of titles) as a Markdown table; `align`:
    the separator cells ("---:" right-aligns a column), default "---" each."""
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "".join(f"{cell}|" for cell in align)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_table(out, name, content, markdown):
    """OUT/NAME.json (`content`) and OUT/NAME.md (`markdown`), each written atomically."""
    write_json(Path(out) / f"{name}.json", content)
    write_text(Path(out) / f"{name}.md", markdown.rstrip("\n") + "\n")


def parse_list(text, allowed, flag):
    """A comma-separated option (`--rungs a,b`) as a list, each value one of `allowed`."""
    values = [part.strip() for part in str(text).split(",") if part.strip()]
    unknown = [value for value in values if value not in allowed]
    if unknown or not values:
        raise ConfigError(f"{flag}: {unknown[0] if unknown else 'nothing'} is not one of {', '.join(map(str, allowed))}")
    return values


def int8_steps(label, run):
    """The steps after training a paper's model: export `run` to int8, then score the int8 model
    on the reported split (RUN/metrics_int8.json)."""
    return [Step(f"{label} int8", "export", run),
            Step(f"{label} int8 scores", "evaluate", run, options={"tflite": True},
                 output="metrics_int8.json")]


# ---------------------------------------------------------------------------------------------
# What every paper command does around its plan


def add_arguments(parser, data_help, quick_help,
                  out_help="folder of the runs and tables (resumable)"):
    """The options every paper command has: --data, --out, --quick and --set."""
    from common.cli import add_set_arg

    parser.add_argument("--data", help=f"{data_help}; not needed with --quick")
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--quick", action="store_true", help=f"{quick_help} (minutes)")
    add_set_arg(parser)


def start(task, args, command, data_name, quick_overrides, sample_options, settings=None,
          data_default=None):
    """Check a paper command's data options, open its folder (`check_settings`), make the --quick
    sample data in OUT/data (`task.sample(folder, **sample_options)`; None: the task's defaults)
    unless it is there.

    Args:
        command: the command's name ("ladder"); data_name: what --data names, for the error.
        quick_overrides: the --set overrides that --quick puts before the user's.
        settings: more entries of settings.json (configs, backbones, ...).
        data_default: the data folder when neither --data nor --quick gives one.

    Returns:
        (out, data, overrides): the plan's folder, the data folder (resolved), every --set.
    """
    from common.runner import say

    out = Path(args.out)
    if not (args.data or args.quick or data_default):
        raise ConfigError(f"{command}: give --data DIR ({data_name}), or --quick for sample data")
    data = Path(args.data or data_default or out / "data").resolve()
    overrides = [*(quick_overrides if args.quick else []), *(args.overrides or [])]
    check_settings(out, {"command": f"{task.name} {command}", "data": str(data),
                         "quick": bool(args.quick), **(settings or {}), "overrides": overrides},
                   f"python -m {task.name} {command}")
    made = data.is_dir() and any(data.iterdir())
    if args.quick and not (args.data or data_default or made):
        say(f"{task.name}: {task.sample(data, **(sample_options or {}))}")
    return out, data, overrides


def run_tables(task, steps, out, name, build, render, title, *, max_steps=None):
    """`run_plan` with OUT/NAME.json (`build()`) and OUT/NAME.md (`render(content)`) rewritten after
    every step; "TASK: TITLE done -> ..." at the end. Returns run_plan's answer."""
    from common.runner import say

    def write_tables():
        content = build()
        write_table(out, name, content, render(content))

    out = Path(out)
    finished = run_plan(task, steps, write_tables, max_steps=max_steps)
    if finished:
        say(f"{task.name}: {title} done -> {out / f'{name}.md'}, {out / f'{name}.json'}")
    return finished


def page(content, title, intro, quick, header, body, notes=(), whose="paper's"):
    """A paper table's Markdown: "# TITLE (paper)", the `intro` paragraph, under --quick a warning
    (what QUICK runs: "this shows the machinery, not the paper's numbers"), the table of `body`
    under `header`, then the lines `notes`."""
    lines = [f"# {title} ({content['paper']})", "", intro, ""]
    if content["quick"]:
        lines += [f"**--quick**: {quick}: this shows the machinery, not the {whose} numbers.", ""]
    return "\n".join([*lines, markdown_table(header, body), "", *notes])
