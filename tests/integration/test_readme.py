"""The README's examples cannot rot: every `python -m TASK ...` line in it parses with that task's
command line, every config it names loads, and every `make` target it names exists.

(The commands themselves run end to end in each task's CLI tests on sample data.)
"""

import re
import shlex
from pathlib import Path

import pytest

from common.cli import build_parser
from common.config import load_config
from common.runner import config_path
from common.task import task_by_name

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
    task_object = task_by_name(task)
    parser = build_parser(task_object)
    try:
        parser.parse_args(argv)
    except SystemExit as exit:
        pytest.fail(f"README example does not parse: python -m {task} {arguments} (exit {exit.code})")
    if "--config" in argv:
        config = config_path(task_object, ROOT / argv[argv.index("--config") + 1], None)
        if not config.is_file():  # a bare file name is looked up in configs/TASK/
            config = config_path(task_object, argv[argv.index("--config") + 1], None)
        assert config.is_file(), config
        load_config(config, defaults=task_object.defaults())


def test_make_targets_named_in_the_readme_exist():
    makefile = (ROOT / "Makefile").read_text()
    targets = {name for line in re.findall(r"^([a-z][a-z0-9 -]*):", makefile, flags=re.M) for name in line.split()}
    named = set(re.findall(r"(?:^|`)make ([a-z][a-z0-9-]+)", README, flags=re.M))
    assert named and named <= targets, named - targets
