"""Run a task's command line in-process, the way `python -m TASK` does (common.cli through run_cli)."""

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
