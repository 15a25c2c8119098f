"""Retraining on your own data: start a run from a trained run's weights (`train --init-from RUN`).

Every layer of the new model that has a layer of the same name and the same weight shapes in the
run's model.keras receives that layer's weights; the others keep their fresh initialization (the
"new" layers). When the new data set's class list differs from the run's labels.txt, the
classifier (`logits`, or a branch's `*_logits`) is new even where its shape matches, since its rows
would mean other classes. With `train.freeze_epochs: N` only the new layers train for the first N
epochs (copied BatchNormalization layers keep their statistics meanwhile), then all of them.

The run directory is checked before TensorFlow starts (`check_source`): a missing run, a run of
another task and (once the model is built) a model with nothing in common are refused in one line.
"""

from pathlib import Path

from common.config import load_config
from common.errors import ConfigError, RunDirError
from common.model_files import load_model_file
from common.rundir import check_run_task

MODEL_FILE = "model.keras"
LABELS_FILE = "labels.txt"


def is_classifier_layer(name):
    """True for the layer that maps features to class scores (the project's convention: `logits`,
    or `<branch>_logits` in a multi-branch model)."""
    return name == "logits" or name.endswith("_logits")


def check_source(task, run):
    """Refuse `--init-from RUN` when RUN is not a trained run of `task` (no TensorFlow).

    Returns:
        The run directory as an absolute Path.

    Raises:
        RunDirError: RUN is missing, untrained, or a run of another task.
    """
    run = Path(run)
    if not run.is_dir():
        raise RunDirError(f"{run}: --init-from: no such run directory")
    if not (run / MODEL_FILE).is_file() or not (run / "config.yaml").is_file():
        raise RunDirError(f"{run}: --init-from: not a trained run (no {MODEL_FILE} and config.yaml); "
                          f"give a run directory written by `python -m {task.name} train`")
    check_run_task(run, task.name, "--init-from: ")
    try:
        load_config(run / "config.yaml", defaults=task.defaults)
    except ConfigError:
        raise RunDirError(f"{run}: --init-from: a run of another task (its config.yaml is not a "
                          f"{task.name} config); give a {task.name} run") from None
    return run.resolve()


def source_classes(run):
    """The class names of a run (its labels.txt), or None when it has none."""
    path = Path(run) / LABELS_FILE
    if not path.is_file():
        return None
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def copy_matching_weights(model, source, *, skip=()):
    """Copy `source`'s weights into every layer of `model` with the same name and weight shapes.

    Args:
        model: keras.Model to initialize (changed in place).
        source: trained keras.Model.
        skip: layer names to leave as they are even when they match.

    Returns:
        (copied, new): lists of the layers of `model` that have weights, copied or left as built.
    """
    copied, new = [], []
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        try:
            found = source.get_layer(layer.name).get_weights()
        except ValueError:  # no layer of that name
            found = None
        matches = (found is not None and layer.name not in skip and len(found) == len(weights)
                   and all(a.shape == b.shape for a, b in zip(found, weights)))
        if matches:
            layer.set_weights(found)
        (copied if matches else new).append(layer)
    return copied, new


def init_from_run(task, model, run, class_names):
    """Initialize `model` (built for a data set with `class_names`) from the run `run`.

    Returns:
        (copied layers, new layers, one line for the terminal).

    Raises:
        RunDirError: no layer matches (another architecture: nothing to start from).
    """
    import common.layers  # noqa: F401  (registers the shared custom layers)

    task.register_layers()
    path = Path(run) / MODEL_FILE
    source = load_model_file(path)
    known = source_classes(run)
    classes_differ = task.classifier and known is not None and list(known) != list(class_names)
    skip = {layer.name for layer in model.layers if is_classifier_layer(layer.name)} if classes_differ else set()
    copied, new = copy_matching_weights(model, source, skip=skip)
    if not copied:
        raise RunDirError(f"{run}: --init-from: no layer of its model matches this config's model by name "
                          "and weight shapes; nothing to start from (same model settings as that run?)")
    params = sum(int(w.size) for layer in copied for w in layer.get_weights())
    total = params + sum(int(w.size) for layer in new for w in layer.get_weights())
    named = ", ".join(layer.name for layer in new[:4]) + (", ..." if len(new) > 4 else "")
    why = "; the class list differs from the run's, so the classifier is new" if classes_differ else ""
    line = (f"starting from {run}: {len(copied)} layers copied ({params / max(total, 1):.1%} of the weights), "
            f"{len(new)} new{f' ({named})' if new else ''}{why}")
    return copied, new, line


def freeze_callback(layers, epochs):
    """A Keras callback that keeps `layers` frozen for the first `epochs` epochs (see module doc)."""
    import tf_keras as keras

    class FreezeCopiedLayers(keras.callbacks.Callback):
        """Freezes `layers` before training; unfreezes them at the start of epoch `epochs` (also
        when a resumed run starts later). The optimizer must have been built with every variable
        (`prepare_optimizer`), so that it can update the unfrozen ones."""

        def on_train_begin(self, logs=None):
            self._set(False)

        def on_epoch_begin(self, epoch, logs=None):
            if epoch >= epochs and not all(layer.trainable for layer in layers):
                self._set(True)

        def on_train_end(self, logs=None):
            for layer in layers:  # model.keras must not record frozen layers
                layer.trainable = True

        def _set(self, trainable):
            for layer in layers:
                layer.trainable = trainable
            # The compiled training step captured the trainable variables: trace it again.
            self.model.train_function = self.model.make_train_function(force=True)

    return FreezeCopiedLayers()


def prepare_optimizer(optimizer, model):
    """Create the optimizer's slots for every trainable variable of `model` now, before some are
    frozen, so that it can update them once they are unfrozen (Keras optimizers build once)."""
    optimizer.build(model.trainable_variables)


def check_freeze(train_cfg):
    """`train.freeze_epochs` needs `train.init_from` (without it nothing was copied to freeze)."""
    if int(train_cfg.get("freeze_epochs", 0)) and not train_cfg.get("init_from"):
        raise ConfigError("config key 'train.freeze_epochs' keeps copied layers frozen and needs "
                          "train.init_from (--init-from RUN)")

