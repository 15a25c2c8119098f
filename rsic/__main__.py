"""`python -m rsic COMMAND`: see rsic/task.py and common/cli.py."""

from common.cli import entry
from rsic.task import RsicTask

if __name__ == "__main__":
    entry(RsicTask())
