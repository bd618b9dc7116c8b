"""The default fine-tuning of a channel-pruned model, with optional distillation from the original.

One function, `fine_tune(model, train, epochs, *, teacher=None)`, so the shared fine-tuning recipe of
the optimization steps (edgeopt/steps/training.py, when it lands) can replace it: `prune_channels`
takes any callable with this signature.

Distillation (Hinton et al. 2015): the loss is (1 - weight) x the task loss + weight x the distance
to the teacher's outputs: KL divergence of the softened class distributions when the model outputs
logits, mean squared error otherwise.
"""

from __future__ import annotations

import math

import numpy as np

from ..converter.keras_io import tf_keras
from ..converter.progress import keras_progress
from ..converter.prune import resolve_loss
from .channel_layers import ChannelPruningError


def make_fine_tune(spec, seed=0, progress=True):
    """The default fine_tune for `spec` (a ChannelPruneSpec): Adam, cosine-decayed rate, the model's loss."""

    def fine_tune(model, train, epochs, *, teacher=None):
        keras = tf_keras()
        keras.utils.set_random_seed(seed)
        loss, _ = resolve_loss(model, train, spec.loss)
        steps = max(1, math.ceil(len(train) / spec.batch_size) * epochs)
        rate = keras.optimizers.schedules.CosineDecay(spec.learning_rate, decay_steps=steps)
        x = train.x if len(train.x) > 1 else train.x[0]
        y = train.y
        if teacher is not None:
            loss, y = _distillation(model, teacher, x, y, loss, spec)
        model.compile(optimizer=keras.optimizers.Adam(rate), loss=loss)
        model.fit(x, y, batch_size=spec.batch_size, epochs=epochs, verbose=0, shuffle=True,
                  callbacks=[keras_progress("channel fine-tune", progress)])
        return model

    return fine_tune


def _distillation(model, teacher, x, y, task_loss, spec):
    """(loss, targets): the teacher's outputs ride along with the labels, one array, split in the loss."""
    import tensorflow as tf

    if len(model.outputs) != 1:
        raise ChannelPruningError("distillation needs a single-output model; set distill: false for this one")
    if isinstance(task_loss, str):
        task_loss = tf_keras().losses.get(task_loss)
    soft = np.asarray(teacher.predict(x, batch_size=256, verbose=0), np.float32)
    labels = np.asarray(y, np.float32).reshape(len(soft), -1)
    n_label = labels.shape[1]
    from_logits = bool(getattr(task_loss, "get_config", dict)().get("from_logits", False))
    weight, t = spec.distill_weight, spec.temperature

    def loss(packed, out):
        truth, target = packed[:, :n_label], tf.reshape(packed[:, n_label:], tf.shape(out))
        if n_label == 1 and out.shape[-1] != 1:
            truth = tf.squeeze(truth, -1)
        task = task_loss(truth, out)
        if from_logits:
            p = tf.nn.softmax(target / t)
            distance = tf.reduce_mean(tf.reduce_sum(p * (tf.nn.log_softmax(target / t) - tf.nn.log_softmax(out / t)),
                                                    -1)) * t * t
        else:
            distance = tf.reduce_mean(tf.square(out - target))
        return (1 - weight) * task + weight * distance

    return loss, np.concatenate([labels, soft.reshape(len(soft), -1)], axis=1)
