"""Quantization-aware training with tensorflow-model-optimization (`quantize_apply`): fake-quant int8 in the
forward pass while fine-tuning, so TFLiteConverter and tf2onnx export the ranges training learned.

After pruning and/or clustering, tfmot's collaborative schemes keep what those steps did: PQAT
(Default8BitPrunePreserveQuantizeScheme) keeps zeros zero, CQAT (Default8BitClusterPreserveQuantizeScheme)
keeps the clusters, PCQAT both.

Gotchas: nothing can train after QAT (its layers are tfmot wrappers), so it comes last; its model is saved
as HDF5 (tfmot's wrappers do not load back from .keras): load QAT and PQAT files under tfmot's
`quantize_scope`; CQAT/PCQAT files only by rebuilding on the clustered parent and `load_weights` (see
`restore`); BatchNorm statistics are frozen by default (batchnorm: freeze).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..errors import ConversionError
from .training import FineTuneSpec

PRESERVE = ("auto", "none", "sparsity", "clusters", "sparsity+clusters")


class QATSpec(FineTuneSpec):
    preserve: Literal["auto", "none", "sparsity", "clusters", "sparsity+clusters"] = Field(
        "auto", description="what earlier steps made that QAT keeps: sparsity (PQAT), clusters (CQAT), both "
        "(PCQAT); auto: whatever prune/cluster steps came before")
    learning_rate: float = Field(1e-4, gt=0, le=10, description="peak learning rate (reached after any warm-up)")
    epochs: int = Field(2, ge=1, le=1000, description="passes over the training data")
    batchnorm: Literal["train", "freeze"] = Field("freeze", description="freeze: BatchNorm statistics stay "
                                                  "fixed (inference mode) while training")


    def problems(self) -> list[str]:
        found = super().problems()
        if self.mixed_precision:
            found.append("mixed_precision does not apply to qat: bfloat16 keeps 8 significant bits, too few to "
                         "simulate int8 rounding (and tfmot's QAT wrappers cannot be rebuilt in float32 afterwards)")
        return found


def resolve(spec, earlier):
    if spec.preserve != "auto":
        return spec
    kept = [what for step, what in (("prune", "sparsity"), ("cluster", "clusters")) if step in earlier]
    return spec.model_copy(update={"preserve": "+".join(kept) or "none"})


def tag(spec) -> str:
    return "qat"


def qat(model, spec, train, *, seed=0, progress=True, log=print, fine_tune):
    """Wrap `model` for quantization-aware training and fine-tune it; return (QAT model, record)."""
    quantized, scheme_name = _quantization_aware(model, spec)
    wrapped = [layer.layer.name for layer in quantized.layers if hasattr(layer, "quantize_config") and
               getattr(layer, "layer", None) is not None]
    log(f"quantization-aware training of {len(wrapped)} layer(s) ({scheme_name}, {spec.epochs} epochs)")
    fine_tune(quantized, train, spec.epochs)
    return quantized, {"scheme": scheme_name, "layers": wrapped}


def restore(parent, spec, path):
    """The QAT model saved at `path`, rebuilt on its parent: tfmot's cluster-preserving wrappers cannot be
    loaded from their own file (their variables depend on the weights they wrap), but take its weights."""
    quantized, _ = _quantization_aware(parent, spec)
    quantized.load_weights(path)
    return quantized


def _quantization_aware(model, spec):
    import tensorflow_model_optimization as tfmot

    quantization = tfmot.quantization.keras
    scheme, scheme_name = _scheme(tfmot, spec.preserve)
    try:
        with quantization.quantize_scope():
            annotated = quantization.quantize_annotate_model(model)
            return quantization.quantize_apply(annotated, scheme), scheme_name
    except (ValueError, RuntimeError) as e:
        raise ConversionError(f"tfmot cannot make {model.name!r} quantization-aware: {_first_line(e)}") from None


def _scheme(tfmot, preserve):
    combine = tfmot.experimental.combine
    if preserve == "sparsity":
        return combine.Default8BitPrunePreserveQuantizeScheme(), "PQAT (Default8BitPrunePreserveQuantizeScheme)"
    if preserve == "clusters":
        return combine.Default8BitClusterPreserveQuantizeScheme(), "CQAT (Default8BitClusterPreserveQuantizeScheme)"
    if preserve == "sparsity+clusters":
        return (combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True),
                "PCQAT (Default8BitClusterPreserveQuantizeScheme, preserve_sparsity)")
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import default_8bit_quantize_scheme

    return default_8bit_quantize_scheme.Default8BitQuantizeScheme(), "QAT (Default8BitQuantizeScheme)"


def verify(spec, record, measured) -> tuple[list, dict]:
    """What earlier steps made is still there: sparsity within 2% of before, no more distinct values than before."""
    problems, tolerance = [], {}
    before = measured.get("before", {})
    if "sparsity" in spec.preserve and before.get("sparsity"):
        was, now = before["sparsity"]["model"], measured["sparsity"]["model"]
        tolerance["min_sparsity"] = round(was * 0.98, 4)
        if now < was * 0.98:
            problems.append(f"QAT undid pruning: sparsity {now:.3f}, was {was:.3f}")
    if "clusters" in spec.preserve and before.get("distinct_values"):
        grew = {n: (before["distinct_values"][n], v) for n, v in measured["distinct_values"].items()
                if n in before["distinct_values"] and v > before["distinct_values"][n]}
        problems += [f"QAT undid clustering in layer {n}: {now} distinct values, was {was}" for n, (was, now) in grew.items()]
    return problems, tolerance


def _first_line(e) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0][:400] if lines else type(e).__name__
