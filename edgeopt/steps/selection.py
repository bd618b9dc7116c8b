"""Which layers a step touches: chosen by layer name or by class name (`Dense`, `Conv2D`), or every layer."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LayerSelection(BaseModel):
    """Options shared by the steps that act layer by layer."""

    layers: list[str] | None = Field(None, description="layer names or classes to act on (default: every "
                                     "layer the tool supports)")
    exclude: list[str] = Field(default_factory=list, description="layer names or classes to leave as they are")


def matches(layer, selectors) -> bool:
    return layer.name in selectors or type(layer).__name__ in selectors


def selected(layer, spec) -> bool:
    if spec.exclude and matches(layer, spec.exclude):
        return False
    return spec.layers is None or matches(layer, spec.layers)


def unknown(model, selectors, where) -> list[str]:
    """A problem for every selector that names no layer of `model` (with the names and classes it has)."""
    layers = list(model.layers)
    names = {layer.name for layer in layers} | {type(layer).__name__ for layer in layers}
    missing = [s for s in selectors if s not in names]
    if not missing:
        return []
    listed = ", ".join(f"{layer.name} ({type(layer).__name__})" for layer in layers)
    return [f"{where}: {', '.join(map(repr, missing))} names no layer or layer class of this model (it has: {listed})"]
