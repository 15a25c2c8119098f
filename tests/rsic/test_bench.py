"""rsic.bench (`python -m rsic benchmark`): the table format and up-front checks."""

import copy

import pytest

from common.errors import ConfigError
from rsic.bench import markdown_table, run_benchmark
from rsic.config import DEFAULTS
from tests.rsic.conftest import TASK


def test_markdown_table():
    cfg = copy.deepcopy(DEFAULTS)
    rows = [
        {"backbone": "MobileNetV2", "params": 2_936_941, "accuracy": 0.8812, "int8_accuracy": 0.875,
         "tflite_bytes": 3_300_000, "latency_ms": 4.21, "paper_accuracy": 88.0, "note": ""},
        {"backbone": "ConvNeXtLarge", "params": 197_040_365, "accuracy": 0.95, "int8_accuracy": None,
         "tflite_bytes": None, "latency_ms": None, "paper_accuracy": 95.3, "note": "not exported"},
    ]
    table = markdown_table(rows, cfg).splitlines()
    assert table[2].startswith("| backbone | params | accuracy %")
    assert table[4] == "| MobileNetV2 | 2.94M | 88.1 | 87.5 | 3.30 | 4.2 | 88.0 |  |"
    assert table[5] == "| ConvNeXtLarge | 197.04M | 95.0 | - | - | - | 95.3 | not exported |"


def test_unknown_backbone_refused_before_any_work(tmp_path):
    cfg = copy.deepcopy(DEFAULTS)
    cfg["benchmark"]["backbones"] = ["MobileNetV2", "ResNet9000"]
    with pytest.raises(ConfigError, match="ResNet9000"):
        run_benchmark(TASK, cfg, tmp_path / "bench")
    assert not (tmp_path / "bench").exists()
