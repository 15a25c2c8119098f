"""`make bench-peer` in quick mode: runs only where `.venv-peer` (PyTorch) exists, else skips."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.peer import peer_precisions

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"


@pytest.mark.skipif(not PEER_PYTHON.is_file(), reason="no .venv-peer (make bench-peer creates it)")
def test_bench_peer_quick(tmp_path):
    subprocess.run([sys.executable, "-m", "benchmarks.peer", "--quick", "--configs", "unet_ce", "--out", str(tmp_path)],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL, timeout=900)
    peer = json.loads((tmp_path / "results_quick.json").read_text())["peer"]
    systems = {row["system"] for row in peer["rows"]}
    bf16 = peer_precisions(peer["machine"]) == ("float32", "bf16")
    assert systems == {"pytorch float32", "unet_ce default (auto)", "unet_ce float32", "unet_ce float32, oneDNN off"} | (
        {"pytorch bf16 autocast"} if bf16 else set())
    for row in peer["rows"]:
        assert row["train_s_median"] > 0 and len(row["loss"]) == peer["epochs"]
    assert ("unet_ce_default_vs_torch_bf16" in peer["ratios"]) == bf16
    assert set(peer["inference"]) == {"int8 TFLite (unet_ce)", "int8 ONNX Runtime (unet_ce)", "fastest TFLite (unet_ce)",
                                      "pytorch float32"} | (
        {"pytorch bf16"} if bf16 else set())
    assert peer["ratios"]["tflite_fastest_vs_torch_fastest_inference"] > 0 and "using model_" in peer["tflite_choice"]
    assert peer["export_agreement"]["int8 ONNX Runtime"] is not None
    assert "Side by side with the PyTorch baseline" in (tmp_path / "RESULTS_quick.md").read_text()


def test_the_emulated_bf16_peer_is_left_out():
    # Without native bf16, oneDNN emulates it at about a tenth of float32's speed: never the
    # peer's fastest setting, so it is not run.
    avx2 = {"cpu_flags": ["avx2", "fma"], "onednn_max_cpu_isa": None}
    assert peer_precisions(avx2) == ("float32",)
    assert peer_precisions({**avx2, "cpu_flags": ["avx2", "fma", "avx512f", "avx512_bf16"]}) == ("float32", "bf16")


def test_capped_and_native_sections_stay_side_by_side(tmp_path):
    # A run under benchmarks/cpu_cap.c gets its own section and results.json key; writing either
    # keeps the other and `make bench-scale`'s section.
    from benchmarks.peer import write

    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    native = results["peer"]
    capped = json.loads(json.dumps(native))
    capped["machine"].update(cpuid_cap="x86-64-v3", cpu_flags=["avx2", "fma"])
    (tmp_path / "RESULTS.md").write_text("# Benchmark results\n\nspeed rows\n\n<!-- scale:begin -->\n## Scale\n"
                                         "<!-- scale:end -->\n")
    write(capped, tmp_path, quick=False)
    write(native, tmp_path, quick=False)
    write(capped, tmp_path, quick=False)
    text = (tmp_path / "RESULTS.md").read_text()
    assert text.startswith("# Benchmark results\n\nspeed rows\n")
    assert text.count("## Side by side with the PyTorch baseline") == 2
    assert text.index("(`make bench-peer`)") < text.index("as on an AVX2-only CPU (`make bench-peer CPU_CAP=x86-64-v3`)")
    assert "CPUID capped to x86-64-v3" in text and text.rstrip().endswith("<!-- scale:end -->")
    assert set(json.loads((tmp_path / "results.json").read_text())) == {"rows", "peer", "peer_x86-64-v3"}
