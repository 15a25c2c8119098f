"""Training, distillation, evaluation, export and prediction on the sample data (shared runs)."""

import csv
import json

import numpy as np

from asc import pipeline
from common.train import read_history


def test_teacher_learns_the_sample_data(teacher_run):
    run, result = teacher_run
    assert result["val_accuracy"] >= 0.3  # 10 scenes: chance is 0.1
    for name in ("model.keras", "config.yaml", "history.csv"):
        assert (run / name).exists(), name


def test_distilled_student_learns_from_embeddings(student_run, teacher_run):
    run, result = student_run
    assert result["val_accuracy"] >= 0.5
    assert result["params"] == 79_422  # model.keras is the student alone
    history = read_history(run)
    assert history["embedding_loss"][0] > 0 and history["embedding_loss"][-1] < history["embedding_loss"][0]
    assert json.loads((run / "teacher.json").read_text())["teacher_run"].endswith("teacher")


def test_evaluate_writes_metrics(student_cfg, student_run):
    run, _ = student_run
    result = pipeline.evaluate(student_cfg, run, say=lambda _: None)
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["accuracy"] == result["accuracy"] >= 0.5
    assert 0 < saved["log_loss"] < 2.3  # below the uniform guess, ln(10)
    assert set(saved["per_device"]) <= {"a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6"}
    assert sum(d["clips"] for d in saved["per_device"].values()) == 30 == sum(c["clips"] for c in saved["per_class"].values())
    assert saved["groups"]["accuracy"] >= saved["accuracy"]  # the 3-class grouping is easier
    assert np.array(saved["confusion_matrix"]).sum() == 30
    for picture in ["confusion_matrix.png", "training_curves.png", "spectrograms.png"]:
        assert (run / picture).read_bytes()[:4] == b"\x89PNG", picture


def test_int8_export_agrees_with_keras(student_cfg, student_run, sample_dir, tmp_path):
    from common.tflite_runtime import TFLiteModel

    run, _ = student_run
    report = pipeline.export(student_cfg, run, say=lambda _: None)
    assert report["agreement"] >= 0.8 and report["quantization"] == "ptq"
    assert abs(report["tflite_metric"] - report["keras_metric"]) <= 0.15
    assert report["tflite_bytes"] < 200_000 and (run / "labels.txt").read_text().split()[0] == "airport"
    x, labels, _, _ = pipeline.load_split(student_cfg, "evaluate", say=lambda _: None)
    probs = TFLiteModel(run / "model_int8.tflite").predict(x[:8])
    assert probs.shape == (8, 10) and np.allclose(probs.sum(axis=1), 1.0, atol=0.05)
    sizes = pipeline.complexity_report(student_cfg, run, say=lambda _: None)
    assert sizes["int8_bytes"] == report["tflite_bytes"] and sizes["within_limits"]

    wavs = [str(w) for w in sorted((sample_dir / "audio").glob("bus-*.wav"))[:4]]
    keras_labels = pipeline.predict(student_cfg, run, wavs, tmp_path / "k.csv", say=lambda _: None)
    int8_labels = pipeline.predict(student_cfg, run, wavs, tmp_path / "q.csv", say=lambda _: None, tflite=True)
    assert sum(a == b for a, b in zip(keras_labels, int8_labels)) >= 3


def test_predict_writes_a_csv(student_cfg, student_run, sample_dir, tmp_path):
    run, _ = student_run
    wavs = sorted((sample_dir / "audio").glob("park-*.wav"))[:3]
    out = tmp_path / "predictions.csv"
    result = pipeline.predict(student_cfg, run, [str(w) for w in wavs], out, say=lambda _: None)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(result) == 3
    assert rows[0]["filename"] == str(wavs[0]) and rows[0]["scene_label"] in rows[0]
    assert abs(sum(float(rows[0][c]) for c in student_cfg["data"]["classes"]) - 1.0) < 1e-3


def test_large_splits_stream_from_the_cache(student_cfg, student_run):
    import copy

    from asc.data import make_dataset
    from asc.features import CachedFeatures

    run, _ = student_run
    x, labels, _, _ = pipeline.load_split(student_cfg, "evaluate", say=lambda _: None)
    streaming = copy.deepcopy(student_cfg)
    streaming["data"]["in_memory_gb"] = 0.0
    lazy, lazy_labels, _, _ = pipeline.load_split(streaming, "evaluate", say=lambda _: None)
    assert isinstance(lazy, CachedFeatures) and lazy.shape == x.shape
    np.testing.assert_array_equal(lazy[[1, 3]], x[[1, 3]])
    batch = next(iter(make_dataset(lazy, lazy_labels, 10, batch_size=4)))
    np.testing.assert_array_equal(batch[0].numpy(), x[:4])
    model = pipeline._load_model(run)
    np.testing.assert_allclose(pipeline._predict(model, lazy, chunk=7), model.predict(x, verbose=0), atol=1e-5)
