"""The candidate space: every recipe the search may try, read from the declarations.

Exports and their options come from `edgeopt.capabilities` (a declared option with a list of values,
or a true/false one, becomes a search dimension; numbers such as `opset` keep their default), and
training steps from the steps registry (`edgeopt.steps.STEPS` where it exists, else the recipe's
`prune:` section), so new exports and steps become candidates as they are declared.

A candidate is one export (format, precision, options), the training steps before it, and the number
of calibration samples: `Candidate.recipe()` is the recipe `edgeopt.convert` runs for it.

Example:
    >>> space = Space.build(formats=["tflite"])
    >>> [c.label() for c in space.seeds()][:2]
    ['tflite fp32', 'tflite int8 (TFLiteConverter defaults: float I/O, float fallback)']
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field

from .. import capabilities
from ..errors import RecipeError

NO_STEPS = "none"
CALIBRATION_SAMPLE_CHOICES = (100, 200, 500)
DEFAULT_CALIBRATION_SAMPLES = 200

# What each single tool makes when asked for int8 with nothing else said: the files a user gets without
# edgeopt, that the recommendation must be at least as fast as. Options are edgeopt's names for them.
BASELINES = {
    "tflite": ({"format": "tflite", "precision": "int8", "io_type": "float32", "allow_float_ops": True},
               "TFLiteConverter defaults: float I/O, float fallback"),
    "onnx": ({"format": "onnx", "precision": "int8", "quant_format": "qdq", "per_channel": False,
              "calibration_method": "minmax", "int8_variant": "s8"},  # QInt8 weights and activations, no reduce_range
             "onnxruntime quantize_static defaults: QDQ, per-tensor, MinMax"),
}

# Training steps the search tries, by registry name: a few settings each, cheapest first. A step the
# registry does not declare is left out; a declared step missing here is not searched (it needs a
# choice of settings someone has thought about, e.g. a teacher for distillation).
STEP_CHOICES = {
    "prune": [{"target_sparsity": 0.5}, {"target_sparsity": 0.75}, {"m_by_n": "2:4"}],
    "cluster": [{"clusters": 16}],
    "qat": [{}],
    "channels": [{"target": 0.3, "round_to": 16}],  # fewer channels: faster in every runtime (issue 13)
}


@dataclass(frozen=True)
class Candidate:
    export: dict  # format, precision and every option (defaults filled in)
    steps: tuple = ()  # ((step name, options), ...) in order
    calibration_samples: int | None = None  # None: the export calibrates nothing
    role: str = "search"  # "reference" (fp32), "baseline" (a single tool's default int8), "seed", "search"
    note: str = ""

    @property
    def format(self):
        return self.export["format"]

    @property
    def precision(self):
        return self.export["precision"]

    def options(self) -> dict:
        return {k: v for k, v in self.export.items() if k not in ("format", "precision")}

    def recipe(self, name, seed=0, epochs=None) -> dict:
        recipe = {"name": name, "seed": seed, "exports": [dict(self.export)]}
        if self.calibration_samples:
            recipe["data"] = {"calibration_samples": self.calibration_samples}
        if self.steps:
            recipe.update(steps_section([(n, {**o, **({"epochs": epochs} if epochs else {})}) for n, o in self.steps]))
        return recipe

    def identity(self) -> dict:
        """What makes two candidates the same file: the role and note are only how it is described."""
        return {"export": self.export, "steps": [list(s) for s in self.steps],
                "calibration_samples": self.calibration_samples}

    def key(self, context: dict) -> str:
        """The candidate's cache key: its identity plus the model, data and settings it is converted with."""
        blob = json.dumps([self.identity(), context], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def label(self) -> str:
        """'onnx int8 (qoperator, per-tensor), pruned 50%, 100 calibration samples'."""
        cap = capabilities.find(self.format, self.precision)
        defaults = capabilities.default_options(cap) if cap else {}
        changed = [_option_words(k, v) for k, v in sorted(self.options().items()) if defaults.get(k) != v]
        text = f"{self.format} {self.precision}"
        if self.note:
            text += f" ({self.note})"
        elif changed:
            text += f" ({', '.join(changed)})"
        text += "".join(f", {step_words(n, o)}" for n, o in self.steps)
        if self.calibration_samples and self.calibration_samples != DEFAULT_CALIBRATION_SAMPLES:
            text += f", {self.calibration_samples} calibration samples"
        return text

    def to_dict(self) -> dict:
        return {**self.identity(), "role": self.role, "note": self.note, "label": self.label()}

    @classmethod
    def from_dict(cls, d):
        return cls(dict(d["export"]), tuple((n, dict(o)) for n, o in d.get("steps", [])),
                   d.get("calibration_samples"), d.get("role", "search"), d.get("note", ""))


# Options that only mean something for some models: searched only where the model has what they act on.
MODEL_OPTIONS = {"recurrent": "recurrent"}  # option -> the kind of layer (converter.anatomy) it needs


@dataclass
class Space:
    exports: list  # Capability objects the search may use
    step_choices: list = field(default_factory=list)  # [(label, ((name, options), ...)), ...]
    calibration_choices: tuple = (DEFAULT_CALIBRATION_SAMPLES,)
    unused_options: frozenset = frozenset()  # options this model gives no meaning to: kept at their defaults

    @classmethod
    def build(cls, formats=None, precisions=None, calibration_available=None, training=False, model_kinds=None):
        """The space for these formats/precisions; `calibration_available`: how many samples there are;
        `model_kinds`: the kinds of layer the model has ('recurrent', ...), None where unknown (all searched)."""
        unknown = [f for f in formats or [] if f not in capabilities.FORMATS]
        unknown += [p for p in precisions or [] if p not in capabilities.PRECISIONS]
        if unknown:
            raise RecipeError([f"unknown format or precision {u!r} (formats: {', '.join(capabilities.FORMATS)}; "
                               f"precisions: {', '.join(capabilities.PRECISIONS)})" for u in unknown])
        exports = [c for c in capabilities.CAPABILITIES
                   if (not formats or c.format in formats) and (not precisions or c.precision in precisions)]
        if not exports:
            raise RecipeError("no export has both a format and a precision you asked for: see `edgeopt formats`")
        n = calibration_available
        choices = tuple(sorted({min(c, n) for c in CALIBRATION_SAMPLE_CHOICES})) if n else (DEFAULT_CALIBRATION_SAMPLES,)
        unused = frozenset() if model_kinds is None else frozenset(
            option for option, kind in MODEL_OPTIONS.items() if kind not in model_kinds)
        return cls(exports, training_choices() if training else [], choices, unused)

    def searched(self, cap) -> dict:
        """option -> values the search tries for this export, on this model."""
        return {k: v for k, v in searched_options(cap).items() if k not in self.unused_options}

    # ---- the search dimensions, as Optuna sees them ------------------------------------------------
    def suggest(self, trial, stage="post-training") -> Candidate:
        """Draw one candidate through `trial` (define-by-run: options are asked only for the export drawn)."""
        names = [f"{c.format}/{c.precision}" for c in self.exports]
        cap = self.exports[names.index(trial.suggest_categorical("export", names))]
        export = {"format": cap.format, "precision": cap.precision}
        for option, values in self.searched(cap).items():
            export[option] = trial.suggest_categorical(f"{cap.format}/{cap.precision}.{option}", values)
        export = {**export, **{k: v for k, v in capabilities.default_options(cap).items() if k not in export}}
        samples = trial.suggest_categorical("calibration_samples", list(self.calibration_choices)) \
            if cap.needs_calibration else None
        steps = ()
        if stage == "training" and self.step_choices:
            labels = [label for label, _ in self.step_choices]
            steps = dict(self.step_choices)[trial.suggest_categorical("steps", labels)]
        return Candidate(export, steps, samples)

    def params(self, candidate: Candidate) -> dict:
        """The Optuna parameters that make `suggest` return `candidate` (for enqueued trials)."""
        cap = capabilities.find(candidate.format, candidate.precision)
        params = {"export": f"{cap.format}/{cap.precision}"}
        for option in self.searched(cap):
            params[f"{cap.format}/{cap.precision}.{option}"] = candidate.export[option]
        if cap.needs_calibration:
            params["calibration_samples"] = candidate.calibration_samples
        if candidate.steps:
            params["steps"] = steps_label(candidate.steps)
        return params

    def seeds(self) -> list:
        """Tried first, in this order: fp32 references, each single tool's default int8, edgeopt's defaults."""
        ordered = [c for c in self.exports if c.precision == "fp32"]
        ordered += [c for c in self.exports if c.precision != "fp32"]
        out, seen = [], set()

        def add(candidate):
            ident = json.dumps(candidate.identity(), sort_keys=True)
            if ident not in seen:
                seen.add(ident)
                out.append(candidate)

        for cap in ordered:
            if cap.precision == "fp32":
                add(self._default(cap, role="reference"))
        for fmt, (export, note) in BASELINES.items():
            cap = capabilities.find(fmt, export["precision"])
            if cap in self.exports:
                add(Candidate({**capabilities.default_options(cap), **export}, (), self._samples(cap), "baseline", note))
        for cap in ordered:
            add(self._default(cap, role="seed"))
        return out

    def size(self, stage="post-training") -> int:
        """How many distinct candidates the stage holds (the search stops early when it has seen them all)."""
        per_export = sum(_product_size(self.searched(c)) * (len(self.calibration_choices) if c.needs_calibration else 1)
                         for c in self.exports)
        return per_export * (len(self.step_choices) if stage == "training" and self.step_choices else 1)

    def _default(self, cap, role):
        return Candidate({"format": cap.format, "precision": cap.precision, **capabilities.default_options(cap)},
                         (), self._samples(cap), role)

    def _samples(self, cap):
        if not cap.needs_calibration:
            return None
        return min(self.calibration_choices, key=lambda n: abs(n - DEFAULT_CALIBRATION_SAMPLES))


def searched_options(cap) -> dict:
    """option -> values the search tries: declared value lists and true/false; other options keep defaults."""
    found = {}
    for name, (allowed, _default, _help) in cap.options.items():
        if isinstance(allowed, tuple):
            found[name] = list(allowed)
        elif allowed is bool:
            found[name] = [False, True]
    return found


def _product_size(options: dict) -> int:
    return len(list(itertools.product(*options.values()))) if options else 1


# ---- training steps -------------------------------------------------------------------------------
def declared_steps() -> list:
    """Step names the registry declares (edgeopt.steps), or ['prune'] where only the recipe's prune: exists."""
    try:
        from ..steps import STEPS  # lands with the optimization-steps work
    except ImportError:
        return ["prune"]
    return list(STEPS)


def training_choices() -> list:
    """[(label, ((step, options),)), ...] for every step the registry declares and the search knows how to set."""
    choices = []
    for name in declared_steps():
        for options in STEP_CHOICES.get(name, []):
            steps = ((name, dict(options)),)
            choices.append((steps_label(steps), steps))
    return choices


def steps_section(steps) -> dict:
    """The recipe section for these steps: `optimize:` where the recipe has it, else `prune:`."""
    from ..recipe import Recipe

    if "optimize" in Recipe.model_fields:
        return {"optimize": [{name: options} for name, options in steps]}
    if [n for n, _ in steps] != ["prune"]:
        raise RecipeError(f"steps {[n for n, _ in steps]} need the optimize: section, which this edgeopt lacks")
    return {"prune": steps[0][1]}


def steps_label(steps) -> str:
    return "+".join(step_words(n, o).replace(" ", "") for n, o in steps) or NO_STEPS


def step_words(name, options) -> str:
    if name == "prune" and options.get("m_by_n"):
        return f"pruned {options['m_by_n']}"
    if name == "prune":
        return f"pruned {round(options.get('target_sparsity', 0.5) * 100)}%"
    if name == "cluster":
        return f"clustered {options.get('clusters', '')}".strip()
    if name == "channels":
        return f"channels {round(options.get('target', 0.3) * 100)}%"
    return {"qat": "quantization-aware trained"}.get(name, name)


def _option_words(option, value) -> str:
    if option == "per_channel":
        return "per-channel" if value else "per-tensor"
    if option == "allow_float_ops":
        return "float fallback" if value else "integer only"
    if option == "io_type":
        return f"{value} I/O"
    if option in ("fallback", "recurrent"):  # 'auto' alone would not say which
        return f"{option} {value}"
    return str(value)
