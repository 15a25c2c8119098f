"""The training runner shared by every task: run directory, seeds, optimizer, callbacks, resume.

A run directory (`--out`) holds everything one training run produced:

    config.yaml              the resolved config
    model.keras              the final model (best validation weights)
    checkpoints/best.*          best weights so far (monitor of `train.monitor`)
    checkpoints/backup/      BackupAndRestore state; present only while a run is unfinished
    history.csv              one row per epoch
    tb/                      TensorBoard logs
    run.json, .lock          the run's marker and lock (common/rundir.py)

A run that was killed resumes where its last finished epoch left it when the same command is run
again (the run directory is unfinished and its config is the same), or with `--resume`.
A finished run is never overwritten unless `--overwrite` is given. A loss that becomes NaN or
infinite stops training at once (TrainingError), before the epoch's end saves anything.
"""

import csv
import os
import shutil
import signal
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from common.config import TRAIN_DEFAULTS, read_saved_config, same_run_settings, save_config  # noqa: F401 (re-exported)
from common.errors import ConfigError, RunDirError, TrainingError
from common.io import atomic_path
from common.rundir import (  # noqa: F401 (re-exported: the run directory's names and functions)
    BACKUP_DIR,
    BEST_WEIGHTS,
    MODEL_FILE,
    discard_unstarted_runs,
    is_chief,
    prepare_run_dir,
    release_run_dir,
)
from common.weight_gradients import weight_gradients


def set_seed(seed):
    """Seed Python, NumPy and TensorFlow."""
    keras.utils.set_random_seed(int(seed))


_STRATEGIES = {}


def make_strategy(name, devices=()):
    """A tf.distribute strategy by name: default, mirrored (local devices), multiworker (TF_CONFIG).

    The strategy is made once per process and reused. `multiworker` must be made before
    TensorFlow runs its first op, so `train` commands call this (or `start_strategy`) right after
    reading the config, before building data sets.

    With `mirrored`, the global batch (`train.batch_size`) is split across the replicas and the
    gradients and metrics are summed across them, so a run's numbers do not depend on the device
    count. `multiworker` reads the cluster from the TF_CONFIG environment variable.
    """
    key = (name, tuple(devices))
    if key not in _STRATEGIES:
        _STRATEGIES[key] = _new_strategy(name, devices)
    return _STRATEGIES[key]


def start_strategy(train_cfg):
    """The strategy of a `train:` config section (see `make_strategy`)."""
    return make_strategy(train_cfg["strategy"], train_cfg["devices"])


def _new_strategy(name, devices):
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=list(devices) or None)
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ConfigError("train.strategy=multiworker needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"config key 'train.strategy' must be default, mirrored or multiworker, got {name!r}")


def step_schedule(lr_steps, steps_per_epoch):
    """The piecewise-constant rate of `lr_steps` ([[epoch, rate], ...], epochs from 0, rising)
    as a Keras schedule over optimizer steps (`steps_per_epoch` batches per epoch)."""
    try:
        epochs, rates = zip(*((int(e), float(r)) for e, r in lr_steps))
    except (TypeError, ValueError):
        epochs = rates = ()
    if not epochs or epochs[0] != 0 or list(epochs) != sorted(set(epochs)) or min(rates) <= 0:
        raise ConfigError("config key 'train.lr_steps' must be [[epoch, rate], ...] starting at "
                          f"epoch 0 with rising epochs and rates > 0, got {lr_steps!r}")
    # PiecewiseConstantDecay switches after a boundary step: the first step of epoch e is e * spe.
    boundaries = [epoch * int(steps_per_epoch) - 1 for epoch in epochs[1:]]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, list(rates))


def make_optimizer(train_cfg, steps_per_epoch):
    """The optimizer of `train_cfg` with its learning-rate schedule and weight decay.

    Args:
        train_cfg: the `train:` section of a config (`optimizer`, `lr`, `schedule`, `epochs`,
            `weight_decay`, `weight_decay_mode`).
        steps_per_epoch: int, batches per epoch (for schedules that decay over the run).
    """
    lr = float(train_cfg["lr"])
    if train_cfg["schedule"] == "cosine":
        total = max(1, int(steps_per_epoch) * int(train_cfg["epochs"]))
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=total, alpha=0.01)
    elif train_cfg["schedule"] == "steps":
        lr = step_schedule(train_cfg.get("lr_steps", []), steps_per_epoch)
    elif train_cfg["schedule"] != "constant":
        raise ConfigError(f"config key 'train.schedule' must be constant, cosine or steps, got {train_cfg['schedule']!r}")
    name = train_cfg["optimizer"]
    if name not in ("adam", "adamw", "sgd"):
        raise ConfigError(f"config key 'train.optimizer' must be adam, adamw or sgd, got {name!r}")
    decay = float(train_cfg.get("weight_decay", 0.0))
    mode = train_cfg.get("weight_decay_mode", "auto")
    if mode not in ("auto", "l2", "decoupled"):
        raise ConfigError(f"config key 'train.weight_decay_mode' must be auto, l2 or decoupled, got {mode!r}")
    if name == "adamw":
        if mode == "l2":
            raise ConfigError("config key 'train.weight_decay_mode' is l2, but adamw decays decoupled by "
                              "definition; use train.optimizer=adam for L2 or weight_decay_mode=decoupled")
        return keras.optimizers.AdamW(lr, weight_decay=decay or 1e-4)
    if mode == "decoupled" and decay:
        kwargs = {"weight_decay": decay}  # Keras' own decoupled decay: w -= lr * decay * w
    elif decay:
        kwargs, name = {"l2_decay": decay}, name + "_l2"
    else:
        kwargs = {}
    optimizers = {"adam": keras.optimizers.Adam, "adam_l2": AdamL2,
                  "sgd": keras.optimizers.SGD, "sgd_l2": SGDL2}
    if name.startswith("sgd"):
        kwargs.update(momentum=0.9, nesterov=True)
    return optimizers[name](lr, **kwargs)


class _CoupledL2:
    """Mixin: L2 weight decay coupled to the gradient, as PyTorch's Adam and SGD `weight_decay`.

    Every gradient g of a variable w becomes g + l2_decay * w before the optimizer's update
    (after cross-replica aggregation and clipping, so the decay is applied once, whatever the
    number of replicas). Unlike decoupled decay (AdamW), the decay term then goes through Adam's
    moment estimates. It applies to every trainable variable (kernels, biases, BatchNorm scales
    and offsets), as PyTorch's does.
    """

    def __init__(self, *args, l2_decay=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.l2_decay = float(l2_decay)

    def _internal_apply_gradients(self, grads_and_vars):
        decayed = []
        for grad, var in grads_and_vars:
            if isinstance(grad, tf.IndexedSlices):
                grad = tf.convert_to_tensor(grad)
            decayed.append((grad + tf.cast(self.l2_decay, grad.dtype) * tf.cast(var, grad.dtype), var))
        return super()._internal_apply_gradients(decayed)

    def get_config(self):
        return {**super().get_config(), "l2_decay": self.l2_decay}


@keras.saving.register_keras_serializable(package="common")
class AdamL2(_CoupledL2, keras.optimizers.Adam):
    """Adam with coupled L2 weight decay (`torch.optim.Adam(weight_decay=...)`); see _CoupledL2."""


@keras.saving.register_keras_serializable(package="common")
class SGDL2(_CoupledL2, keras.optimizers.SGD):
    """SGD with coupled L2 weight decay (`torch.optim.SGD(weight_decay=...)`); see _CoupledL2."""


def hardware_has_bf16():
    """(True/False, why): whether this machine computes bfloat16 natively.

    CPUs with AVX-512 BF16 or AMX (Intel Cooper Lake and later, AMD Zen 4 and later) and GPUs of
    compute capability 8.0 and later (Ampere) do; elsewhere bfloat16 is emulated and slower. A
    ONEDNN_MAX_CPU_ISA below AVX512_CORE_BF16 (how an AVX2 machine is imitated) counts as without.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        capability = details.get("compute_capability") or (0, 0)
        name = details.get("device_name", "GPU")
        return tuple(capability) >= (8, 0), f"{name} (compute capability {capability[0]}.{capability[1]})"
    from common.cpuinfo import cpu_info, native_bf16

    return native_bf16(cpu_info())


def resolve_precision(train_cfg):
    """The precision policy `train.precision` means here: auto -> mixed_bfloat16 where the hardware
    computes bfloat16 natively (see `hardware_has_bf16`), float32 elsewhere. Returns (policy, why)."""
    policy = train_cfg["precision"]
    if policy == "auto":
        native, why = hardware_has_bf16()
        return ("mixed_bfloat16" if native else "float32"), f"auto: {why}"
    if policy not in ("float32", "mixed_bfloat16"):
        raise ConfigError(f"config key 'train.precision' must be auto, float32 or mixed_bfloat16, got {policy!r}")
    if policy == "mixed_bfloat16" and not tf.config.list_physical_devices("GPU"):
        from common.cpuinfo import bf16_kernels, cpu_info

        runs, why = bf16_kernels(cpu_info())
        if not runs:  # else the first convolution fails deep in oneDNN with a traceback
            raise ConfigError(f"config key 'train.precision': mixed_bfloat16 cannot run on {why} (TensorFlow's "
                              "oneDNN has no bfloat16 convolutions there); use auto or float32")
    return policy, "set in the config"


def set_precision(train_cfg):
    """Set the global Keras precision policy; call before building the model.

    Under mixed_bfloat16 the layers compute in bfloat16 and keep float32 variables; the models'
    output layers are float32 (dtype="float32"), so losses and metrics stay float32.
    """
    keras.mixed_precision.set_global_policy(resolve_precision(train_cfg)[0])


def apply_step_options(model, train_cfg):
    """Set `train.steps_per_execution` and `train.jit_compile` on a compiled model (any task: the
    runner's `fit` calls this after the task's own `compile`, so tasks need not pass them).

    jit_compile auto: XLA on GPUs only. On CPUs it is no help: with float32 the XLA CPU step was
    slower (2.35 against 3.2 patches/s on the full-width U-Net) and bfloat16 convolutions are not
    compiled by XLA's CPU backend as fast as oneDNN runs them.
    """
    steps = int(train_cfg.get("steps_per_execution", 1))
    if steps < 1:
        raise ConfigError(f"config key 'train.steps_per_execution' must be >= 1, got {steps}")
    if steps > 1:
        model._configure_steps_per_execution(steps)
    jit = str(train_cfg.get("jit_compile", "auto")).lower()
    if jit not in ("auto", "true", "false"):
        raise ConfigError(f"config key 'train.jit_compile' must be auto, true or false, got {jit!r}")
    model.jit_compile = bool(tf.config.list_physical_devices("GPU")) if jit == "auto" else jit == "true"
    return model


def fit(build_fn, train_ds, val_ds, train_cfg, run_dir, *, final_model_fn=None, extra_callbacks=()):
    """Train the model `build_fn` makes, with checkpoints, resume and logs in `run_dir`.

    Args:
        build_fn: callable returning a compiled keras.Model; called inside the strategy scope.
        train_ds: tf.data.Dataset of batched (x, y).
        val_ds: tf.data.Dataset of batched (x, y), or None.
        train_cfg: the `train:` section of the config (see TRAIN_DEFAULTS).
        run_dir: the run directory (see `prepare_run_dir`).
        final_model_fn: callable(trained model) -> the keras.Model to save as model.keras
            (for example the student of a Distiller); default the trained model itself.
        extra_callbacks: more Keras callbacks.

    Returns:
        (final model, keras History).
    """
    run_dir = Path(run_dir)
    strategy = start_strategy(train_cfg)
    set_seed(train_cfg["seed"])
    set_precision(train_cfg)
    # Non-chief workers of a multi-worker run write their copies to a scratch folder.
    write_dir = run_dir if is_chief() else Path(tempfile.mkdtemp(prefix="worker_"))
    (write_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    _check_resume_state(write_dir / BACKUP_DIR)
    with strategy.scope():
        model = build_fn()
        apply_step_options(model, train_cfg)

    monitor = train_cfg["monitor"]
    mode = train_cfg["monitor_mode"]
    history_path = write_dir / "history.csv"
    callbacks = [
        # First: a NaN loss stops the batch loop before any callback saves the epoch.
        _StopOnNonFiniteLoss(),
        # Kept when training stops early on Ctrl-C; removed below once the run is finished.
        keras.callbacks.BackupAndRestore(str(write_dir / BACKUP_DIR), delete_checkpoint=False),
        keras.callbacks.ModelCheckpoint(
            str(write_dir / BEST_WEIGHTS),
            monitor=monitor,
            mode=mode,
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=_best_so_far(history_path, monitor, mode),
        ),
        keras.callbacks.CSVLogger(str(history_path), append=True),
        keras.callbacks.TensorBoard(str(write_dir / "tb"), write_graph=False, profile_batch=0),
        interrupt := _StopOnInterrupt(),
        *extra_callbacks,
    ]
    if train_cfg["early_stopping_patience"] > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=train_cfg["early_stopping_patience"])
        )
    steps = int(train_cfg["steps_per_epoch"]) or None
    if steps:
        train_ds = train_ds.repeat()
    try:
        with weight_gradients(train_cfg):  # traced on fit's first step: the step keeps the choice
            history = model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=int(train_cfg["epochs"]),
                steps_per_epoch=steps,
                callbacks=callbacks,
                verbose=train_cfg["verbose"],
            )
    except _NonFiniteLoss as stop:
        interrupt.on_train_end()  # fit ended without its end callbacks: give Ctrl-C back
        raise TrainingError(_non_finite_message(run_dir, *stop.args)) from None
    if interrupt.requested:
        # The finished epochs are in the backup: the same command resumes from there.
        raise KeyboardInterrupt(f"training stopped after epoch {len(history.epoch)}; run the same command to resume")
    if (write_dir / f"{BEST_WEIGHTS}.index").is_file():
        with strategy.scope():
            model.load_weights(str(write_dir / BEST_WEIGHTS))
    final = final_model_fn(model) if final_model_fn else model
    if keras.mixed_precision.global_policy().name != "float32":
        final = float32_copy(final)  # model.keras is float32 whatever the training precision
        keras.mixed_precision.set_global_policy("float32")
    # Every worker of a multi-worker run must take part in saving (it runs collective ops);
    # the non-chief workers save into their scratch folders and delete them.
    with atomic_path(write_dir / MODEL_FILE) as tmp:
        final.save(str(tmp))
    if is_chief():
        # The run is finished: its resume state would only make the next command resume it.
        shutil.rmtree(write_dir / BACKUP_DIR, ignore_errors=True)
    else:
        shutil.rmtree(write_dir, ignore_errors=True)
    return final, history


def _float32_policies(config):
    """A model config with every layer's dtype policy replaced by float32 (recursively)."""
    if isinstance(config, dict):
        if config.get("class_name") in ("Policy", "DTypePolicy"):
            return "float32"
        return {key: ("float32" if key == "dtype" and isinstance(value, str) and "bfloat16" in value
                      else _float32_policies(value)) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_policies(item) for item in config]
    return config


def float32_copy(model):
    """The same model computing in float32: mixed-precision layers keep float32 variables, so the
    weights carry over unchanged. Exports (QAT, TFLite) and distillation want the float32 graph."""
    import common.layers  # noqa: F401  (registers the shared custom layers)

    config = _float32_policies(model.get_config())
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def load_run_model(run_dir, *, unsafe_load=False):
    """Load `RUN/model.keras` (or a .keras file) for inference, without its training config.

    Only a `.keras` zip loads, in Keras' safe mode (common.model_files.load_model_file); other
    model files need `unsafe_load` (the user's `--unsafe-load`). Task packages import their
    models module first so that their custom layers are registered.
    """
    from common.model_files import load_model_file

    path = Path(run_dir)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.exists():
        raise RunDirError(f"{path}: no trained model here; run `train` first")
    return load_model_file(path, unsafe_load=unsafe_load)


def read_history(run_dir):
    """The run's history.csv as a dict of column name -> list of floats (empty dict if none)."""
    path = Path(run_dir) / "history.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = rows[0].keys() if rows else []
    return {name: [_number(row[name]) for row in rows] for name in columns}


def _number(text):
    """A history cell as float; CSVLogger writes 'NA' for a metric missing in an epoch."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def _check_resume_state(backup_dir):
    """Refuse a damaged resume state (a crash while it was written, a disk error) with one line,
    instead of a TensorFlow error deep inside `fit` or, worse, resuming from garbage."""
    if not backup_dir.is_dir():
        return
    for folder in [backup_dir, *sorted(p for p in backup_dir.rglob("*") if p.is_dir())]:
        latest = tf.train.latest_checkpoint(str(folder))
        if latest is None:
            continue
        try:
            reader = tf.train.load_checkpoint(latest)
            for name in reader.get_variable_to_shape_map():
                reader.get_tensor(name)
        except (tf.errors.OpError, ValueError, IndexError) as error:
            reason = str(error).strip().splitlines()[0][:160]
            raise RunDirError(
                f"{backup_dir}: the resume state is damaged ({reason}); use --overwrite to start the run again"
            ) from None


def _best_so_far(history_path, monitor, mode):
    """The best monitored value of a resumed run, so its best checkpoint is not replaced by worse."""
    values = read_history(history_path.parent).get(monitor, [])
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return None
    return max(values) if mode == "max" else min(values)


class _NonFiniteLoss(Exception):
    """Raised by `_StopOnNonFiniteLoss` with (loss, epoch, batch), both counted from 1."""


class _StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop at the first batch whose loss is NaN or infinite.

    It raises instead of setting `stop_training`: Keras would still end the epoch, and its
    callbacks would save the broken weights over the last good backup and best checkpoint.
    The logged loss is the epoch's running mean, so it stays non-finite once a batch made it so.
    """

    epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            raise _NonFiniteLoss(float(loss), self.epoch + 1, batch + 1)


def _non_finite_message(run_dir, loss, epoch, batch):
    """The one line of a training stopped by a non-finite loss: where its last good state is."""
    run_dir = Path(run_dir)
    where = f"{run_dir}: loss became {loss} at epoch {epoch} batch {batch}"
    if epoch > 1 and (run_dir / BACKUP_DIR).is_dir():
        best = (run_dir / f"{BEST_WEIGHTS}.index").is_file()
        return (f"{where}; the last good checkpoint is kept in {run_dir / BACKUP_DIR} (end of epoch {epoch - 1})"
                f"{f', the best weights in {run_dir / BEST_WEIGHTS}' if best else ''}; lower train.lr or check the data")
    return f"{where}; no epoch had finished, so there is no checkpoint to keep; lower train.lr or check the data"


class _StopOnInterrupt(keras.callbacks.Callback):
    """First Ctrl-C: finish the epoch (its backup is saved first), then stop. Second: stop now.

    Listed after BackupAndRestore, so at the end of the epoch the backup already holds it.
    """

    requested = False

    def on_train_begin(self, logs=None):
        self._previous = signal.getsignal(signal.SIGINT)
        try:
            signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread
            self._previous = None

    def on_epoch_end(self, epoch, logs=None):
        if self.requested:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        print("\ninterrupted: stopping after this epoch's checkpoint (Ctrl-C again to stop now)", flush=True)
        self.requested = True
