"""Run a task's command line in-process, the way `python -m TASK` does (through common.cli.run_cli)."""

import pytest

from common.cli import run_cli


def run_in_process(main, argv, capsys=None):
    """Call `run_cli(main, argv)`; return (exit code, stdout, stderr) of this call alone.

    Args:
        main: a task's `cli.main`.
        argv: command-line arguments (anything str() turns into one).
        capsys: pytest's capsys fixture, or None when the output does not matter.
    """
    if capsys is not None:
        capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, [str(a) for a in argv])
    out, err = capsys.readouterr() if capsys is not None else ("", "")
    return exit_info.value.code, out, err
