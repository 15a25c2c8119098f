"""`train --init-from RUN` for asc (docs/retrain.md): the tiny teacher of conftest (ten sample
scenes) into the model of your own recordings in the folder-per-class layout with three other
class names: every layer but the classifiers is copied."""

import shutil

import numpy as np
import pytest

from asc.config import load
from asc.task import AscTask
from common.model_files import load_model_file
from common.retrain import init_from_run
from tests.asc.conftest import CONFIGS, FAST

TASK = AscTask()


@pytest.fixture(scope="module")
def own_recordings(sample_dir, tmp_path_factory):
    """root/<class>/*.wav: the sample's airport, bus and park clips as classes of other names."""
    root = tmp_path_factory.mktemp("asc_own")
    for scene, name in (("airport", "hall"), ("bus", "vehicle"), ("park", "garden")):
        (root / name).mkdir()
        for wav in sorted((sample_dir / "audio").glob(f"{scene}-*.wav")):
            shutil.copy(wav, root / name / wav.name)
    return root


def test_a_new_class_list_gets_a_new_classifier_and_the_rest_is_copied(teacher_run, own_recordings, tmp_path):
    source = teacher_run[0]
    cfg = load(CONFIGS / "teacher_tiny.yaml", [*FAST, f"train.init_from={source}"], own_recordings)
    data = TASK.open_data(cfg)
    assert TASK.class_names(data) == ["garden", "hall", "vehicle"]
    model, _ = TASK.build(cfg, data, TASK.make_split(cfg, data), tmp_path)
    copied, new, line = init_from_run(TASK, model, source, TASK.class_names(data))
    # The teacher has one classifier per spectrogram branch (logmel_logits, cqt_logits, ...).
    assert [layer.name for layer in new] == [f"{kind}_logits" for kind in cfg["features"]["kinds"]]
    assert "the classifier is new" in line and len(new) > 1
    for layer in new:
        assert layer.get_weights()[0].shape[-1] == 3
    teacher = load_model_file(source / "model.keras")
    assert len(copied) > 5
    for layer in copied:
        for mine, theirs in zip(layer.get_weights(), teacher.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(mine, theirs)
