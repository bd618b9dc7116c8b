"""Find code stored in a model file (Lambda layers, custom classes) before anything loads it.

Loading a Lambda layer unmarshals Python bytecode from the file and runs it; a custom class needs
code the file only names. Both are refused unless the user says they trust the file. Reading the
config is plain JSON parsing: nothing here executes or unmarshals the stored code in this process.
"""

from __future__ import annotations

import binascii
import codecs
import json
import subprocess
import sys
import zipfile
from dataclasses import dataclass

from ..errors import ModelLoadError

THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
# Layer classes that hold a Python function instead of a configuration.
_CODE_LAYERS = {"Lambda"}
# Container classes: their layers are scanned, they are not layers of note themselves.
_MODEL_CLASSES = {"Sequential", "Functional", "Model"}


@dataclass
class StoredCode:
    layer: str
    class_name: str
    why: str  # one phrase: what loading it would do
    bytecode_origin: str | None = None  # 'another Python version (likely ...)' when it cannot load on this one

    @property
    def bytecode_note(self) -> str | None:
        if not self.bytecode_origin:
            return None
        return (f"the Lambda's bytecode was marshalled by {self.bytecode_origin} and cannot load on this Python "
                f"{THIS_PYTHON} even if trusted: rebuild that layer in code, or convert with the Python version "
                "that saved the file")


def read_config(path, kind) -> dict | None:
    """The architecture JSON of an .h5 or .keras file (None for a SavedModel, whose graph holds no Python)."""
    if kind == "hdf5":
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    elif kind == "keras-zip":
        with zipfile.ZipFile(path) as z:
            raw = z.read("config.json")
    else:
        return None
    if raw is None:
        return None
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def layer_configs(config):
    """Every layer entry (dicts with class_name and config), nested models included, depth first."""
    if not isinstance(config, dict):
        return
    inner = config.get("config")
    # Keras 1 and Keras 2.0-2.2.2 saved a Sequential's config as the bare list of its layers.
    layers = inner.get("layers") if isinstance(inner, dict) else inner if isinstance(inner, list) else None
    for layer in layers or []:
        if isinstance(layer, dict) and "class_name" in layer:
            yield layer
            yield from layer_configs(layer)


def scan(config, known_class) -> list[StoredCode]:
    """Layers whose loading needs Python code: Lambda layers and classes `known_class` does not know."""
    found = []
    for layer in layer_configs(config):
        cls = layer["class_name"]
        name = (layer.get("config") or {}).get("name", "?")
        if cls in _CODE_LAYERS:
            found.append(StoredCode(name, cls, "it holds a Python function that loading executes",
                                    _foreign_bytecode(layer.get("config") or {})))
        elif cls not in _MODEL_CLASSES and (_custom_module(layer) or not known_class(cls)):
            found.append(StoredCode(name, cls, f"{cls} is not a Keras class: loading it imports and runs that code"))
    return found


def refusal(path, found: list[StoredCode]) -> ModelLoadError:
    listed = "; ".join(f"layer {c.layer!r} ({c.class_name}): {c.why}" for c in found)
    notes = [c.bytecode_note for c in found if c.bytecode_note]
    return ModelLoadError(
        f"{str(path)!r} stores code, and loading it would execute that code: {listed}. edgeopt does not run "
        "code from a model file unless told to. If you trust where the file came from, pass "
        "--trust-model-code (CLI) or trust_model_code=True (API); otherwise rebuild the model in code and "
        "load its weights" + (". Note: " + " ".join(notes) if notes else "")
    )


def _custom_module(layer) -> bool:
    module = layer.get("module")
    return bool(module) and not module.startswith("keras")


def _foreign_bytecode(config) -> str | None:
    """Which other Python marshalled the stored bytecode, if this one cannot load it; None if it can (or is none)."""
    code = _marshalled(config.get("function"))
    if code is None:
        return None
    # marshal is not safe against crafted input, so the trial load runs in a throwaway interpreter;
    # marshal.loads builds a code object and never runs it.
    probe = "import marshal,sys; marshal.loads(sys.stdin.buffer.read())"
    result = subprocess.run([sys.executable, "-c", probe], input=code, capture_output=True, timeout=30)
    if result.returncode == 0:
        return None
    origin = _guess_python(code)
    return f"another Python version{f' (likely {origin})' if origin else ''}"


def _marshalled(function):
    """The raw marshal bytes of a stored lambda: Keras 2 keeps [base64, defaults, closure], Keras 3 a dict."""
    text = None
    if isinstance(function, list) and function and isinstance(function[0], str):
        text = function[0]
    elif isinstance(function, dict) and function.get("class_name") == "__lambda__":
        text = (function.get("config") or {}).get("code")
    if not text:
        return None
    try:  # decoded as tf_keras' func_load decodes it, so the probe sees the bytes a loader would unmarshal
        return codecs.decode(text.encode("ascii"), "base64")
    except (UnicodeEncodeError, binascii.Error):
        return text.encode("raw_unicode_escape")  # Keras 1 stored the marshal bytes as text, not base64


def _guess_python(code: bytes) -> str | None:
    """From the int32 fields before a code object's bytecode: 4 in Python 2, 5 in 3.0-3.7 and 3.11+, 6 in 3.8-3.10."""
    if not code or code[0] & 0x7F != ord("c"):
        return None
    for count, versions in ((6, "Python 3.8-3.10"), (5, "Python 3.0-3.7 or 3.11+"), (4, "Python 2")):
        at = 1 + 4 * count
        if len(code) > at and code[at] & 0x7F == ord("s"):
            return versions
    return None
