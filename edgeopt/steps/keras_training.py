"""The tf_keras side of fine-tuning: optimizer, learning-rate schedule, compile, fit with early stopping and
progress. Called by training.FineTuner; TensorFlow is imported here, when a model is trained.
"""

from __future__ import annotations

import contextlib
import math
import sys

import numpy as np

from ..converter.keras_io import tf_keras

# Keras' AdamW default, stated here because the recipe records what ran.
ADAMW_WEIGHT_DECAY = 0.004


def compile_for(model, spec, objective, steps_per_epoch, epochs, seed):
    keras = tf_keras()
    keras.utils.set_random_seed(seed)
    schedule = learning_rate(spec, steps_per_epoch, epochs)
    loss = objective.loss(l2_penalty(model, spec.l2))
    model.compile(optimizer=optimizer(spec, schedule), loss=loss, metrics=objective.metrics())


def optimizer(spec, schedule):
    keras = tf_keras()
    common = {"learning_rate": schedule, "clipnorm": spec.clip_norm}
    if spec.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=spec.momentum, weight_decay=spec.weight_decay, **common)
    if spec.optimizer == "adamw":
        decay = ADAMW_WEIGHT_DECAY if spec.weight_decay is None else spec.weight_decay
        return keras.optimizers.AdamW(weight_decay=decay, **common)
    return keras.optimizers.Adam(weight_decay=spec.weight_decay, **common)


def learning_rate(spec, steps_per_epoch, epochs):
    """Keras' schedules (CosineDecay, ExponentialDecay with staircase for 'step'), behind a linear warm-up."""
    keras = tf_keras()
    total = max(1, steps_per_epoch * epochs)
    warmup = int(round(spec.warmup_epochs * steps_per_epoch))
    after = max(1, total - warmup)
    if spec.lr_schedule == "cosine":
        base = keras.optimizers.schedules.CosineDecay(spec.learning_rate, decay_steps=after)
    elif spec.lr_schedule == "step":
        base = keras.optimizers.schedules.ExponentialDecay(
            spec.learning_rate, decay_steps=max(1, spec.step_epochs * steps_per_epoch),
            decay_rate=spec.step_factor, staircase=True)
    else:
        base = None
    if not warmup:
        return base or spec.learning_rate
    return _warmup_schedule(keras)(spec.learning_rate, warmup, base)


def _warmup_schedule(keras):
    import tensorflow as tf

    # Keras has warm-up inside CosineDecay only; this puts the same linear ramp in front of any schedule.
    class Warmup(keras.optimizers.schedules.LearningRateSchedule):
        def __init__(self, peak, warmup_steps, after):
            self.peak, self.warmup_steps, self.after = peak, warmup_steps, after

        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            ramp = self.peak * (step + 1.0) / float(self.warmup_steps)
            rest = self.after(step - self.warmup_steps) if self.after else tf.constant(self.peak, tf.float32)
            return tf.where(step < self.warmup_steps, ramp, rest)

        def get_config(self):
            return {"peak": self.peak, "warmup_steps": self.warmup_steps}

    return Warmup


def l2_penalty(model, strength):
    """A zero-argument function giving strength * sum of squared kernels (None when strength is 0).

    Added to the loss rather than as layer regularizers, so the model being optimized is left unchanged.
    """
    if not strength:
        return None
    import tensorflow as tf

    kernels = [w for w in model.trainable_weights if "kernel" in w.name]
    return lambda: strength * tf.add_n([tf.reduce_sum(tf.square(tf.cast(k, tf.float32))) for k in kernels])


@contextlib.contextmanager
def frozen_batchnorm(model, freeze=True):
    """BatchNormalization layers (also inside tfmot wrappers) in inference mode while training: their
    statistics stay as they are. Unfrozen afterwards: a tfmot wrapper around a frozen layer lists its
    variables twice, which HDF5 saving refuses ("name already exists")."""
    keras = tf_keras()
    layers = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
              if freeze and isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    for layer in layers:
        layer.trainable = False
    try:
        yield len(layers)
    finally:
        for layer in layers:
            layer.trainable = True


def fit(model, train, targets, fit_idx, val_idx, spec, epochs, callbacks, settle_epochs, *, progress, log, name):
    keras = tf_keras()
    x = [a[fit_idx] for a in train.x]
    feed = lambda xs: xs if len(xs) > 1 else xs[0]  # noqa: E731
    validation = None
    if len(val_idx):
        validation = (feed([a[val_idx] for a in train.x]), targets[val_idx])
    stopper = None
    if spec.patience:
        stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=spec.patience, restore_best_weights=True,
                                                start_from_epoch=settle_epochs)
        callbacks.append(stopper)
    if progress:
        callbacks.append(EpochProgress.make(name, epochs, log))
    history = model.fit(feed(x), targets[fit_idx], validation_data=validation, epochs=epochs,
                        batch_size=spec.batch_size, shuffle=True, verbose=0, callbacks=callbacks)
    epochs_logged = [dict(zip(history.history, values)) for values in zip(*history.history.values())]
    best = None
    if stopper is not None and getattr(stopper, "best_epoch", None) is not None and stopper.best_weights is not None:
        best = int(stopper.best_epoch) + 1
    return {"epochs": epochs_logged, "best_epoch": best,
            "mixed_precision": _compute_dtype(model) == "bfloat16"}


def _compute_dtype(model):
    layers = [getattr(layer, "layer", layer) for layer in model.layers]  # tfmot wrappers keep their own policy
    policies = {getattr(getattr(layer, "dtype_policy", None), "compute_dtype", None) for layer in layers}
    return "bfloat16" if "bfloat16" in policies else "float32"


class EpochProgress:
    """Loss and metric per epoch: a tqdm bar on a terminal, a plain line per epoch otherwise."""

    @staticmethod
    def make(name, epochs, log):
        keras = tf_keras()
        tty = sys.stderr.isatty()

        class _Callback(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.bar = None
                if tty:
                    from tqdm.auto import tqdm

                    self.bar = tqdm(total=epochs * self.params["steps"], desc=name, unit="step", leave=True,
                                    dynamic_ncols=True)

            def on_train_batch_end(self, batch, logs=None):
                if self.bar is not None:
                    self.bar.update(1)

            def on_epoch_end(self, epoch, logs=None):
                text = ", ".join(f"{k} {_fmt(v)}" for k, v in (logs or {}).items())
                if self.bar is not None:
                    self.bar.set_postfix_str(text, refresh=True)
                else:
                    log(f"{name} epoch {epoch + 1}/{epochs}: {text}")

            def on_train_end(self, logs=None):
                if self.bar is not None:
                    self.bar.close()

        return _Callback()


def _fmt(value):
    value = float(value)
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def predict(model, xs, batch_size=256):
    out = model.predict(xs if len(xs) > 1 else xs[0], batch_size=batch_size, verbose=0)
    return [np.asarray(o) for o in (out if isinstance(out, list) else [out])]
