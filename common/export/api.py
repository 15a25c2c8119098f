"""`export_tflite`: the edge export of an in-memory Keras model, for scripts and benchmarks (the
command line's `export` goes through `common.runner.export` and the target registry)."""

from pathlib import Path

from common.export.edge import EDGE
from common.export.parity import PARITY_EXAMPLES, Scorer, examples
from common.export.quantize import QATSettings
from common.export.report import ExportReport
from common.export.targets import ExportJob, run_export
from common.io import write_text


def export_tflite(model, representative_data, out_path, *, mode="auto", train_data=None, loss=None,
                  qat_epochs=1, qat_steps=None, qat_lr=1e-4, heldout=None, heldout_labels=None,
                  metric=None, metric_name=None, metrics=None, size_budget_mb=20.0, labels=None,
                  num_threads=2):
    """Quantize `model` to int8 TFLite (the `edge` target), check it against the Keras model,
    write it, `export_report.json` beside it and, with `labels`, `labels.txt`.

    Args:
        model: tf_keras float32 model (not modified: QAT trains a copy).
        representative_data: array (N, *input_shape) of raw inputs, or a tf.data.Dataset of input
            or (x, y) batches; every example calibrates, and parity is checked on them (the first
            `PARITY_EXAMPLES`) when `heldout` is None.
        out_path: the `.tflite` file. mode: "auto" | "qat" | "ptq" (see common.export.quantize).
        train_data, loss, qat_epochs, qat_steps, qat_lr: QAT fine-tuning (tf.data of (x, y)
            batches or a tuple of arrays; steps None: the whole data set).
        heldout, heldout_labels: parity inputs and their labels. metric, metric_name, metrics:
            the task's scores (see parity.Scorer). size_budget_mb: largest file allowed (MB).
        labels: class names for labels.txt. num_threads: LiteRT threads.

    Returns:
        The report dict (REPORT_KEYS and details).

    Raises:
        ExportError: over the size budget (nothing written), mode "qat" failing, a failed
            conversion. DataError: empty or malformed data.
    """
    out_path = Path(out_path)
    job = ExportJob(
        model=model, out_dir=out_path.parent, calibration=examples(representative_data, None, "representative_data"),
        heldout=examples(representative_data if heldout is None else heldout, PARITY_EXAMPLES,
                         "representative_data" if heldout is None else "heldout"),
        heldout_labels=heldout_labels, scorer=Scorer(metric, metric_name, metrics), labels=labels,
        settings={"mode": mode, "size_budget_mb": size_budget_mb, "num_threads": num_threads},
        qat=QATSettings(train_data, loss, qat_epochs, qat_steps, qat_lr), file_names={"edge": out_path.name})
    report = run_export(EDGE, job, ExportReport(out_path.with_name("export_report.json")))
    if labels is not None:
        write_text(out_path.with_name("labels.txt"), "".join(f"{label}\n" for label in labels))
    return report
