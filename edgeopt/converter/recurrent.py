"""Recurrent layers in TFLite files: as loops, unrolled, or fused; chosen per export, the reason recorded.

TFLite exports LSTM/GRU layers as WHILE loops (serving.py). Full-integer int8 cannot quantize those:
TFLiteConverter's calibrator crashes on them (SIGSEGV) and ai-edge-quantizer cannot read the loop's
tensors. Two ways out, measured on ../shared/realmodels (benchmarks/realmodels/recurrent_int8.md):

- unroll: a copy rebuilt from the model's config with `unroll=True` on every recurrent layer, weights
  copied, outputs proven equal before use. One chain of ops per time step and no loop, so every op
  has an int8 kernel. Needs a fixed sequence length; the file and the conversion time grow with it.
- fused: tf_keras LSTMs traced as the function TFLite fuses into UNIDIRECTIONAL_SEQUENCE_LSTM, which
  TFLiteConverter calibrates and quantizes to int8 (its cell state stays int16 inside the kernel);
  recurrent layers without a fused TFLite op (GRU, SimpleRNN, LSTMs with other activations) are
  unrolled; Keras 3 models are rebuilt in tf_keras first (bridge.py). The op keeps its state in
  variable tensors between invocations: runtimes must reset them per sequence (bench/device/
  runtimes.py does). ai-edge-quantizer leaves the op in float.

`recurrent: auto` (the default) unrolls for int8 and keeps loops for the float and dynamic exports.
"""

from __future__ import annotations

import copy as copylib

import numpy as np

from ..errors import ConversionError
from .anatomy import recurrent_layers
from .keras_io import flavour, model_kind

_UNROLLABLE = {"LSTM", "GRU", "SimpleRNN"}
_PROOF_TOLERANCE = 1e-4  # float32 round-off, relative to the output's scale
WHY_AUTO = {
    "int8": "full-integer int8 cannot quantize recurrent WHILE loops (TFLiteConverter's calibrator crashes on them, "
            "ai-edge-quantizer cannot read their tensors); the unrolled copy has no loop",
    "other": "loops are exact and compact; only full-integer int8 needs them unrolled",
}


def resolve(model, precision: str, option: str) -> tuple[str | None, str]:
    """(mode, why) for one export of `model`; mode None when it has no recurrent layers."""
    if not recurrent_layers(model):
        if option != "auto":
            raise ConversionError(f"recurrent: {option} asks how to export recurrent layers, but this model has none; "
                                  "drop the option")
        return None, ""
    if option != "auto":
        return option, "recurrent: " + option + " in the recipe"
    return ("unroll", WHY_AUTO["int8"]) if precision == "int8" else ("loop", WHY_AUTO["other"])


def fp32_option(model, precision: str, option: str) -> str:
    """The `recurrent` option of the fp32 file that a quantization pass over (precision, option) starts from.

    It names the mode that export resolves to, or "auto" where fp32's own default gives the same file, so
    both share one fp32 record. A model without recurrent layers keeps the option, so the fp32 step fails
    with the reason (resolve() raises) and the pass is skipped.
    """
    if not recurrent_layers(model):
        return option
    mode, _ = resolve(model, precision, option)
    return "auto" if mode == resolve(model, "fp32", "auto")[0] else mode


def unrolled_copy(model, keep_fusable_lstms: bool = False) -> tuple[object, list]:
    """(copy of `model` with recurrent layers unrolled, names of the layers unrolled).

    `keep_fusable_lstms`: leave the tf_keras LSTMs that TFLite can fuse as they are (fused mode).
    Raises ConversionError naming why the model cannot be rebuilt or a layer cannot be unrolled.
    """
    if model_kind(model) not in ("Sequential", "Functional"):
        raise ConversionError(f"cannot unroll the recurrent layers of {model.name!r}: it is a subclassed model "
                              f"({type(model).__name__}), and only Sequential and Functional models can be rebuilt "
                              "from their config")
    config = copylib.deepcopy(model.get_config())
    unrolled = _set_unroll(config, keep_fusable_lstms)
    try:
        rebuilt = type(model).from_config(config)
    except ValueError as e:
        if "time dimension is undefined" in str(e) or "unroll" in str(e).lower():
            raise ConversionError(f"cannot unroll {', '.join(unrolled)}: the sequence length is not fixed (input "
                                  "shape (batch, None, ...)). Rebuild the model with a fixed number of time steps, "
                                  "or export int8-dynamic") from None
        raise ConversionError(f"cannot rebuild {model.name!r} from its config to unroll it: {e}") from None
    rebuilt.set_weights(model.get_weights())
    return rebuilt, unrolled


def _set_unroll(config, keep_fusable_lstms) -> list:
    """Set unroll=True in every recurrent layer config, nested ones (Bidirectional, inner models) included."""
    from .keras_io import layer_nodes

    found = []
    for node in layer_nodes(config):
        if node["class_name"] in _UNROLLABLE and isinstance(node.get("config"), dict):
            layer = node["config"]
            if not (keep_fusable_lstms and fusable(node["class_name"], layer)):
                layer["unroll"] = True
                found.append(f"{layer.get('name')} ({node['class_name']})")
    return found


def fusable(class_name: str, layer_config: dict) -> bool:
    """tf_keras' own condition for tracing an LSTM as the function TFLite fuses (its `_could_use_gpu_kernel`)."""
    return (class_name == "LSTM" and layer_config.get("activation") == "tanh"
            and layer_config.get("recurrent_activation") == "sigmoid" and not layer_config.get("recurrent_dropout")
            and layer_config.get("use_bias", True) and not layer_config.get("unroll"))


def fused_copy(model, proof_inputs: list) -> tuple[object, list, list]:
    """(tf_keras copy for fused mode, LSTMs left to fuse, layers unrolled); ConversionError when nothing can fuse.

    Keras 3 traces LSTMs as plain loops that TFLite never fuses, so a Keras 3 model is first rebuilt in
    tf_keras by the bridge (proven equal on `proof_inputs`), whose LSTMs TFLite does fuse.
    """
    if flavour(model) != "tf_keras":
        from .bridge import to_tf_keras

        model, _ = to_tf_keras(model, proof_inputs)
    fused = [f"{c['config'].get('name')} (LSTM)" for c in _layer_configs(model.get_config())
             if fusable(c.get("class_name"), c.get("config", {}))]
    if not fused:
        raise ConversionError("recurrent: fused: no LSTM in this model can be fused (TFLite fuses tf_keras LSTMs with "
                              "tanh/sigmoid activations, a bias and no recurrent dropout); use recurrent: unroll")
    rebuilt, unrolled = unrolled_copy(model, keep_fusable_lstms=True)
    return rebuilt, fused, unrolled


def _layer_configs(node):
    if isinstance(node, dict):
        if "class_name" in node and isinstance(node.get("config"), dict):
            yield node
        for value in node.values():
            yield from _layer_configs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _layer_configs(value)


def prove(original, rebuilt, inputs: list) -> float:
    """Max abs difference of the two models' outputs on `inputs`; ConversionError beyond float32 round-off."""
    feed = inputs if len(inputs) > 1 else inputs[0]
    want, got = original.predict(feed, verbose=0), rebuilt.predict(feed, verbose=0)
    want, got = (want if isinstance(want, list) else [want]), (got if isinstance(got, list) else [got])
    worst = max(float(np.max(np.abs(np.asarray(w, np.float64) - g))) for w, g in zip(want, got))
    limit = _PROOF_TOLERANCE * max(1.0, max(float(np.max(np.abs(w))) for w in want))
    if worst > limit:
        raise ConversionError(f"the unrolled copy of {original.name!r} disagrees with the model (max abs error "
                              f"{worst:.3g}, limit {limit:.3g}): it cannot stand in for it")
    return worst


class Variants:
    """The Servings of one model, one per recurrent mode, built on first use (a failure is kept and re-raised).

    Example:
        >>> with Serving(model, 1) as base, Variants(base, proof_inputs) as variants:  # doctest: +SKIP
        ...     serving, facts = variants.for_export("int8", {"recurrent": "auto"})
    """

    def __init__(self, base, proof_inputs: list):
        self.base, self.proof_inputs = base, proof_inputs
        self._built: dict = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def for_export(self, precision: str, options: dict):
        """(Serving, facts for the manifest) that this export should be traced from."""
        mode, why = resolve(self.base.model, precision, options.get("recurrent", "auto"))
        if mode is None or mode == "loop":
            return self.base, ({"recurrent": "loop", "recurrent_why": why} if mode else {})
        if mode not in self._built:
            self._built[mode] = self._build(mode)
        built = self._built[mode]
        if isinstance(built, ConversionError):
            raise built
        serving, facts = built
        return serving, {"recurrent": mode, "recurrent_why": why, **facts}

    def _build(self, mode):
        from .serving import Serving

        try:
            if mode == "fused":
                rebuilt, fused, unrolled = fused_copy(self.base.model, self.proof_inputs)
                facts = {"fused_lstms": fused, "unrolled_layers": unrolled}
                if flavour(self.base.model) == "keras3":
                    facts["bridge"] = "keras3->tf_keras"
            else:
                rebuilt, unrolled = unrolled_copy(self.base.model)
                facts = {"unrolled_layers": unrolled}
            facts["rebuilt_max_abs_error"] = prove(self.base.model, rebuilt, self.proof_inputs)
        except ConversionError as e:
            return e
        return Serving(rebuilt, self.base.batch, fuse_lstm=mode == "fused"), facts

    def close(self):
        for built in self._built.values():
            if not isinstance(built, ConversionError):
                built[0].close()
        self._built = {}
