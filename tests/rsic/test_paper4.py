"""Paper 4's attention model at edge speed (issue 16): the `model.attention` formulations and the
bench rows that put the attention model beside its backbone (real int8 export, sample data)."""

import copy

import numpy as np
import pytest

from common.errors import ConfigError
from rsic.config import DEFAULTS
from rsic.models import build_model


def attention_cfg(**attention):
    cfg = copy.deepcopy(DEFAULTS["model"])
    cfg.update(backbone="MobileNetV2", alpha=0.35, input_size=64, embedding_dim=16)
    cfg["attention"].update({"enabled": True, "reduce_channels": 8, "num_heads": 2, "key_dim": 4, **attention})
    return cfg


def test_strides_pool_keys_values_and_queries_to_their_grid():
    # 64 px: maps of 8, 4 and 2; stride 32 is a 2 x 2 grid, stride 16 a 4 x 4 grid.
    model = build_model(attention_cfg(kv_stride=32, query_stride=0, norm="batch"), 3)
    assert model.get_layer("att0_kv_tokens").output_shape == (None, 4, 8)
    assert model.get_layer("att1_kv_tokens").output_shape == (None, 4, 8)
    assert "att2_kv_pool" not in {layer.name for layer in model.layers}  # already 2 x 2
    assert model.get_layer("att0_map").output_shape == (None, 8, 8, 8)  # queries: every position
    assert model.get_layer("att0_norm").__class__.__name__ == "BatchNormalization"
    model = build_model(attention_cfg(kv_stride=0, query_stride=16, norm="layer"), 3)
    assert model.get_layer("att0_map").output_shape == (None, 4, 4, 8)
    assert model.get_layer("att0_norm").__class__.__name__ == "LayerNormalization"
    probs = model(np.zeros((2, 64, 64, 3), np.float32)).numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize("key, value", [("norm", "group"), ("kv_stride", -8), ("query_stride", "16"),
                                        ("num_heads", 0)])
def test_bad_attention_keys_are_config_errors(key, value):
    with pytest.raises(ConfigError, match=f"model.attention.{key}"):
        build_model(attention_cfg(**{key: value}), 3)


@pytest.mark.slow
def test_paper4_bench_quick_rows(tmp_path):
    """The quick paper-4 bench: MobileNetV2 alpha 0.35 at 64 px, backbone and attention model
    exported to int8 for real, timed in alternation and trained briefly on sample data (about 3
    minutes on 2 busy cores: marked slow)."""
    from rsic.bench import paper4_rows

    (row,) = paper4_rows(quick=True, backbones=("MobileNetV2",), epochs=2, work=tmp_path, log=lambda _: None)
    assert row["kind"] == "paper4" and row["backbone"] == "MobileNetV2 alpha 0.35"
    assert row["attention"] == {key: DEFAULTS["model"]["attention"][key] if key != "reduce_channels" else 32
                                for key in row["attention"]}
    assert row["attention_macs"] > row["backbone_macs"] > 0
    assert 0 < row["backbone_int8_bytes"] < row["attention_int8_bytes"] < 2e6
    ratio = row["attention_int8_ms"]["median"] / row["backbone_int8_ms"]["median"]
    assert row["latency_ratio"] == pytest.approx(ratio)
    for kind in ("backbone_accuracy", "attention_accuracy"):
        accuracy = row[kind]
        assert accuracy["quantization"] == "ptq"
        assert 0.0 <= accuracy["int8_metric"] <= 1.0 and 0.0 <= accuracy["float_metric"] <= 1.0
        # The float model learned something (5 classes) and int8 keeps most of its decisions (a
        # 2-epoch backbone from scratch agreed on 0.7 of them: its decisions are close calls).
        assert accuracy["float_metric"] > 0.25  # chance: 0.2 (measured 0.34 and 0.53)
        assert accuracy["agreement"] >= 0.6
    print(row)
