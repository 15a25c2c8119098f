"""rsic.models: every registry backbone builds offline and runs; the attention model; weights."""

import copy
import hashlib

import numpy as np
import pytest
import tf_keras as keras

from common.errors import ConfigError, DataError
from rsic import models
from rsic.config import DEFAULTS
from rsic.models import BACKBONES, build_model, get_backbone
from tests.fake_http import Server

# Every backbone builds at its smallest input in the default run (about 35 s for all thirteen on
# 2 cores; ConvNeXtLarge's 197M parameters take under 1 GB).


def model_cfg(**changes):
    cfg = copy.deepcopy(DEFAULTS["model"])
    attention = changes.pop("attention", {})
    cfg.update(changes)
    cfg["attention"].update(attention)
    return cfg


# The largest member of a family whose smaller member runs here too builds in `make test-all` only
# (ConvNeXtLarge beside ConvNeXtTiny, EfficientNetB7 beside B0, DenseNet201 beside 121): about
# 20 s of the default suite on 2 cores.
LARGEST_OF_A_FAMILY = {"ConvNeXtLarge", "EfficientNetB7", "DenseNet201"}


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in LARGEST_OF_A_FAMILY
                                  else name for name in BACKBONES])
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


WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A no-top MobileNetV2 (alpha 0.35, 96 px) weights file with distinctive values:
    (file bytes, {layer name: its weights})."""
    source = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, include_top=False, weights=None)
    rng = np.random.default_rng(0)
    source.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in source.get_weights()])
    path = tmp_path_factory.mktemp("weights") / "source.h5"
    source.save_weights(str(path))
    return path.read_bytes(), {layer.name: layer.get_weights() for layer in source.layers if layer.weights}


@pytest.fixture
def served_weights(weights_file, tmp_path, monkeypatch):
    """`weights_file` served on 127.0.0.1 under keras.applications' file name, with its real sha256,
    as the MobileNetV2 entry of the weights table; an empty Keras cache in tmp_path/keras_home.

    Yields (server, {layer name: weights}, file bytes)."""
    data, layers = weights_file
    server = Server({f"/weights/{WEIGHTS_FILE}": data})
    monkeypatch.setitem(models.IMAGENET_WEIGHTS, "MobileNetV2",
                        (f"{server.url}/weights/{{file}}", hashlib.sha256(data).hexdigest()))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    yield server, layers, data
    server.close()


def imagenet_cfg():
    return model_cfg(backbone="MobileNetV2", alpha=0.35, input_size=96, weights="imagenet", embedding_dim=8)


def test_imagenet_weights_downloaded_once_then_cached(served_weights, tmp_path, capsys):
    server, layers, data = served_weights
    model = build_model(imagenet_cfg(), 2)
    cached = tmp_path / "keras_home" / "models" / WEIGHTS_FILE
    assert cached.read_bytes() == data and not list(cached.parent.glob("*.part"))
    out = capsys.readouterr().out
    assert out.count("downloading ImageNet weights of MobileNetV2") == 1 and str(cached) in out
    # Every layer of the backbone holds the file's values (not a fresh initialisation).
    assert len(layers) > 50
    for name, weights in layers.items():
        got = model.get_layer(name).get_weights()
        assert len(got) == len(weights)
        for value, want in zip(got, weights):
            np.testing.assert_array_equal(value, want)
    sent = server.sent
    again = build_model(imagenet_cfg(), 2)
    assert server.sent == sent  # the second build reads the cache
    assert f"using cached ImageNet weights of MobileNetV2: {cached}" in capsys.readouterr().out
    np.testing.assert_array_equal(again.get_layer("Conv1").get_weights()[0], layers["Conv1"][0])


def test_imagenet_weights_with_no_network_name_file_url_and_folder(served_weights, tmp_path):
    server, _, _ = served_weights
    server.close()  # nothing listens there now: the download fails as without network
    with pytest.raises(DataError) as error:
        build_model(imagenet_cfg(), 2)
    message = str(error.value)
    folder = tmp_path / "keras_home" / "models"
    assert "\n" not in message and WEIGHTS_FILE in message and f"{server.url}/weights/{WEIGHTS_FILE}" in message
    assert f"put the file in {folder}/" in message and "download --weights MobileNetV2" in message
    assert not list(folder.glob("*"))  # nothing half-written that would look cached
    with pytest.raises(DataError, match="missing.h5: ImageNet weights file"):
        models.imagenet_weights_path(BACKBONES["MobileNetV2"], {"weights_path": str(tmp_path / "missing.h5")})


def test_imagenet_weights_table_covers_every_backbone():
    """Each backbone has keras.applications' URL; hashes as published (none for MobileNet, MobileNetV2)."""
    assert set(models.IMAGENET_WEIGHTS) == set(BACKBONES)
    _, url, file_hash = models.imagenet_weights_origin(BACKBONES["ResNet50"])
    assert url == ("https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
                   "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    assert file_hash == "4d473c1dd8becc155b73f8504c6f6626"
    name, url, file_hash = models.imagenet_weights_origin(BACKBONES["MobileNet"], 0.25, 128)
    assert name == "mobilenet_2_5_128_tf_no_top.h5" and url.endswith("/mobilenet/" + name) and file_hash is None
    name, url, _ = models.imagenet_weights_origin(BACKBONES["NASNetMobile"])
    assert name == "nasnet_mobile_no_top.h5" and url.endswith("/nasnet/NASNet-mobile-no-top.h5")


def test_imagenet_weights_from_local_file(tmp_path):
    """A no-top weights file (written here from another backbone) is loaded by model.weights_path."""
    source = keras.applications.MobileNet(input_shape=(32, 32, 3), alpha=0.25, include_top=False, weights=None)
    path = tmp_path / "mobilenet_no_top.h5"
    source.save_weights(str(path))
    cfg = model_cfg(backbone="MobileNet", alpha=0.25, input_size=32, weights="imagenet",
                    weights_path=str(path), embedding_dim=8)
    model = build_model(cfg, 2)
    np.testing.assert_array_equal(model.get_layer("conv1").get_weights()[0], source.get_layer("conv1").get_weights()[0])


def test_cached_file_with_wrong_hash_is_downloaded_again(served_weights, tmp_path, capsys):
    _, _, data = served_weights
    folder = tmp_path / "keras_home" / "models"
    folder.mkdir(parents=True)
    (folder / WEIGHTS_FILE).write_bytes(data[:1000])  # a truncated copy
    path = models.fetch_imagenet_weights(BACKBONES["MobileNetV2"], 0.35, 96)
    assert path == folder / WEIGHTS_FILE and path.read_bytes() == data
    assert "hash differs from the published" in capsys.readouterr().out


def test_cut_student_has_paper3_size():
    """Paper 3's -5B student (EfficientNetB0 to block5c_add, GAP -> dropout 0.4 -> dense 512 ->
    dropout 0.4 -> 45). The published 0.93M is the trainable count (932,749); the total adds
    BatchNormalization's moving statistics. The uncut student and an unknown layer name:
    tests/rsic/test_cli.py."""
    import numpy as np

    model = build_model(model_cfg(backbone="EfficientNetB0", input_size=256, dropout=0.4, cut_after="block5c_add"), 45)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert (model.count_params(), trainable) == (948_916, 932_749)
    assert model.get_layer("pool").input_shape == (None, 16, 16, 112)
    with pytest.raises(ConfigError, match="plain head"):
        build_model(model_cfg(alpha=0.35, input_size=32, cut_after="block_5_add", attention={"enabled": True}), 3)
