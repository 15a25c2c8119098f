import pytest

from common.config import config_hash, load_config, save_config
from common.errors import ConfigError
from common.train import TRAIN_DEFAULTS

DEFAULTS = {
    "model": {"width": 1.0, "residual": False, "name": "unet", "bands": [1, 2]},
    "train": dict(TRAIN_DEFAULTS),
}


def write(path, text):
    path.write_text(text)
    return path


def test_defaults_alone():
    cfg = load_config(None, defaults=DEFAULTS)
    assert cfg == DEFAULTS and cfg is not DEFAULTS


def test_file_base_chain_and_overrides(tmp_path):
    write(tmp_path / "base.yaml", "model:\n  width: 0.5\ntrain:\n  epochs: 3\n")
    child = write(tmp_path / "child.yaml", "base: base.yaml\nmodel:\n  residual: true\n")
    cfg = load_config(child, ["train.lr=0.01", "model.bands=[3, 4]", "train.epochs=7"], defaults=DEFAULTS)
    assert cfg["model"] == {"width": 0.5, "residual": True, "name": "unet", "bands": [3, 4]}
    assert cfg["train"]["lr"] == 0.01 and cfg["train"]["epochs"] == 7
    assert DEFAULTS["model"]["width"] == 1.0  # defaults untouched


def test_int_accepted_for_float():
    cfg = load_config(None, ["model.width=2"], defaults=DEFAULTS)
    assert cfg["model"]["width"] == 2.0 and isinstance(cfg["model"]["width"], float)


@pytest.mark.parametrize(
    "text, message",
    [
        ("model:\n  widht: 2\n", "unknown config key 'model.widht'"),
        ("modle: {}\n", "unknown config key 'modle'"),
        ("model:\n  residual: 3\n", "config key 'model.residual' must be true or false"),
        ("model:\n  width: wide\n", "config key 'model.width' must be float"),
        ("train:\n  lr: -0.1\n", "config key 'train.lr' must be > 0"),
        ("train:\n  epochs: 0\n", "config key 'train.epochs' must be > 0"),
        ("model: 3\n", "config key 'model' must be a mapping"),
        ("- a\n- b\n", "must be a mapping of keys to values"),
        ("model: [\n", "not valid YAML"),
    ],
)
def test_bad_files_name_the_key(tmp_path, text, message):
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError, match=r".*") as info:
        load_config(path, defaults=DEFAULTS)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_override():
    with pytest.raises(ConfigError, match="--set: unknown config key 'train.lrr'"):
        load_config(None, ["train.lrr=1"], defaults=DEFAULTS)
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(None, ["train.lr"], defaults=DEFAULTS)


def test_missing_file_and_loop(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", defaults=DEFAULTS)
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config(tmp_path / "a.yaml", defaults=DEFAULTS)


def test_save_round_trip_and_hash(tmp_path):
    cfg = load_config(None, ["model.width=0.25"], defaults=DEFAULTS)
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml", defaults=DEFAULTS) == cfg
    assert config_hash(cfg) == config_hash(load_config(None, ["model.width=0.25"], defaults=DEFAULTS))
    assert config_hash(cfg) != config_hash(DEFAULTS)


def test_select_on_is_inner_by_default_and_a_bad_value_names_the_key():
    assert load_config(None, defaults=DEFAULTS)["train"]["select_on"] == "inner"
    assert load_config(None, ["train.select_on=reported"], defaults=DEFAULTS)["train"]["select_on"] == "reported"
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.select_on=test"], defaults=DEFAULTS)
    assert str(info.value) == "config key 'train.select_on' must be inner or reported, got 'test'"


def test_a_saved_run_with_a_retired_key_still_loads(tmp_path):
    """A run's config.yaml saves every key; one written before `export.calibration_clips` was
    retired holds it at 0 (unset) and still loads; a set value is refused, naming the new key."""
    from common.config import EXPORT_DEFAULTS

    defaults = {"export": dict(EXPORT_DEFAULTS)}
    (tmp_path / "old.yaml").write_text("export:\n  calibration_clips: 0\n  calibration_examples: 64\n")
    assert load_config(tmp_path / "old.yaml", defaults=defaults)["export"]["calibration_examples"] == 64
    (tmp_path / "set.yaml").write_text("export:\n  calibration_clips: 200\n")
    with pytest.raises(ConfigError, match="'export.calibration_clips' is retired; use 'export.calibration_examples'"):
        load_config(tmp_path / "set.yaml", defaults=defaults)
