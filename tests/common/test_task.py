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
