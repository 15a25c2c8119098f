"""Teacher-student training: label loss plus logit and embedding knowledge distillation, from one
teacher or an ensemble of teachers."""

import tensorflow as tf
import tf_keras as keras

from common.errors import ConfigError
from common.losses import distillation_kl, embedding_mse, mean_per_sample, per_sample_loss

# Probabilities are clipped before the log that turns them back into logits.
_PROB_EPSILON = 1e-7


def _embedding_model(model, layer_name, role):
    """A functional model giving (model output, output of layer `layer_name`), sharing weights."""
    try:
        layer = model.get_layer(layer_name)
    except ValueError:
        raise ConfigError(
            f"{role}_embedding_layer: the {role} model {model.name} has no layer {layer_name!r}"
        ) from None
    return keras.Model(
        model.inputs, [model.outputs[0], layer.output], name=f"{role}_with_embedding"
    )


def _as_logits(probs):
    """log(clip(probs)) as logits; a single sigmoid channel becomes the two classes (1 - p, p)."""
    probs = tf.cast(probs, tf.float32)
    if probs.shape.rank is not None and probs.shape[-1] == 1:
        probs = tf.concat([1.0 - probs, probs], axis=-1)
    return tf.math.log(tf.clip_by_value(probs, _PROB_EPSILON, 1.0))


def _members(teacher):
    """The list of teacher models in `teacher` (a model, a list of models or a TeacherEnsemble)."""
    if isinstance(teacher, TeacherEnsemble):
        return list(teacher.members)
    if isinstance(teacher, (list, tuple)):
        if not teacher:
            raise ConfigError("teacher: an ensemble needs at least one teacher model")
        return list(teacher)
    return [teacher]


class TeacherEnsemble(keras.Model):
    """Teachers with the same inputs and classes as one model: the mean of their probabilities.

    Used where the ensemble is scored or compared with its student (teacher accuracy and
    agreement); the Distiller itself averages the members' probabilities after softening each at
    its temperature (`ensemble_soft_targets`). Every member runs in inference mode. Never saved:
    a distilled run records its teacher runs in split.json.

    Args:
        members: list of trained keras.Model with the same inputs, each outputting probabilities
            (B, ..., K) over the same K classes.
        **kwargs: other `keras.Model` arguments (`name`).

    Example:
    ```python
    ensemble = TeacherEnsemble([teacher_a, teacher_b])
    probs = ensemble.predict(x)  # == (teacher_a.predict(x) + teacher_b.predict(x)) / 2
    ```
    """

    def __init__(self, members, **kwargs):
        kwargs.setdefault("name", "teacher_ensemble")
        super().__init__(**kwargs)
        self.members = list(members)
        for member in self.members:
            member.trainable = False

    def call(self, inputs, training=None):
        # Teachers are frozen: BatchNorm uses its moving statistics and dropout is off.
        probs = [tf.cast(member(inputs, training=False), tf.float32) for member in self.members]
        return tf.add_n(probs) / float(len(probs))


def ensemble_soft_targets(teacher_probs, temperature):
    """The teachers' softened distribution: the mean over members of softmax(log(p_i) / T).

    Each member's probabilities are softened at the temperature first, then averaged (rather than
    averaging logits, which is the geometric mean of the probabilities): members trained apart have
    logits of different scales, and a mean of logits lets the most confident member outvote the
    others where they disagree. With one member this is Hinton's softmax(z / T); at T = 1 it is
    the ensemble's averaged probabilities (TeacherEnsemble).

    Args:
        teacher_probs: list of float tensors (B, ..., K), each member's probabilities (a single
            sigmoid channel (B, ..., 1) is taken as the two classes (1 - p, p)).
        temperature: float T > 0.

    Returns:
        float32 tensor (B, ..., K): a probability distribution over the last axis.
    """
    soft = [tf.nn.softmax(_as_logits(probs) / temperature, axis=-1) for probs in teacher_probs]
    return tf.add_n(soft) / float(len(soft))


def init_from_teacher(student, teacher):
    """Copy the teacher's weights into every student layer of the same name and weight shapes.

    For a student that is the teacher's architecture with a narrower head (the rsic demo): it
    starts from the teacher's backbone and learns its own embedding and classifier, so that a
    short distillation ends near the teacher instead of repeating the teacher's training from
    scratch. Layers of another name or shape (a different backbone) keep their initialization.

    Args:
        student: keras.Model to initialize (changed in place).
        teacher: trained keras.Model (for an ensemble, pass its first member).

    Returns:
        int, the number of student layers that received the teacher's weights.
    """
    from common.retrain import copy_matching_weights

    return len(copy_matching_weights(student, teacher)[0])


def _batch_mean(per_sample, sample_weight):
    """Mean over the local batch of per-sample values (B,), weighted like Keras' default reduction."""
    if sample_weight is None:
        return tf.reduce_mean(per_sample)
    weights = tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
    return tf.reduce_sum(per_sample * weights) / tf.cast(tf.size(per_sample), tf.float32)


class Distiller(keras.Model):
    """Trains a student model on labels and on the outputs of one or more frozen teachers.

    The loss is `label_weight * label_loss(y, student) + kd_weight * KD + embedding_weight * MSE`:
    KD is Hinton's distillation loss (https://arxiv.org/abs/1503.02531) between the teacher and
    student probabilities, taken back to logits as `log(clip(p))` (softmax is shift-invariant, so
    this equals logit distillation); MSE compares the teacher's embedding with the student's,
    passed through a learned Dense projection when their sizes differ (`embedding_projection`;
    without it the sizes must match: paper 3's student imitates its teacher's fused 512-d vector
    as it is, MSE weighted 1:1 with the cross-entropy, `kd_weight=0`). The teachers run in
    inference mode on the very batch the student sees (the same augmented inputs) and are never
    trained. All models take the same inputs (one tensor, a list or a dict) and output
    probabilities.

    An ensemble of teachers (a list) teaches through the mean of its members' probabilities, each
    softened at the temperature first (`ensemble_soft_targets`), and through the concatenation of
    its members' embeddings (B, D_1 + ... + D_M): members trained apart have unrelated embedding
    axes, so a mean would blend unrelated features (and need equal sizes), whereas the
    concatenation keeps every member's features and the student's projection learns to predict
    all of them. Metrics given to `compile()` compare the student's
    predictions with the labels; the logged losses are `loss`, `label_loss`, `kd_loss` and
    `embedding_loss` (0 when their weight is 0). Calling the distiller calls the student; save
    `distiller.student` as the final model and the distiller's weights (`save_weights`) as
    checkpoints.

    Args:
        student: functional keras.Model to train, output probabilities (B, ..., K).
        teacher: trained functional keras.Model with the same inputs and output shape, or a list
            of them (an ensemble; a TeacherEnsemble is taken apart into its members); frozen here.
        label_loss: `keras.losses.Loss`, loss function or name on (labels, student probabilities),
            e.g. `"categorical_crossentropy"` for one-hot or mixup (soft) labels.
        label_weight: float, weight of the label loss. Defaults to `1.0`.
        kd_weight: float, weight of the distillation loss. Defaults to `0.0`.
        temperature: float, distillation temperature T (the KD loss is scaled by T^2). Defaults
            to `4.0`.
        embedding_weight: float, weight of the embedding MSE. Defaults to `0.0`.
        student_embedding_layer: str, name of the student layer whose output is its embedding.
            Defaults to `"embedding"`.
        teacher_embedding_layer: str, name of the teacher's embedding layer. Defaults to
            `"embedding"`.
        embedding_projection: bool, learn a Dense projection of the student's embedding to the
            teacher's size when they differ; False: the sizes must match (ConfigError naming
            both). Defaults to `True`.
        **kwargs: other `keras.Model` arguments (`name`).

    Example:
    ```python
    distiller = Distiller(student, teacher, label_loss="categorical_crossentropy",
                          label_weight=0.5, kd_weight=0.5, temperature=4.0)
    distiller.compile(optimizer="adam", metrics=["accuracy"])
    distiller.fit(train_ds, validation_data=val_ds, epochs=10)
    distiller.student.save("student.keras")
    ```
    """

    def __init__(
        self,
        student,
        teacher,
        *,
        label_loss,
        label_weight=1.0,
        kd_weight=0.0,
        temperature=4.0,
        embedding_weight=0.0,
        student_embedding_layer="embedding",
        teacher_embedding_layer="embedding",
        embedding_projection=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ConfigError(f"temperature: must be > 0, got {temperature}")
        for key, value in (
            ("label_weight", label_weight),
            ("kd_weight", kd_weight),
            ("embedding_weight", embedding_weight),
        ):
            if value < 0:
                raise ConfigError(f"{key}: must be >= 0, got {value}")
        self.student = student
        self.teachers = _members(teacher)
        for member in self.teachers:
            member.trainable = False
        # One model standing for all teachers (the mean of their probabilities).
        self.teacher = self.teachers[0] if len(self.teachers) == 1 else TeacherEnsemble(self.teachers)
        self.label_loss = keras.losses.get(label_loss)
        self.label_weight = float(label_weight)
        self.kd_weight = float(kd_weight)
        self.temperature = float(temperature)
        self.embedding_weight = float(embedding_weight)
        self.projection = None
        if self.embedding_weight > 0:
            self.student_with_embedding = _embedding_model(
                student, student_embedding_layer, "student"
            )
            self.teachers_with_embedding = [
                _embedding_model(member, teacher_embedding_layer, "teacher")
                for member in self.teachers
            ]
            shapes = [model.outputs[1].shape for model in self.teachers_with_embedding]
            if any(shape[1:-1] != shapes[0][1:-1] for shape in shapes):
                raise ConfigError(
                    f"teacher_embedding_layer: the teachers' {teacher_embedding_layer!r} outputs "
                    f"{[tuple(shape[1:]) for shape in shapes]} differ in more than their last axis"
                )
            student_shape = self.student_with_embedding.outputs[1].shape
            teacher_size = sum(int(shape[-1]) for shape in shapes)  # concatenated
            if student_shape[-1] != teacher_size and not embedding_projection:
                raise ConfigError(
                    f"distill.embedding_projection: false needs embeddings of one size, but the "
                    f"student's {student_embedding_layer!r} has {student_shape[-1]} values and the "
                    f"teacher's {teacher_embedding_layer!r} {teacher_size}; set "
                    f"model.embedding_dim={teacher_size} or distill.embedding_projection=true"
                )
            if student_shape[-1] != teacher_size:
                # Trained with the student; built now so that saved weights load before fit.
                self.projection = keras.layers.Dense(teacher_size, name="embedding_projection")
                self.projection.build(student_shape)
        # Student and teacher are built functional models, so the distiller is usable (and its
        # weights loadable, BackupAndRestore-able) before its first batch.
        self.built = True
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.label_loss_tracker = keras.metrics.Mean(name="label_loss")
        self.kd_loss_tracker = keras.metrics.Mean(name="kd_loss")
        self.embedding_loss_tracker = keras.metrics.Mean(name="embedding_loss")

    @property
    def metrics(self):
        # Listed here so that Keras resets them at the start of every epoch and evaluation.
        trackers = [
            self.loss_tracker,
            self.label_loss_tracker,
            self.kd_loss_tracker,
            self.embedding_loss_tracker,
        ]
        compiled = getattr(self, "compiled_metrics", None)
        return trackers + (compiled.metrics if compiled is not None else [])

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def _uses_teacher(self):
        return self.kd_weight > 0 or self.embedding_weight > 0

    def _run_models(self, x, training):
        """Student and teacher outputs on one batch `x`:
        (student_probs, student_emb, [probs of each teacher], teacher_emb (concatenated))."""
        student_emb = teacher_probs = teacher_emb = None
        if self.embedding_weight > 0:
            student_probs, student_emb = self.student_with_embedding(x, training=training)
            # Teachers always in inference mode: frozen moving statistics, no dropout.
            outputs = [model(x, training=False) for model in self.teachers_with_embedding]
            teacher_probs = [probs for probs, _ in outputs]
            embeddings = [tf.cast(emb, tf.float32) for _, emb in outputs]
            teacher_emb = embeddings[0] if len(embeddings) == 1 else tf.concat(embeddings, axis=-1)
            student_emb = tf.cast(student_emb, tf.float32)
            if self.projection is not None:
                student_emb = tf.cast(self.projection(student_emb), tf.float32)
        else:
            student_probs = self.student(x, training=training)
            if self._uses_teacher():
                teacher_probs = [member(x, training=False) for member in self.teachers]
        if teacher_probs is not None:
            teacher_probs = [tf.stop_gradient(tf.cast(p, tf.float32)) for p in teacher_probs]
        if teacher_emb is not None:
            teacher_emb = tf.stop_gradient(teacher_emb)
        return tf.cast(student_probs, tf.float32), student_emb, teacher_probs, teacher_emb

    def _compute_losses(
        self, y, sample_weight, student_probs, student_emb, teacher_probs, teacher_emb
    ):
        """The weighted total and its three parts, each a mean over the local batch."""
        zero = tf.constant(0.0)
        label = _batch_mean(per_sample_loss(self.label_loss, y, student_probs), sample_weight)
        kd = zero
        if self.kd_weight > 0:
            target = ensemble_soft_targets(teacher_probs, self.temperature)
            # T * log(target) are logits whose softmax at temperature T is `target` itself.
            values = distillation_kl(
                self.temperature * _as_logits(target), _as_logits(student_probs), self.temperature
            )
            kd = _batch_mean(mean_per_sample(values), sample_weight)
        embedding = zero
        if self.embedding_weight > 0:
            embedding = _batch_mean(
                mean_per_sample(embedding_mse(teacher_emb, student_emb)), sample_weight
            )
        total = self.label_weight * label + self.kd_weight * kd + self.embedding_weight * embedding
        if self.student.losses:
            total += tf.add_n([tf.cast(loss, tf.float32) for loss in self.student.losses])
        return total, label, kd, embedding

    def _record(self, y, sample_weight, student_probs, losses):
        for tracker, value in zip(
            (
                self.loss_tracker,
                self.label_loss_tracker,
                self.kd_loss_tracker,
                self.embedding_loss_tracker,
            ),
            losses,
        ):
            tracker.update_state(value)
        if getattr(self, "compiled_metrics", None) is not None:
            self.compiled_metrics.update_state(y, student_probs, sample_weight)
        return {metric.name: metric.result() for metric in self.metrics}

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            outputs = self._run_models(x, training=True)
            losses = self._compute_losses(y, sample_weight, *outputs)
            # Gradients are summed over replicas: each replica contributes its share of the mean.
            scaled = losses[0] / tf.distribute.get_strategy().num_replicas_in_sync
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        return self._record(y, sample_weight, outputs[0], losses)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        outputs = self._run_models(x, training=False)
        losses = self._compute_losses(y, sample_weight, *outputs)
        return self._record(y, sample_weight, outputs[0], losses)

    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        if loss is not None:
            raise ValueError(
                "Distiller.compile: give the label loss to Distiller(label_loss=...), not to compile()"
            )
        super().compile(optimizer=optimizer, **kwargs)
