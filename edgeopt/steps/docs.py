"""The step tables `edgeopt steps` prints and the README shows, rendered from the declarations (registry.py)."""

from __future__ import annotations

import json

from pydantic_core import PydanticUndefined

from ..table import render
from .registry import STEPS
from .training import FineTuneSpec


def default_text(field) -> str:
    value = field.default_factory() if field.default is PydanticUndefined and field.default_factory else field.default
    return _text(value)


def _text(value) -> str:
    if isinstance(value, str):
        return value
    return "none" if value is None else json.dumps(list(value) if isinstance(value, tuple) else value)


def steps_table(markdown=False) -> str:
    rows = []
    for step in STEPS.values():
        changed = ", ".join(f"{k}={_text(v)}" for k, v in step.changed_defaults().items())
        rows.append([step.name, step.summary, step.tool, changed or "-"])
    return render(["step", "what it does", "made by", "fine-tuning defaults it changes"], rows, markdown=markdown)


def options_table(step, markdown=False) -> str:
    rows = [[f"`{k}`" if markdown else k, default_text(f), f.description or ""] for k, f in step.own_options().items()]
    return render(["option", "default", "what it does"], rows, markdown=markdown)


def fine_tune_table(markdown=False) -> str:
    rows = [[f"`{k}`" if markdown else k, default_text(f), f.description or ""]
            for k, f in FineTuneSpec.model_fields.items()]
    return render(["option", "default", "what it does"], rows, markdown=markdown)


def reference(markdown=False) -> str:
    """Every table: the steps, each step's own options, the shared fine-tuning options."""
    head = (lambda text: f"**{text}**") if markdown else (lambda text: text)
    parts = [steps_table(markdown)]
    for step in STEPS.values():
        parts += [head(f"{step.name} options"), options_table(step, markdown)]
    parts += [head("fine-tuning options of every training step"), fine_tune_table(markdown)]
    return "\n\n".join(parts)
