"""rsic.models: every registry backbone builds offline and runs; the attention model; weights."""

import copy

import numpy as np
import pytest
import tf_keras as keras

from common.errors import ConfigError, DataError
from rsic.config import DEFAULTS
from rsic.models import BACKBONES, build_model, get_backbone

# Every backbone builds at its smallest input in the default run (about 35 s for all thirteen on
# 2 cores; ConvNeXtLarge's 197M parameters take under 1 GB).


def model_cfg(**changes):
    cfg = copy.deepcopy(DEFAULTS["model"])
    attention = changes.pop("attention", {})
    cfg.update(changes)
    cfg["attention"].update(attention)
    return cfg


@pytest.mark.parametrize("name", list(BACKBONES))
def test_backbone_builds_and_runs_at_min_size(name):
    spec = BACKBONES[name]
    model = build_model(model_cfg(backbone=name, input_size=spec.min_size, embedding_dim=16), 3)
    x = np.random.default_rng(0).uniform(0, 255, (2, spec.min_size, spec.min_size, 3)).astype(np.float32)
    probs = model(x, training=False).numpy()
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert [layer.name for layer in model.layers[-3:]] == ["embedding", "logits", "probs"]
    assert model.get_layer("embedding").output_shape == (None, 16)
    # One flat functional graph: the backbone is not a nested model (quantization needs that);
    # ConvNeXt's own stem and downsampling blocks are Sequential models (export inlines them).
    if not name.startswith("ConvNeXt"):
        assert not any(isinstance(layer, keras.Model) for layer in model.layers)


def test_paper3_parameter_counts():
    """Backbone + GAP + Dense(512) + Dense(45) at 224x224, as paper 3 counts (MobileNetV2 2.9M)."""
    model = build_model(model_cfg(backbone="MobileNetV2", input_size=224), 45)
    assert abs(model.count_params() / 1e6 - 2.94) < 0.02


@pytest.mark.parametrize("name", ["MobileNetV2", "EfficientNetB0"])
def test_attention_model_builds(name):
    cfg = model_cfg(backbone=name, input_size=64, alpha=0.35 if name == "MobileNetV2" else 1.0,
                    embedding_dim=32,
                    attention={"enabled": True, "reduce_channels": 16, "num_heads": 2, "key_dim": 8})
    model = build_model(cfg, 4)
    names = [layer.name for layer in model.layers]
    for i in range(3):
        assert f"att{i}_mha" in names or any(n.startswith(f"att{i}") for n in names)
        assert model.get_layer(f"att{i}_pool").output_shape == (None, 16)
    assert model.get_layer("att_concat").output_shape == (None, 48)
    strides = [64 // model.get_layer(f"att{i}_reduce").output_shape[1] for i in range(3)]
    assert strides == [8, 16, 32]
    probs = model(np.zeros((1, 64, 64, 3), np.float32)).numpy()
    assert probs.shape == (1, 4)


def test_attention_layers_configurable_and_checked():
    cfg = model_cfg(backbone="MobileNet", input_size=32, alpha=0.25, embedding_dim=8,
                    attention={"enabled": True, "layers": ["conv_pw_11_relu", "conv_pw_13_relu"],
                               "reduce_channels": 0, "num_heads": 1, "key_dim": 4})
    model = build_model(cfg, 2)
    assert model.get_layer("att_concat").output_shape == (None, 128 + 256)
    cfg["attention"]["layers"] = ["no_such_layer"]
    with pytest.raises(ConfigError, match="no_such_layer"):
        build_model(cfg, 2)
    with pytest.raises(ConfigError, match="no default feature layers"):
        build_model(model_cfg(backbone="DenseNet121", input_size=32, attention={"enabled": True}), 2)


def test_bad_model_configs():
    with pytest.raises(ConfigError, match="unknown backbone 'VGG99'"):
        get_backbone("VGG99")
    assert get_backbone("mobilenetv2").name == "MobileNetV2"
    with pytest.raises(ConfigError, match="InceptionV3 needs at least 75"):
        build_model(model_cfg(backbone="InceptionV3", input_size=64), 2)
    with pytest.raises(ConfigError, match="model.alpha"):
        build_model(model_cfg(backbone="ResNet50", input_size=32, alpha=0.5), 2)


def test_imagenet_weights_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    cfg = model_cfg(backbone="MobileNet", alpha=0.25, input_size=32, weights="imagenet", embedding_dim=8)
    with pytest.raises(DataError, match=r"keras_home/models/mobilenet_2_5_224_tf_no_top.h5.*not found"):
        build_model(cfg, 2)
    cfg["weights_path"] = str(tmp_path / "missing.h5")
    with pytest.raises(DataError, match="missing.h5"):
        build_model(cfg, 2)


def test_imagenet_weights_from_local_file(tmp_path):
    """A no-top weights file (written here from another backbone) is loaded by model.weights_path."""
    source = keras.applications.MobileNet(input_shape=(32, 32, 3), alpha=0.25, include_top=False, weights=None)
    path = tmp_path / "mobilenet_no_top.h5"
    source.save_weights(str(path))
    cfg = model_cfg(backbone="MobileNet", alpha=0.25, input_size=32, weights="imagenet",
                    weights_path=str(path), embedding_dim=8)
    model = build_model(cfg, 2)
    np.testing.assert_array_equal(model.get_layer("conv1").get_weights()[0], source.get_layer("conv1").get_weights()[0])
