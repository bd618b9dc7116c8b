"""Versions of the tools that made an artifact, for the manifest."""

from importlib import metadata

_PACKAGES = {
    "converter": ["tensorflow", "tf-keras", "tensorflow-model-optimization", "tf2onnx", "onnx", "onnxruntime",
                  "ai-edge-litert", "ai-edge-quantizer", "numpy"],
}


def tool_versions(group="converter") -> dict:
    found = {"edgeopt": _version("edgeopt")}
    for name in _PACKAGES[group]:
        found[name] = _version(name)
    return found


def _version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        from . import __version__

        return __version__ if name == "edgeopt" else None
