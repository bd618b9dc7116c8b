"""Open a Keras model from a file, a SavedModel folder, or memory; recognise what cannot be opened.

The loader is chosen by the file's content (HDF5 signature, zip with metadata.json, saved_model.pb),
never by its extension, and the input file is only ever read.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelLoadError
from ..fileio import sha256_tree

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass
class LoadedModel:
    model: object  # a tf_keras.Model
    info: dict = field(default_factory=dict)  # provenance recorded in the manifest's "source"


def tf_keras():
    import tf_keras as keras  # this package's __init__ has set TF_USE_LEGACY_KERAS already

    return keras


def load_model(model_or_path) -> LoadedModel:
    """Load with tf_keras and describe the model. Raise ModelLoadError with the fix when it cannot."""
    keras = tf_keras()
    if isinstance(model_or_path, keras.Model):
        return LoadedModel(model_or_path, {"path": None, "loader": "in-memory", **describe(model_or_path)})
    if _is_keras3_model(model_or_path):
        raise ModelLoadError(
            "this is a Keras 3 model object; edgeopt's converter works on tf_keras (Keras 2) models because "
            "tensorflow-model-optimization needs them. Build the model with `import tf_keras as keras`, or "
            "save it and pass the file path"
        )
    if not isinstance(model_or_path, (str, Path)):
        raise ModelLoadError(
            f"expected a tf_keras model or a path to .keras/.h5/SavedModel, got {type(model_or_path).__name__}"
        )
    path = Path(model_or_path)
    kind, keras_version = sniff(path)
    if keras_version and keras_version.startswith("3"):
        raise ModelLoadError(_keras3_message(path, keras_version))
    model = _load(path, kind, keras)
    info = {
        "path": str(path),
        "sha256": sha256_tree(path),
        "container": kind,
        "saved_keras_version": keras_version,
        "loader": "tf_keras",
        **describe(model),
    }
    return LoadedModel(model, info)


def sniff(path: Path):
    """Return (container kind, saved Keras version or None) from the file's content."""
    if not path.exists():
        raise ModelLoadError(f"model file {str(path)!r} does not exist")
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            return "savedmodel", _savedmodel_keras_version(path)
        raise ModelLoadError(
            f"{str(path)!r} is a folder without saved_model.pb; pass a .keras/.h5 file or a SavedModel folder"
        )
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise ModelLoadError(f"cannot read model file {str(path)!r}: {e.strerror or e}") from None
    if head == HDF5_SIGNATURE:
        return "hdf5", _hdf5_keras_version(path)
    if head[:4] == b"PK\x03\x04":
        return "keras-zip", _zip_keras_version(path)
    raise ModelLoadError(
        f"{str(path)!r} is not a Keras model: it is neither HDF5 (.h5), a .keras zip archive, nor a "
        f"SavedModel folder (its first bytes are {head[:8]!r})"
    )


def _hdf5_keras_version(path):
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "model_config" not in f.attrs:
                raise ModelLoadError(
                    f"{str(path)!r} is an HDF5 file without a model architecture (no 'model_config'): it looks "
                    "like a weights-only file (save_weights). Save the whole model with model.save('model.h5'), "
                    "or rebuild the architecture in code and load these weights into it"
                )
            v = f.attrs.get("keras_version")
            return v.decode() if isinstance(v, bytes) else v
    except OSError as e:
        raise ModelLoadError(
            f"{str(path)!r} is a damaged HDF5 file (truncated or corrupt: {e}); copy or download it again"
        ) from None


def _zip_keras_version(path):
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            if "metadata.json" not in names or "config.json" not in names:
                raise ModelLoadError(
                    f"{str(path)!r} is a zip archive but not a .keras model (no metadata.json/config.json)"
                )
            return json.loads(z.read("metadata.json")).get("keras_version")
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise ModelLoadError(f"{str(path)!r} is a damaged .keras archive ({e}); copy or download it again") from None


def _savedmodel_keras_version(path):
    meta = path / "keras_metadata.pb"
    return "2 (SavedModel)" if meta.exists() else None


def _keras3_message(path, version):
    return (
        f"{str(path)!r} was saved by Keras {version} (Keras 3). edgeopt's converter loads models with "
        "tf_keras (Keras 2), because tensorflow-model-optimization prunes only Keras 2 models, and tf_keras "
        "cannot read Keras 3 files. To convert it: re-create and save the model with tf_keras "
        "(`import tf_keras as keras`, build, load the weights, `model.save('model.h5')`), then run again."
    )


def _is_keras3_model(obj):
    return type(obj).__module__.startswith("keras.") and hasattr(obj, "layers")


def _load(path, kind, keras):
    try:
        try:
            model = keras.models.load_model(path, compile=True)
        except (ValueError, TypeError, KeyError) as e:
            if "compile" not in str(e).lower() and "loss" not in str(e).lower() and "optimizer" not in str(e).lower():
                raise
            model = keras.models.load_model(path, compile=False)  # a custom loss/optimizer is not needed to export
    except ModelLoadError:
        raise
    except Exception as e:  # tf_keras raises many types for unreadable configs; all mean "cannot load"
        raise ModelLoadError(f"tf_keras cannot load {str(path)!r}: {type(e).__name__}: {_first_line(e)}") from None
    if not isinstance(model, keras.Model):
        raise ModelLoadError(
            f"{str(path)!r} is a TensorFlow SavedModel but not a Keras model; export it from Keras "
            "(model.save) so its layers can be pruned and checked"
        )
    return model


def _first_line(e):
    text = str(e).strip().splitlines()
    return text[0][:500] if text else ""


def model_kind(model) -> str:
    keras = tf_keras()
    if isinstance(model, keras.Sequential):
        return "Sequential"
    return "Functional" if getattr(model, "_is_graph_network", False) else "Subclassed"


def input_specs(model) -> list:
    if not model.inputs:
        raise ModelLoadError(
            f"model {model.name!r} has no defined inputs (a subclassed model that was never called); "
            "call it once on a batch of data, or build it as a Functional model"
        )
    names = getattr(model, "input_names", None) or [t.name for t in model.inputs]
    return [
        {"name": n, "shape": [None if d is None else int(d) for d in t.shape], "dtype": t.dtype.name}
        for n, t in zip(names, model.inputs)
    ]


def output_specs(model) -> list:
    names = getattr(model, "output_names", None) or [t.name for t in model.outputs]
    return [
        {"name": n, "shape": [None if d is None else int(d) for d in t.shape], "dtype": t.dtype.name}
        for n, t in zip(names, model.outputs)
    ]


def describe(model) -> dict:
    layer_types = {}
    for layer in model.layers:
        layer_types[type(layer).__name__] = layer_types.get(type(layer).__name__, 0) + 1
    return {
        "name": model.name,
        "model_class": model_kind(model),
        "params": int(model.count_params()),
        "layer_types": layer_types,
        "inputs": input_specs(model) if model.inputs else [],
        "outputs": output_specs(model) if model.outputs else [],
    }
