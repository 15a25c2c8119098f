"""`python -m asc COMMAND`: see asc/task.py and common/cli.py."""

from asc.task import AscTask
from common.cli import entry

if __name__ == "__main__":
    entry(AscTask())
