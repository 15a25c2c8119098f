"""`train --init-from RUN` for landslide (docs/retrain.md): the tiny run's weights into the model of
a new data set. Segmentation has one class list, so every layer is copied; the end-to-end
fine-tuning test is rsic's (tests/rsic/test_retrain.py)."""

import json

import numpy as np

from common import runner
from common.model_files import load_model_file
from common.retrain import init_from_run
from landslide.features import STATS_FILE, normalisation
from landslide.models import build_models
from landslide.task import CLASS_NAMES, LandslideTask
from tests.landslide.conftest import TINY

TASK = LandslideTask()


def build_for(tiny_run, overrides=()):
    """The training model of tiny.yaml (with `overrides`); normalised with the tiny run's
    statistics instead of a pass over the data (Task.build's), which weights do not depend on."""
    cfg = runner.load_task_config(TASK, TINY, list(overrides))
    stats = json.loads((tiny_run / STATS_FILE).read_text())
    training, _ = build_models(cfg, *normalisation(stats, cfg["data"]["normalization"]))
    return training, list(CLASS_NAMES)


def test_every_layer_of_the_tiny_run_is_copied(tiny_run):
    model, classes = build_for(tiny_run)
    copied, new, line = init_from_run(TASK, model, tiny_run, classes)
    assert not new and f"{len(copied)} layers copied (100.0% of the weights), 0 new" in line
    source = load_model_file(tiny_run / "model.keras")
    assert {layer.name for layer in copied} >= {"head_full_logits", "head_half_logits", "head_quarter_logits"}
    for layer in copied:
        for mine, theirs in zip(layer.get_weights(), source.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(mine, theirs)

