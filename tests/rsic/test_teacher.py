"""Paper 3's combined teacher (common/teacher.py) and distilling from its fused embedding."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tf_keras as keras

from common import runner
from common import teacher as combined
from common.config import read_saved_config
from common.distill import Distiller
from common.errors import ConfigError
from common.model_files import saved_param_count

from .conftest import TASK


@pytest.fixture(scope="module")
def combined_run(paper3_run):
    """The combined teacher that `paper3 --quick --teachers 2` trained from its two benchmark runs
    (conftest.paper3_run; training one here would cost the suite a minute): (run, its members)."""
    run = paper3_run[0] / "teacher"
    return run, [Path(member) for member in read_saved_config(run / "config.yaml")["teacher"]["members"]]


@pytest.fixture(scope="module")
def member_embedders(combined_run):
    """Each member's model up to its "embedding" layer, loaded once from the member runs."""
    return [combined.embedding_model(runner.keras_model(TASK, run), f"expected{n}")
            for n, run in enumerate(combined_run[1])]


def test_combined_teacher_trains_only_its_fusion_and_classifier(member_embedders, combined_run):
    run, _ = combined_run
    metrics = json.loads((run / "metrics.json").read_text())
    model = runner.keras_model(TASK, run)
    # Only the fusion (w_n, b) and the classifier are trainable.
    head = [w for name in ("embedding", "logits") for w in model.get_layer(name).trainable_weights]
    assert len(head) == 4 and {id(w) for w in model.trainable_weights} == {id(w) for w in head}
    # Member weights unchanged: the saved model's frozen members equal the member runs' models.
    for n, embedder in enumerate(member_embedders):
        inside = next(layer for layer in model.layers if layer.name.startswith(f"member{n}_"))
        expected = embedder.get_weights()
        assert len(inside.get_weights()) == len(expected) > 0
        assert all(np.array_equal(a, b) for a, b in zip(inside.get_weights(), expected))
    assert metrics["split"] == "test" and 0.0 <= metrics["accuracy"] <= 1.0  # an ordinary run's scores
    # Table II's params column reads the file without loading it: Keras' own count.
    assert saved_param_count(run / "model.keras") == model.count_params()
    # The "embedding" layer is the fused vector: sum_n e_n * w_n + b computed by hand.
    cfg = runner.run_config(TASK, run)
    data = TASK.open_data(cfg)
    split, _ = runner.read_split(TASK, run, data)
    x, _ = TASK.examples(cfg, data, split["test"][:6])
    weights, bias = model.get_layer("embedding").get_weights()
    embeddings = [embedder(x, training=False).numpy() for embedder in member_embedders]
    by_hand = sum(e * w for e, w in zip(embeddings, weights)) + bias
    fused = keras.Model(model.inputs, model.get_layer("embedding").output)(x, training=False).numpy()
    np.testing.assert_allclose(fused, by_hand, rtol=1e-4, atol=1e-5)
    # Cached once per member and split, in the run.
    assert sorted(p.name for p in (run / "embeddings").iterdir()) == [
        "member0_train.npz", "member0_val.npz", "member1_train.npz", "member1_val.npz"]


def test_fusion_and_classifier_learn_from_cached_embeddings(teacher_run, sample_dir):
    """The head `train_teacher` fits, on the embeddings of a trained tiny run (the session's; the
    paper3 fixture's one-epoch members are at chance): above chance on the sample's test split."""
    import tf_keras  # noqa: F401  (keras.utils.set_random_seed below)

    run = teacher_run[0]
    cfg = runner.run_config(TASK, run)
    data = TASK.open_data(cfg)
    split, _ = runner.read_split(TASK, run, data)
    embedder = combined.embedding_model(runner.keras_model(TASK, run), "member")
    x = {name: embedder.predict(TASK.examples(cfg, data, split[name])[0], verbose=0)
         for name in ("train", "test")}
    labels = {name: data.labels[np.asarray(split[name])] for name in ("train", "test")}
    keras.utils.set_random_seed(0)
    # Two members: the run's embedding and half of it (the fusion weighs each element of each).
    head = combined.build_head(2, x["train"].shape[1], 5, 0.4)
    head.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    head.fit([x["train"], 0.5 * x["train"]], labels["train"], epochs=30, batch_size=16, verbose=0)
    accuracy = np.mean(np.argmax(head.predict([x["test"], 0.5 * x["test"]], verbose=0), 1)
                       == labels["test"])
    # 5 classes: chance is 0.2; the run alone scores 0.74-0.93 (seeds 0-2), so twice chance
    # leaves a wide margin for any CPU's rounding.
    assert accuracy > 0.4


def test_cached_embeddings_are_reused_and_recomputed_when_the_image_list_changes(
        member_embedders, combined_run):
    run, members = combined_run
    cfg = runner.run_config(TASK, run)
    data = TASK.open_data(cfg)
    split, _ = runner.read_split(TASK, run, data)
    ids = TASK.split_ids(data, {"val": split["val"]})["val"]

    def refuses():  # a cached file must be read, never recomputed
        raise AssertionError("recomputed a cached embedding")

    said = []
    cached = combined.member_embeddings(refuses, members[0], 0, ids, run / "embeddings", "val", said.append)
    assert cached.shape == (len(ids), 128) and "cached" in said[0]
    # Another example list (or a retrained member) is another key: computed afresh, same values.
    folder = run.parent / "other_cache"
    shutil.copytree(run / "embeddings", folder)
    again = combined.member_embeddings(lambda: TASK.embed(member_embedders[0], cfg, data, split["val"][:-1], 16),
                                       members[0], 0, ids[:-1], folder, "val", said.append)
    assert "computing" in said[-1]
    np.testing.assert_allclose(again, cached[:-1], rtol=1e-4, atol=1e-5)


def _small_student(embedding_size):
    """A small classifier of 64 x 64 images with the project's head layers (a MobileNetV2 costs
    seconds to build and trace; the loss does not depend on the backbone)."""
    keras.utils.set_random_seed(0)
    image = keras.Input((64, 64, 3))
    x = keras.layers.Conv2D(8, 3, strides=4, activation="relu")(keras.layers.Rescaling(1 / 255)(image))
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(embedding_size, activation="relu", name="embedding")(x)
    probs = keras.layers.Activation("softmax", name="probs")(keras.layers.Dense(5, name="logits")(x))
    return keras.Model(image, probs)


def test_distilling_from_the_combined_teacher_imitates_its_fused_vector(combined_run):
    run = combined_run[0]
    teacher = runner.keras_model(TASK, run)
    cfg = runner.run_config(TASK, run)
    student = _small_student(128)  # the members' embedding size, so the fused vector's
    distiller = Distiller(student, teacher, label_loss=keras.losses.SparseCategoricalCrossentropy(),
                          label_weight=1.0, kd_weight=0.0, embedding_weight=1.0,
                          embedding_projection=False)
    assert distiller.projection is None
    data = TASK.open_data(cfg)
    split, _ = runner.read_split(TASK, run, data)
    x, labels = TASK.examples(cfg, data, split["test"][:8])
    distiller.compile(optimizer="adam")
    logged = distiller.test_on_batch(x, labels, return_dict=True)
    # By hand: cross-entropy + MSE(student embedding, teacher's fused vector), weights 1:1.
    # Eager calls on the one batch (no predict loop to trace): inference mode, as test_on_batch.
    student_probs = student(x, training=False).numpy()
    ce = -np.mean(np.log(student_probs[np.arange(len(labels)), labels]))
    student_emb = keras.Model(student.inputs, student.get_layer("embedding").output)(x).numpy()
    fused = keras.Model(teacher.inputs, teacher.get_layer("embedding").output)(x, training=False).numpy()
    mse = np.mean((student_emb - fused) ** 2)
    regularization = float(sum(np.sum(loss) for loss in student.losses))
    np.testing.assert_allclose(logged["label_loss"], ce, rtol=1e-4)
    np.testing.assert_allclose(logged["embedding_loss"], mse, rtol=1e-4)
    np.testing.assert_allclose(logged["loss"], ce + mse + regularization, rtol=1e-4)
    assert logged["kd_loss"] == 0.0
    # Without projection the sizes must match: one line naming both.
    narrow = _small_student(64)
    with pytest.raises(ConfigError, match=r"embedding_projection.*64 values.*128"):
        Distiller(narrow, teacher, label_loss="sparse_categorical_crossentropy", embedding_weight=1.0,
                  embedding_projection=False)


def _fake_run(folder, source, **model):
    """A copy of `source`'s files that check_members reads, its config's model section changed."""
    from common.config import read_saved_config, save_config

    folder.mkdir(parents=True)
    for name in ("run.json", "labels.txt", "split.json"):
        shutil.copy(source / name, folder / name)
    (folder / "model.keras").write_bytes(b"not read by check_members")
    cfg = read_saved_config(source / "config.yaml")
    cfg["model"].update(model)
    save_config(cfg, folder / "config.yaml")
    return folder


def test_members_must_share_classes_input_size_and_split(combined_run, tmp_path):
    first = combined_run[1][0]
    other_size = _fake_run(tmp_path / "big", first, input_size=96)
    with pytest.raises(ConfigError, match=rf"{other_size}: its input size 96 differs"):
        combined.check_members(TASK, [first, other_size])
    other_classes = _fake_run(tmp_path / "classes", first)
    (other_classes / "labels.txt").write_text("a\nb\nc\nd\ne\n")
    with pytest.raises(ConfigError, match=rf"{other_classes}: its classes"):
        combined.check_members(TASK, [first, other_classes])
    with pytest.raises(ConfigError, match="given twice"):
        combined.member_runs(f"{first},{first}")
    with pytest.raises(ConfigError, match="at least two"):
        combined.member_runs(str(first))


@pytest.mark.slow
def test_combined_teacher_exports_to_int8(combined_run, tmp_path):
    """`export` takes the combined teacher (its frozen members nested inside) like any run; slow
    (a minute on 2 cores: two networks calibrated, converted and checked), so `make test-all`."""
    run = tmp_path / "teacher"
    shutil.copytree(combined_run[0], run)  # the session's run stays as paper3 left it
    report = runner.export(TASK, run)
    assert (run / "model_int8.tflite").stat().st_size == report["tflite_bytes"] > 0
    assert report["params"] == sum(int(np.prod(w.shape)) for w in runner.keras_model(TASK, run).weights)
    # `paper3 --quick`'s teacher (two-epoch members) exported by hand agreed with Keras on 0.925
    # of the test images; a broken conversion (a member dropped, the fusion wrong) near chance.
    assert report["agreement"] >= 0.6
