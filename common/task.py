"""The Task interface: what a task package implements once so that common/ can run every command.

A task package (landslide, rsic, asc, or a new one) defines one subclass of `Task` in
`TASK/task.py` and a two-line `__main__.py` (`common.cli.main(TheTask())`). The commands
(train, distill, evaluate, export, predict, demo) are written once in `common/runner.py` and the
command line once in `common/cli.py`, the way torchgeo's trainers are written once against its
data sets. See docs/ARCHITECTURE.md, "Adding a task", and tests/common/test_fourth_task.py.

The runner calls a task in this order (`train`): config -> strategy -> `open_data` (no
TensorFlow yet, so bad data is reported in one line before TensorFlow starts) -> `make_split`
-> run directory -> split.json + labels.txt -> `datasets` -> `build` + `compile` inside the
strategy scope -> fit -> `evaluate` on `reported_split` -> metrics.json -> `pictures`.

Methods marked "no TensorFlow" must not import it: `download`, `sample` and `predict --tflite`
run on machines (an edge device) without it.
"""

import contextlib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Command:
    """An extra command of one task (landslide `stats`, rsic `benchmark`, asc `features`, ...).

    Attributes:
        name: the verb, `python -m TASK NAME`.
        help: one line for `--help`.
        add_arguments: callable(argparse parser) adding the command's own options.
        run: callable(args) -> exit code (None and True = 0, False = 1); errors are `ProjectError`s.
        tensorflow: False when the command never imports TensorFlow (download, sample, features).
        common_args: add `--config --data --set` (common.cli.add_config_args).
    """

    name: str
    help: str
    add_arguments: object
    run: object
    tensorflow: bool = True
    common_args: bool = False


@dataclass
class DemoRun:
    """One run of a task's demo (see `Task.demo_plan`).

    Attributes:
        name: folder name under the demo's output folder, and the model column of the summary.
        config: a YAML path (relative names are looked up in the task's config folder) or a
            resolved config dict.
        teacher: name of an earlier DemoRun: this run is distilled from it (`distill`).
        export: export the run to int8 TFLite and report its int8 metric, size and latency.
        overrides: `--set` strings applied to this run's config (before the demo's own).
    """

    name: str
    config: object
    teacher: str = ""
    export: bool = False
    overrides: list = field(default_factory=list)


class Task:
    """Base class of a task. Subclasses set the attributes and override the methods below.

    Attributes:
        name: package name (`python -m NAME`) and the `task` column of summary rows.
        defaults: the config schema, a nested dict of every key with its default (see
            common.config); every task sets it (left empty, every config key is unknown).
        description: one line for `--help`.
        config_dir: the folder of the task's YAML configs (configs/NAME).
        train_config: the config `train` uses without `--config`.
        distill_config: the config `distill` uses without `--config`; "" = the task has no
            `distill` (its models are not classifiers with an "embedding" layer).
        metric_name: the headline metric (a key of metrics.json): "f1", "accuracy".
        secondary_metrics: other keys of metrics.json shown beside the headline in the export
            report and the demo's summary rows (landslide: its three IoUs); () for none.
        reported_split: the split that `train` and `evaluate` report (metrics.json).
        inner_split: the split carved from the training part that picks the best epoch and
            stops early under `train.select_on: inner` (see `selection_split`).
        classifier: True when the model outputs class probabilities (N, C): predictions are a
            CSV (file, label, probability, one column per class) and agreement is of arg-maxes.
        edge_batch: examples per LiteRT invoke of `edge_predict` (what `predict --tflite RUN`
            times the run's exported files at, common.tflite_choice).
    """

    name = ""
    defaults = {}
    description = ""
    config_dir = Path(".")
    train_config = ""
    distill_config = ""
    metric_name = "accuracy"
    secondary_metrics = ()
    reported_split = "test"
    inner_split = "val"
    classifier = True
    edge_batch = 1
    predict_out_help = "CSV file to write (file, label, probability, one column per class)"

    # -- configuration (no TensorFlow) --------------------------------------------------------

    def resolve_config(self, cfg):
        """Turn references in a loaded config into values (rsic: `model.backbone=best:BENCH_DIR`);
        called by `runner.load_task_config`, so a run's config.yaml holds the values. Returns
        `cfg`; raises ConfigError naming the key."""
        return cfg

    def describe(self, cfg):
        """A few words naming the model of `cfg`, for progress lines and the demo table."""
        return cfg.get("model", {}).get("kind", "") or self.name

    # -- data (no TensorFlow) ----------------------------------------------------------------

    def open_data(self, cfg):
        """List and check the data set of `cfg["data"]["root"]`; raise DataError on bad input.

        Returns:
            The task's own data object (opaque to the runner).
        """
        raise NotImplementedError

    def class_names(self, data):
        """Class names in index order (written to labels.txt)."""
        raise NotImplementedError

    def make_split(self, cfg, data):
        """The split of `data`: dict of split name -> list of items (the task's own item type).

        Must hold "train" and `reported_split`; under `train.select_on: inner` (the default) also
        `inner_split`, carved from the training part only (`carve_inner`), so the examples that
        choose the epoch never train and are never reported. Under `reported` the whole training
        part trains and no inner split is needed. The runner stores it through `split_ids`.
        """
        raise NotImplementedError

    def selection_split(self, cfg):
        """The name of the split that picks the best epoch and stops early: `inner_split` under
        `train.select_on: inner`, `reported_split` under `reported` (the papers' practice)."""
        return self.inner_split if cfg["train"]["select_on"] == "inner" else self.reported_split

    def split_ids(self, data, split):
        """dict of split name -> list of str identifiers (file names), for split.json."""
        raise NotImplementedError

    def split_from_ids(self, data, ids):
        """The inverse of `split_ids`: a split of `data` from identifiers read from split.json.

        Raises DataError when an identifier is not in `data`.
        """
        raise NotImplementedError

    def all_items(self, data):
        """Every labelled item of `data` (evaluate on another data set)."""
        raise NotImplementedError

    def align_classes(self, data, run_classes):
        """Give another data set (evaluate --data) the class indices of a run that knows
        `run_classes` (its labels.txt); called after the runner checked that every class of `data`
        is among them. Default: nothing (the data's classes are always in the run's order)."""

    def split_info(self, cfg, split):
        """Extra keys for split.json (protocol, fold, seed, ...)."""
        return {}

    def check_split(self, cfg, data, split):
        """Check every example of every split (train, inner, reported) with the readers training
        uses, before the run directory or TensorFlow exists; raise DataError naming the first bad
        file. Default: nothing beyond `open_data`, for a task whose `open_data` already decodes
        every example (rsic). landslide reads every patch's values and mask; asc computes the
        feature cache (every clip read)."""

    # -- training (TensorFlow) -----------------------------------------------------------------

    def register_layers(self):
        """Import the modules that register the task's custom layers (before loading a model)."""

    def error_context(self):
        """A context manager that turns the task's data errors raised inside TensorFlow (a
        tf.data reader) back into its own one-line errors."""
        return contextlib.nullcontext()

    def check_teacher(self, cfg, teacher_cfg, teacher_run):
        """Raise ConfigError when the teacher run cannot teach the model of `cfg` (other input)."""

    def datasets(self, cfg, data, split):
        """The training and validation pipelines.

        The validation dataset is the split `selection_split(cfg)` names.

        Returns:
            (train tf.data.Dataset of batched (x, y), validation dataset or None, steps per epoch).
        """
        raise NotImplementedError

    def build(self, cfg, data, split, run_dir):
        """The models of `cfg` (called inside the strategy scope; `run_dir` may receive files the
        model depends on, e.g. normalisation statistics).

        Returns:
            (training model, inference model): the same model for most tasks; the inference
            model takes raw input and is what model.keras holds.
        """
        raise NotImplementedError

    def label_loss(self, cfg):
        """The loss on labels (a Keras loss), for training, distillation and QAT."""
        raise NotImplementedError

    def compile(self, model, cfg, optimizer):
        """Compile the training model with the task's loss and metrics."""
        model.compile(optimizer=optimizer, loss=self.label_loss(cfg), metrics=["accuracy"])

    def callbacks(self, cfg, data, split):
        """Extra Keras callbacks for training (e.g. BatchNorm re-estimation)."""
        return []

    # -- evaluation ----------------------------------------------------------------------------

    def examples(self, cfg, data, items):
        """Model inputs and labels of `items` as arrays (for calibration and parity checks).

        Returns:
            (x (N, *input_shape) float32, labels (N,) or (N, H, W, 1)).
        """
        raise NotImplementedError

    def metric(self, labels, outputs):
        """The headline metric of model outputs against labels (arrays), a fraction."""
        raise NotImplementedError

    def metrics(self, labels, outputs):
        """The headline and secondary metrics of outputs against labels (arrays), a dict of
        fractions (the export report's keras_metrics and tflite_metrics)."""
        return {self.metric_name: float(self.metric(labels, outputs))}

    def evaluate(self, model, cfg, data, items):
        """Scores of `model` (Keras, or anything with `predict(x)`) on `items`.

        Returns:
            dict for metrics.json: `metric_name` and the other scores as fractions in [0, 1].
        """
        raise NotImplementedError

    def score_line(self, metrics):
        """One line of rounded scores for the terminal."""
        return f"{self.metric_name} {metrics[self.metric_name]:.3f}"

    def pictures(self, out_dir, model, cfg, data, items, metrics):
        """Optional pictures of an evaluation (examples, confusion matrix, spectrograms) written
        into `out_dir`; `metrics` is what `evaluate` returned for `model` on `items`."""

    def write_frontend(self, cfg, run_dir, mcu_section):
        """`export --target mcu`: write what a firmware needs to compute the model's input from
        raw data (asc: the spectrogram filter banks), beside the C array. Returns a dict for the
        report's `mcu.frontend`, or None when the model takes the raw input itself."""
        return None

    def labels(self, cfg, data, items):
        """The class ids (int array (N,)) of `items` of `data` (the combined teacher,
        common.teacher, trains on them); default: from `examples`."""
        return self.examples(cfg, data, items)[1]

    def embed(self, model, cfg, data, items, batch_size):
        """`model`'s outputs (float32 (N, ...)) on `items` of `data`, `batch_size` at a time: a
        member's embeddings for the combined teacher (common.teacher). Default: from `examples`
        (all in memory); a task with large inputs streams them."""
        from common.runner import outputs

        return outputs(model, self.examples(cfg, data, items)[0], batch_size)

    def host_front(self, cfg, model):
        """`export` (edge target): the part of the model's input front that int8 kernels cannot
        run, to be computed on the host beside the .tflite instead. Returns None (the whole model
        is exported; the default), or (layer name, settings): the .tflite then takes the output of
        that layer, and the settings (a JSON-able dict) are written beside it, where
        `load_tflite` finds them."""
        return None

    def load_tflite(self, path):
        """The exported model at `path` for `evaluate --tflite` and the benchmarks: what
        common.tflite_runtime.open_model opens (LiteRT, or ONNX Runtime for a .onnx), or the
        task's wrapper that computes a host front (`host_front`) first."""
        from common.tflite_runtime import open_model

        return open_model(path)

    # -- command line ----------------------------------------------------------------------------

    def add_arguments(self, command, parser):
        """Options of a shared command (train, distill, evaluate, export, predict) that only this
        task has, e.g. landslide's `--fold` and `--threshold` (see common.cli.add_shorthand)."""

    def train_runs(self, cfg, out, **options):
        """The (config, run directory) pairs one `train` command trains into `out`; `options` are
        the task's own `train` options by name (landslide: `fold`, where `all` gives one run per
        fold). Default: the one run in `out`."""
        return [(cfg, out)]

    # -- prediction ----------------------------------------------------------------------------

    def predict(self, model, cfg, inputs, out, **options):
        """Predict `inputs` (files or folders) with a Keras model; write into `out`.

        Args:
            model: the run's inference model (Keras), raw input -> outputs.
            cfg: the run's resolved config (its `--set` overrides applied).
            inputs: list of str paths, files or folders (searched recursively).
            out: path of the file or folder to write (`predict_out_help`).
            options: the task's own typed `predict` options by name, each with a default
                (landslide `geojson=False`; rsic and asc `run=None`, the run directory whose
                labels.txt names the classes); the command line passes those of its options
                whose names the method's keyword parameters give (`common.cli.method_options`).

        Returns:
            One line for the terminal saying what was written.
        """
        raise NotImplementedError

    def edge_predict(self, tflite_path, inputs, out, **options):
        """The same with an exported .tflite model through LiteRT (no TensorFlow).

        Args:
            tflite_path: path of the .tflite file (in its run directory, beside labels.txt).
            inputs, out: as in `predict`.
            options: typed keyword options with defaults, as in `predict` (landslide
                `threshold` (probability in [0, 1]), `overlap` (pixels), `geojson`; rsic
                `skip_bad`; asc `config` (a config.yaml or run directory) and `overrides`
                (list of "KEY=VALUE")). There is no run config here: a threshold is an option.
        """
        raise NotImplementedError

    # -- demo, sample, download, extra commands -------------------------------------------------

    def add_sample_arguments(self, parser):
        """Options of `sample` (sizes, seed)."""

    def sample(self, out, **options):
        """Write a sample data set in the real on-disk layout into `out` (no TensorFlow).

        `options`: the task's typed sample options by name (sizes, seed; `add_sample_arguments`
        gives the command line the same names); left out, the demo's defaults. Returns one line
        for the terminal.
        """
        raise NotImplementedError

    def add_download_arguments(self, parser):
        """Options of `download` beyond `--dest` and `--quiet`."""

    def download(self, dest, **options):
        """Fetch the real data set into `dest` (no TensorFlow). Returns one line for the terminal.

        Args:
            dest: folder to download into; None only when `download_needs_dest(**options)` said so.
            options: the task's typed `download` options by name, each with a default (the same
                names `add_download_arguments` gives the command line): landslide and asc
                `record` (Zenodo record id, str), `api` (Zenodo REST API URL); rsic `url`,
                `sha256`, `weights` (comma-separated backbones or "all"), `alpha`,
                `input_size` (pixels); every task `quiet=False` (no progress bar).
        """
        raise NotImplementedError

    def download_needs_dest(self, **options):
        """Whether `download` with these typed options (as `download` takes them) needs `dest`
        (rsic: `weights` alone fetches into the Keras cache and does not)."""
        return True

    def demo_plan(self):
        """The runs of `python -m TASK demo`, in order (a list of DemoRun)."""
        raise NotImplementedError

    def commands(self):
        """Extra commands of this task (a list of Command)."""
        return []


def carve_inner(items, fraction, seed, *, groups=None, labels=None, key="data.inner_val_fraction"):
    """Split a training part into (train, inner): the inner split picks the best epoch.

    Whole groups move together (asc: the segments of one recording), so no group straddles the
    two sides. With `labels`, each class gives `round(fraction * its groups)` of its groups, at
    least one where it has two or more, so the inner split keeps roughly the class balance.
    At least one group is carved in all; at least one stays for training.

    Args:
        items: list of the task's items (the training part).
        fraction: float in (0, 1), the share of groups carved (config key `key`).
        seed: int; the same seed carves the same items.
        groups: list of str keys, one per item, or None (every item its own group).
        labels: list of int class ids, one per item (the class of a group is its first item's),
            or None (one class).
        key: the config key of `fraction`, for messages.

    Returns:
        (train items, inner items), each a list in the order of `items`.
    """
    import numpy as np

    from common.errors import ConfigError, DataError

    if not 0 < fraction < 1:
        raise ConfigError(f"config key '{key}' must be in (0, 1), got {fraction}")
    groups = [str(i) for i in range(len(items))] if groups is None else [str(g) for g in groups]
    labels = [0] * len(items) if labels is None else [int(label) for label in labels]
    first = {}
    for group, label in zip(groups, labels):
        first.setdefault(group, label)
    if len(first) < 2:
        raise DataError(f"the training part has {len(first)} group(s) of examples; an inner validation split "
                        "needs at least 2 (or set train.select_on=reported)")
    rng = np.random.default_rng(seed)
    inner = set()
    for label in sorted(set(first.values())):
        members = sorted(g for g, c in first.items() if c == label)  # sorted: the order of items does not matter
        count = round(fraction * len(members))
        count = min(len(members) - 1, max(1, count)) if len(members) > 1 else 0
        inner.update(members[i] for i in rng.permutation(len(members))[:count])
    if not inner:  # every class has one group: carve one group anyway
        names = sorted(first)
        inner.add(names[int(rng.integers(len(names)))])
    train = [item for item, group in zip(items, groups) if group not in inner]
    return train, [item for item, group in zip(items, groups) if group in inner]


def task_by_name(name):
    """The Task of the package `name` (its `NAME/task.py` defines exactly one Task subclass).

    Used by scripts and tests that loop over tasks; common/ never imports a task package by name
    otherwise.
    """
    import importlib
    import inspect

    module = importlib.import_module(f"{name}.task")
    found = [obj for _, obj in inspect.getmembers(module, inspect.isclass)
             if issubclass(obj, Task) and obj is not Task and obj.__module__ == module.__name__]
    if len(found) != 1:
        raise LookupError(f"{module.__name__}: expected one Task subclass, found {len(found)}")
    return found[0]()
