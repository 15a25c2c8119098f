"""common.tflite_choice: `predict --tflite RUN` picks the run's fastest exported file, from timings
injected here (no timing in tests), and remembers the choice per CPU and file contents."""

import json

import pytest

from common.errors import DataError
from common.tflite_choice import CACHE_FILE, choose

MACHINE = {"cpu": "Intel(R) Xeon(R) CPU E5-2690 v4", "cores": 4, "cpu_flags": ["avx2", "fma"]}


def _run(tmp_path, *names):
    for name in names:
        (tmp_path / name).write_bytes(name.encode())  # contents matter only through their hash
    return tmp_path


def _timer(ms, calls):
    def timer(path, num_threads, batch):
        calls.append((path.name, num_threads, batch))
        return ms[path.name]
    return timer


def test_fastest_file_is_chosen_and_remembered(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGE_THREADS", raising=False)
    run = _run(tmp_path, "model_int8.tflite", "model_float16.tflite")
    calls = []
    ms = {"model_int8.tflite": 30.0, "model_float16.tflite": 12.5}
    path, line = choose(run, batch=8, timer=_timer(ms, calls), machine=MACHINE)
    assert path == run / "model_float16.tflite"
    assert sorted(calls) == [("model_float16.tflite", 4, 8), ("model_int8.tflite", 4, 8)]  # threads = cores
    assert "using model_float16.tflite" in line and "timed now" in line and "model_int8.tflite 30.0" in line
    cached = json.loads((run / CACHE_FILE).read_text())["entries"]
    assert [entry["file"] for entry in cached.values()] == ["model_float16.tflite"]

    calls.clear()  # the same machine and files: no timing, the same choice
    path, line = choose(run, batch=8, timer=_timer(ms, calls), machine=MACHINE)
    assert path == run / "model_float16.tflite" and calls == [] and "timed before on this CPU" in line


def test_another_cpu_or_a_new_export_times_again(tmp_path):
    run = _run(tmp_path, "model_int8.tflite", "model_float16.tflite")
    calls = []
    choose(run, timer=_timer({"model_int8.tflite": 30.0, "model_float16.tflite": 12.5}, calls), machine=MACHINE)
    vnni = {**MACHINE, "cpu": "AMD EPYC", "cpu_flags": ["avx2", "fma", "avx512f", "avx512_vnni"]}
    fast_int8 = {"model_int8.tflite": 6.0, "model_float16.tflite": 12.5}
    path, _ = choose(run, timer=_timer(fast_int8, calls), machine=vnni)
    assert path.name == "model_int8.tflite" and len(calls) == 4
    assert len(json.loads((run / CACHE_FILE).read_text())["entries"]) == 2  # both machines kept
    (run / "model_int8.tflite").write_bytes(b"a new export")
    calls.clear()
    choose(run, timer=_timer(fast_int8, calls), machine=vnni)
    assert len(calls) == 2


def test_ties_keep_the_edge_file_and_one_file_needs_no_timing(tmp_path):
    run = _run(tmp_path, "model_weights8.tflite", "model_int8.tflite")
    ms = {"model_int8.tflite": 10.0, "model_weights8.tflite": 10.0}
    assert choose(run, timer=_timer(ms, []), machine=MACHINE)[0].name == "model_int8.tflite"
    (run / "model_weights8.tflite").unlink()
    (run / CACHE_FILE).unlink()

    def no_timing(*args):
        raise AssertionError("a single file is not timed")

    path, line = choose(run, timer=no_timing, machine=MACHINE)
    assert path.name == "model_int8.tflite" and "only exported" in line and not (run / CACHE_FILE).exists()


def test_a_run_without_exported_files(tmp_path):
    with pytest.raises(DataError, match="no exported model"):
        choose(tmp_path, machine=MACHINE)


def test_a_damaged_cache_is_timed_again(tmp_path):
    run = _run(tmp_path, "model_int8.tflite", "model_float16.tflite")
    (run / CACHE_FILE).write_text("{not json")
    calls = []
    path, _ = choose(run, timer=_timer({"model_int8.tflite": 5.0, "model_float16.tflite": 9.0}, calls),
                     machine=MACHINE)
    assert path.name == "model_int8.tflite" and len(calls) == 2
    assert json.loads((run / CACHE_FILE).read_text())["entries"]
