import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from common.distill import Distiller, TeacherEnsemble, ensemble_soft_targets, init_from_teacher
from common.errors import ConfigError

NUM_CLASSES = 4
FEATURES = 8


def _classifier(width, seed, name, batchnorm=False, two_inputs=False):
    """A tiny classifier following the project's head convention (embedding, logits, probs)."""
    keras.utils.set_random_seed(seed)
    if two_inputs:
        inputs = [keras.Input((FEATURES,), name="a"), keras.Input((3,), name="b")]
        x = keras.layers.Concatenate(name="joined")(inputs)
    else:
        inputs = x = keras.Input((FEATURES,), name="x")
    x = keras.layers.Dense(width, name="hidden")(x)
    if batchnorm:
        x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Activation("relu", name="embedding")(x)
    x = keras.layers.Dense(NUM_CLASSES, name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name=name)


def _data(seed=0, n=256):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FEATURES)).astype("float32")
    rule = np.random.default_rng(99).normal(size=(FEATURES, NUM_CLASSES))
    labels = np.argmax(x @ rule, axis=1)
    return x, labels


@pytest.fixture(scope="module")
def teacher():
    """A teacher trained a few epochs on a linear rule (with BatchNorm, to check inference mode)."""
    x, labels = _data()
    model = _classifier(16, seed=1, name="teacher", batchnorm=True)
    model.compile(
        optimizer=keras.optimizers.Adam(0.05),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(x, labels, epochs=15, batch_size=64, verbose=0).history
    assert history["accuracy"][-1] > 0.8
    return model


def _agreement(a, b, x):
    return float(
        np.mean(np.argmax(a.predict(x, verbose=0), 1) == np.argmax(b.predict(x, verbose=0), 1))
    )


def test_kd_alone_makes_the_student_agree_with_the_teacher(teacher):
    x, _ = _data(seed=1)
    # Labels are noise: with label_weight 0 only the teacher can teach anything.
    noise = np.eye(NUM_CLASSES)[np.random.default_rng(2).integers(0, NUM_CLASSES, len(x))].astype(
        "float32"
    )
    student = _classifier(8, seed=3, name="student")
    before = _agreement(student, teacher, x)
    distiller = Distiller(
        student,
        teacher,
        label_loss="categorical_crossentropy",
        label_weight=0.0,
        kd_weight=1.0,
        temperature=2.0,
    )
    distiller.compile(optimizer=keras.optimizers.Adam(0.05))
    history = distiller.fit(x, noise, epochs=15, batch_size=64, verbose=0).history
    after = _agreement(student, teacher, x)
    assert history["kd_loss"][-1] < 0.5 * history["kd_loss"][0]
    assert history["embedding_loss"][-1] == 0.0
    assert after > max(before + 0.3, 0.8), (before, after)


def test_label_and_kd_losses_fall_with_soft_labels_and_validation(teacher):
    x, labels = _data(seed=4)
    one_hot = np.eye(NUM_CLASSES, dtype="float32")[labels]
    # Mixup upstream: soft targets, a mixture of two samples' one-hot labels.
    soft = 0.8 * one_hot + 0.2 * one_hot[::-1]
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    distiller = Distiller(
        _classifier(8, seed=5, name="student"),
        teacher,
        label_loss=keras.losses.CategoricalCrossentropy(),
        label_weight=0.5,
        kd_weight=0.5,
    )
    distiller.compile(optimizer=keras.optimizers.Adam(0.05), metrics=["accuracy"])
    history = distiller.fit(
        x[:192],
        soft[:192],
        validation_data=(x[192:], one_hot[192:]),
        epochs=8,
        batch_size=64,
        verbose=0,
    ).history
    for key in ("loss", "label_loss", "kd_loss", "embedding_loss", "accuracy"):
        assert key in history and f"val_{key}" in history
    np.testing.assert_allclose(
        history["loss"],
        0.5 * np.array(history["label_loss"]) + 0.5 * np.array(history["kd_loss"]),
        rtol=1e-5,
    )
    assert history["loss"][-1] < 0.7 * history["loss"][0]
    assert history["val_loss"][-1] < history["val_loss"][0]
    assert history["val_accuracy"][-1] > 0.7
    # Frozen teacher: weights and BatchNorm statistics untouched.
    assert not teacher.trainable and not distiller.teacher.trainable_variables
    for old, new in zip(teacher_weights, teacher.get_weights()):
        np.testing.assert_array_equal(old, new)
    # Calling the distiller calls the student.
    np.testing.assert_array_equal(distiller(x[:4]).numpy(), distiller.student(x[:4]).numpy())


def test_embedding_kd_with_projection_and_weights_round_trip(teacher, tmp_path):
    x, labels = _data(seed=6, n=128)

    def make(seed):
        return Distiller(
            _classifier(6, seed=seed, name="student"),
            teacher,
            label_loss="sparse_categorical_crossentropy",
            embedding_weight=1.0,
            kd_weight=0.5,
        )

    distiller = make(seed=7)
    assert distiller.projection.kernel.shape == (6, 16)
    distiller.compile(optimizer=keras.optimizers.Adam(0.05))
    history = distiller.fit(x, labels, epochs=6, batch_size=64, verbose=0).history
    assert history["embedding_loss"][-1] < 0.7 * history["embedding_loss"][0]
    assert distiller.projection.kernel in distiller.trainable_variables

    path = tmp_path / "best.weights.h5"
    distiller.save_weights(str(path))
    fresh = make(seed=8)
    assert not np.allclose(
        fresh.student.predict(x, verbose=0), distiller.student.predict(x, verbose=0)
    )
    fresh.load_weights(str(path))
    np.testing.assert_array_equal(
        fresh.student.predict(x, verbose=0), distiller.student.predict(x, verbose=0)
    )
    np.testing.assert_array_equal(
        fresh.projection.kernel.numpy(), distiller.projection.kernel.numpy()
    )


def test_multi_input_student_with_dataset():
    rng = np.random.default_rng(9)
    a = rng.normal(size=(128, FEATURES)).astype("float32")
    b = rng.normal(size=(128, 3)).astype("float32")
    labels = (a[:, 0] > 0).astype("int64") + 2 * (b[:, 0] > 0).astype("int64")
    teacher = _classifier(12, seed=10, name="teacher2", two_inputs=True)
    teacher.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    teacher.fit([a, b], labels, epochs=10, batch_size=64, verbose=0)
    student = _classifier(5, seed=11, name="student2", two_inputs=True)
    distiller = Distiller(
        student,
        teacher,
        label_loss="sparse_categorical_crossentropy",
        kd_weight=1.0,
        embedding_weight=0.1,
    )
    distiller.compile(optimizer=keras.optimizers.Adam(0.05), metrics=["accuracy"])
    train = tf.data.Dataset.from_tensor_slices(((a, b), labels)).batch(32)
    history = distiller.fit(train, validation_data=train, epochs=6, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] > 0.6
    assert distiller.predict(train, verbose=0).shape == (128, NUM_CLASSES)


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_ensemble_output_is_the_mean_of_its_members():
    x, labels = _data(seed=13, n=64)
    members = [_classifier(16, seed=14, name="t"), _classifier(12, seed=15, name="t")]  # same names
    probs = [m.predict(x, verbose=0) for m in members]

    np.testing.assert_allclose(TeacherEnsemble(members).predict(x, verbose=0), (probs[0] + probs[1]) / 2,
                               rtol=1e-5, atol=1e-7)
    # Softened per member, then averaged (not a softmax of the mean log-probability).
    expected = (_softmax(np.log(probs[0]) / 3.0) + _softmax(np.log(probs[1]) / 3.0)) / 2
    np.testing.assert_allclose(ensemble_soft_targets([tf.constant(p) for p in probs], 3.0).numpy(), expected,
                               rtol=1e-5, atol=1e-7)
    assert not np.allclose(expected, _softmax((np.log(probs[0]) + np.log(probs[1])) / 2 / 3.0), atol=1e-3)

    # The Distiller's KD loss and embedding target are the ensemble's: mean softened targets,
    # concatenated embeddings (16 + 12) reached through the student's projection.
    student = _classifier(6, seed=16, name="student")
    distiller = Distiller(student, members, label_loss="sparse_categorical_crossentropy", label_weight=0.0,
                          kd_weight=1.0, temperature=3.0, embedding_weight=1.0)
    assert distiller.projection.kernel.shape == (6, 28)
    distiller.compile(optimizer="sgd")
    result = distiller.evaluate(x, labels, batch_size=64, verbose=0, return_dict=True)
    student_soft = _softmax(np.log(student.predict(x, verbose=0)) / 3.0)
    kd = 9.0 * np.sum(expected * (np.log(expected) - np.log(student_soft)), axis=-1).mean()
    np.testing.assert_allclose(result["kd_loss"], kd, rtol=1e-4)
    embedding = np.concatenate([keras.Model(m.inputs, m.get_layer("embedding").output).predict(x, verbose=0)
                                for m in members], axis=-1)
    projected = distiller.projection(keras.Model(student.inputs, student.get_layer("embedding").output)(x)).numpy()
    np.testing.assert_allclose(result["embedding_loss"], np.mean((embedding - projected) ** 2), rtol=1e-4)


def test_ensemble_distillation_trains_the_student(teacher):
    x, labels = _data(seed=17)
    second = _classifier(12, seed=18, name="teacher")
    second.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    second.fit(*_data(), epochs=10, batch_size=64, verbose=0)
    student = _classifier(8, seed=19, name="student")
    ensemble = TeacherEnsemble([teacher, second])
    before = _agreement(student, ensemble, x)
    distiller = Distiller(student, [teacher, second], label_loss="sparse_categorical_crossentropy",
                          label_weight=0.0, kd_weight=1.0, temperature=2.0, embedding_weight=0.1)
    distiller.compile(optimizer=keras.optimizers.Adam(0.05))
    history = distiller.fit(x, labels, epochs=10, batch_size=64, verbose=0).history
    assert history["kd_loss"][-1] < 0.5 * history["kd_loss"][0]
    assert history["embedding_loss"][-1] < history["embedding_loss"][0]
    assert _agreement(student, ensemble, x) > max(before + 0.3, 0.8)
    assert not teacher.trainable and not second.trainable and not distiller.teacher.trainable_variables


def test_init_from_teacher_copies_layers_of_the_same_name_and_shape(teacher):
    x, _ = _data(seed=20, n=32)
    same = _classifier(16, seed=21, name="student", batchnorm=True)
    assert init_from_teacher(same, teacher) == 3  # hidden, bn (with its moving statistics), logits
    np.testing.assert_allclose(same.predict(x, verbose=0), teacher.predict(x, verbose=0), rtol=1e-6)
    narrower = _classifier(8, seed=22, name="student", batchnorm=True)
    before = [w.copy() for w in narrower.get_weights()]
    assert init_from_teacher(narrower, teacher) == 0  # every shape differs: untouched
    for old, new in zip(before, narrower.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_configuration_errors(teacher):
    student = _classifier(4, seed=12, name="student3")
    with pytest.raises(ConfigError, match="no layer 'feat'"):
        Distiller(
            student, teacher, label_loss="mse", embedding_weight=1.0, student_embedding_layer="feat"
        )
    with pytest.raises(ConfigError, match="temperature"):
        Distiller(student, teacher, label_loss="mse", temperature=0.0)
    with pytest.raises(ConfigError, match="kd_weight"):
        Distiller(student, teacher, label_loss="mse", kd_weight=-1.0)
    with pytest.raises(ValueError, match="label_loss"):
        Distiller(student, teacher, label_loss="mse").compile(optimizer="adam", loss="mse")


_MIRRORED_SCRIPT = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import tf_keras as keras
from common.distill import Distiller, TeacherEnsemble, ensemble_soft_targets, init_from_teacher

def net(width, seed, name):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8,))
    x = keras.layers.Dense(width, activation="relu", name="embedding")(inputs)
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x), name=name)

rng = np.random.default_rng(0)
x = rng.normal(size=(64, 8)).astype("float32")
y = np.eye(4, dtype="float32")[rng.integers(0, 4, 64)]
weights = []
for strategy in (tf.distribute.get_strategy(), tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])):
    with strategy.scope():
        student = net(6, 1, "student")
        distiller = Distiller(student, net(16, 2, "teacher"), label_loss="categorical_crossentropy",
                              kd_weight=1.0, embedding_weight=0.5)
        distiller.compile(optimizer=keras.optimizers.SGD(0.5))
    distiller.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(64), epochs=1, verbose=0)
    weights.append(student.get_weights())
print("MAXDIFF", max(float(np.abs(a - b).max()) for a, b in zip(*weights)))
"""


def test_mirrored_strategy_matches_one_device():
    """Two replicas each take half the batch: the loss scaling must give the same update."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-c", _MIRRORED_SCRIPT],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    max_diff = float(result.stdout.split("MAXDIFF")[1])
    assert max_diff < 1e-5
