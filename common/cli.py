"""Pieces every task's command line shares: common options, TensorFlow set-up, error handling.

A command that fails on bad input prints one line, `error: <file or key>: <problem>`, and exits
with code 2; never a TensorFlow stack trace.
"""

import argparse
import logging
import os
import sys


def add_common_args(parser, *, data=True, out=True, run=False, config=True):
    """Add the options shared by the task commands to an argparse (sub)parser."""
    if config:
        parser.add_argument("--config", help="YAML config file (see configs/)")
    if data:
        parser.add_argument("--data", help="data set folder")
    if out:
        parser.add_argument("--out", help="output folder (a run directory for train)")
    if run:
        parser.add_argument("--run", required=True, help="run directory written by train")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set train.lr=0.01 (repeatable)",
    )
    if out:
        parser.add_argument(
            "--strategy",
            choices=["default", "mirrored", "multiworker"],
            action=_OverrideAction,
            config_key="train.strategy",
            help="tf.distribute strategy (same as --set train.strategy=...)",
        )
        parser.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
        parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    return parser


class _OverrideAction(argparse.Action):
    """An option that is shorthand for one `--set key=value`."""

    def __init__(self, option_strings, dest, config_key, **kwargs):
        self.config_key = config_key
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, value, option_string=None):
        overrides = list(getattr(namespace, "overrides", None) or [])
        namespace.overrides = overrides + [f"{self.config_key}={value}"]
        setattr(namespace, self.dest, value)


def setup_tensorflow(threads=None):
    """Quiet TensorFlow's start-up logs and size its thread pools.

    `threads` (or the environment variable EDGE_THREADS) caps the intra-op pool; by default
    TensorFlow uses every core. Call before any TensorFlow op runs.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    threads = threads or int(os.environ.get("EDGE_THREADS", "0"))
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # already initialised: keep what is set
            pass


def _discard_unstarted_runs():
    train = sys.modules.get("common.train")  # only loaded (with TensorFlow) if a run was started
    if train is not None:
        train.discard_unstarted_runs()


def run_cli(main, argv=None):
    """Run `main(argv)`; turn the project's errors into one line on stderr and exit code 2."""
    from common.errors import ProjectError

    try:
        code = main(argv)
    except ProjectError as error:
        _discard_unstarted_runs()
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError) as error:
        print(f"error: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as interrupt:
        print(f"interrupted{': ' + str(interrupt) if str(interrupt) else ''}", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
