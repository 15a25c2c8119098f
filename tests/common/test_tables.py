"""common/tables.py and runner.summary_row: the demo table shows a task's secondary metrics
(landslide's IoUs) in one optional column."""

from common.runner import summary_row
from common.tables import markdown_table
from landslide.task import LandslideTask


class _Accuracy:
    name, metric_name, secondary_metrics = "asc", "accuracy", ()


def test_secondary_metrics_in_summary_rows_and_table():
    metrics = {"precision": 0.9, "recall": 0.8, "f1": 0.85, "iou_landslide": 0.74, "miou": 0.86,
               "miou_per_image": 0.905, "split": "val"}
    landslide = summary_row(LandslideTask(), "tiny", metrics, complexity={"params": 60739, "macs": 5e7})
    assert landslide["float_metric"] == 0.85
    assert landslide["more_metrics"] == {"iou_landslide": 0.74, "miou": 0.86, "miou_per_image": 0.905}
    other = summary_row(_Accuracy(), "student", {"accuracy": 0.9})
    assert "more_metrics" not in other
    header, _, first, second = markdown_table([landslide, other]).splitlines()
    assert header.endswith("| more (float) |")
    assert first.endswith("| iou_landslide 0.740, miou 0.860, miou_per_image 0.905 |") and second.endswith("| - |")
    assert "more" not in markdown_table([other]).splitlines()[0]  # no task row has one: no column
