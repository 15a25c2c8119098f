"""landslide/data.py: layout, validation errors (exact messages), splits, the tf.data pipeline."""

import json

import h5py
import numpy as np
import pytest

from common.errors import ConfigError, DataError
from landslide import data as D


def write_h5(path, key, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.create_dataset(key, data=array)
    return path


def good_image(value=0.5):
    return np.full((128, 128, 14), value, np.float32)


def good_mask():
    mask = np.zeros((128, 128), np.uint8)
    mask[10:20, 10:20] = 1
    return mask


@pytest.fixture
def folder(tmp_path):
    """A labelled folder with two good patches."""
    for i in (1, 2):
        write_h5(tmp_path / "img" / f"image_{i}.h5", "img", good_image())
        write_h5(tmp_path / "mask" / f"mask_{i}.h5", "mask", good_mask())
    return tmp_path


def test_index_sample_layout(sample_root):
    folder = D.labelled_folder(sample_root)
    assert folder == sample_root / "TrainData"
    patches = D.index_folder(folder)
    assert len(patches.images) == 32
    assert patches.names[:3] == ["image_1.h5", "image_2.h5", "image_3.h5"]  # natural order
    assert patches.masks[9].name == "mask_10.h5"
    unlabelled = D.index_folder(sample_root / "TestData", masks=False)
    assert len(unlabelled.images) == 8 and not unlabelled.labelled


def test_plain_img_mask_folder_is_accepted(folder):
    assert D.labelled_folder(folder) == folder
    assert D.index_folder(folder).names == ["image_1.h5", "image_2.h5"]


def test_read_replaces_and_counts_nans(tmp_path):
    image = good_image()
    image[0, :5, 3] = np.nan
    path = write_h5(tmp_path / "image_1.h5", "img", image.astype(np.float64))
    read, nans = D.read_image(path)
    assert nans == 5 and read.dtype == np.float32
    assert np.all(read[0, :5, 3] == D.NAN_FILL) and not np.isnan(read).any()


def bad_cases(tmp_path):
    img = tmp_path / "img"
    cases = {}
    cases["bands"] = (write_h5(img / "image_1.h5", "img", np.zeros((128, 128, 13), np.float32)),
                      "'img' has 13 bands, expected 14")
    cases["size"] = (write_h5(img / "image_2.h5", "img", np.zeros((64, 64, 14), np.float32)),
                     "'img' is 64x64 pixels, expected 128x128")
    cases["key"] = (write_h5(img / "image_3.h5", "image", good_image()), "no dataset 'img' (found: image)")
    garbage = img / "image_4.h5"
    garbage.write_bytes(b"not an hdf5 file")
    cases["unreadable"] = (garbage, "not a readable HDF5 file")
    nan = np.full((128, 128, 14), np.nan, np.float32)
    cases["nan"] = (write_h5(img / "image_5.h5", "img", nan), "'img' is all NaN")
    inf = good_image()
    inf[3, 3, 3] = np.inf
    inf[4, 4, 4] = -np.inf
    cases["inf"] = (write_h5(img / "image_6.h5", "img", inf), "'img' holds 2 infinite values")
    return cases


def test_bad_images_raise_with_file_and_problem(tmp_path):
    for name, (path, message) in bad_cases(tmp_path).items():
        with pytest.raises(DataError) as info:
            D.read_image(path)
        assert str(info.value) == f"{path}: {message}", name


def test_bad_masks(tmp_path):
    path = write_h5(tmp_path / "mask_1.h5", "mask", np.full((128, 128), 2, np.uint8))
    with pytest.raises(DataError, match=r"mask_1.h5: mask values must be 0 or 1, found 2$"):
        D.read_mask(path)
    path = write_h5(tmp_path / "mask_2.h5", "mask", np.zeros((128, 64), np.uint8))
    with pytest.raises(DataError, match=r"mask_2.h5: 'mask' has shape \(128, 64\), expected \(128, 128\)$"):
        D.read_mask(path)


def test_folder_errors(tmp_path, folder):
    (folder / "mask" / "mask_2.h5").unlink()
    with pytest.raises(DataError) as info:
        D.index_folder(folder)
    assert str(info.value) == f"{folder / 'img' / 'image_2.h5'}: no mask {folder / 'mask' / 'mask_2.h5'}"
    empty = tmp_path / "empty"
    (empty / "img").mkdir(parents=True)
    with pytest.raises(DataError, match=r"empty/img: no image_\*\.h5 patches$"):
        D.index_folder(empty)
    with pytest.raises(DataError, match="no img/ folder"):
        D.labelled_folder(tmp_path / "mask")
    write_h5(folder / "img" / "image_3.h5", "img", np.zeros((128, 128, 12), np.float32))
    write_h5(folder / "mask" / "mask_3.h5", "mask", good_mask())
    write_h5(folder / "mask" / "mask_2.h5", "mask", good_mask())
    with pytest.raises(DataError, match="image_3.h5: 'img' has 12 bands, expected 14"):
        D.index_folder(folder)  # headers are checked up front


def test_pipeline_error_is_reraised_as_data_error(folder):
    write_h5(folder / "mask" / "mask_2.h5", "mask", np.full((128, 128), 7, np.uint8))
    patches = D.index_folder(folder)
    with pytest.raises(DataError, match="mask_2.h5: mask values must be 0 or 1, found 7"):
        with D.reraise_data_errors():
            list(D.read_dataset(patches))


def test_splits_are_seeded_disjoint_and_cover():
    names = [f"image_{i}.h5" for i in range(1, 101)]
    folds = [D.make_split(names, folds=5, fold=k, seed=3) for k in range(5)]
    vals = [set(split["val"]) for split in folds]
    assert all(len(v) == 20 for v in vals)
    assert set().union(*vals) == set(names) and sum(map(len, vals)) == 100  # a partition
    for split in folds:
        assert not set(split["train"]) & set(split["val"]) and len(split["train"]) == 80
    assert D.make_split(names, folds=5, fold=0, seed=3) == folds[0]
    assert D.make_split(names, folds=5, fold=0, seed=4)["val"] != folds[0]["val"]
    holdout = D.make_split(names, protocol="holdout", val_fraction=0.25, seed=0)
    assert len(holdout["val"]) == 25 and len(holdout["train"]) == 75
    with pytest.raises(ConfigError, match="data.split"):
        D.make_split(names, protocol="random")


def test_split_file_round_trip(tmp_path, folder):
    # split.json is written and read by common.runner (the landslide copies were unused).
    from common.runner import load_task_config, read_split, write_split
    from landslide.task import LandslideTask

    task, data = LandslideTask(), D.index_folder(folder)
    split = D.make_split(data.names, folds=2, fold=1)
    write_split(task, tmp_path, load_task_config(task, data=folder), data, split)
    saved = json.loads((tmp_path / "split.json").read_text())
    assert read_split(task, tmp_path, data)[0] == split == {key: saved[key] for key in split}


def test_training_dataset_shapes_and_joint_augmentation(folder):
    # Make the image carry the mask in band 0, so a joint transform keeps them equal.
    for i in (1, 2):
        image = good_image()
        image[..., 0] = good_mask()
        write_h5(folder / "img" / f"image_{i}.h5", "img", image)
    ds = D.training_dataset(D.index_folder(folder), batch_size=2, seed=1, cache=True)
    for _ in range(2):  # second epoch from the cache
        x, y = next(iter(ds))
        assert x.shape == (2, 128, 128, 14) and y.shape == (2, 128, 128, 1)
        np.testing.assert_array_equal(x.numpy()[..., 0], y.numpy()[..., 0])
    flips = {tuple(np.argwhere(y.numpy()[0, ..., 0])[0]) for x, y in ds.take(1).repeat(6)}
    assert len(flips) > 1  # the augmentation changes between epochs


def test_cache_decision():
    assert D.should_cache(10, cache="auto")
    assert not D.should_cache(10**9, cache="auto")
    assert not D.should_cache(10, cache="none") and D.should_cache(10**9, cache="memory")
    with pytest.raises(ConfigError, match="data.cache"):
        D.should_cache(10, cache="sometimes")


def test_inner_split_is_carved_from_the_training_folds_only():
    """train.select_on=inner (the default): every fold chooses its epoch on a seeded tenth of its own
    training folds, never on the fold it reports; `reported` keeps the whole training part."""
    from types import SimpleNamespace

    from common.config import load_config
    from landslide.config import DEFAULTS
    from landslide.task import LandslideTask

    task, data = LandslideTask(), SimpleNamespace(names=[f"image_{i}.h5" for i in range(1, 51)])
    for fold in range(5):
        cfg = load_config(None, [f"data.fold={fold}"], defaults=DEFAULTS)
        split, outer = task.make_split(cfg, data), D.make_split(data.names, folds=5, fold=fold)
        assert split["val"] == outer["val"] and len(split["inner"]) == 4 and len(split["train"]) == 36
        assert set(split["inner"]) | set(split["train"]) == set(outer["train"])  # only from the training part
        assert not set(split["inner"]) & (set(split["train"]) | set(split["val"]))
        assert task.selection_split(cfg) == "inner" and task.make_split(cfg, data) == split  # seeded
    holdout = load_config(None, ["data.split=holdout", "data.val_fraction=0.2", "data.inner_val_fraction=0.02"],
                          defaults=DEFAULTS)
    assert len(task.make_split(holdout, data)["inner"]) == 1  # at least one patch
    reported = load_config(None, ["train.select_on=reported"], defaults=DEFAULTS)
    fold0 = D.make_split(data.names, folds=5, fold=0)
    assert task.make_split(reported, data) == {"train": fold0["train"], "val": fold0["val"]}
    assert task.selection_split(reported) == "val"
    with pytest.raises(ConfigError, match=r"^config key 'data.inner_val_fraction' must be in \(0, 1\), got 1.5$"):
        task.make_split(load_config(None, ["data.inner_val_fraction=1.5"], defaults=DEFAULTS), data)


def test_contiguous_folds_are_the_authors_blocks_of_naturally_sorted_names():
    # 13 names listed out of order; natural order puts image_10 after image_9 (a plain string sort
    # would put it after image_1).
    names = [f"image_{i}.h5" for i in (10, 3, 1, 13, 9, 2, 11, 4, 5, 12, 6, 8, 7)]
    ordered = [f"image_{i}.h5" for i in range(1, 14)]
    # The authors' bounds int(13 * j / 5): 0, 2, 5, 7, 10, 13; their fold 1 (our 0) = the last block.
    blocks = {0: ordered[10:13], 1: ordered[7:10], 2: ordered[5:7], 3: ordered[2:5], 4: ordered[0:2]}
    for fold, expected in blocks.items():
        split = D.make_split(names, folds=5, fold=fold, fold_order="contiguous", seed=fold)
        assert sorted(split["val"], key=lambda n: int(n[6:-3])) == expected
        assert set(split["train"]) == set(names) - set(expected)
    # A plain string sort would have put image_10 and image_11 in the first block instead.
    assert set(D.make_split(names, fold=1, fold_order="contiguous")["val"]) == {
        "image_8.h5", "image_9.h5", "image_10.h5"}
    assert D.contiguous_fold(3799, 5, 0) == (3039, 3799)  # int(3799 * 0.8) as their code has it
    with pytest.raises(ConfigError, match="data.fold_order"):
        D.make_split(names, fold_order="sorted")


def _patches(tmp_path, count=3):
    """`count` patches whose band 0 is the patch number and whose masks differ: patch i has a
    landslide square at rows 10i..10i+9 (patch 1 none)."""
    for i in range(1, count + 1):
        image, mask = good_image(float(i)), np.zeros((128, 128), np.uint8)
        image[..., 1] = np.arange(128)[None, :]  # an asymmetric band: rotations show
        if i > 1:
            mask[10 * i : 10 * i + 10, 5:40] = 1
        write_h5(tmp_path / "img" / f"image_{i}.h5", "img", image)
        write_h5(tmp_path / "mask" / f"mask_{i}.h5", "mask", mask)
    return D.index_folder(tmp_path)


def test_rotation_probability_flips_and_the_augmentation_switch(tmp_path):
    import tensorflow as tf

    patches = _patches(tmp_path)
    raw = [np.asarray(D.read_image(path)[0]) for path in patches.images]

    def epoch(**options):
        switch = options.pop("switch", None)
        ds = D.training_dataset(patches, batch_size=3, shuffle=False, augment_cfg=options,
                                switch=switch)
        return next(iter(ds))[0].numpy()

    # No flips and rotation probability 0: nothing changes; probability 1: always a quarter turn.
    np.testing.assert_array_equal(epoch(flips=False, rotation_probability=0.0), np.stack(raw))
    turned = epoch(flips=False, rotation_probability=1.0)
    assert all(not np.array_equal(x, r) for x, r in zip(turned, raw))
    # The switch at 0 (the last epochs, `AugmentOff`) passes the patches through.
    off = tf.Variable(0)
    np.testing.assert_array_equal(epoch(flips=False, rotation_probability=1.0, switch=off), np.stack(raw))


def test_landslide_cutmix_pastes_landslide_pixels_and_ors_the_masks(tmp_path):
    patches = _patches(tmp_path)
    assert D.landslide_patches(patches).names == ["image_2.h5", "image_3.h5"]
    ds = D.training_dataset(patches, batch_size=3, shuffle=False, seed=3,
                            augment_cfg={"flips": False, "rotation_probability": 0.0, "cutmix_max": 2})
    pasted = 0
    for x, y in ds.take(1).repeat(4):  # four epochs: the pastes differ each time
        for i, (image, mask) in enumerate(zip(x.numpy(), y.numpy()[..., 0]), start=1):
            own = D.read_mask(patches.masks[i - 1]).astype(bool)
            assert (mask[own] == 1).all()  # the OR keeps the patch's own landslides
            donors = {int(v) for v in np.unique(image[..., 0])} - {i}
            for donor in donors:  # a donor's pixels are exactly its landslide pixels, now landslide
                region = image[..., 0] == donor
                np.testing.assert_array_equal(region, D.read_mask(patches.masks[donor - 1]).astype(bool))
                assert donor in (2, 3) and (mask[region] == 1).all()
            pasted += bool(donors)
    assert pasted > 0
