"""A tqdm progress bar for Keras training: one bar per fit, advancing by batch, showing the loss."""

import sys

from tqdm.auto import tqdm

from .keras_io import tf_keras


def keras_progress(description: str, enabled: bool = True):
    keras = tf_keras()

    class _Bar(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            p = self.params
            self.bar = tqdm(total=p["epochs"] * p["steps"], desc=description, unit="step", disable=not enabled,
                            leave=True, dynamic_ncols=True,
                            mininterval=0.1 if sys.stderr.isatty() else 5.0)  # a log file gets few lines

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(1)
            if logs and "loss" in logs and batch % 10 == 0:
                self.bar.set_postfix(loss=f"{logs['loss']:.3f}", refresh=False)

        def on_epoch_end(self, epoch, logs=None):
            if logs:
                self.bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()}, refresh=True)

        def on_train_end(self, logs=None):
            self.bar.close()

    return _Bar()
