"""Run a task's command line in-process, the way `python -m TASK` does (common.cli through run_cli)."""

import re

import pytest

from common import cli


def run_in_process(task, argv, capsys=None):
    """Run `python -m TASK argv` in this process; return (exit code, stdout, stderr) of this call.

    Args:
        task: a common.task.Task (e.g. landslide.task.LandslideTask()).
        argv: command-line arguments (anything str() turns into one).
        capsys: pytest's capsys fixture, or None when the output does not matter.
    """
    if capsys is not None:
        capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli.run_cli(lambda a: cli.main(task, a), [str(a) for a in argv])
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return exit_info.value.code, out, err


# The project's terminal styles (docs/ARCHITECTURE.md, "Terminal"): `TASK: ...` progress lines
# (common.runner.say), `warning: ...` (common.runner.warn), `error: ...` (common.cli.run_cli), and a
# paper plan's `[K/N] step: ...`. Python's `WARNING:logger:...`, tracebacks and native TensorFlow
# lines are none of these.
PROJECT_LINE = re.compile(r"^((landslide|rsic|asc|points): |warning: |error: |\[\d+/\d+\] )")


def off_style_lines(*texts):
    """The non-empty lines of `texts` (a command's stdout and stderr) in none of the project's styles."""
    return [line for text in texts for line in text.splitlines() if line.strip() and not PROJECT_LINE.match(line)]
