"""The recipe: what to do to a model. One validated pydantic model, loadable from YAML.

Example:
    >>> from edgeopt.recipe import Recipe
    >>> r = Recipe.model_validate({"prune": {"target_sparsity": 0.5},
    ...                            "exports": [{"format": "tflite", "precision": "int8"}]})
    >>> r.exports[0].options
    {'io_type': 'int8', 'allow_float_ops': False}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from . import capabilities
from .errors import RecipeError


class DataSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train: str | None = Field(None, description="training data for pruning: .npz (x, y), module:function, or 'digits'")
    calibration: str | None = Field(None, description="representative inputs for int8: .npz, module:function, 'digits'")
    evaluation: str | None = Field(None, description="inputs (and labels) to check every artifact on")
    calibration_samples: int = Field(200, ge=1, le=100_000)
    evaluation_samples: int = Field(1000, ge=1, le=1_000_000)


class PruneSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_sparsity: float = Field(0.5, gt=0.0, lt=1.0)
    schedule: Literal["polynomial", "constant"] = "polynomial"
    m_by_n: str | None = Field(None, pattern=r"^\d+:\d+$", description="structured sparsity, e.g. '2:4'")
    epochs: int = Field(4, ge=1, le=1000)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-3, gt=0, description="peak rate of the cosine-decayed Adam fine-tuning")
    loss: str = Field("auto", description="a Keras loss name, or 'auto' (the model's compiled loss, else inferred)")


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
    prune: PruneSpec | None = None
    exports: list[ExportSpec] = Field(default_factory=lambda: default_exports())
    check: CheckSpec = Field(default_factory=CheckSpec)

    def problems(self) -> list[str]:
        """Every problem capability checks find, all at once (pydantic already checked the types)."""
        return (_export_problems(enumerate(self.exports)) + _tolerance_problems(self.check.tolerances)
                + _m_by_n_problems(self.prune.m_by_n if self.prune else None))

    def needs_calibration(self) -> list[str]:
        return [
            f"{e.format}/{e.precision}" for e in self.exports
            if (cap := capabilities.find(e.format, e.precision)) and cap.needs_calibration
        ]

    def to_dict(self):
        return self.model_dump(mode="json")


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


def _m_by_n_problems(m_by_n) -> list[str]:
    if isinstance(m_by_n, str) and re.fullmatch(r"\d+:\d+", m_by_n):  # other strings: pydantic's pattern error
        m, n = map(int, m_by_n.split(":"))
        if not 0 < m < n:
            return [f"prune.m_by_n: {m_by_n!r} must be M:N with 0 < M < N, e.g. '2:4'"]
    return []


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
    return problems + _m_by_n_problems(_get(data, "prune", "m_by_n"))


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
        raise RecipeError(f"recipe file {str(path)!r} must hold a mapping (model:, data:, prune:, exports:)")
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


def _describe(err) -> str:
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".") or "recipe"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field (check its spelling)"
    elif err["type"] == "literal_error":
        msg = f"{msg}, got {err.get('input')!r}"
    return f"{loc}: {msg}"
