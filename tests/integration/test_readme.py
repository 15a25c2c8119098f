"""The README's examples cannot rot: every `python -m TASK ...` line in it parses with that task's
command line, every config it names loads, and every `make` target it names exists.

(The commands themselves run end to end in each task's CLI tests on sample data.)
"""

import importlib
import re
import shlex
from pathlib import Path

import pytest

from common.config import load_config

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
TASKS = ("landslide", "rsic", "asc")


def example_commands():
    """`python -m TASK ...` lines of the README's code blocks, continuation lines joined."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", README, flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            match = re.match(r"python -m (landslide|rsic|asc) (.*)", line)
            if match:
                commands.append((match.group(1), match.group(2)))
    return commands


COMMANDS = example_commands()


def test_readme_has_examples_for_every_task():
    assert {task for task, _ in COMMANDS} == set(TASKS)


@pytest.mark.parametrize("task, arguments", COMMANDS, ids=[f"{t} {a[:40]}" for t, a in COMMANDS])
def test_example_parses_and_its_config_loads(task, arguments):
    argv = shlex.split(arguments)
    parser = importlib.import_module(f"{task}.cli").build_parser()
    try:
        parser.parse_args(argv)
    except SystemExit as exit:
        pytest.fail(f"README example does not parse: python -m {task} {arguments} (exit {exit.code})")
    if "--config" in argv:
        config = ROOT / argv[argv.index("--config") + 1]
        assert config.is_file(), config
        load_config(config, defaults=importlib.import_module(f"{task}.config").DEFAULTS)


def test_make_targets_named_in_the_readme_exist():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.M))
    named = set(re.findall(r"(?:^|`)make ([a-z][a-z-]+)", README, flags=re.M))
    assert named and named <= targets, named - targets
