"""The recipe's `optimize:` sequence: entries as written, validated against the step declarations, and the
plan that runs them (with every 'auto' option made explicit).

An entry is written `prune`, `{prune: {target_sparsity: 0.8}}`, or `{step: prune, target_sparsity: 0.8}`;
a top-level `prune:` section (the older form) is the same as a prune step first in the sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from ..errors import DataError
from .registry import STEPS, Step

# Teachers named by role rather than by file.
TEACHER_ROLES = ("auto", "none", "source")


class StepEntry(BaseModel):
    """One optimization step as the recipe gives it; `options` end up complete (defaults filled in)."""

    model_config = ConfigDict(extra="allow")

    step: str
    options: dict = Field(default_factory=dict)
    origin: str | None = Field(None, exclude=True)  # how the user wrote it, for messages: 'optimize[1].cluster'
    _problems: list = PrivateAttr(default_factory=list)
    _spec: object = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, value):
        if isinstance(value, str):
            return {"step": value}
        if isinstance(value, dict) and "step" not in value and len(value) == 1:
            (name, options), = value.items()
            return {"step": name, "options": options if options is not None else {}}
        return value

    @model_validator(mode="after")
    def _validate_options(self):
        extra = dict(self.model_extra or {})
        for key in extra:
            delattr(self, key)
        self.options = {**extra, **self.options}
        step = STEPS.get(self.step)
        if step is None:
            return self  # reported by sequence_problems(), with the valid names
        try:
            self._spec = step.spec.model_validate(self.options)
        except ValidationError as e:
            from ..recipe import _describe

            # A whole-spec validator's error has no field: "optimize[0].channels: ...", not "....recipe: ..."
            self._problems = [f"{self.where}{'.' if err['loc'] else ': '}{_describe(err).removeprefix('recipe: ')}"
                              for err in e.errors()]
            return self
        checks = getattr(self._spec, "problems", None)  # combinations pydantic cannot see (FineTuneSpec has some)
        self._problems = [f"{self.where}: {p}" for p in (checks() if checks else [])]
        self.options = self._spec.model_dump(mode="json")
        return self

    @property
    def where(self) -> str:
        return self.origin or self.step

    @property
    def spec(self):
        return self._spec


def entries_from_recipe_data(data: dict) -> dict:
    """Fold a top-level `prune:` into `optimize:` (first) and label every entry for messages."""
    if not isinstance(data, dict):
        return data
    entries = data.get("optimize")
    labelled = []
    if isinstance(entries, list):
        for i, entry in enumerate(entries):
            labelled.append(_label(entry, f"optimize[{i}]"))
    elif entries is not None:
        return data  # pydantic reports that optimize must be a list
    if data.get("prune") is not None:
        labelled.insert(0, {"step": "prune", "options": data["prune"], "origin": "prune"})
    data = {k: v for k, v in data.items() if k != "prune"}
    data["optimize"] = labelled
    return data


def _label(entry, where):
    normalised = StepEntry._normalise(entry)
    if isinstance(normalised, dict) and "step" in normalised:
        return {**normalised, "origin": f"{where}.{normalised['step']}"}
    return entry


def sequence_problems(entries: list[StepEntry]) -> list[str]:
    """Every problem of the sequence at once: unknown steps, bad options, an order that undoes work."""
    problems = []
    names = [e.step for e in entries]
    for i, e in enumerate(entries):
        step = STEPS.get(e.step)
        if step is None:
            problems.append(f"{e.where}: unknown step {e.step!r} (valid steps: {', '.join(STEPS)})")
            continue
        problems += e._problems
        if e.step in names[:i] and e.origin != "prune" and entries[names.index(e.step)].origin != "prune":
            problems.append(f"{e.where}: {e.step} is listed twice; list each step once")
        if step.last and i < len(entries) - 1 and any(STEPS.get(n) and STEPS[n].trains for n in names[i + 1:]):
            problems.append(f"{e.where}: {e.step} must come last: nothing can be trained after it "
                            f"(move {', '.join(names[i + 1:])} before it)")
        if e.spec is not None and step.replaces_model and step.replaces_model(e.spec) and i > 0:
            problems.append(f"{e.where}: {e.step} builds a new model, so the steps before it ({', '.join(names[:i])}) "
                            "would be lost: put it first")
        if e.step == "prune" and "cluster" in names[:i]:
            problems.append(f"{e.where}: pruning after clustering undoes the clusters; prune first (clustering then "
                            "keeps the zeros)")
        problems += _teacher_problems(e)
    if names.count("prune") > 1 and any(e.origin == "prune" for e in entries):
        problems.append("prune is given both at the top level and in optimize: give it in one place")
    return problems


def _teacher_problems(entry) -> list[str]:
    teacher = (entry.spec and getattr(entry.spec, "teacher", None)) or None
    if teacher is None or teacher in TEACHER_ROLES or Path(teacher).exists():
        return []
    return [f"{entry.where}.teacher: {teacher!r} is neither auto, none, source, nor an existing model file"]


@dataclass
class PlannedStep:
    step: Step
    spec: object  # the step's options, 'auto' values resolved
    where: str
    teacher: str | None  # 'source', a path, or None (labels only); None for steps that do not train

    @property
    def name(self):
        return self.step.name


def plan(entries: list[StepEntry]) -> list[PlannedStep]:
    """The steps to run, each spec with its 'auto' options made explicit (what the manifest records)."""
    planned, earlier, distil_from = [], [], None
    for e in entries:
        step, spec = STEPS[e.step], e.spec
        if step.resolve:
            spec = step.resolve(spec, earlier)
        teacher = getattr(spec, "teacher", None)
        if teacher == "auto":
            teacher = distil_from or "none"
            spec = spec.model_copy(update={"teacher": teacher})
        if e.step == "distill":
            distil_from = teacher
        planned.append(PlannedStep(step, spec, e.where, None if teacher in (None, "none") else teacher))
        earlier.append(e.step)
    return planned


def needing_labels(planned: list[PlannedStep]) -> list[str]:
    """The steps that train on labels (no teacher supplies their targets)."""
    return [p.where for p in planned if p.step.trains and p.teacher is None]


def missing_training_data(planned) -> list[str]:
    training = [p.where for p in planned if p.step.trains]
    if not training:
        return []
    return [f"{_verb(training, 'fine-tunes', 'fine-tune')} the model, so training data is needed: pass --train "
            "train.npz (x, and y unless every training step distils) or train=... in the API, or drop those steps"]


def synthetic_training_warning(planned) -> str:
    """The warning for synthetic training inputs, or DataError when a step needs labels they cannot have."""
    labelled = needing_labels(planned)
    if labelled:
        raise DataError(
            f"training data cannot be synthetic: {_verb(labelled, 'trains', 'train')} on labels, which random inputs "
            "do not have. Pass --train train.npz (x, y), or let those steps distil (teacher: source, or a distill step "
            "first): a teacher's outputs on random inputs need no labels")
    return ("warning: training on synthetic inputs: the steps learn the teacher's outputs on random inputs, which may "
            "not carry over to real data (a ds_cnn student distilled from the digits CNN on noise agreed with it no "
            "better than chance on real digits)")


def refuse_unlabelled_training(planned, train):
    labelled = needing_labels(planned)
    if train is not None and train.y is None and labelled:
        raise DataError(
            f"training data from {train.source} has no labels (y), but {_verb(labelled, 'trains', 'train')} on labels: "
            "add y to the data, or let those steps distil from a teacher (teacher: source, or a distill step first)")


def _verb(subjects, one, many):
    return f"{', '.join(subjects)} {one if len(subjects) == 1 else many}"


def model_problems(planned: list[PlannedStep], model) -> list[str]:
    problems = []
    for p in planned:
        if p.step.model_problems:
            problems += p.step.model_problems(model, p.spec, p.where)
    return problems
