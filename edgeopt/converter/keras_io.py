"""Open a Keras model from a file, a SavedModel folder, or memory; recognise what cannot be opened.

The loader is chosen by the file's content (HDF5 signature, zip with metadata.json, saved_model.pb),
never by its extension, and the input file is only ever read.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings as pywarnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelLoadError
from ..fileio import sha256_tree
from . import legacy_keras, model_code, windows_paths

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass
class LoadedModel:
    model: object  # a tf_keras.Model or a Keras 3 keras.Model (see info["loader"])
    info: dict = field(default_factory=dict)  # provenance recorded in the manifest's "source"


def tf_keras():
    import tf_keras as keras  # this package's __init__ has set TF_USE_LEGACY_KERAS already

    return keras


def keras3():
    """Keras 3 (`import keras`): TF_USE_LEGACY_KERAS only redirects `tf.keras`, not this import."""
    import keras

    return keras


def flavour(model) -> str:
    """'tf_keras' for a tf_keras (Keras 2) model, 'keras3' for a Keras 3 one."""
    return "tf_keras" if isinstance(model, tf_keras().Model) else "keras3"


def load_model(model_or_path, trust_model_code=False) -> LoadedModel:
    """Open with the loader the file was written for; describe the model. Raise ModelLoadError with the fix.

    The saved Keras version picks the loader (tf_keras for Keras 2 files, Keras 3 for Keras 3 files);
    when that loader fails the other is tried, and `info["loader"]` says which one worked. Layers that
    store code (Lambda, custom classes) are refused unless `trust_model_code`.

    Gotchas: a `.keras` file saved on Windows is repaired in a temporary copy (see windows_paths);
    `info["warnings"]` says so.
    """
    if _is_keras_model(model_or_path):
        return LoadedModel(model_or_path, {"path": None, "loader": flavour(model_or_path), "in_memory": True,
                                           **describe(model_or_path)})
    if not isinstance(model_or_path, (str, Path)):
        raise ModelLoadError(
            f"expected a Keras model or a path to .keras/.h5/SavedModel, got {type(model_or_path).__name__}"
        )
    path = Path(model_or_path)
    kind, keras_version = sniff(path)
    config = model_code.read_config(path, kind)
    legacy_keras.refuse_keras1(path, keras_version, config)
    code = model_code.scan(config, lambda cls: _known_class(cls, keras_version))
    if code and not trust_model_code:
        raise model_code.refusal(path, code)
    foreign = [c for c in code if c.bytecode_note]
    if foreign:  # unmarshalling another Python's bytecode fails at best, so it is not attempted
        raise ModelLoadError(f"cannot load {str(path)!r} even with --trust-model-code: layer {foreign[0].layer!r}: "
                             f"{foreign[0].bytecode_note}")
    warnings = []
    with _repaired(path, kind, warnings) as readable:
        model, loader = _load_by_version(readable, kind, keras_version, trust_model_code)
    info = {
        "path": str(path),
        "sha256": sha256_tree(path),
        "container": kind,
        "saved_keras_version": keras_version,
        "loader": loader,
        "stored_code": [f"{c.layer} ({c.class_name})" for c in code],
        "warnings": warnings,
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


def layer_classes(path) -> set | None:
    """Every layer class name in a .h5 or .keras file's architecture, read from its config without loading
    TensorFlow; None where the file does not say (a SavedModel, or a config this cannot read)."""
    path = Path(path)
    try:
        kind, _ = sniff(path)
        if kind == "hdf5":
            import h5py

            with h5py.File(path, "r") as f:
                raw = f.attrs["model_config"]
        elif kind == "keras-zip":
            with zipfile.ZipFile(path) as z:
                raw = z.read("config.json")
        else:
            return None
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (ModelLoadError, OSError, KeyError, ValueError):
        return None
    return {node["class_name"] for node in layer_nodes(config)}


def layer_nodes(config):
    """Every dict with a `class_name` in a Keras config, nested ones (Bidirectional, inner models) included,
    each yielded before its children are visited (a caller may edit a node's config)."""
    if isinstance(config, dict):
        if isinstance(config.get("class_name"), str):
            yield config
        for value in list(config.values()):
            yield from layer_nodes(value)
    elif isinstance(config, list):
        for value in config:
            yield from layer_nodes(value)


def _savedmodel_keras_version(path):
    meta = path / "keras_metadata.pb"
    return "2 (SavedModel)" if meta.exists() else None


def _is_keras_model(obj):
    if isinstance(obj, tf_keras().Model):
        return True
    # A Keras 3 model can only exist if its user imported keras already: no need to import it here.
    return "keras" in sys.modules and isinstance(obj, sys.modules["keras"].Model)


def _known_class(cls, keras_version) -> bool:
    if _is_keras3_version(keras_version):
        return hasattr(keras3().layers, cls)
    # tf_keras' registry also holds layers it serializes but does not export, such as TFOpLambda
    # (a TensorFlow op named in the config, not code stored in the file).
    from tf_keras.src.layers.serialization import get_builtin_layer

    return hasattr(tf_keras().layers, cls) or get_builtin_layer(cls) is not None


def _is_keras3_version(version) -> bool:
    return bool(version) and str(version).startswith("3")


@contextlib.contextmanager
def _repaired(path, kind, warnings):
    """The path to load: `path` itself, or a temporary repaired copy of a Windows-saved .keras file."""
    if kind != "keras-zip" or not windows_paths.backslash_names(path):
        yield path
        return
    message = (f"{path.name}: its weight names use Windows backslashes ('layers\\lstm\\cell'; "
               "keras-team/keras#18528); loading a repaired temporary copy (the file itself is unchanged)")
    warnings.append(message)
    pywarnings.warn(message, stacklevel=3)
    with windows_paths.repaired_copy(path) as fixed:
        yield fixed


def _load_by_version(path, kind, keras_version, trusted):
    """Try the loader the saved version calls for, then the other; report both failures if neither works."""
    first = "keras3" if _is_keras3_version(keras_version) else "tf_keras"
    order = [first] if kind == "savedmodel" else [first, "tf_keras" if first == "keras3" else "keras3"]
    errors = {}
    for loader in order:
        try:
            load = _load_keras3 if loader == "keras3" else _load_tf_keras
            return load(path, trusted), loader
        except ModelLoadError as e:
            errors[loader] = str(e)
    tried = "; ".join(f"{name}: {err}" for name, err in errors.items())
    raise ModelLoadError(f"cannot load {str(path)!r} (saved by Keras {keras_version or 'unknown'}): {tried}")


def _load_keras3(path, trusted):
    keras = keras3()
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not trusted)
    except Exception as e:  # Keras raises many types for unreadable configs; all mean "cannot load"
        raise ModelLoadError(f"Keras 3 cannot load it ({type(e).__name__}: {_first_line(e)})") from None


def _load_tf_keras(path, trusted):
    keras = tf_keras()
    try:
        try:
            model = keras.models.load_model(path, compile=True, safe_mode=not trusted)
        except (ValueError, TypeError, KeyError) as e:
            if "compile" not in str(e).lower() and "loss" not in str(e).lower() and "optimizer" not in str(e).lower():
                raise
            # a custom loss/optimizer is not needed to export
            model = keras.models.load_model(path, compile=False, safe_mode=not trusted)
    except Exception as e:  # tf_keras raises many types for unreadable configs; all mean "cannot load"
        raise ModelLoadError(f"tf_keras cannot load it ({type(e).__name__}: {_first_line(e)})") from None
    if not isinstance(model, keras.Model):
        raise ModelLoadError(
            "it is a TensorFlow SavedModel but not a Keras model; export it from Keras "
            "(model.save) so its layers can be pruned and checked"
        )
    return model


def _first_line(e):
    text = str(e).strip().splitlines()
    return text[0][:500] if text else ""


def model_kind(model) -> str:
    """'Sequential', 'Functional' or 'Subclassed', for tf_keras and Keras 3 models alike."""
    if type(model).__name__ == "Sequential":
        return "Sequential"
    if getattr(model, "_is_graph_network", False) or type(model).__name__ == "Functional":
        return "Functional"
    return "Subclassed"


def input_specs(model) -> list:
    if not model.inputs:
        raise ModelLoadError(
            f"model {model.name!r} has no defined inputs (a subclassed model that was never called); "
            "call it once on a batch of data, or build it as a Functional model"
        )
    names = getattr(model, "input_names", None) or [_tensor_name(t) for t in model.inputs]
    return [_spec(n, t) for n, t in zip(names, model.inputs)]


def output_specs(model) -> list:
    names = getattr(model, "output_names", None) or [_tensor_name(t) for t in model.outputs]
    return [_spec(n, t) for n, t in zip(names, model.outputs)]


def _spec(name, tensor) -> dict:
    dtype = getattr(tensor.dtype, "name", tensor.dtype)  # tf.DType in tf_keras, a string in Keras 3
    return {"name": name, "shape": [None if d is None else int(d) for d in tensor.shape], "dtype": str(dtype)}


def _tensor_name(tensor) -> str:
    # Keras 3 names graph tensors 'keras_tensor_12'; the layer that made it says more.
    history = getattr(tensor, "_keras_history", None)
    return history[0].name if history else tensor.name


def describe(model) -> dict:
    from .anatomy import layers_of_note

    layer_types = {}
    for layer in model.layers:
        layer_types[type(layer).__name__] = layer_types.get(type(layer).__name__, 0) + 1
    return {
        "name": model.name,
        "model_class": model_kind(model),
        "params": int(model.count_params()),
        "layer_types": layer_types,
        "layers_of_note": layers_of_note(model),
        "inputs": input_specs(model) if model.inputs else [],
        "outputs": output_specs(model) if model.outputs else [],
    }


def refuse_string_inputs(info):
    """Raise ModelLoadError for a model that takes text: no on-device runtime here can."""
    text = [s["name"] for s in info["inputs"] if s["dtype"] == "string"]
    if text:
        raise ModelLoadError(
            f"model input(s) {', '.join(map(repr, text))} take strings: TFLite builtin ops and ONNX exports "
            "cannot process text on a device. Split the model: export the part after its text layers "
            f"({', '.join(info.get('layers_of_note', {}).get('string_input', [])) or 'TextVectorization/StringLookup'}) "
            "with integer token inputs, and tokenize on the host"
        )
