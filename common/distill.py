"""Teacher-student training: label loss plus logit and embedding knowledge distillation."""

import tensorflow as tf
import tf_keras as keras

from common.errors import ConfigError
from common.losses import _mean_per_sample, distillation_kl, embedding_mse, per_sample_loss

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


def _batch_mean(per_sample, sample_weight):
    """Mean over the local batch of per-sample values (B,), weighted like Keras' default reduction."""
    if sample_weight is None:
        return tf.reduce_mean(per_sample)
    weights = tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
    return tf.reduce_sum(per_sample * weights) / tf.cast(tf.size(per_sample), tf.float32)


class Distiller(keras.Model):
    """Trains a student model on labels and on a frozen teacher's outputs.

    The loss is `label_weight * label_loss(y, student) + kd_weight * KD + embedding_weight * MSE`:
    KD is Hinton's distillation loss (https://arxiv.org/abs/1503.02531) between the teacher and
    student probabilities, taken back to logits as `log(clip(p))` (softmax is shift-invariant, so
    this equals logit distillation); MSE compares the teacher's embedding with the student's,
    passed through a learned Dense projection when their sizes differ. The teacher runs in
    inference mode and is never trained. Both models take the same inputs (one tensor, a list or a
    dict) and output probabilities. Metrics given to `compile()` compare the student's
    predictions with the labels; the logged losses are `loss`, `label_loss`, `kd_loss` and
    `embedding_loss` (0 when their weight is 0). Calling the distiller calls the student; save
    `distiller.student` as the final model and the distiller's weights (`save_weights`) as
    checkpoints.

    Args:
        student: functional keras.Model to train, output probabilities (B, ..., K).
        teacher: trained functional keras.Model with the same inputs and output shape; frozen here.
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
        self.teacher = teacher
        self.teacher.trainable = False
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
            self.teacher_with_embedding = _embedding_model(
                teacher, teacher_embedding_layer, "teacher"
            )
            student_shape = self.student_with_embedding.outputs[1].shape
            teacher_size = self.teacher_with_embedding.outputs[1].shape[-1]
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
        """Student and teacher outputs: (student_probs, student_emb, teacher_probs, teacher_emb)."""
        student_emb = teacher_probs = teacher_emb = None
        if self.embedding_weight > 0:
            student_probs, student_emb = self.student_with_embedding(x, training=training)
            teacher_probs, teacher_emb = self.teacher_with_embedding(x, training=False)
            student_emb = tf.cast(student_emb, tf.float32)
            if self.projection is not None:
                student_emb = tf.cast(self.projection(student_emb), tf.float32)
        else:
            student_probs = self.student(x, training=training)
            if self._uses_teacher():
                teacher_probs = self.teacher(x, training=False)
        if teacher_probs is not None:
            teacher_probs = tf.stop_gradient(tf.cast(teacher_probs, tf.float32))
        if teacher_emb is not None:
            teacher_emb = tf.stop_gradient(tf.cast(teacher_emb, tf.float32))
        return tf.cast(student_probs, tf.float32), student_emb, teacher_probs, teacher_emb

    def _compute_losses(
        self, y, sample_weight, student_probs, student_emb, teacher_probs, teacher_emb
    ):
        """The weighted total and its three parts, each a mean over the local batch."""
        zero = tf.constant(0.0)
        label = _batch_mean(per_sample_loss(self.label_loss, y, student_probs), sample_weight)
        kd = zero
        if self.kd_weight > 0:
            values = distillation_kl(
                _as_logits(teacher_probs), _as_logits(student_probs), self.temperature
            )
            kd = _batch_mean(_mean_per_sample(values), sample_weight)
        embedding = zero
        if self.embedding_weight > 0:
            embedding = _batch_mean(
                _mean_per_sample(embedding_mse(teacher_emb, student_emb)), sample_weight
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
