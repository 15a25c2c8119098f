"""benchmarks/run.py keeps `make bench-scale`'s section; common.bench.write_outputs writes a benchmark's files."""

from benchmarks.run import keep_scale_section
from benchmarks.scale import BEGIN, END


def test_make_bench_keeps_the_scale_section(tmp_path):
    path = tmp_path / "RESULTS.md"
    assert keep_scale_section("# new\n", path) == "# new\n"  # no earlier file
    path.write_text(f"# old\n\nold table\n\n{BEGIN}\n## Scale\n\n| a | b |\n{END}\n\ntrailing\n")
    assert keep_scale_section("# new\n\nnew table\n", path) == (
        f"# new\n\nnew table\n\n{BEGIN}\n## Scale\n\n| a | b |\n{END}\n")
    path.write_text("# old, no scale section\n")
    assert keep_scale_section("# new\n", path) == "# new\n"


def test_write_outputs_writes_the_json_and_the_table(tmp_path, capsys):
    import json

    from common.bench import write_outputs

    write_outputs(tmp_path / "new", {"rows": [1, 2]}, "x.json", "X.md", "| a |\n")
    assert json.loads((tmp_path / "new" / "x.json").read_text()) == {"rows": [1, 2]}
    assert (tmp_path / "new" / "X.md").read_text() == "| a |\n" and capsys.readouterr().out == "| a |\n"
