"""The docs stay true: README.md and docs/*.md state no measured number that no generated file
backs, every command example parses, and the README's quick start runs end to end.

(a) Measured numbers. A number in a doc's prose or tables is taken as a measurement when it has
    a decimal point (0.887, 13.8), a thousands separator (149,624) or a unit right after it
    (%, B, bytes, KB, MB, GB, ms, s, min, h, x, .../s). It must appear, as written or rounded from
    a longer value, in one of the GENERATED files (written by `make demo` and `make bench`, each
    stamped with its command, machine and date). Not checked: code blocks and `code spans`
    (commands, keys, file names; their parsing is (b)), link targets, version numbers, dates,
    the cells of a table column whose header says "published", and what a marker exempts:
    `<!-- not measured: WHY -->` at the end of a line exempts that line, alone on a line it exempts
    the block (table or paragraph) below it. The marker is for numbers that are not measurements:
    the papers' numbers, a challenge's limits, counts computed from a config, estimates.
(b) Examples. Every line of a ```bash or plain ``` block is a command: `python -m TASK ...`
    parses with that task's real parser (and its `--config` loads), `python -m MODULE` names a
    module that exists, `make TARGET` names a Makefile target; anything else starts with a known
    shell command. Output and layouts go in ```text blocks.
(c) The quick start. The README's quick-start blocks (section "Quick start on sample data") run
    in-process, in a temporary folder, as a user runs them, with one epoch and int8 by PTQ.
"""

import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest

from common.cli import build_parser
from common.config import load_config
from common.runner import config_path
from common.task import task_by_name

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
GENERATED = ["benchmarks/RESULTS.md", "benchmarks/results.json", "benchmarks/scale.json",
             "docs/results/demo.md", "benchmarks/PAPER1_SPEED.md",
             "benchmarks/PAPER4_NETWORK.md", "benchmarks/CONV_KERNELS.md", "benchmarks/CONV_KERNELS_x86-64-v3.md",
             "benchmarks/INT8_RUNTIMES.md", "benchmarks/INT8_RUNTIMES_x86-64-v3.md",
             "benchmarks/profiles/native/model_int8_b8_t2.md", "benchmarks/profiles/x86-64-v3/model_int8_b8_t2.md",
             "benchmarks/profiles/native/model_int8_onnx_b8_t2.md",
             "benchmarks/profiles/x86-64-v3/model_int8_onnx_b8_t2.md"]
TASKS = ("landslide", "rsic", "asc")
MARKER = "<!-- not measured:"

NUMBER = re.compile(r"(?<![\w.,/-])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\w.]*\d|/\w)")
UNIT = re.compile(r"\s?(?:%|B\b|bytes\b|KB\b|MB\b|GB\b|ms\b|s\b|min\b|minutes\b|h\b|hours\b|"
                  r"[a-z]+/s\b|GMAC/s)|x\b")
NAMES_BEFORE_A_VERSION = re.compile(r"(?:Python|TensorFlow|tf-keras|librosa|arXiv|version|record)\s?$")


def _rounded_forms(text):
    """The number as written in a generated file and rounded to fewer decimals."""
    value = float(text.replace(",", ""))
    decimals = len(text.split(".")[1]) if "." in text else 0
    forms = {_normal(value, decimals)}
    for fewer in range(1 if abs(value) < 10 else 0, decimals):
        forms.add(_normal(round(value, fewer), fewer))
    return forms


def _normal(value, decimals):
    return f"{value:.{decimals}f}"


def backed_numbers():
    """Every number of the generated files, in every rounded form."""
    numbers = set()
    for name in GENERATED:
        path = ROOT / name
        if not path.is_file():
            continue
        text = path.read_text()
        if name.endswith(".json"):  # json.dumps writes full floats: add their written forms too
            text += " " + " ".join(str(v) for v in _json_values(json.loads(text)))
        for match in re.finditer(r"\d[\d,]*(?:\.\d+)?", text):
            token = match.group(0).rstrip(",")
            if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?", token):
                numbers |= _rounded_forms(token)
    return numbers


def _json_values(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _json_values(value)
    elif isinstance(node, list):
        for value in node:
            yield from _json_values(value)
    elif isinstance(node, float):
        yield round(node, 6)
    elif isinstance(node, int) and not isinstance(node, bool):
        yield node


def prose_lines(text):
    """(line number, text) of the lines whose numbers (a) checks: code, link targets, comments,
    marked lines and blocks and "published" table columns removed."""
    lines = text.splitlines()
    fenced, exempt_block, published_columns = False, False, set()
    for number, line in enumerate(lines, 1):
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        if not line.strip():
            exempt_block, published_columns = False, set()
            continue
        if line.strip().startswith(MARKER):
            exempt_block = True
            continue
        if exempt_block or MARKER in line:
            continue
        if line.startswith("|"):
            cells = line.strip().strip("|").split("|")
            if not published_columns and number < len(lines) and lines[number].startswith("|---"):
                published_columns = {i for i, cell in enumerate(cells) if "published" in cell.lower()}
                published_columns.add(-1)  # a header row was seen
            line = "|".join(cell for i, cell in enumerate(cells) if i not in published_columns)
        line = re.sub(r"`[^`]*`", " ", line)
        line = re.sub(r"\]\([^)]*\)", "]", line)
        line = re.sub(r"https?://\S+|<!--.*?-->", " ", line)
        line = re.sub(r"\d{4}-\d\d-\d\d( \d\d:\d\d)?|\d+\.\d+\.\d+\S*", " ", line)  # dates, versions
        yield number, line


def measured_numbers(line):
    """The numbers of `line` that (a) takes as measurements."""
    for match in NUMBER.finditer(line):
        token = match.group(1)
        after = line[match.end():]
        if NAMES_BEFORE_A_VERSION.search(line[:match.start()]):
            continue
        if "." in token or "," in token or UNIT.match(after):
            yield token


def unbacked(path, backed, root=ROOT):
    """'file:line: number in "context"' for every measured number of `path` no generated file backs."""
    problems = []
    for number, line in prose_lines(path.read_text()):
        for token in measured_numbers(line):
            value = token.replace(",", "")
            decimals = len(value.split(".")[1]) if "." in value else 0
            if _normal(float(value), decimals) not in backed:
                problems.append(f"{path.relative_to(root)}:{number}: {token} is in no generated file "
                                f"({', '.join(GENERATED)}): \"{line.strip()[:100]}\"")
    return problems


@pytest.fixture(scope="module")
def backed():
    return backed_numbers()


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_every_measured_number_comes_from_a_generated_file(path, backed):
    problems = unbacked(path, backed)
    assert not problems, "\n".join(problems)


def test_a_made_up_number_fails(tmp_path, backed):
    doc = tmp_path / "made_up.md"
    doc.write_text("The tiny model reaches accuracy 0.8731 in 12.34 ms.\n\n"
                   "<!-- not measured: published by paper 2 -->\n57.4% and 88.7 KB.\n\n"
                   "| model | published | here |\n|---|---|---|\n| student | 57.4% | 0.8731 |\n")
    problems = unbacked(doc, backed, root=tmp_path)
    assert [p.split(": ")[1].split(" ")[0] for p in problems] == ["0.8731", "12.34", "0.8731"]


# ---------------------------------------------------------------------------------------------
# (b) examples

SHELL_COMMANDS = {"git", "cd", "source", "export", "make", "ls", "du", "cp", "mkdir", "nohup", "tensorboard"}


def code_blocks(text):
    """(language, text) of every fenced code block of a Markdown text."""
    blocks, language, lines = [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if language is None:
                language, lines = line[3:].strip(), []
            else:
                blocks.append((language, "\n".join(lines) + "\n"))
                language = None
        elif language is not None:
            lines.append(line)
    return blocks


def example_lines():
    """(doc, line) of every command line of the docs' ```bash and plain ``` blocks, continuation
    lines joined and trailing comments dropped."""
    found = []
    for path in DOCS:
        for language, block in code_blocks(path.read_text()):
            if language not in ("bash", "sh", ""):
                continue
            for line in block.replace("\\\n", " ").splitlines():
                line = re.split(r"\s+#", line)[0].strip()
                if line and not line.startswith("#"):
                    found.append((path.name, line))
    return found


EXAMPLES = example_lines()
MAKE_TARGETS = {name for line in re.findall(r"^([a-z][a-z0-9 %-]*):", (ROOT / "Makefile").read_text(), flags=re.M)
                for name in line.split()}


def test_docs_have_examples_for_every_task():
    named = {m.group(1) for _, line in EXAMPLES for m in [re.search(r"python -m (\w+)", line)] if m}
    assert set(TASKS) <= named


def _check_python_module(argv):
    module, arguments = argv[0], argv[1:]
    if module not in TASKS:
        assert importlib.util.find_spec(module) is not None, f"no module {module}"
        return
    task = task_by_name(module)
    try:
        parsed = build_parser(task).parse_args(arguments)
    except SystemExit as exit:
        pytest.fail(f"does not parse with {module}'s command line (exit {exit.code})")
    config = getattr(parsed, "config", None)
    if config and parsed.command not in ("predict",):
        path = config_path(task, ROOT / config, None)
        if not path.is_file():  # a bare file name is looked up in configs/TASK/
            path = config_path(task, config, None)
        assert path.is_file(), path
        load_config(path, defaults=task.defaults)


@pytest.mark.parametrize("doc, line", EXAMPLES, ids=[f"{d}: {line[:50]}" for d, line in EXAMPLES])
def test_example_parses(doc, line):
    for command in re.split(r"\s*(?:&&|;|\|\|)\s*", line):
        argv = shlex.split(command)
        while len(argv) > 1 and "=" in argv[0] and argv[0].split("=")[0].isupper():  # VAR=value command ...
            argv = argv[1:]
        if argv[0].endswith("python") and argv[1:2] == ["-m"]:
            _check_python_module(argv[2:])
        elif argv[0] == "make":
            targets = [a for a in argv[1:] if "=" not in a and not a.startswith("-")]
            assert targets and set(targets) <= MAKE_TARGETS, f"{doc}: no make target {targets}"
        else:
            assert argv[0] in SHELL_COMMANDS, f"{doc}: not a known command: {command}"


def test_make_targets_named_in_prose_exist():
    named = set()
    for path in DOCS:
        named |= set(re.findall(r"`make ([a-z][a-z0-9-]+)", path.read_text()))
    assert named and named <= MAKE_TARGETS, named - MAKE_TARGETS


# ---------------------------------------------------------------------------------------------
# (c) the quick start


def quick_start(task):
    """The README's quick-start commands of `task`, as argv lists after `python -m TASK`."""
    readme = DOCS[0].read_text()
    section = readme.split("## Quick start on sample data", 1)[1].split("\n## ", 1)[0]
    block = re.search(rf"### {task}\n+```bash\n(.*?)```", section, flags=re.S).group(1)
    commands = []
    for line in block.splitlines():
        argv = shlex.split(line)
        assert argv[:3] == ["python", "-m", task], line
        commands.append(argv[3:])
    return commands


@pytest.mark.parametrize("task", TASKS)
def test_quick_start_blocks_are_sample_train_evaluate_export_predict(task):
    assert [argv[0] for argv in quick_start(task)] == ["sample", "train", "evaluate", "export", "predict"]


def test_quick_start_runs_end_to_end(tmp_path, monkeypatch):
    """Every task's quick start, as written, in one temporary folder, to fit the suite's budget
    with one epoch (`--set train.epochs=1`) and int8 by post-training quantization calibrated on
    a few examples (`--mode ptq --set export.calibration_examples=8`: the TFLite converter's
    calibration is most of an export's time). What each step writes is checked, not how good the
    model is (one epoch on sample data)."""
    from common.cli import main

    monkeypatch.chdir(tmp_path)
    for task in TASKS:
        for argv in quick_start(task):
            extra = {"train": ["--set", "train.epochs=1"],
                     "export": ["--mode", "ptq", "--set", "export.calibration_examples=8"]}.get(argv[0], [])
            assert main(task_by_name(task), argv + extra) == 0, (task, argv)
        run = tmp_path / "runs" / f"quick_{task}"
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["examples"] > 0
        report = json.loads((run / "export_report.json").read_text())
        assert report["tflite_bytes"] > 0 and 0.0 <= report["agreement"] <= 1.0
    assert len(list((tmp_path / "runs/quick_landslide/masks").glob("mask_*.h5"))) > 0
    for task in ("rsic", "asc"):
        rows = (tmp_path / f"runs/quick_{task}/predictions.csv").read_text().splitlines()
        assert rows[0].startswith("file,label,probability") and len(rows) > 1


def test_license_and_citations_name_the_same_license_and_the_four_papers():
    import yaml

    assert (ROOT / "LICENSE").read_text().split()[:4] == ["Apache", "License", "Version", "2.0,"]
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["license"] == "Apache-2.0" and citation["cff-version"] == "1.2.0"
    papers = (ROOT / "docs/papers.md").read_text()
    bibtex = "".join(block for language, block in code_blocks(papers) if language == "bibtex")
    for arxiv in ("2312.16717", "2305.09463", "2302.13028", "2211.02820"):
        assert f"eprint        = {{{arxiv}}}" in bibtex
        assert any(f"arXiv:{arxiv}" in str(ref["identifiers"]) for ref in citation["references"])


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_relative_links_point_at_files_that_exist(path):
    text = "".join(line + "\n" for _, line in _outside_code(path.read_text()))
    missing = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        if not (path.parent / target).exists():
            missing.append(target)
    assert not missing, f"{path.name}: links to missing files {missing}"


def _outside_code(text):
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            yield number, line
