"""YAML experiment configs: defaults, `base:` inheritance, dotted overrides, strict validation.

A config is a nested dict. Each task defines its full schema as a `DEFAULTS` dict; a YAML file only
states what differs from the defaults, and may start from another file with `base: other.yaml`
(a path relative to the file). The command line overrides single values with
`--set train.lr=0.01` (the value is parsed as YAML, so `true`, `3`, `[1, 2]` work).

Every key must exist in the defaults and every value must have the default's type; anything else
is a `ConfigError` that names the key, so a typo never silently trains with a default. The type
check is driven by the defaults: `null` is accepted only where the default is null, a float must
be finite (`.inf` and `.nan` are refused), and counts and rates that must be positive are.

Example:
    cfg = load_config("configs/landslide/tiny.yaml", ["train.epochs=2"], defaults=DEFAULTS)
"""

import copy
import hashlib
import json
import math
from pathlib import Path

import yaml

from common.errors import ConfigError, did_you_mean
from common.io import write_text

# The `train:` section every task config has (used by common.train.fit). It lives here, not in
# common/train.py, so that reading a config does not import TensorFlow.
TRAIN_DEFAULTS = {
    "epochs": 30,
    "batch_size": 32,
    "optimizer": "adam",  # adam | adamw | sgd
    "lr": 1e-3,
    "weight_decay": 0.0,
    # How weight_decay acts: l2 adds weight_decay * w to every gradient before the optimizer's
    # update (PyTorch's Adam and SGD `weight_decay`, the official Landslide4Sense baseline's);
    # decoupled shrinks the weights by lr * weight_decay * w beside the update (AdamW).
    # auto: decoupled for adamw, l2 for adam and sgd.
    "weight_decay_mode": "auto",  # auto | l2 | decoupled
    "schedule": "constant",  # constant | cosine | steps (train.lr_steps)
    # schedule steps: [[epoch, rate], ...] from epoch 0, e.g. [[0, 1e-4], [8, 5e-5]]: the rate
    # from that (0-based) epoch on (paper 1's authors' stepped Adam rate).
    "lr_steps": [],
    "seed": 42,
    "early_stopping_patience": 0,  # epochs without improvement; 0 = off
    # The split that picks the best epoch and stops early: inner = a validation split carved from
    # the training part (the reported split is touched once, at the end); reported = the reported
    # split itself, the papers' practice (optimistic numbers). split.json records which was used.
    "select_on": "inner",  # inner | reported
    "monitor": "val_loss",
    "monitor_mode": "min",  # min | max
    "strategy": "default",  # default | mirrored | multiworker
    "devices": [],  # mirrored only: device names, e.g. ["/gpu:0", "/gpu:1"]; [] = all GPUs (else the CPU)
    # auto: mixed_bfloat16 where the hardware computes bfloat16 natively (CPUs with AVX-512 BF16
    # or AMX, GPUs from Ampere on), float32 elsewhere; the run's config.yaml records the choice.
    "precision": "auto",  # auto | float32 | mixed_bfloat16
    "steps_per_epoch": 0,  # 0 = the whole training set each epoch
    # Batches per call of the compiled training function (Keras' steps_per_execution): fewer
    # Python round trips per step; callbacks and the progress bar see every Nth batch only.
    "steps_per_execution": 1,
    # XLA for the training step: auto = only where it is known to help (GPUs); true | false.
    "jit_compile": "auto",  # auto | true | false
    # Convolution weight gradients as matrix products (common/weight_gradients.py): auto = on x86-64
    # CPUs without AVX-512, where TensorFlow's own kernel runs at half the forward speed.
    "weight_gradients": "auto",  # auto | matmul | tensorflow
    # 0: one line per epoch of our own (common.progress.EpochLog; a progress bar only on a terminal
    # and only in epochs longer than 30 s); 1 and 2: Keras' own output too (progress bar per batch,
    # or a line per epoch), which `--verbose` turns on. Never part of a run's identity (resume).
    "verbose": 0,
    # Retraining on your own data (common/retrain.py): a trained run directory of the same task
    # whose weights the model starts from, matched by layer name and shape (`--init-from RUN`);
    # "" = from scratch. freeze_epochs: train only the layers not copied for this many epochs first.
    "init_from": "",
    "freeze_epochs": 0,
}

# The `export:` section every task config has (used by common.runner.export).
EXPORT_DEFAULTS = {
    "mode": "auto",  # auto (QAT, PTQ fallback) | qat | ptq; `export --mode` is shorthand
    "qat_epochs": 1,
    "qat_steps": 20,  # QAT batches per epoch (a short fine-tune); 0 = the whole training set
    "qat_lr": 1e-4,
    "calibration_examples": 128,  # training examples (a seeded random pick) calibrating int8 ranges
    "size_budget_mb": 20.0,  # the largest int8 file allowed (paper 4: 20 MB)
    "num_threads": 2,  # LiteRT threads for the parity check and the latency measurement
    # edge: model_int8.tflite for LiteRT (float input/output). mcu: also a fully integer model
    # checked in TFLite Micro, with model_int8.cc/.h (`export --target mcu`, common/mcu.py).
    "target": "edge",
    # edge: also model_int8.onnx, the int8 model for ONNX Runtime, faster than LiteRT on x86 CPUs
    # without AVX-512 VNNI (common/export/to_onnx.py). auto: when it converts and agrees with
    # Keras; true: the export fails without it; false: never.
    "onnx": "auto",
}

# Keys whose values must be strictly positive wherever they appear.
_POSITIVE_KEYS = {"lr", "epochs", "batch_size", "temperature", "qat_lr", "size_budget_mb", "num_threads",
                  "steps_per_execution", "calibration_examples"}
# Keys whose value is "auto" or a YAML true/false (kept as the strings "true"/"false").
_AUTO_OR_BOOL_KEYS = {"jit_compile", "onnx"}
# Keys whose value must be one of a few words.
_CHOICE_KEYS = {"select_on": ("inner", "reported"), "weight_gradients": ("auto", "matmul", "tensorflow")}
_NON_NEGATIVE_KEYS = {"weight_decay", "steps_per_epoch", "early_stopping_patience", "label_smoothing",
                      "qat_epochs", "qat_steps", "seed", "split_seed", "freeze_epochs"}


def load_config(path=None, overrides=(), defaults=None):
    """Resolve a config: defaults <- `base:` chain <- file <- overrides.

    Args:
        path: str or Path of a YAML file, or None for the defaults alone.
        overrides: iterable of `"dotted.key=value"` strings.
        defaults: dict, the full schema with default values.

    Returns:
        A new nested dict, validated against `defaults`.
    """
    config = copy.deepcopy(defaults or {})
    if path is not None:
        for layer_path, layer in _read_chain(Path(path)):
            _merge(config, layer, defaults or {}, source=str(layer_path))
    for item in overrides or ():
        key, value = _parse_override(item)
        _merge(config, _nest(key, value), defaults or {}, source="--set")
    _check_values(config, "")
    return config


def apply_override(config, item, defaults):
    """A copy of the resolved `config` with one `--set` string ("dotted.key=value") applied and
    checked against `defaults` (the schema), as `load_config` applies overrides."""
    import copy

    config = copy.deepcopy(config)
    key, value = _parse_override(item)
    _merge(config, _nest(key, value), defaults, source="--set")
    return config


def save_config(config, path):
    """Write the resolved config as YAML, atomically."""
    write_text(path, yaml.safe_dump(config, sort_keys=False))


# Keys that never change what a run computes: a resumed run may differ in them.
_PRESENTATION_KEYS = (("train", "verbose"), ("train", "weight_gradients"))
# Keys added after runs were written, with the value that means what those runs did.
_LATER_KEYS = {("train", "init_from"): "", ("train", "freeze_epochs"): 0}


def same_run_settings(saved, config):
    """True when two resolved configs describe the same run: they may differ in `train.verbose` and
    `train.weight_gradients` (how a step is computed, not what), and a run saved before a key
    existed matches that key's neutral value."""
    def core(cfg):
        cfg = copy.deepcopy(cfg)
        for section, key in _PRESENTATION_KEYS:
            if isinstance(cfg.get(section), dict):
                cfg[section].pop(key, None)
        for (section, key), neutral in _LATER_KEYS.items():
            if isinstance(cfg.get(section), dict) and cfg[section].get(key, neutral) == neutral:
                cfg[section].pop(key, None)
        return cfg

    return core(saved) == core(config)


def read_saved_config(path):
    """Read a config that `save_config` wrote (a run directory's config.yaml), unvalidated."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    return _read_yaml(path)


def config_hash(config):
    """A short stable hash of a (sub-)config, used to detect caches built with other settings."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_chain(path, seen=()):
    """Yield (path, dict) from the root `base:` file down to `path`."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: 'base:' chain loops back to this file")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    layer = _read_yaml(path)
    if not isinstance(layer, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of keys to values")
    _drop_retired(layer, path)
    base = layer.pop("base", None)
    if base is not None:
        yield from _read_chain(path.parent / base, seen + (path,))
    yield path, layer


#: Keys a run directory written before they were retired may still hold at their "unset" value
#: (the resolved config of every run saves every key): dropped when unset, refused when set.
RETIRED_KEYS = {("export", name): "export.calibration_examples"
                for name in ("calibration_patches", "calibration_images", "calibration_clips")}


def _drop_retired(layer, path):
    for (section, key), replacement in RETIRED_KEYS.items():
        values = layer.get(section)
        if isinstance(values, dict) and key in values:
            if values[key]:
                raise ConfigError(f"{path}: config key '{section}.{key}' is retired; use '{replacement}'")
            del values[key]


def _read_yaml(path):
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (UTF-8) file") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({_first_line(error)})") from None


def _merge(config, layer, schema, source, prefix=""):
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if not isinstance(schema, dict) or key not in schema:
            raise ConfigError(f"{source}: unknown config key '{dotted}'{did_you_mean(key, schema if isinstance(schema, dict) else (), prefix)}")
        default = schema[key]
        if isinstance(default, dict) and default:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: config key '{dotted}' must be a mapping, got {value!r}")
            _merge(config[key], value, default, source, prefix=f"{dotted}.")
        else:
            config[key] = _coerce(value, default, dotted, source)


def _coerce(value, default, key, source):
    """Check `value` against the type of `default` (None and {} accept anything; null is accepted
    only there; a float must be finite)."""
    if default is None or default == {}:
        return value
    expected = type(default)
    if value is None:
        kind = "a number" if expected in (int, float) else "true or false" if expected is bool else expected.__name__
        raise ConfigError(f"{source}: config key '{key}' must be {kind}, got null")
    if key.rsplit(".", 1)[-1] in _AUTO_OR_BOOL_KEYS:
        if isinstance(value, bool):
            return "true" if value else "false"
        if value not in ("auto", "true", "false"):
            raise ConfigError(f"{source}: config key '{key}' must be auto, true or false, got {value!r}")
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{source}: config key '{key}' must be a finite number, got {value}")
    if expected is bool and not isinstance(value, bool):
        raise ConfigError(f"{source}: config key '{key}' must be true or false, got {value!r}")
    if expected in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{source}: config key '{key}' must be a number, got {value!r}")
    if expected is list and isinstance(value, tuple):
        return list(value)
    if not isinstance(value, expected):
        raise ConfigError(
            f"{source}: config key '{key}' must be {expected.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def _check_values(config, prefix):
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            _check_values(value, f"{dotted}.")
        elif key in _CHOICE_KEYS and value not in _CHOICE_KEYS[key]:
            raise ConfigError(f"config key '{dotted}' must be {' or '.join(_CHOICE_KEYS[key])}, got {value!r}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if key in _POSITIVE_KEYS and not value > 0:
                raise ConfigError(f"config key '{dotted}' must be > 0, got {value}")
            if key in _NON_NEGATIVE_KEYS and value < 0:
                raise ConfigError(f"config key '{dotted}' must be >= 0, got {value}")


def _parse_override(item):
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, for example train.lr=0.01")
    key, text = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    return key, value


def _nest(dotted_key, value):
    nested = value
    for part in reversed(dotted_key.split(".")):
        nested = {part: nested}
    return nested


def _first_line(error):
    return str(error).strip().splitlines()[0]
