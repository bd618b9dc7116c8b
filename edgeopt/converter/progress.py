"""Progress for Keras training: one display per fit, advancing by batch, showing the epoch and loss.

A bar on a terminal, plain lines in a file or pipe (edgeopt.progress.Progress decides).
"""

from ..progress import Progress
from .keras_io import tf_keras


def keras_progress(description: str, enabled: bool = True):
    keras = tf_keras()

    class _Display(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            p = self.params
            self.epochs, self.steps = p["epochs"], p["steps"]
            self.display = Progress(self.epochs * self.steps, description, unit="step", enabled=enabled)
            self.epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            text = None
            if logs and "loss" in logs and batch % 10 == 0:
                text = f"epoch {self.epoch + 1}/{self.epochs}, loss {logs['loss']:.3f}"
            self.display.update(text=text)

        def on_epoch_end(self, epoch, logs=None):
            if logs:
                figures = ", ".join(f"{k} {v:.3f}" for k, v in logs.items())
                self.display.update(self.display.done, f"epoch {epoch + 1}/{self.epochs}, {figures}")

        def on_train_end(self, logs=None):
            self.display.close()

    return _Display()
