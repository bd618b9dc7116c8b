"""Where the error enters: per-layer error, causes, TFLite's debugger statistics and float fallbacks.

`explain_files` runs the TensorFlow-free comparison for every quantized file, then (only where
TFLite int8 files are involved) one child process with TensorFlow for the quantization debugger,
then makes and measures the fallbacks of the files that failed their check.
"""

from __future__ import annotations

import math
import traceback

from ..errors import EdgeoptError
from . import fallback as fallbacks
from .causes import find_causes
from .facts import file_facts
from .layers import attribute, compare_layers


def explain_files(ctx, artifacts, make_fallbacks=True) -> dict:
    """{artifact id: accuracy section} for each quantized artifact with a float parent."""
    found = {}
    for art in artifacts:
        parent = ctx.parent(art)
        if parent is None:
            found[art.id] = {"error": f"no fp32 {art.format} file of the same model to compare with"}
            continue
        ctx.log(f"explain: per-layer error of {art.id} against {parent.id}")
        try:
            found[art.id] = _layers_of(ctx, art, parent)
        except Exception as e:  # one file's analysis failing must not cost the others'
            found[art.id] = {"error": f"{type(e).__name__}: {str(e).strip()[:300]}",
                             "traceback": traceback.format_exc(limit=4)}
    failed = [a for a in artifacts if _failed_check(a) and "layers" in found.get(a.id, {})]
    _debugger(ctx, artifacts, found, failed if make_fallbacks else [])
    if make_fallbacks:
        _other_fallbacks(ctx, failed, found)
        pairs = [(a, found[a.id].get("fallbacks", [])) for a in failed]
        if any(fb.get("_path") for _, fbs in pairs for fb in fbs):
            try:
                fallbacks.measure_latency(ctx, pairs)
            except EdgeoptError as e:
                for _, fbs in pairs:
                    for fb in fbs:
                        fb.setdefault("latency_error", str(e))
    return found


def _failed_check(art) -> bool:
    return bool(art.check) and not art.check.get("passed", True)


def _layers_of(ctx, art, parent) -> dict:
    records = compare_layers(ctx.path(parent), ctx.path(art), ctx.data.x, ctx.keras3, ctx.output_layers,
                             samples=ctx.samples)
    facts = file_facts(ctx.path(art), art.format, art.precision, ctx.data.x, ctx.data.reference, ctx.keras3,
                       bool(art.facts.get("synthetic_calibration")))
    quantized = {r["layer"] for r in records if r.get("quantization")} | set(facts.get("int8_weight_layers", []))
    summary = attribute(records, ctx.threshold_db, quantized if art.precision != "fp16" else None,
                        failed=_failed_check(art))
    return {"reference": parent.id, "layers": records, **summary, "facts": facts,
            "causes": find_causes(records, summary, facts), "check": _check(art), "fallbacks": []}


def _check(art) -> dict | None:
    if not art.check:
        return None
    keys = ("passed", "problems", "max_abs_error", "cosine", "top1_agreement", "accuracy", "reference_accuracy")
    found = {k: art.check.get(k) for k in keys}
    found["relative_max_error"] = max((o.get("relative_max_error", 0.0) for o in art.check.get("outputs", [])),
                                      default=None)
    return found


def _debugger(ctx, artifacts, found, failed):
    """TFLite int8: the debugger's per-layer statistics, and the fallbacks of failed files, in one child."""
    from ..converter.quant_debug import run_isolated

    tflite = [a for a in artifacts if a.format == "tflite" and a.precision == "int8" and "layers" in found[a.id]]
    model = ctx.keras_model_path(tflite[0]) if tflite else None
    if not tflite or model is None:
        return
    requests = [{"id": a.id, "options": a.options, "stats": True,
                 "keep_float": fallbacks.candidate_sets(found[a.id]["layers"], found[a.id].get("first_divergent_layer")) if a in failed else []}
                for a in tflite]
    ctx.log(f"explain: TFLite's quantization debugger on {', '.join(a.id for a in tflite)}")
    try:
        batch = (ctx.manifest.source.get("export_batch") or {}).get("tflite")
        result = run_isolated(model, requests, ctx.calibration().x, [x[:ctx.samples] for x in ctx.data.x],
                              batch=batch, trust_model_code=ctx.trust_model_code)
    except Exception as e:  # TensorFlow missing or crashed: the TF-free figures stand
        for a in tflite:
            found[a.id]["debugger_error"] = f"{type(e).__name__}: {str(e).strip()[:300]}"
        return
    for a in tflite:
        entry = result.get(a.id, {})
        _merge_stats(found[a.id], entry.get("stats"), entry.get("stats_error"))
        for layers, fb in entry.get("fallbacks", {}).items():
            _record_fallback(ctx, a, found[a.id], layers.split(", "), fb.get("bytes"), fb.get("facts"), fb.get("error"))


def _merge_stats(section, stats, error):
    from ..converter.quant_debug import tensor_key

    section["debugger"] = {"tool": "tf.lite.experimental.QuantizationDebugger (layer_statistics)",
                           "error": error, "tensors": stats}
    for r in section["layers"]:
        found = (stats or {}).get(tensor_key(r["tensor"])) or (stats or {}).get(tensor_key(r["float_tensor"]))
        if found and found["mean_squared_error"] > 0 and r["float_mean_square"] > 0:
            # The debugger's error of this op alone (its int8 output against the float op run on the same
            # int8 input), against the power of the float file's output of this layer.
            r["isolated_snr_db"] = 10 * math.log10(r["float_mean_square"] / found["mean_squared_error"])


def _other_fallbacks(ctx, failed, found):
    for art in failed:
        if art.format == "tflite" and art.precision == "int8":
            continue  # made by the debugger, above
        if art.precision == "fp16":
            found[art.id]["fallback_note"] = "fp16 files have no per-layer float fallback: use the fp32 file"
            continue
        for layers in fallbacks.candidate_sets(found[art.id]["layers"], found[art.id].get("first_divergent_layer")):
            try:
                blob, facts = fallbacks.build_in_process(ctx, art, layers)
                _record_fallback(ctx, art, found[art.id], layers, blob, facts, None)
            except Exception as e:  # ConversionError, a tool's own failure: this candidate only
                _record_fallback(ctx, art, found[art.id], layers, None, None, f"{type(e).__name__}: {str(e)[:300]}")


def _record_fallback(ctx, art, section, layers, blob, facts, error):
    if error or blob is None:
        section["fallbacks"].append({"layers": list(layers), "error": error or "no file was made"})
        return
    entry = fallbacks.write(ctx, art, layers, blob, facts or {})
    entry["size_ratio"] = entry["size_bytes"] / art.size_bytes if art.size_bytes else None
    entry["gain"] = fallbacks.agreement_gain(art.check, entry["check"])
    section["fallbacks"].append(entry)
