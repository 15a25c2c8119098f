"""Export a trained run to an int8 TFLite model (paper 4: at most 20 MB) and check it.

`export --run RUN` writes `RUN/model_int8.tflite`, `RUN/labels.txt` and `RUN/export_report.json`
through `common.export.export_tflite`: quantization-aware fine-tuning on the run's training split
(falling back to post-training quantization), calibration on training images, and the float and
int8 accuracy on held-out test images. The TFLite model takes raw RGB images (float, 0-255) of the
model's input size, like the Keras model.
"""

from pathlib import Path

import numpy as np

from rsic.data import load_images, make_dataset

TFLITE_FILE = "model_int8.tflite"


def accuracy_metric(labels, probs):
    """Share of `labels` (N,) equal to the arg-max of `probs` (N, C)."""
    return float(np.mean(np.argmax(probs, axis=1) == np.asarray(labels).reshape(-1)))


def export_model(model, cfg, folder, split, out_path, *, log=print, heldout_images=256):
    """Quantize `model` to int8 TFLite at `out_path` with the data of `folder`/`split`.

    Args:
        model: trained keras.Model. cfg: resolved config (`export:` section, input size, batch).
        folder: ImageFolder. split: dict of index arrays ("train", "test").
        out_path: the `.tflite` path; labels.txt and export_report.json go beside it.
        heldout_images: int, test images (seeded random subset) for the accuracy and parity check.

    Returns:
        The export report dict (see `common.export.export_tflite`), plus `latency_ms` (median
        batch-1 LiteRT inference time, milliseconds).

    Raises:
        ExportError: over `export.size_budget_mb` (the message gives the size) or conversion failed.
    """
    import tf_keras as keras

    from common.export import export_tflite
    from common.io import write_json
    from common.tflite_runtime import TFLiteModel

    ecfg = cfg["export"]
    size = int(cfg["model"]["input_size"])
    files = np.asarray(folder.files, dtype=object)
    rng = np.random.default_rng(int(cfg["data"]["seed"]))
    calibration_idx = rng.permutation(split["train"])[: int(ecfg["calibration_images"])]
    heldout_idx = np.sort(rng.permutation(split["test"])[:heldout_images])
    calibration = load_images(list(files[calibration_idx]), size)
    heldout = load_images(list(files[heldout_idx]), size)
    train_data, steps = None, None
    if ecfg["mode"] != "ptq":
        train_data = make_dataset(list(files[split["train"]]), folder.labels[split["train"]],
                                  image_size=size, batch_size=int(cfg["train"]["batch_size"]),
                                  training=True, augment=cfg["data"]["augment"],
                                  seed=int(cfg["train"]["seed"]), cache=cfg["data"]["cache"])
        steps = int(ecfg["qat_steps"]) or None
        if steps:
            train_data = train_data.repeat()
    report = export_tflite(
        model, calibration, out_path, mode=ecfg["mode"], train_data=train_data,
        loss=keras.losses.SparseCategoricalCrossentropy() if train_data is not None else None,
        qat_epochs=int(ecfg["qat_epochs"]), qat_steps=steps, qat_lr=float(ecfg["qat_lr"]),
        heldout=heldout, heldout_labels=folder.labels[heldout_idx], metric=accuracy_metric,
        metric_name="accuracy", size_budget_mb=float(ecfg["size_budget_mb"]),
        labels=folder.class_names, num_threads=int(ecfg["num_threads"]),
    )
    report["latency_ms"] = TFLiteModel(out_path, num_threads=int(ecfg["num_threads"])).latency_ms(heldout[0])
    write_json(Path(out_path).with_name("export_report.json"), report)
    log(f"{out_path}: {report['tflite_bytes'] / 1e6:.2f} MB int8 ({report['quantization']}); accuracy "
        f"float {report['keras_metric']:.4f}, int8 {report['tflite_metric']:.4f} on "
        f"{report['parity_examples']} test images; agreement {report['agreement']:.3f}; "
        f"{report['latency_ms']:.1f} ms per image")
    return report
