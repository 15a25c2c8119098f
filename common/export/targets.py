"""Export targets: what `export --target NAME` makes, behind one small interface and one registry.

A target is a `Target` subclass registered with `register`. The command line's `--target`
choices, the config check of `export.target` and docs/export.md's table all read `TARGETS`.
`run_export` is the one flow every target goes through:

    check(settings)                before any work (the runner calls it before loading the model)
    convert(job, staging)          writes the target's files into `staging` (temporary names
                                   beside the run's files); returns what verify needs
    verify(job, converted, report) runs the staged files, fills the report (file, size, parity
                                   against Keras, latency); raises ExportError to refuse
    staging.commit()               renames every staged file into place, all at the end
    report.write()                 the export report, once

A failed conversion or verification leaves the previous export's files as they were.
"""

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import ConfigError, ExportError
from common.io import write_bytes

#: name -> Target, in registration order.
TARGETS = {}


class Target:
    """One kind of exported model. Subclasses set the class attributes and implement
    `convert` and `verify`; `check` and `files` have defaults.

    Attributes:
        name: the `--target` value. description: one line for the docs table.
        device: the device (and runtime) that runs the files. file_names: what it writes.
        report_file: the report's name (default `export_report_<name>.json`; edge and mcu write
            `export_report.json`, the run directory's report).
    """

    name = ""
    description = ""
    device = ""
    file_names = ()
    report_file = None
    #: Whether `convert` reads job.calibration and job.qat (the runner skips preparing them if not).
    calibrates = True

    def report_name(self):
        return self.report_file or f"export_report_{self.name}.json"

    def files(self):
        """The names of the files the target writes into the run directory."""
        return list(self.file_names)

    def check(self, settings):
        """Refuse settings (the `export:` config section) the target cannot honour, before any
        work: raise ConfigError naming the key."""

    def convert(self, job, staging):
        raise NotImplementedError

    def verify(self, job, converted, report):
        raise NotImplementedError


def register(target):
    """Add `target` (a Target instance) to the registry; returns it. A name is registered once."""
    if not target.name or target.name in TARGETS:
        raise ValueError(f"export target {target.name!r}: empty or already registered")
    TARGETS[target.name] = target
    return target


def unregister(name):
    """Remove a target (tests register their own)."""
    TARGETS.pop(name, None)


def target_names():
    return list(TARGETS)


def get_target(name):
    """The registered target `name`; ConfigError listing the targets otherwise."""
    if name not in TARGETS:
        raise ConfigError(f"config key 'export.target': unknown target {name!r}; "
                          f"choose one of {', '.join(TARGETS)}")
    return TARGETS[name]


@dataclass
class ExportJob:
    """Everything a target needs to export one model.

    model: tf_keras float32 model (raw input). out_dir: where the files go (a run directory).
    calibration: float array (N, *input_shape), every example calibrates. heldout: float array
    (M, *input_shape) for parity, heldout_labels its labels (or None). scorer: parity.Scorer.
    settings: the `export:` config section. labels: class names or None. qat: QATSettings or
    None. model_sha256: hash of the model file (None in memory). fingerprint: what makes an
    export current (settings, seed, data, model hash). previous: the report found in out_dir
    before this export, or None. frontend: callable(folder, mcu_section) -> dict or None (a
    task's firmware front end, `Task.write_frontend`). file_names: role -> name overrides.
    host_front: None, or the settings of the input front the host computes before the edge
    .tflite (`Task.host_front`; then `model` is the model after that front, and calibration and
    heldout hold the front's outputs), written beside the .tflite.
    """

    model: object
    out_dir: Path
    calibration: object
    heldout: object
    heldout_labels: object = None
    scorer: object = None
    settings: dict = field(default_factory=dict)
    labels: list = None
    qat: object = None
    model_sha256: str = None
    fingerprint: dict = None
    previous: dict = None
    frontend: object = None
    file_names: dict = field(default_factory=dict)
    host_front: dict = None


class Staging:
    """A temporary folder inside `out_dir` (same file system): files written there are renamed
    into `out_dir` by `commit`, all at the end; `discard` removes what was not committed."""

    def __init__(self, out_dir):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=".export-", dir=self.out_dir))
        self.stale = []

    def path(self, name):
        return self.folder / name

    def remove_on_commit(self, name):
        """Remove OUT_DIR/name at `commit` (a file of an earlier export that this one replaces
        by nothing, e.g. a host front file the new model does not need)."""
        self.stale.append(self.out_dir / name)

    def commit(self):
        """Rename every staged file into `out_dir`, then remove the stale ones; returns the
        final paths."""
        moved = []
        for staged in sorted(self.folder.iterdir()):
            os.replace(staged, self.out_dir / staged.name)
            moved.append(self.out_dir / staged.name)
        for path in self.stale:
            path.unlink(missing_ok=True)
        return moved

    def discard(self):
        shutil.rmtree(self.folder, ignore_errors=True)


def run_export(target, job, report):
    """Export `job` with `target`: check, convert into staging, verify, rename into place, then
    write `report` (an ExportReport) once. Returns the report's dict.

    Raises:
        ConfigError: `target.check` refused the settings. ExportError: conversion or
            verification refused the model; the files of an earlier export are untouched.
    """
    target.check(job.settings)
    staging = Staging(job.out_dir)
    try:
        converted = target.convert(job, staging)
        target.verify(job, converted, report)
        report.update(target=target.name, fingerprint=job.fingerprint,
                      files=[str(path) for path in staging.commit()])
    finally:
        staging.discard()
    return report.write()


def check_budget(path, size, settings):
    """Refuse a file of `size` bytes over `export.size_budget_mb` (MB of 10**6 bytes)."""
    budget = float(settings.get("size_budget_mb", 20.0))
    if size > budget * 1e6:
        raise ExportError(f"{path}: the exported model is {size / 1e6:.2f} MB ({size} bytes), over the size "
                          f"budget of {budget:g} MB (export.size_budget_mb); nothing written")


class SingleFileTarget(Target):
    """A target whose product is one .tflite file LiteRT runs: `convert_bytes` makes it, the rest
    (size budget, staging, parity, latency, report fields) is shared."""

    def convert_bytes(self, job):
        """(TFLite bytes, report fields about how they were made, e.g. quantization)."""
        raise NotImplementedError

    def main_file(self, job):
        return job.file_names.get(self.name, self.file_names[0])

    def convert(self, job, staging):
        name = self.main_file(job)
        tflite, fields = self.convert_bytes(job)
        check_budget(job.out_dir / name, len(tflite), job.settings)
        write_bytes(staging.path(name), tflite)
        return {"name": name, "staged": staging.path(name), "fields": fields}

    def verify(self, job, converted, report):
        self.verify_file(job, converted, report)

    def verify_file(self, job, converted, report, keras_out=None):
        """The report fields of the staged file: parity against Keras (`keras_out`: the Keras
        outputs on job.heldout when known), size, latency, how it was made."""
        from common.export.parity import check_litert
        from common.export.report import file_sha256, model_fields

        report.update(model_fields(job.model, job.scorer), path=str(job.out_dir / converted["name"]),
                      sha256=file_sha256(converted["staged"]), **converted["fields"],
                      **check_litert(job, converted["staged"], keras_out),
                      size_budget_mb=float(job.settings.get("size_budget_mb", 20.0)))
