"""The command line of every task, built once from its Task (common/task.py): `python -m TASK COMMAND`.

    download   fetch the real data set (no TensorFlow)
    sample     write a small sample data set in the real layout (no TensorFlow)
    train      train a model: a run directory in --out
    distill    train a student from a teacher run or an ensemble (--teacher RUN[,RUN...]), tasks with classifiers
    evaluate   score a run (--run) on its reported split, another split or another data set
    export     a run's model for a device (--target edge|gpu|weights8|mcu), checked against Keras
    predict    a run's model (--run) or an exported .tflite (--tflite, LiteRT only) on files
    demo       sample data -> the task's small runs -> OUT/summary.json
    + the task's own commands (landslide stats/summary, rsic benchmark, asc features/complexity)

A command that fails on bad input prints one line, `error: <file or key>: <problem>`, and exits
with code 2; never a TensorFlow stack trace. TensorFlow's native start-up lines (oneDNN, CUDA)
are kept out of the terminal unless `--verbose` is given.
"""

import argparse
import logging
import os
import platform
import re
import sys
import threading
import warnings

from common.model_files import add_unsafe_load_arg

# ---------------------------------------------------------------------------------------------
# Options


class _OverrideAction(argparse.Action):
    """An option that is shorthand for one `--set key=value` (a flag: `key=true`)."""

    def __init__(self, option_strings, dest, config_key, **kwargs):
        self.config_key = config_key
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, value, option_string=None):
        value = "true" if self.nargs == 0 else value
        overrides = list(getattr(namespace, "overrides", None) or [])
        namespace.overrides = overrides + [f"{self.config_key}={value}"]
        setattr(namespace, self.dest, value)


def add_shorthand(parser, flag, config_key, help, **kwargs):
    """An option `flag` that means `--set config_key=VALUE` (with nargs=0: a true/false flag)."""
    parser.add_argument(flag, action=_OverrideAction, config_key=config_key, help=help, **kwargs)


def add_set_arg(parser):
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set train.lr=0.01 (repeatable)")


def add_config_args(parser, *, data_help="data set folder"):
    """`--config`, `--data` and `--set` (the options of every command that reads a config)."""
    parser.add_argument("--config", help="YAML config file (a path, or a file name in configs/TASK/)")
    parser.add_argument("--data", help=data_help)
    add_set_arg(parser)


def _add_train_args(parser, task):
    add_config_args(parser, data_help="data set folder (the run remembers it)")
    parser.add_argument("--out", required=True, help="run directory to write")
    add_shorthand(parser, "--strategy", "train.strategy", choices=["default", "mirrored", "multiworker"],
                  help="tf.distribute strategy (same as --set train.strategy=...)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    parser.add_argument("--resume", action="store_true", help="continue the unfinished run in --out")
    add_shorthand(parser, "--init-from", "train.init_from", metavar="RUN",
                  help="start from the weights of a trained run of this task (layers of the same name and "
                       "shape; a new classifier when the classes differ); see docs/retrain.md")
    # Also accepted after the command; SUPPRESS keeps the top-level flag's value when absent here.
    parser.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="Keras' own progress output (train.verbose=1) and TensorFlow's log lines")


def build_parser(task):
    """The argparse parser of `python -m TASK` (every verb, the same flags in every task)."""
    parser = argparse.ArgumentParser(prog=f"python -m {task.name}", description=task.description)
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines too")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("download", help="fetch the real data set (resumable, checksum-verified, unpacked)")
    p.add_argument("--dest", help="folder to download and unpack into (required unless the task's "
                   "own options fetch something else)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    task.add_download_arguments(p)

    p = sub.add_parser("sample", help="write a small sample data set in the real on-disk layout")
    p.add_argument("--out", required=True, help="data set folder to create")
    task.add_sample_arguments(p)

    p = sub.add_parser("train", help="train a model (writes a run directory in --out)")
    _add_train_args(p, task)
    task.add_arguments("train", p)
    if task.distill_config:
        p = sub.add_parser("distill", help="train a student from a teacher run (writes a run directory)")
        _add_train_args(p, task)
        p.add_argument("--teacher", required=True, metavar="RUN[,RUN...]",
                       help="run directory of the trained teacher; several, comma-separated, teach as an "
                            "ensemble (mean probabilities, concatenated embeddings; one shared split)")
        add_unsafe_load_arg(p)
        task.add_arguments("distill", p)

    p = sub.add_parser("evaluate", help=f"{task.metric_name} and more of a run -> RUN/metrics.json")
    p.add_argument("--run", required=True, help="run directory written by train")
    p.add_argument("--data", help="another data set: scored whole, written to RUN/metrics_<folder>_<hash>.json")
    p.add_argument("--split", help=f"a split of the run's split.json (default {task.reported_split})")
    p.add_argument("--tflite", action="store_true", help="score the exported int8 model instead")
    p.add_argument("--out", help="folder for the metrics file (default: the run directory)")
    add_unsafe_load_arg(p)
    add_set_arg(p)
    task.add_arguments("evaluate", p)

    p = sub.add_parser("export", help="a run's model for a device (--target) -> RUN/..., export_report.json")
    p.add_argument("--run", required=True, help="run directory written by train")
    p.add_argument("--data", help="the data set, when it has moved since training")
    add_shorthand(p, "--mode", "export.mode", choices=["auto", "qat", "ptq"],
                  help="quantization (same as --set export.mode=...)")
    targets = export_targets()
    add_shorthand(p, "--target", "export.target", metavar="{" + ",".join(targets) + "}",
                  help="what to export (same as --set export.target=...): " +
                  "; ".join(f"{name}: {target.description}" for name, target in targets.items()))
    add_unsafe_load_arg(p)
    add_set_arg(p)
    task.add_arguments("export", p)

    p = sub.add_parser("predict", help="predict files or folders with a run or an exported .tflite")
    p.add_argument("inputs", nargs="*", help="files or folders (searched recursively)")
    p.add_argument("--data", action="append", default=[], help="a folder of inputs (same as giving it as an input)")
    p.add_argument("--run", help="run directory written by train (the Keras model)")
    p.add_argument("--tflite", help="exported .tflite model instead of --run: LiteRT only, no TensorFlow; a run "
                   "directory (or `auto` with --run RUN): its exported file that runs fastest on this CPU")
    p.add_argument("--out", required=True, help=task.predict_out_help)
    p.add_argument("--overwrite", action="store_true", help="replace earlier predictions in --out")
    add_unsafe_load_arg(p)
    add_set_arg(p)
    task.add_arguments("predict", p)

    p = sub.add_parser("demo", help="sample data -> small runs -> evaluate -> export -> OUT/summary.json")
    p.add_argument("--out", default=f"runs/demo/{task.name}", help=f"demo folder (default runs/demo/{task.name})")
    add_set_arg(p)

    for command in task.commands():
        p = sub.add_parser(command.name, help=command.help)
        if command.common_args:
            add_config_args(p)
        command.add_arguments(p)
    return parser


def main(task, argv=None):
    """Parse `argv` and run the command on `task`; returns the exit code. Errors propagate
    (`run_cli` turns them into one line)."""
    from common import runner
    from common.errors import ConfigError

    parser = build_parser(task)
    _check_command(parser, argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _refuse_unknown_options(parser, args.command, unknown)
    extra = {c.name: c for c in task.commands()}
    if args.command == "download":
        if args.dest is None and task.download_needs_dest(**method_options(task.download_needs_dest, args)):
            raise ConfigError("download: --dest is required (the folder to download the data set into)")
        runner.say(f"{task.name}: {task.download(args.dest, **method_options(task.download, args))}")
        return 0
    if args.command == "sample":
        runner.say(f"{task.name}: {task.sample(args.out, **method_options(task.sample, args))}")
        return 0
    if args.command == "predict" and args.tflite:  # the edge path: LiteRT, never TensorFlow
        runner.predict(task, [*args.data, *args.inputs], args.out, tflite=args.tflite,
                       run=args.run if args.tflite == "auto" else None,
                       overwrite=args.overwrite, overrides=args.overrides,
                       options=method_options(task.edge_predict, args))
        return 0
    if args.command in extra and not extra[args.command].tensorflow:
        return exit_code(extra[args.command].run(args))
    if args.command == "export":  # an unknown target is one line before TensorFlow starts
        runner.check_export(task, args.run, data=args.data, overrides=args.overrides)
    setup_tensorflow()
    if args.command == "train":
        base = _train_config(task, args, task.train_config)
        for cfg, out in task.train_runs(base, args.out, **method_options(task.train_runs, args)):
            runner.train(task, cfg, out, resume=args.resume, overwrite=args.overwrite)
    elif args.command == "distill":
        cfg = _train_config(task, args, task.distill_config)
        runner.distill(task, cfg, args.out, args.teacher, resume=args.resume, overwrite=args.overwrite,
                       unsafe_load=args.unsafe_load)
    elif args.command == "evaluate":
        if getattr(args, "folds", False):  # the option of tasks that train fold_K runs (landslide)
            runner.evaluate_folds(task, args.run, data=args.data, overrides=args.overrides,
                                  unsafe_load=args.unsafe_load)
        else:
            runner.evaluate(task, args.run, data=args.data, split=args.split, tflite=args.tflite, out=args.out,
                            overrides=args.overrides, unsafe_load=args.unsafe_load)
    elif args.command == "export":
        runner.export(task, args.run, data=args.data, overrides=args.overrides, unsafe_load=args.unsafe_load)
    elif args.command == "predict":
        runner.predict(task, [*args.data, *args.inputs], args.out, run=args.run, overwrite=args.overwrite,
                       overrides=args.overrides, options=method_options(task.predict, args),
                       unsafe_load=args.unsafe_load)
    elif args.command == "demo":
        runner.demo(task, args.out, args.overrides)
    else:
        return exit_code(extra[args.command].run(args))
    return 0


def method_options(method, args):
    """The parsed options a task method takes by name: its parameters that have a default
    (the options; its required parameters, such as `out` or `inputs`, the caller gives) and that
    `args` holds with a value. An option left unset (None) is left out, so the method's own
    default applies. A task's methods take typed values, never the argparse namespace."""
    import inspect

    names = [p.name for p in inspect.signature(method).parameters.values()
             if p.default is not p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def export_targets():
    """The registered export targets (common/export/targets.py), name -> Target; no TensorFlow."""
    from common.export import TARGETS

    return TARGETS


def exit_code(result):
    """A task command's return value as the process exit code: None and True (a paper plan that
    finished) are 0, False (a plan that stopped early) 1, an int itself. `sys.exit(True)` would be 1."""
    if result is None or result is True:
        return 0
    if result is False:
        return 1
    return int(result)


def _check_command(parser, argv):
    """An unknown command is one line with the closest command and the list, not argparse's usage."""
    from common.errors import ConfigError, did_you_mean

    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    command = next((a for a in argv if not a.startswith("-")), None)  # --verbose is the only option before it
    commands = next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if command is not None and command not in commands:
        raise ConfigError(f"{command}: unknown command{did_you_mean(command, commands)}; "
                          f"the commands are {', '.join(commands)}")


def _refuse_unknown_options(parser, command, unknown):
    """One line for an option COMMAND does not have (another command's, or a typo), with the closest
    option it does have."""
    from common.errors import ConfigError, did_you_mean

    sub = next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))[command]
    option = unknown[0].split("=", 1)[0]
    what = "an option" if option.startswith("-") else "an argument"
    raise ConfigError(f"{option}: not {what} of `{sub.prog}`{did_you_mean(option, sub._option_string_actions)}; "
                      f"`{sub.prog} --help` lists its options")


def _train_config(task, args, default):
    from common.runner import load_task_config

    overrides = [*args.overrides, *(["train.verbose=1"] if args.verbose else [])]
    return load_task_config(task, args.config, overrides, args.data, default=default, announce=True)


# ---------------------------------------------------------------------------------------------
# TensorFlow set-up and the terminal


def onednn_by_default(machine=None):
    """Whether TF_ENABLE_ONEDNN_OPTS=1 is set for the user who set none: on every x86-64 CPU.

    TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 VNNI, BF16 or AMX;
    on an AVX2-only CPU it trains with its Eigen kernels, and those are slower: unet_ce at width 1,
    batch 8, float32, 3.3 s a step against 2.7 s with oneDNN (issue 27; measured on this project's
    AMD EPYC under benchmarks/cpu_cap.c, benchmarks/RESULTS.md has the side-by-side run). Elsewhere
    (ARM, where oneDNN goes through other libraries) TensorFlow's own default stands.
    """
    return (machine or platform.machine()).lower() in ("x86_64", "amd64")


def setup_tensorflow(threads=None):
    """Quiet TensorFlow's Python logs, turn its oneDNN kernels on on every x86-64 CPU
    (onednn_by_default), and size its thread pools.

    `threads` (or the environment variable EDGE_THREADS) caps the intra-op pool; by default
    TensorFlow uses every core. Call before any TensorFlow op runs.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if onednn_by_default():
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    import tensorflow as tf

    # The converter's and Keras' Python warnings are about their internals, not the user's input.
    warnings.filterwarnings("ignore", module=r"(tensorflow|tf_keras|keras|tensorflow_model_optimization)(\.|$)")
    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    threads = threads or int(os.environ.get("EDGE_THREADS", "0"))
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # already initialised: keep what is set
            pass


# The native (C++) log lines of TensorFlow and XLA: "I0000 00:00:17... port.cc:153] ...", and
# absl's notice about them. They read as failures ("failed call to cuInit") on every command.
NATIVE_LOG_LINE = re.compile(
    rb"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]|WARNING: All log messages before absl"
    rb"|INFO: Created TensorFlow Lite|fully_quantize: )"
)


def quiet_native_logs(log_path=None):
    """Keep TensorFlow's native log lines out of the terminal.

    Native code writes to file descriptor 2 directly, so the descriptor is pointed at a pipe and
    a thread copies every line that is not a native log line back to the real stderr (the native
    lines go to `log_path` when given). Python's own `sys.stderr` writes straight to the real
    stderr, so error messages never wait on the thread.
    """
    try:
        real = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
    except OSError:
        return
    sys.stderr = os.fdopen(os.dup(real), "w", buffering=1, encoding="utf-8", errors="replace")

    def pump():
        log = open(log_path, "ab") if log_path else None
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if NATIVE_LOG_LINE.match(line):
                    if log:
                        log.write(line)
                        log.flush()
                else:
                    os.write(real, line)

    threading.Thread(target=pump, daemon=True, name="native-log-filter").start()


def _discard_unstarted_runs():
    rundir = sys.modules.get("common.rundir")  # only loaded if a run was started
    if rundir is not None:
        rundir.discard_unstarted_runs()


def run_cli(main, argv=None):
    """Run `main(argv)`; turn the project's errors into one line on stderr and exit code 2."""
    from common.errors import ProjectError

    try:
        code = main(argv)
    except ProjectError as error:
        _discard_unstarted_runs()
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
    except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError) as error:
        print(f"error: {error.filename or ''}: {error.strerror or error}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt as interrupt:
        print(f"interrupted{': ' + str(interrupt) if str(interrupt) else ''}", file=sys.stderr, flush=True)
        sys.exit(130)
    sys.exit(code or 0)


def entry(task, argv=None):
    """`python -m TASK`: the task's command line with the project's error handling."""
    argv = sys.argv[1:] if argv is None else argv
    if "--verbose" not in argv:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        quiet_native_logs()
    run_cli(lambda a: main(task, a), argv)
