"""Abuse tests of model loading (common/model_files.py): a model file never runs code on loading.

The malicious inputs are built here: an HDF5 model whose Lambda layer touches a marker file when
Keras rebuilds it (what `os.system` would do in an attack), put where a run's model.keras is;
HDF5 under other names, SavedModel folders, foreign zips, a .keras whose config names `os.system`,
a .keras holding a Lambda layer. The test first shows that the legacy loader really runs the
Lambda (`--unsafe-load`), so the refusals below are refusals of a file that is malicious.
"""

import json
import shutil
import zipfile

import numpy as np
import pytest

from common import runner
from common.errors import DataError
from common.model_files import load_model_file, model_file_problem
from tests.cli_runner import run_in_process
from tests.common.test_fourth_task import PointsTask


class DistillPoints(PointsTask):
    """The points task with a `distill` command (its YAML config is an empty file)."""

    distill_config = "distill.yaml"

    defaults = {**PointsTask.defaults, "distill": {"label_weight": 1.0, "kd_weight": 1.0, "temperature": 2.0,
                                                   "embedding_weight": 0.0, "init_from_teacher": False}}


def touching_model(marker):
    """A points-shaped model (8 inputs, 2 probabilities) whose Lambda touches `marker` whenever
    Keras runs it: on building, and again on rebuilding it from a file."""
    import tf_keras as keras

    namespace = {}
    exec(f"def touch(x):\n    import pathlib\n    pathlib.Path({str(marker)!r}).touch()\n    return x", namespace)
    inputs = keras.Input((8,))
    hidden = keras.layers.Lambda(namespace["touch"])(inputs)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="probs")(hidden))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Points data, a trained points run (1 epoch), and the malicious HDF5 model file."""
    root = tmp_path_factory.mktemp("safety_models")
    task = DistillPoints()
    task.config_dir = root / "configs"
    task.config_dir.mkdir()
    (task.config_dir / "distill.yaml").write_text("{}\n")
    task.sample(root / "data")
    cfg = runner.load_task_config(task, None, ["train.epochs=1"], root / "data")
    good = runner.train(task, cfg, root / "good").run
    marker = root / "code_ran"
    touching_model(marker).save(str(root / "evil.h5"))
    marker.unlink()  # building the model ran the Lambda once; loading must not run it again
    return {"task": task, "root": root, "data": root / "data", "good": good, "evil": root / "evil.h5",
            "marker": marker}


def evil_run(world, name):
    """A copy of the good run whose model.keras holds the malicious HDF5 model."""
    run = world["root"] / name
    shutil.copytree(world["good"], run)
    shutil.copyfile(world["evil"], run / "model.keras")
    return run


def test_the_hdf5_model_runs_its_code_with_the_legacy_loader_only(world):
    """The control: Keras' legacy loader (`--unsafe-load`) does run the stored Lambda."""
    marker = world["marker"]
    with pytest.raises(DataError, match=r"evil\.h5: is an HDF5 model; .*--unsafe-load"):
        load_model_file(world["evil"])
    assert not marker.exists()
    load_model_file(world["evil"], unsafe_load=True)
    assert marker.exists()
    marker.unlink()


def test_commands_refuse_a_run_holding_an_hdf5_model(world, capsys):
    task, marker = world["task"], world["marker"]
    run = evil_run(world, "evil_run")
    model = run / "model.keras"
    points = world["root"] / "p0.npy"
    np.save(points, np.zeros(8, np.float32))
    student = world["root"] / "student"
    for argv in (["evaluate", "--run", run],
                 ["export", "--run", run],
                 ["predict", "--run", run, points, "--out", world["root"] / "predictions.csv"],
                 ["distill", "--teacher", run, "--out", student, "--set", "train.epochs=1"]):
        code, _, err = run_in_process(task, argv, capsys)
        assert code == 2, (argv, err)
        assert err.strip() == (f"error: {model}: is an HDF5 model; only .keras model files load without running "
                               "code stored in them; pass --unsafe-load if you trust this file (it may run that code)")
        assert not marker.exists(), argv
    assert not student.exists()  # the refused distillation left no run behind
    assert not (world["root"] / "predictions.csv").exists()
    assert json.loads((run / "metrics.json").read_text()) == json.loads((world["good"] / "metrics.json").read_text())
    # The flag says what it means, and does it.
    for command in ("evaluate", "export", "predict", "distill"):
        code, out, _ = run_in_process(task, [command, "--help"], capsys)
        assert code == 0 and "such a file may run code stored in it; use only on files you trust" in " ".join(out.split())
    code, out, _ = run_in_process(task, ["evaluate", "--run", run, "--unsafe-load"], capsys)
    assert code == 0 and marker.exists()
    assert f"warning: {model}: is an HDF5 model; loading it anyway (--unsafe-load): code stored in it may run" in out
    marker.unlink()


def _zip(path, files):
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def test_every_other_model_file_is_refused(world, tmp_path):
    good = world["good"] / "model.keras"
    config = json.loads(zipfile.ZipFile(good).read("config.json"))
    weights = zipfile.ZipFile(good).read("model.weights.h5")
    renamed_hdf5 = shutil.copyfile(world["evil"], tmp_path / "renamed.keras")
    saved_model = tmp_path / "saved"
    saved_model.mkdir()
    (saved_model / "saved_model.pb").write_bytes(b"\x08\x01")
    as_bin = shutil.copyfile(good, tmp_path / "model.bin")
    no_config = _zip(tmp_path / "no_config.keras", {"model.weights.h5": weights})
    text = tmp_path / "text.keras"
    text.write_text("not a model")
    # A config that names os.system as a layer's activation: tf_keras' safe mode would import
    # any module a config names; this project's check refuses it before Keras reads the file.
    poisoned = json.loads(json.dumps(config))
    dense = next(layer for layer in poisoned["config"]["layers"] if layer["class_name"] == "Dense")
    dense["config"]["activation"] = {"module": "os", "class_name": "function", "config": "system",
                                     "registered_name": None}
    os_config = _zip(tmp_path / "os.keras", {"config.json": json.dumps(poisoned), "model.weights.h5": weights})
    import tf_keras as keras

    inputs = keras.Input((8,))
    lambda_model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    lambda_model.save(str(tmp_path / "lambda.keras"))
    expected = {
        renamed_hdf5: "is an HDF5 model",
        saved_model: "is a SavedModel folder",
        as_bin: "is a .keras zip named model.bin; give it the suffix .keras",
        no_config: "is a zip without config.json, not a .keras model",
        text: "is not a Keras model file (neither a .keras zip nor HDF5)",
        os_config: "names 'os.system', neither Keras' own nor a registered layer of this project",
        tmp_path / "lambda.keras": "holds a Lambda layer (stored Python code)",
    }
    for path, problem in expected.items():
        assert model_file_problem(path) == problem, path
        with pytest.raises(DataError) as refused:
            load_model_file(path)
        assert str(refused.value).startswith(f"{path}: {problem}; only .keras model files load"), refused.value
    assert model_file_problem(good) is None
    assert load_model_file(good).count_params() == (8 * 16 + 16) + (16 * 2 + 2)  # the points model


def test_weights_files_load_arrays_only(world):
    """rsic's `model.weights_path` is read with `load_weights`: HDF5 arrays only, no model rebuilt,
    so even the malicious file runs nothing when given as weights."""
    import tf_keras as keras

    inputs = keras.Input((8,))
    plain = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="probs")(inputs))
    plain.load_weights(str(world["evil"]))
    assert not world["marker"].exists()
    evil_kernel = load_model_file(world["evil"], unsafe_load=True).get_layer("probs").get_weights()[0]
    world["marker"].unlink()
    np.testing.assert_array_equal(plain.get_layer("probs").get_weights()[0], evil_kernel)
