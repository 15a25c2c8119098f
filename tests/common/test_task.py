"""common/task.py: the inner split that chooses the epoch (`carve_inner`, `Task.selection_split`)."""

import pytest

from common.config import TRAIN_DEFAULTS
from common.errors import ConfigError, DataError
from common.task import Task, carve_inner


def test_carve_inner_is_seeded_disjoint_and_takes_only_training_items():
    items = [f"x{i}" for i in range(40)]
    train, inner = carve_inner(items, 0.1, seed=3)
    assert len(inner) == 4 and len(train) == 36 and sorted(train + inner) == sorted(items)
    assert not set(train) & set(inner)
    assert train == [x for x in items if x in train]  # the items' order is kept
    assert carve_inner(items, 0.1, seed=3) == (train, inner)
    assert carve_inner(items, 0.1, seed=4)[1] != inner
    assert len(carve_inner(items[:5], 0.01, seed=0)[1]) == 1  # at least one item
    assert len(carve_inner(items[:2], 0.9, seed=0)[0]) == 1  # at least one stays for training


def test_carve_inner_moves_whole_groups_and_keeps_the_class_balance():
    # 3 classes x 10 groups x 3 members; group g of class c is f"c{c}g{g}".
    items = [(c, g, m) for c in range(3) for g in range(10) for m in range(3)]
    groups = [f"c{c}g{g}" for c, g, _ in items]
    labels = [c for c, _, _ in items]
    train, inner = carve_inner(items, 0.2, seed=0, groups=groups, labels=labels)
    inner_groups = {(c, g) for c, g, _ in inner}
    assert len(inner_groups) == 6 and len(inner) == 18  # 2 whole groups of each class
    assert not inner_groups & {(c, g) for c, g, _ in train}
    assert [sum(1 for c, _, _ in inner if c == k) for k in range(3)] == [6, 6, 6]


def test_carve_inner_errors_name_the_key_or_the_problem():
    with pytest.raises(ConfigError, match=r"^config key 'data.inner_val_fraction' must be in \(0, 1\), got 0$"):
        carve_inner([1, 2, 3], 0, seed=0)
    with pytest.raises(DataError, match="needs at least 2 .*train.select_on=reported"):
        carve_inner([1, 2, 3], 0.5, seed=0, groups=["r", "r", "r"])


def test_selection_split_follows_select_on():
    task = Task()
    task.reported_split = "test"
    assert task.selection_split({"train": dict(TRAIN_DEFAULTS)}) == "val"
    assert task.selection_split({"train": {**TRAIN_DEFAULTS, "select_on": "reported"}}) == "test"


TYPED_METHODS = ("predict", "edge_predict", "download", "download_needs_dest")


@pytest.mark.parametrize("name", ["landslide", "rsic", "asc"])
def test_task_methods_take_typed_options_not_the_argparse_namespace(name):
    import inspect

    from common.task import task_by_name

    task = task_by_name(name)
    for method in TYPED_METHODS:
        parameters = inspect.signature(getattr(task, method)).parameters
        assert "args" not in parameters, f"{name}: {method} takes the argparse namespace"
        # every option (a parameter the command line may fill) has a default
        assert all(p.default is not p.empty for p in parameters.values() if p.kind == p.KEYWORD_ONLY)


def test_method_options_pass_the_parsed_options_a_method_names():
    from common.cli import build_parser, method_options
    from landslide.task import LandslideTask
    from rsic.task import RsicTask

    rsic = RsicTask()
    args = build_parser(rsic).parse_args(["download", "--weights", "all", "--alpha", "0.5"])
    assert method_options(rsic.download_needs_dest, args) == {"weights": "all"}
    assert rsic.download_needs_dest(**method_options(rsic.download_needs_dest, args)) is False
    options = method_options(rsic.download, args)
    assert options["weights"] == "all" and options["alpha"] == 0.5 and options["input_size"] == 224
    assert "dest" not in options  # a required parameter: the caller gives it
    assert method_options(rsic.edge_predict, build_parser(rsic).parse_args(
        ["predict", "x.jpg", "--tflite", "m.tflite", "--out", "p.csv", "--skip-bad"])) == {"skip_bad": "true"}

    landslide = LandslideTask()
    args = build_parser(landslide).parse_args(["predict", "a.h5", "--tflite", "m.tflite", "--out", "o",
                                               "--threshold", "0.7"])
    # --overlap left out (None): the method's default applies; `inputs` is required, not an option
    assert method_options(landslide.edge_predict, args) == {"threshold": 0.7, "geojson": False}
