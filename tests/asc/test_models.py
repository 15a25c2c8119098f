import numpy as np
import pytest
import tf_keras as keras

from asc.config import load
from asc.features import input_shape
from asc.models import MAX_MACS, MAX_PARAMS, build_model, complexity, embedding_model
from asc.task import AscTask, complexity_report
from asc.task import build_model as build_config_model
from tests.asc.conftest import CONFIGS
from tests.cli_runner import run_in_process


def test_student_config_is_within_the_dcase_limits(capsys):
    cfg = load(CONFIGS / "student.yaml")
    result = complexity_report(build_config_model(cfg, 10), say=lambda _: None)
    assert result["within_limits"]
    assert result["params"] == 79_422 <= MAX_PARAMS
    assert result["macs"] == 17_137_920 <= MAX_MACS
    assert result["int8_bytes"] == result["params"]  # the estimate: one byte per parameter
    code, out, _ = run_in_process(AscTask(), ["complexity", "--config", "student.yaml"], capsys)
    assert code == 0 and "parameters: 79,422 (limit 128,000)" in out and "within the DCASE" in out
    assert run_in_process(AscTask(), ["complexity"])[0] == 0  # student.yaml is the default
    assert run_in_process(AscTask(), ["summary", "--config", "student.yaml"], capsys)[:2] == (0, out)  # an alias


def test_a_large_model_fails_the_complexity_check(capsys):
    code, out, _ = run_in_process(AscTask(), ["complexity", "--config", CONFIGS / "student.yaml",
                                              "--set", "model.widths=[32,64,128,192,256]"], capsys)
    assert code == 1
    assert "OVER the DCASE 2023 Task 1 limits" in out


def test_late_fusion_and_embedding_layers(tmp_path):
    cfg = load(CONFIGS / "student.yaml")
    kinds = cfg["features"]["kinds"]
    model = build_model(input_shape(cfg["features"]), 10, cfg["model"], kinds)
    x = np.random.default_rng(0).uniform(-1, 1, (2, *input_shape(cfg["features"]))).astype(np.float32)
    probs = model.predict(x, verbose=0)
    assert probs.dtype == np.float32 and probs.shape == (2, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    branches = keras.Model(model.input, [model.get_layer(f"{k}_probs").output for k in kinds])
    np.testing.assert_allclose(probs, np.mean(branches.predict(x, verbose=0), axis=0), rtol=1e-5, atol=1e-6)
    assert embedding_model(model).output.shape[-1] == 3 * 128  # concatenated branch embeddings

    model.save(tmp_path / "student.keras")  # the slicing layer serializes
    again = keras.models.load_model(tmp_path / "student.keras")
    np.testing.assert_allclose(again.predict(x, verbose=0), probs, rtol=1e-5, atol=1e-6)


def test_teacher_is_residual_and_large():
    cfg = load(CONFIGS / "teacher.yaml")
    model = build_model(input_shape(cfg["features"]), 10, cfg["model"], cfg["features"]["kinds"])
    c = complexity(model)
    assert not c["within_limits"] and c["params"] > 3_000_000
    assert model.get_layer("embedding").output.shape[-1] == 3 * 256
    assert any(layer.name.endswith("_add") for layer in model.layers)  # residual blocks


def test_single_branch_uses_plain_names():
    cfg = load(CONFIGS / "student.yaml", ["features.kinds=[logmel]"])
    model = build_model(input_shape(cfg["features"]), 10, cfg["model"], ["logmel"])
    assert model.get_layer("logits").output.shape[-1] == 10
    assert model.get_layer("embedding").output.shape[-1] == 128 and model.output.name.startswith("probs")


def test_bad_model_kind():
    from common.errors import ConfigError

    cfg = load(CONFIGS / "student.yaml", ["model.kind=huge"])
    with pytest.raises(ConfigError, match="model.kind"):
        build_model(input_shape(cfg["features"]), 10, cfg["model"], cfg["features"]["kinds"])
