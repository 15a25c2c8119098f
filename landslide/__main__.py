"""`python -m landslide COMMAND`: see landslide/task.py and common/cli.py."""

from common.cli import entry
from landslide.task import LandslideTask

if __name__ == "__main__":
    entry(LandslideTask())
