"""What a training step optimizes: the task loss on labels, a teacher's outputs (knowledge distillation), or both.

    loss = alpha * task_loss + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))

For a model whose output is not a class distribution (regression, a single sigmoid unit) the teacher term
is the mean squared error to the teacher's outputs. Labels and teacher outputs travel to Keras packed in
one target array (teacher columns first, then the label columns), so `model.fit` and tfmot's wrappers
work unchanged.

Gotchas: outputs that are probabilities (a softmax layer) are turned into log-probabilities, which are
logits of the same distribution; only single-output models with (batch, features) outputs can distil.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from ..converter.keras_io import tf_keras

_EPS = 1e-7
DEFAULT_ALPHA_WITH_LABELS = 0.1


@dataclass
class Objective:
    task_loss: object | None  # a tf_keras Loss, or None without labels
    task_loss_name: str | None
    teacher: np.ndarray | None  # teacher outputs on the training data (logits for classifiers); None: labels only
    alpha: float
    temperature: float
    classifier: bool  # a class distribution: KL on softened logits; else MSE to the teacher
    student_probabilities: bool  # the student's output is softmax probabilities (take logs)
    labels: np.ndarray | None  # (N, label columns) float32, packed beside the teacher's outputs
    teacher_source: str | None = None

    @property
    def distils(self) -> bool:
        return self.teacher is not None

    def targets(self, train) -> np.ndarray | None:
        """What `fit` gets as y: the labels as given, or teacher outputs and label columns packed side by side."""
        if not self.distils:
            return None if train.y is None else np.asarray(train.y)
        parts = [self.teacher] + ([self.labels] if self.alpha > 0 else [])
        return np.concatenate(parts, axis=1).astype(np.float32)

    def describe(self) -> dict:
        if self.teacher is None:
            return {"kind": "labels", "loss": self.task_loss_name}
        return {"kind": "distillation", "teacher": self.teacher_source, "alpha": self.alpha,
                "temperature": self.temperature, "task_loss": self.task_loss_name if self.alpha > 0 else None,
                "teacher_term": "kl" if self.classifier else "mean_squared_error"}

    def loss(self, penalty=None):
        import tensorflow as tf

        if not self.distils:
            if penalty is None:
                return self.task_loss
            task = _per_sample(self.task_loss)
            return lambda y_true, y_pred: task(y_true, y_pred) + penalty()
        teacher_cols, alpha, t = self.teacher.shape[1], self.alpha, self.temperature
        task = _per_sample(self.task_loss) if alpha > 0 else None

        def combined(y_true, y_pred):
            y_pred = tf.cast(y_pred, tf.float32)
            total = (1.0 - alpha) * self._teacher_term(y_true[:, :teacher_cols], y_pred, t)
            if alpha > 0:
                total += alpha * task(y_true[:, teacher_cols:], y_pred)
            return total + penalty() if penalty else total

        return combined

    def _teacher_term(self, teacher, student, t):
        import tensorflow as tf

        if not self.classifier:
            return tf.reduce_mean(tf.square(teacher - student), axis=-1)
        logits = tf.math.log(tf.clip_by_value(student, _EPS, 1.0)) if self.student_probabilities else student
        soft_teacher = tf.nn.softmax(teacher / t)
        kl = tf.reduce_sum(soft_teacher * (tf.nn.log_softmax(teacher / t) - tf.nn.log_softmax(logits / t)), axis=-1)
        return (t * t) * kl

    def metrics(self):
        """Top-1 accuracy against labels, else top-1 agreement with the teacher (classifiers only)."""
        import tensorflow as tf

        keras = tf_keras()
        if not self.classifier:
            return []
        if not self.distils:
            return ["accuracy"]  # Keras picks the sparse or one-hot form from the labels
        teacher_cols = self.teacher.shape[1]
        if self.alpha > 0 and self.labels.shape[1] == 1:
            def accuracy(y_true, y_pred):
                return tf.cast(tf.equal(tf.cast(y_true[:, teacher_cols], tf.int64), tf.argmax(y_pred, -1)), tf.float32)
            return [keras.metrics.MeanMetricWrapper(accuracy, name="accuracy")]

        def agreement(y_true, y_pred):
            return tf.cast(tf.equal(tf.argmax(y_true[:, :teacher_cols], -1), tf.argmax(y_pred, -1)), tf.float32)
        return [keras.metrics.MeanMetricWrapper(agreement, name="agreement")]


def build_objective(model, train, spec, teacher_outputs=None, teacher_source=None, step="this step") -> Objective:
    """The objective of one step: `spec` holds loss/alpha/temperature; `teacher_outputs` on `train` (or None).

    Raises DataError when there is nothing to learn from (no labels and no teacher), naming the choice.
    """
    output = _single_output(model, step)
    sample = _probe(model, train)
    classifier = len(output) == 2 and output[-1] > 1
    has_labels = train.y is not None
    if teacher_outputs is None and not has_labels:
        raise DataError(
            f"{step} fine-tunes the model but the training data has no labels: give labels (an .npz with x and y), "
            f"or let it distil from a teacher (teacher: source, or add a distill step before it)")
    if teacher_outputs is not None and len(output) != 2:
        raise DataError(f"{step}: distillation needs outputs of shape (batch, features); this model's output is "
                        f"{tuple(output)}")
    alpha = 1.0 if teacher_outputs is None else _alpha(spec.alpha, has_labels, step)
    task, task_name, labels = None, None, None
    if alpha > 0:
        from .losses import resolve_loss

        task, task_name = resolve_loss(model, train, spec.loss)
        labels = _label_columns(train.y) if teacher_outputs is not None else None
    teacher = None
    if teacher_outputs is not None:
        teacher = _as_logits(np.asarray(teacher_outputs, np.float32)) if classifier else np.asarray(teacher_outputs, np.float32)
    return Objective(task, task_name, teacher, alpha, spec.temperature, classifier, _is_probabilities(sample),
                     labels, teacher_source)


def _per_sample(loss):
    """A loss function giving one value per sample (Keras Loss objects reduce when called)."""
    keras = tf_keras()
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    return loss.call if isinstance(loss, keras.losses.Loss) else loss


def _alpha(alpha, has_labels, step):
    if alpha is None:
        return DEFAULT_ALPHA_WITH_LABELS if has_labels else 0.0
    if alpha > 0 and not has_labels:
        raise DataError(f"{step}: alpha {alpha} weighs the task loss, which needs labels, but the training data has "
                        "none: set alpha: 0 (learn from the teacher alone) or give labels")
    return alpha


def _single_output(model, step):
    if len(model.outputs) != 1:
        raise DataError(f"{step}: fine-tuning a model with {len(model.outputs)} outputs needs a custom training "
                        "loop; edgeopt fine-tunes single-output models")
    return list(model.outputs[0].shape)


def _probe(model, train):
    from .keras_training import predict

    return predict(model, [a[:64] for a in train.x])[0]


def _is_probabilities(out) -> bool:
    return bool(out.ndim == 2 and out.shape[1] > 1 and np.all(out >= 0) and np.allclose(out.sum(axis=-1), 1, atol=1e-3))


def _as_logits(outputs):
    """Probabilities become log-probabilities (logits of the same distribution); logits stay as they are."""
    if _is_probabilities(outputs):
        return np.log(np.clip(outputs, _EPS, 1.0))
    return outputs


def _label_columns(y):
    y = np.asarray(y)
    if y.ndim == 1:
        y = y[:, None]
    return y.reshape(len(y), -1).astype(np.float32)
