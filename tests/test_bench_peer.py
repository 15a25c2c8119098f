"""`make bench-peer` in quick mode: runs only where `.venv-peer` (PyTorch) exists, else skips."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"


@pytest.mark.skipif(not PEER_PYTHON.is_file(), reason="no .venv-peer (make bench-peer creates it)")
def test_bench_peer_quick(tmp_path):
    subprocess.run([sys.executable, "-m", "benchmarks.peer", "--quick", "--configs", "unet_ce", "--out", str(tmp_path)],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL, timeout=900)
    peer = json.loads((tmp_path / "results_quick.json").read_text())["peer"]
    systems = {row["system"] for row in peer["rows"]}
    assert {"pytorch float32", "pytorch bf16 autocast", "unet_ce default (auto)", "unet_ce float32"} <= systems
    for row in peer["rows"]:
        assert row["train_s_median"] > 0 and len(row["loss"]) == peer["epochs"]
    assert peer["ratios"]["unet_ce_default_vs_torch_bf16"] > 0
    assert set(peer["inference"]) == {"int8 TFLite (unet_ce)", "fastest TFLite (unet_ce)", "pytorch float32",
                                      "pytorch bf16"}
    assert peer["ratios"]["tflite_fastest_vs_torch_fastest_inference"] > 0 and "using model_" in peer["tflite_choice"]
    assert "Side by side with the PyTorch baseline" in (tmp_path / "RESULTS_quick.md").read_text()
