"""benchmarks/int8_runtimes.py: int8 convolutions in LiteRT beside ONNX Runtime (make bench-int8)."""

import json
import subprocess

import pytest

from benchmarks.int8_runtimes import PEER_PYTHON, main, onnxruntime_conv_stack

TINY = ["--layers", "1", "--batch", "1", "--size", "16", "--channels", "8", "--threads", "1"]


def _peer_has_onnxruntime():
    return PEER_PYTHON.is_file() and subprocess.run([str(PEER_PYTHON), "-c", "import onnxruntime"],
                                                    capture_output=True).returncode == 0


def test_litert_side_converts_and_times_a_full_integer_stack(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    assert main([*TINY, "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "int8_runtimes.json").read_text())
    litert = results["rows"][0]
    assert litert["runtime"].startswith("LiteRT ") and litert["ms"] > 0
    assert results["macs"] == 1 * 16 * 16 * 8 * 8 * 9
    assert litert["gmac_per_s"] == pytest.approx(results["macs"] / litert["ms"] / 1e6)
    interpreter = Interpreter(str(tmp_path / "tmp" / "int8_runtimes" / "conv_stack_int8.tflite"))
    assert str(interpreter.get_input_details()[0]["dtype"].__name__) == "int8"  # full-integer, as export writes
    assert {op["op_name"] for op in interpreter._get_ops_details()} == {"CONV_2D"}
    markdown = (tmp_path / "INT8_RUNTIMES.md").read_text()
    assert f"| {litert['runtime']} |" in markdown and "CPU:" in markdown


@pytest.mark.skipif(not _peer_has_onnxruntime(), reason="needs .venv-peer with onnxruntime (make bench-int8)")
def test_onnxruntime_side_runs_the_same_stack():
    row = onnxruntime_conv_stack(1, 1, 16, 8, 1)
    assert row["runtime"].startswith("ONNX Runtime ") and row["ms"] > 0
