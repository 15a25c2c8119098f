"""landslide/task.py: the metrics of metrics.json on hand-made masks (pooled and per-image IoUs)."""

import numpy as np
import pytest

from landslide.task import METRIC_KEYS, LandslideTask, all_metrics, f1_metric, image_confusions


def hand_made():
    """Three 2x4 patches (N, H, W, 1): A finds one of its two landslide pixels; B has no landslide
    in mask or prediction; C has no landslide in the mask and one false alarm."""
    masks = np.zeros((3, 2, 4, 1), np.float32)
    probs = np.full((3, 2, 4, 1), 0.1, np.float32)
    masks[0, 0, :2] = 1
    probs[0, 0, 0] = 0.9
    probs[0, 0, 1] = 0.5  # not above the 0.5 threshold: a miss
    probs[2, 1, 3] = 0.7
    return masks, probs


def test_pooled_and_per_image_metrics_on_hand_made_masks():
    masks, probs = hand_made()
    scores = all_metrics(masks, probs)
    assert tuple(scores) == METRIC_KEYS
    # Pooled over the 24 pixels: TP 1, FN 1, FP 1, TN 21.
    assert scores["precision"] == pytest.approx(1 / 2) and scores["recall"] == pytest.approx(1 / 2)
    assert scores["f1"] == pytest.approx(1 / 2) == f1_metric(masks, probs)
    assert scores["iou_landslide"] == pytest.approx(1 / 3)
    assert scores["miou"] == pytest.approx((1 / 3 + 21 / 23) / 2)
    assert scores["f1_mean"] == pytest.approx((1 / 2 + 42 / 44) / 2)  # background F1 2*21 / (2*21 + 1 + 1)
    # Per image: A (1/2 + 6/7) / 2, B 1 (nothing to find, nothing found), C (0 + 7/8) / 2.
    assert scores["miou_per_image"] == pytest.approx((19 / 28 + 1 + 7 / 16) / 3)
    assert scores["miou_per_image"] > scores["miou"] + 0.05  # the two definitions differ here
    # An image with no landslide in mask or prediction scores 1, one with a false alarm less.
    assert all_metrics(masks[1:2], probs[1:2])["miou_per_image"] == 1.0
    assert all_metrics(masks[2:], probs[2:])["miou_per_image"] == pytest.approx(7 / 16)
    np.testing.assert_array_equal(image_confusions(masks, probs)[0], [[6, 0], [1, 1]])


def test_task_metrics_is_what_the_export_report_holds():
    masks, probs = hand_made()
    assert LandslideTask().metrics(masks, probs) == all_metrics(masks, probs)
    assert LandslideTask.secondary_metrics == ("iou_landslide", "miou", "miou_per_image")
