"""The model as the exporters see it: a traced function with an explicit input signature, saved once.

Every exporter reads one SavedModel per batch, written here: TFLiteConverter.from_saved_model for each
TFLite file and tf2onnx (from the restored function) for ONNX, in the converter process. tf_keras
models are saved with their variables only (not as Keras objects); Keras 3 models go through
`keras.export.ExportArchive` (both tools expect Keras 2 objects, not Keras 3 ones).

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

from ..fileio import release_memory
from .anatomy import recurrent_layers
from .keras_io import flavour, input_specs, output_specs


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
    """One model, traced for export. Call `close()` (or use `with`) to remove temporary files.

    Every export reads a SavedModel written here once per batch (`saved_model`): all TFLite files and the
    ONNX export share one trace when the batch is dynamic, and each converter reads it from disk in the
    converter process (see converter.isolation).
    """

    def __init__(self, model, batch: int | None = None, fuse_lstm: bool = False):
        # fuse_lstm: trace tf_keras LSTMs as the function TFLite fuses into UNIDIRECTIONAL_SEQUENCE_LSTM
        self.model, self.batch, self.fuse_lstm = model, batch, fuse_lstm
        self.flavour = flavour(model)
        self.specs = input_specs(model)
        self._saved_models = {}  # batch -> SavedModel folder

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for folder in self._saved_models.values():
            shutil.rmtree(folder.parent, ignore_errors=True)
        self._saved_models = {}

    def signature(self, batch):
        import tensorflow as tf

        return [tf.TensorSpec([batch] + spec["shape"][1:], spec["dtype"], name=_safe_name(spec["name"]))
                for spec in self.specs]

    def function(self):
        """A tf.function of the model in inference mode (augmentation off, dropout off), outputs named as in Keras."""
        import tensorflow as tf

        model, names = self.model, [spec["name"] for spec in output_specs(self.model)]
        named = len(set(names)) == len(names)  # two outputs of one layer share a name: keep them positional

        def serve(*inputs):
            out = model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)
            if isinstance(out, dict) or not named:
                return out
            return dict(zip(names, out if isinstance(out, (list, tuple)) else [out]))

        return tf.function(serve)

    def tflite_converter(self):
        """A TFLiteConverter over the traced SavedModel, in this process (explain's selective exports)."""
        import tensorflow as tf

        return tf.lite.TFLiteConverter.from_saved_model(str(self.saved_model()))

    def saved_model(self, batch="tflite") -> Path:
        """A SavedModel with one 'serve' endpoint, at this Serving's TFLite batch or at `batch` (None: dynamic).

        Written once per batch, removed by close().
        """
        batch = self.batch if batch == "tflite" else batch
        if batch not in self._saved_models:
            folder = Path(tempfile.mkdtemp(prefix="edgeopt-export-")) / "saved_model"
            if self.flavour == "keras3":
                self._write_keras3(folder, batch)
            else:
                self._write_tf_keras(folder, batch)
            self._saved_models[batch] = folder
            release_memory()  # the traced graphs are not needed here any more: the converters read the files
        return self._saved_models[batch]

    def _write_keras3(self, folder, batch):
        from .keras_io import keras3

        archive = keras3().export.ExportArchive()
        archive.track(self.model)
        archive.add_endpoint("serve", self.function(), input_signature=self.signature(batch))
        archive.write_out(str(folder), verbose=False)

    def _write_tf_keras(self, folder, batch):
        import tensorflow as tf

        module = tf.Module()
        # Only the variables are tracked: tracking the Keras model itself makes tf.saved_model.save
        # serialise every layer's call functions too (what TFLiteConverter.from_keras_model does for each
        # file), which takes longer than the conversions.
        module.model_variables = list(self.model.variables)
        module.serve = self.function()
        with contextlib.nullcontext() if self.fuse_lstm else _standard_lstm(self.model):
            concrete = module.serve.get_concrete_function(*self.signature(batch))
        try:
            tf.saved_model.save(module, str(folder), signatures={"serving_default": concrete})
        except (ValueError, AssertionError):  # a resource outside the variables (a lookup table): track it all
            shutil.rmtree(folder, ignore_errors=True)
            module.model = self.model
            tf.saved_model.save(module, str(folder), signatures={"serving_default": concrete})


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


def signature_names(inputs: list, outputs: list) -> tuple[list, list]:
    """The input and output names the exported files carry, in the Keras model's order."""
    return [_safe_name(spec["name"]) for spec in inputs], [spec["name"] for spec in outputs]


def _safe_name(name: str) -> str:
    # TensorSpec names become graph node names: 'dense_1/Softmax:0' is not a valid one.
    return re.sub(r"[^A-Za-z0-9_]", "_", name.split(":")[0]) or "input"
