"""benchmarks/run.py: `make bench` rewrites RESULTS.md but keeps `make bench-scale`'s section."""

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
