"""The recipe: what to do to a model. One validated pydantic model, loadable from YAML.

Example:
    >>> from edgeopt.recipe import Recipe
    >>> r = Recipe.model_validate({"optimize": [{"prune": {"target_sparsity": 0.8}}, "qat"],
    ...                            "exports": [{"format": "tflite", "precision": "int8"}]})
    >>> r.exports[0].options
    {'io_type': 'int8', 'allow_float_ops': False}
    >>> [s.step for s in r.optimize]
    ['prune', 'qat']
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from . import capabilities
from .errors import RecipeError
from .steps.plan import StepEntry, entries_from_recipe_data, sequence_problems


class DataSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train: str | None = Field(None, description="training data for the optimize steps: .npz (x and, unless every "
                              "training step distils, y), module:function, 'digits', or 'synthetic' (distillation only)")
    calibration: str | None = Field(None, description="representative inputs for int8: .npz, module:function, 'digits'")
    evaluation: str | None = Field(None, description="inputs (and labels) to check every artifact on")
    calibration_samples: int = Field(200, ge=1, le=100_000)
    evaluation_samples: int = Field(1000, ge=1, le=1_000_000)


class ExportSpec(BaseModel):
    # Options may be given flat ({format: onnx, precision: int8, quant_format: qdq}) or under `options`.
    model_config = ConfigDict(extra="allow")

    format: str
    precision: str = "fp32"
    options: dict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _gather_flat_options(self):
        extra = dict(self.model_extra or {})
        if extra:
            self.options = {**extra, **self.options}
            for k in extra:
                delattr(self, k)
        cap = capabilities.find(self.format, self.precision)
        if cap:  # unknown combinations are reported by Recipe.problems(), with the valid values
            self.options = {**capabilities.default_options(cap), **self.options}
        return self

    @property
    def key(self):
        return (self.format, self.precision, tuple(sorted(self.options.items())))


class CheckSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tolerances: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="per precision overrides, e.g. {int8: {min_top1_agreement: 0.9}}"
    )


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    name: str | None = Field(None, description="stem of the artifact file names (default: the model's name)")
    seed: int = 0
    fixed_batch: int = Field(
        1, ge=1, le=1024,
        description="batch the TFLite exports are traced at when the model needs a static one (recurrent layers, "
        "an input with a fixed batch); other models keep a dynamic batch",
    )
    data: DataSpec = Field(default_factory=DataSpec)
    targets: list[str] = Field(
        default_factory=list,
        description="CPUs the files will run on (local, x86-64-avx2, x86-64-vnni, aarch64, aarch64-emulated, "
        "ssh://...): ONNX int8 exports choose their int8_variant for them; none: the portable variant",
    )
    optimize: list[StepEntry] = Field(default_factory=list, description="optimization steps, in order (a "
                                      "top-level prune: section is the same as a prune step first)")
    exports: list[ExportSpec] = Field(default_factory=lambda: default_exports())
    check: CheckSpec = Field(default_factory=CheckSpec)

    @model_validator(mode="before")
    @classmethod
    def _fold_prune(cls, data):
        data = entries_from_recipe_data(data)
        if isinstance(data, dict) and "exports" not in data and _quantization_aware(data.get("optimize")):
            data["exports"] = [{"format": c.format, "precision": c.precision} for c in capabilities.after_qat()]
        return data

    def problems(self) -> list[str]:
        """Every problem capability checks find, all at once (pydantic already checked the types)."""
        problems = (_export_problems(enumerate(self.exports)) + _tolerance_problems(self.check.tolerances)
                    + sequence_problems(self.optimize) + _target_problems(self.targets))
        if self.quantization_aware():
            problems += _exports_after_qat(self.exports)
        return problems

    def quantization_aware(self) -> bool:
        """A step learns int8 ranges (QAT): the exports take them from the model instead of calibrating."""
        return _quantization_aware([e.step for e in self.optimize])

    def steps(self):
        """The optimize sequence as it will run (steps.plan.PlannedStep, 'auto' options resolved)."""
        from .steps.plan import plan

        return plan(self.optimize)

    def needs_calibration(self) -> list[str]:
        if self.quantization_aware():
            return []  # the ranges were learned; TFLite's converter is given training inputs it does not use
        return [
            f"{e.format}/{e.precision}" for e in self.exports
            if (cap := capabilities.find(e.format, e.precision)) and cap.needs_calibration
        ]

    def to_dict(self):
        return self.model_dump(mode="json")


def _target_problems(targets) -> list[str]:
    from .bench.kernels import NAMED_CPUS

    known = ["local", *NAMED_CPUS]
    return [f"targets: unknown target {t!r} (valid: {', '.join(known)}, or ssh://user@host)"
            for t in targets if t not in known and not t.startswith("ssh://")]


def _quantization_aware(entries) -> bool:
    from .steps.registry import STEPS

    names = [e.get("step") if isinstance(e, dict) else e for e in (entries or [])]
    return any(STEPS[n].quantizes for n in names if isinstance(n, str) and n in STEPS)


def _exports_after_qat(exports) -> list[str]:
    offered = ", ".join(f"{c.format}/{c.precision}" for c in capabilities.after_qat())
    problems = []
    for i, e in enumerate(exports):
        cap = capabilities.find(e.format, e.precision)
        if cap is None:
            continue
        if not cap.after_qat:
            problems.append(f"exports[{i}]: {e.format}/{e.precision} cannot follow qat, whose model holds learned int8 "
                            f"ranges (after qat: {offered}); drop it, or export it from a run without qat")
            continue
        if e.format == "onnx":
            unused = sorted(k for k, v in e.options.items() if k != "opset" and v != cap.options[k][1])
            if unused:
                problems.append(f"exports[{i}]: {', '.join(unused)} do not apply after qat: the learned ranges are "
                                "written as QDQ nodes, onnxruntime's quantizer does not run")
    return problems


def _export_problems(numbered) -> list[str]:
    """`numbered`: (index in the recipe, ExportSpec) pairs."""
    problems, seen = [], set()
    for i, e in numbered:
        cap = capabilities.find(e.format, e.precision)
        if e.format not in capabilities.FORMATS:
            problems.append(f"exports[{i}]: unknown format {e.format!r} (valid formats: {', '.join(capabilities.FORMATS)})")
        elif cap is None:
            valid = ", ".join(capabilities.precisions_for(e.format))
            problems.append(f"exports[{i}]: {e.format} has no precision {e.precision!r} (valid: {valid})")
        else:
            problems.extend(f"exports[{i}]: {p}" for p in capabilities.validate_options(cap, e.options))
        if e.key in seen:
            problems.append(f"exports[{i}]: {e.format}/{e.precision} with these options is listed twice")
        seen.add(e.key)
    return problems


def _tolerance_problems(tolerances) -> list[str]:
    from .check import DEFAULT_TOLERANCES

    names = sorted({name for tol in DEFAULT_TOLERANCES.values() for name in tol})
    problems = []
    for p in sorted(tolerances):
        if p not in capabilities.PRECISIONS:
            problems.append(f"check.tolerances: unknown precision {p!r} (valid: {', '.join(capabilities.PRECISIONS)})")
        for name in sorted(set(tolerances[p]) - set(names)):
            problems.append(f"check.tolerances.{p}: unknown tolerance {name!r} (valid: {', '.join(names)})")
    return problems


def _problems_of_valid_parts(data) -> list[str]:
    """Capability problems of the parts of an invalid recipe that validate on their own, so that one
    message holds every bad value (pydantic stops at types and never reaches these checks)."""
    if not isinstance(data, dict):
        return []
    exports = data.get("exports") if isinstance(data.get("exports"), list) else []
    parsed = [(i, _valid(ExportSpec, e)) for i, e in enumerate(exports)]
    problems = _export_problems([(i, e) for i, e in parsed if e is not None])
    tolerances = _get(data, "check", "tolerances")
    if isinstance(tolerances, dict):  # names are checkable even where a value is not a number
        problems += _tolerance_problems({p: t for p, t in tolerances.items() if isinstance(t, dict)})
    targets = data.get("targets")
    if isinstance(targets, list):
        problems += _target_problems([t for t in targets if isinstance(t, str)])
    return problems + _step_problems(data)


def _step_problems(data) -> list[str]:
    """Problems of the optimize entries (and a top-level prune:) that parse as entries."""
    folded = entries_from_recipe_data(data).get("optimize")
    entries = [e for e in (_valid(StepEntry, e) for e in (folded if isinstance(folded, list) else [])) if e is not None]
    return sequence_problems(entries)


def _get(data, *keys):
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _valid(model, value):
    try:
        return model.model_validate(value)
    except ValidationError:
        return None  # its own errors are among pydantic's


def default_exports():
    return [ExportSpec(format=c.format, precision=c.precision) for c in capabilities.CAPABILITIES]


def build_recipe(data) -> Recipe:
    """Validate a dict (or pass a Recipe through); raise RecipeError listing every problem."""
    if isinstance(data, Recipe):
        recipe = data
    else:
        try:
            recipe = Recipe.model_validate(data or {})
        except ValidationError as e:
            problems = [_describe(err) for err in e.errors()] + _problems_of_valid_parts(data)
            raise RecipeError(list(dict.fromkeys(problems))) from None
    problems = recipe.problems()
    if problems:
        raise RecipeError(problems)
    return recipe


def load_recipe(path) -> Recipe:
    """Read a recipe YAML file. Relative data/model paths are taken relative to the YAML's folder."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise RecipeError(f"recipe file {str(path)!r} does not exist") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"recipe file {str(path)!r} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"recipe file {str(path)!r} must hold a mapping (model:, data:, optimize:, exports:)")
    _resolve_paths(data, path.parent)
    return build_recipe(data)


def _resolve_paths(data, base: Path):
    def resolve(value):
        if isinstance(value, str) and (value.endswith((".npz", ".keras", ".h5")) or "/" in value) and ":" not in value:
            p = Path(value)
            return str(p if p.is_absolute() else base / p)
        return value

    if "model" in data:
        data["model"] = resolve(data["model"])
    for k in ("train", "calibration", "evaluation"):
        if isinstance(data.get("data"), dict) and k in data["data"]:
            data["data"][k] = resolve(data["data"][k])
    for options in _step_options(data):
        if options.get("teacher") not in (None, "auto", "none", "source"):
            options["teacher"] = resolve(options["teacher"])


def _step_options(data):
    """The option mappings of every optimize entry (and of a top-level prune:), in any of their written forms."""
    entries = [{"prune": data["prune"]}] if isinstance(data.get("prune"), dict) else []
    entries += data.get("optimize") if isinstance(data.get("optimize"), list) else []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        if "step" in entry:
            yield entry  # options written flat beside `step`
            if isinstance(entry.get("options"), dict):
                yield entry["options"]
        elif len(entry) == 1 and isinstance(next(iter(entry.values())), dict):
            yield next(iter(entry.values()))


def _describe(err) -> str:
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".") or "recipe"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field (check its spelling)"
    elif err["type"] == "value_error":  # a validator's own message, without pydantic's 'Value error, ' prefix
        msg = str(err["ctx"]["error"])
    elif err["type"] == "literal_error":
        msg = f"{msg}, got {err.get('input')!r}"
    return f"{loc}: {msg}"
