"""The model as the exporters see it: a traced function with an explicit input signature.

tf_keras models go to TFLiteConverter and tf2onnx directly. Keras 3 models do not (both tools
expect Keras 2 objects), so they are traced through `keras.export.ExportArchive` into a temporary
SavedModel for TFLite, and through a `tf.function` for tf2onnx.

Recurrent layers need a static batch for TFLite's builtin ops (without it the converter needs
the Flex delegate: "'tf.TensorListReserve' op requires element_shape to be static"), so their
TFLite exports are traced at a fixed batch (1 by default). ONNX keeps a dynamic batch.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from pathlib import Path

from .anatomy import recurrent_layers
from .keras_io import flavour, input_specs


def export_batch(model, configured: int) -> tuple[int | None, str | None]:
    """(batch the TFLite exports are traced at, why), or (None, None) to keep the batch dynamic."""
    recurrent = recurrent_layers(model)
    if recurrent:
        return configured, (f"recurrent layers ({', '.join(recurrent)}) need a static batch for TFLite builtin "
                            "ops (no Flex delegate)")
    declared = {spec["shape"][0] for spec in input_specs(model)} - {None}
    if declared:
        return configured, (f"the model's input declares a fixed batch of {', '.join(map(str, sorted(declared)))}; "
                            f"exported for batch {configured}")
    return None, None


class Serving:
    """One model, traced for export. Call `close()` (or use `with`) to remove temporary files."""

    def __init__(self, model, batch: int | None = None, fuse_lstm: bool = False):
        # fuse_lstm: trace tf_keras LSTMs as the function TFLite fuses into UNIDIRECTIONAL_SEQUENCE_LSTM
        self.model, self.batch, self.fuse_lstm = model, batch, fuse_lstm
        self.flavour = flavour(model)
        self.specs = input_specs(model)
        self._saved_model = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._saved_model:
            shutil.rmtree(self._saved_model.parent, ignore_errors=True)
            self._saved_model = None

    def signature(self, batch):
        import tensorflow as tf

        return [tf.TensorSpec([batch] + spec["shape"][1:], spec["dtype"], name=_safe_name(spec["name"]))
                for spec in self.specs]

    def function(self):
        """A tf.function of the model in inference mode (augmentation off, dropout off)."""
        import tensorflow as tf

        model = self.model

        def serve(*inputs):
            return model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)

        return tf.function(serve)

    def tflite_converter(self):
        import tensorflow as tf

        if self.flavour == "tf_keras" and self.batch is None:
            return tf.lite.TFLiteConverter.from_keras_model(self.model)
        # From a SavedModel: a Keras 3 concrete function converts without freezing its variables (the
        # file then fails at run time in READ_VARIABLE).
        return tf.lite.TFLiteConverter.from_saved_model(str(self.saved_model()))

    def saved_model(self) -> Path:
        """A SavedModel with one 'serve' endpoint at this Serving's batch (written once, removed by close())."""
        if self._saved_model is None:
            import tensorflow as tf

            folder = Path(tempfile.mkdtemp(prefix="edgeopt-export-")) / "saved_model"
            if self.flavour == "keras3":
                from .keras_io import keras3

                archive = keras3().export.ExportArchive()
                archive.track(self.model)
                archive.add_endpoint("serve", self.function(), input_signature=self.signature(self.batch))
                archive.write_out(str(folder), verbose=False)
            else:
                module = tf.Module()
                module.model = self.model  # tracked, so its variables are saved with the function
                module.serve = self.function()
                with contextlib.nullcontext() if self.fuse_lstm else _standard_lstm(self.model):
                    concrete = module.serve.get_concrete_function(*self.signature(self.batch))
                tf.saved_model.save(module, str(folder), signatures={"serving_default": concrete})
            self._saved_model = folder
        return self._saved_model

    def onnx(self, opset: int):
        """(onnx ModelProto) with a dynamic batch."""
        import tf2onnx

        signature = self.signature(None)
        if self.flavour == "tf_keras":
            proto, _ = tf2onnx.convert.from_keras(self.model, input_signature=signature, opset=opset)
        else:
            proto, _ = tf2onnx.convert.from_function(self.function(), input_signature=signature, opset=opset)
        return proto


@contextlib.contextmanager
def _standard_lstm(model):
    """Trace tf_keras LSTMs as plain loops, not as the fusable 'cuDNN-compatible' function.

    TFLite fuses that function into UNIDIRECTIONAL_SEQUENCE_LSTM, which keeps its state in variable
    tensors from one invocation to the next: a runtime must reset them per sequence (runtimes.py does;
    without it the outputs drifted from Keras by 1e-2 to 1e+0). The plain loop is stateless.
    `recurrent: fused` (converter/recurrent.py) opts in. Only a private flag of the in-memory layers is
    switched, and switched back.
    """
    lstms = [layer for layer in _all_sublayers(model) if hasattr(layer, "_could_use_gpu_kernel")]
    saved = [layer._could_use_gpu_kernel for layer in lstms]
    for layer in lstms:
        layer._could_use_gpu_kernel = False
    try:
        yield
    finally:
        for layer, flag in zip(lstms, saved):
            layer._could_use_gpu_kernel = flag


def _all_sublayers(model):
    # tf_keras tracks every nested layer (Bidirectional's forward/backward copies included).
    return model._flatten_layers(include_self=False, recursive=True)


def _safe_name(name: str) -> str:
    # TensorSpec names become graph node names: 'dense_1/Softmax:0' is not a valid one.
    return re.sub(r"[^A-Za-z0-9_]", "_", name.split(":")[0]) or "input"
