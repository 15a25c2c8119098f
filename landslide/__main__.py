"""`python -m landslide COMMAND`: see landslide/cli.py."""

from common.cli import run_cli
from landslide.cli import main

run_cli(main)
