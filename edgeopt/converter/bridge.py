"""Keras 3 -> tf_keras: rebuild a Keras 3 model layer by layer so tfmot can prune it.

tfmot (pruning, and later QAT and clustering) works only on tf_keras models. The bridge rebuilds the
architecture from each layer's config (Sequential, Functional and nested models), copies the
weights, and proves the copy by comparing outputs before anyone uses it. Exports do not need it:
Keras 3 models are exported directly (see serving.py).

Example:
    >>> tf_model, facts = to_tf_keras(keras3_model, [x])  # doctest: +SKIP
    >>> facts["max_abs_error"] < 1e-5  # doctest: +SKIP

Gotchas: initializers, regularizers and constraints carry over when tf_keras knows them; an option
tf_keras lacks is dropped only when it holds Keras 3's default, otherwise the layer is refused.
"""

from __future__ import annotations

import inspect

import numpy as np

from ..errors import ConversionError
from .keras_io import keras3, model_kind, tf_keras

_CONTAINERS = {"Sequential", "Functional"}
# Options every tf_keras layer takes through **kwargs.
_BASE_OPTIONS = {"name", "trainable", "dtype", "dynamic", "input_shape", "batch_input_shape", "batch_size",
                 "input_dim", "activity_regularizer", "autocast"}
# Keras 3 options whose value means what tf_keras does without the option.
_IMPLIED_BY_TF_KERAS = {"data_format": "channels_last"}
_WRAPPER_KEYS = {"module", "registered_name", "shared_object_id"}
# Float32 round-off over a few hundred ops stays far below this (relative to the output's scale).
_PROOF_TOLERANCE = 1e-4


class BridgeError(ConversionError):
    """A Keras 3 model (or one of its layers) cannot be rebuilt in tf_keras."""


def to_tf_keras(model, inputs: list) -> tuple[object, dict]:
    """A tf_keras copy of Keras 3 `model`, proven on `inputs`; (copy, facts for the manifest).

    Raises BridgeError naming the layer that cannot be bridged, or the output difference found.
    """
    kind = model_kind(model)
    if kind not in _CONTAINERS:
        raise BridgeError(f"{model.name!r} is a subclassed Keras 3 model ({type(model).__name__}): only Sequential "
                          "and Functional models can be rebuilt from their config for tf_keras")
    rebuilder = _Rebuilder()
    built = rebuilder.model(model)
    _copy_weights(rebuilder.pairs())
    facts = prove(model, built, inputs)
    return built, facts


def prove(original, copy, inputs) -> dict:
    """Compare outputs on `inputs`; raise BridgeError unless they agree to float32 round-off."""
    feed = inputs if len(inputs) > 1 else inputs[0]
    want = _as_list(original.predict(feed, verbose=0))
    got = _as_list(copy.predict(feed, verbose=0))
    worst, limit = 0.0, 0.0
    for w, g in zip(want, got):
        if np.shape(w) != np.shape(g):
            raise BridgeError(f"the tf_keras copy gives outputs of shape {np.shape(g)}, the Keras 3 model {np.shape(w)}")
        worst = max(worst, float(np.max(np.abs(np.asarray(w, np.float64) - g))))
        limit = max(limit, _PROOF_TOLERANCE * max(1.0, float(np.max(np.abs(w)))))
    if worst > limit:
        raise BridgeError(
            f"the tf_keras copy of {original.name!r} disagrees with the Keras 3 model (max abs error {worst:.3g}, "
            f"limit {limit:.3g} on {len(inputs[0])} samples): a layer behaves differently in tf_keras"
        )
    return {"bridge": "keras3->tf_keras", "max_abs_error": worst, "samples": int(len(inputs[0]))}


class _Rebuilder:
    def __init__(self):
        self.tfk, self.k3 = tf_keras(), keras3()
        self.layers = {}  # id(Keras 3 layer) -> (that layer, its tf_keras copy): shared layers stay shared

    def pairs(self):
        """(Keras 3 layer, tf_keras copy) for every layer that is not a model."""
        return [(old, new) for old, new in self.layers.values() if type(old).__name__ not in _CONTAINERS]

    def model(self, model):
        if type(model).__name__ == "Sequential":
            return self._sequential(model)
        return self._functional(model)

    def _inputs(self, model):
        return [self.tfk.Input(shape=tuple(t.shape[1:]), dtype=str(t.dtype), name=_input_name(t)) for t in model.inputs]

    def _sequential(self, model):
        if not model.inputs:
            raise BridgeError(f"nested Sequential {model.name!r} was never built: its input shape is unknown")
        return self.tfk.Sequential(self._inputs(model) + [self.layer(layer) for layer in model.layers], name=model.name)

    def _functional(self, model):
        tensors = {}
        new_inputs = self._inputs(model)
        for old, new in zip(model.inputs, new_inputs):
            tensors[id(old)] = new

        def rebuild(kt):
            if id(kt) not in tensors:
                layer, node_index, _ = kt._keras_history
                node = layer._inbound_nodes[node_index]
                args = self.k3.tree.map_structure(_mapper(rebuild, self.k3), node.arguments.args)
                kwargs = self.k3.tree.map_structure(_mapper(rebuild, self.k3), node.arguments.kwargs)
                out = self.layer(layer)(*args, **kwargs)
                for old, new in zip(self.k3.tree.flatten(node.outputs), _flatten(out)):
                    tensors[id(old)] = new
            return tensors[id(kt)]

        outputs = [rebuild(t) for t in model.outputs]
        return self.tfk.Model(new_inputs, outputs if len(outputs) > 1 else outputs[0], name=model.name)

    def layer(self, layer):
        if id(layer) in self.layers:
            return self.layers[id(layer)][1]
        cls = type(layer).__name__
        if cls in _CONTAINERS:
            built = self.model(layer)
        else:
            target = getattr(self.tfk.layers, cls, None)
            if target is None:
                raise BridgeError(f"layer {layer.name!r} ({cls}) cannot be bridged: tf_keras has no {cls} layer. "
                                  "Exports still work; pruning needs the model rebuilt with tf_keras layers")
            config = _translate(layer.name, type(layer), target, layer.get_config())
            try:
                built = target.from_config(config)
            except Exception as e:  # tf_keras rejects the config: name the layer and why
                raise BridgeError(f"layer {layer.name!r} ({cls}) cannot be bridged: tf_keras rejects its "
                                  f"config ({_reason(e)})") from None
        self.layers[id(layer)] = (layer, built)
        return built


def _translate(layer_name, k3_class, target, config) -> dict:
    """Keras 3 layer config -> tf_keras: plain dtype names, legacy nested objects, unknown defaults dropped."""
    accepted = set(inspect.signature(target.__init__).parameters) | _BASE_OPTIONS
    defaults = {k: p.default for k, p in inspect.signature(k3_class.__init__).parameters.items()}
    out = {}
    for key, value in config.items():
        if key.endswith("_initializer"):
            continue  # the weights are copied, so initializers never run (and Keras 3 added options to them)
        if key == "dtype":
            out[key] = _dtype_name(value)
        elif key in accepted and isinstance(value, dict) and "class_name" in value and "config" in value \
                and hasattr(keras3().layers, value["class_name"]):
            out[key] = _translate_wrapped(layer_name, value)  # Bidirectional / TimeDistributed: a layer inside
        elif key in accepted:
            out[key] = _legacy(value)
        elif value in (None, False, defaults.get(key, object())) or _IMPLIED_BY_TF_KERAS.get(key) == value:
            continue  # a Keras 3 option left at its default: tf_keras behaves the same without it
        else:
            raise BridgeError(
                f"layer {layer_name!r} ({k3_class.__name__}) cannot be bridged: its option {key}={value!r} "
                "has no tf_keras equivalent. Exports still work; pruning needs the layer without that option"
            )
    return out


def _translate_wrapped(layer_name, value) -> dict:
    cls = value["class_name"]
    target = getattr(tf_keras().layers, cls, None)
    if target is None:
        raise BridgeError(f"layer {layer_name!r} cannot be bridged: it wraps a {cls}, which tf_keras does not have")
    return {"class_name": cls, "config": _translate(layer_name, getattr(keras3().layers, cls), target, value["config"])}


def _copy_weights(pairs):
    for s, t in pairs:
        if not t.weights:
            continue  # e.g. augmentation layers: Keras 3 keeps a seed state, tf_keras none
        values = s.get_weights()
        if [v.shape for v in values] != [tuple(w.shape) for w in t.weights]:
            raise BridgeError(
                f"layer {s.name!r} ({type(s).__name__}) cannot be bridged: its weights have shapes "
                f"{[v.shape for v in values]} in Keras 3 and {[tuple(w.shape) for w in t.weights]} in tf_keras"
            )
        t.set_weights(values)


def _dtype_name(value):
    if isinstance(value, dict):  # Keras 3: {"module": "keras", "class_name": "DTypePolicy", "config": {"name": ...}}
        return (value.get("config") or {}).get("name", "float32")
    return value


def _legacy(value):
    """Drop Keras 3's serialization wrapper keys ('module', 'registered_name') from nested objects."""
    if isinstance(value, dict):
        return {k: _legacy(v) for k, v in value.items() if k not in _WRAPPER_KEYS}
    if isinstance(value, list):
        return [_legacy(v) for v in value]
    return value


def _mapper(rebuild, k3):
    return lambda v: rebuild(v) if isinstance(v, k3.KerasTensor) else v


def _flatten(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _as_list(out):
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def _input_name(tensor):
    history = getattr(tensor, "_keras_history", None)
    return history[0].name if history else None


def _reason(e) -> str:
    # tf_keras wraps the real reason: "Error when deserializing class ... Exception encountered: <reason>".
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    cause = next((line for line in lines if line.startswith("Exception encountered:")), lines[0] if lines else "")
    return f"{type(e).__name__}: {cause.removeprefix('Exception encountered:').strip()[:300]}"
