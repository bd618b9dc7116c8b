"""`fallback: auto`, an int8 export option: a file that fails its check is made again with the fewest
layers kept in float, chosen by per-layer error, until it passes.

How the layers are chosen: the failed file and its float twin run side by side on the evaluation
data, and each layer's SNR and share of the final error are measured (edgeopt.explainer.layers, the
measure `edgeopt explain` reports). The candidates are the WORST layers by error added and, after
each, the next layer that can stay float: the int8 tensor between a layer and the next has one
scale, so one loud channel can crush the others even when the layer that made it is kept float.
Sets of candidates are tried smallest first, every set of one size before any larger one, each a
real export through converter.selective (TFLite's QuantizationDebugger deny-list, onnxruntime's
nodes_to_exclude) checked by the converter's own check: the first that passes keeps the fewest
candidate layers in float. Every try, and why the search ended, go to the artifact's
facts["fallback"].

Every export the search makes (the float twin, each selective file) runs in the run's converter
process, like every other export: a native crash costs that try, and the search goes on.

Gotchas: the search covers the candidates, not every layer, and stops after MAX_TRIES exports; the
record says how far it went. A model traced at a fixed batch (recurrent layers) is not searched:
TFLite's calibrator crashes on its loops, so every try would.
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

OPTION, AUTO = "fallback", "auto"
WORST = 3  # layers ranked by the error they added that seed the candidates
MAX_LAYERS = 4  # the largest set tried
MAX_TRIES = 12  # exports made at most


@dataclass
class Plan:
    """How to make the float twin and the selective exports of one int8 export."""

    float_twin: Callable[[Path], Path] | None  # writes the same model in float into a folder; returns its path
    rebuild: Callable[[list], tuple] | None  # layers to keep float -> (file bytes, facts)
    suffix: str
    keras3: bool
    output_layers: list
    not_searched: str | None = None  # why this export cannot be searched


def plan_for(fmt, options, *, calibration, keras3, output_layers, converters, serving=None,
             fp32_path=None) -> Plan | None:
    """The Plan of an int8 export whose options ask for `fallback: auto`; None for every other export.

    `converters`: the run's ConverterProcess, where every export of the search runs."""
    if options.get(OPTION) != AUTO:
        return None
    quant_options = {k: v for k, v in options.items() if k != OPTION}
    crash_hint = "That set of float layers is skipped; the search goes on"
    if fmt == "onnx":
        return Plan(lambda _folder: Path(fp32_path),
                    lambda layers: (converters.call("edgeopt.converter.selective:onnx_int8", fp32_path, calibration,
                                                    quant_options, layers, keras3, output_layers,
                                                    what=f"ONNX int8 with {', '.join(layers)} float",
                                                    crash_hint=crash_hint)), ".onnx", keras3, output_layers)
    if serving.batch:
        return Plan(None, None, ".tflite", keras3, output_layers,
                    not_searched=f"the model is traced at a fixed batch of {serving.batch} (recurrent layers), whose "
                                 "int8 calibration crashes TensorFlow on its loops: every try would")
    return Plan(lambda folder: _tflite_fp32(serving, converters, folder),
                lambda layers: converters.call("edgeopt.converter.selective:tflite_int8_saved_model",
                                               str(serving.saved_model()), calibration, quant_options, layers, 1,
                                               keras3, output_layers,
                                               what=f"TFLite int8 with {', '.join(layers)} float",
                                               crash_hint=crash_hint), ".tflite", keras3, output_layers)


def _tflite_fp32(serving, converters, folder: Path) -> Path:
    from . import tflite

    path = folder / "float-twin.tflite"
    path.write_bytes(tflite.convert(serving, converters, "fp32", {}))
    return path


def apply(plan: Plan, art, staged: Path, inputs: list, inspect, stage, log=print) -> Path:
    """Search for the fewest float layers that make `art` pass; return the staged file to publish.

    `inspect(artifact, path)` is the converter's check (it fills the artifact's check and status);
    `stage(bytes)` stages a new file under the artifact's name. On success the artifact is the
    selective file, checked again; otherwise the original stays, failed, with the search recorded.
    """
    log(f"  {art.id} failed its check; fallback: auto is looking for the fewest layers to keep in float")
    record = {"mode": AUTO, "original": _check_summary(art.check), "tries": []}
    art.facts["fallback"] = record
    if plan.not_searched:
        record.update(result="not searched", why=plan.not_searched)
        art.error += f"; fallback: auto did not search: {plan.not_searched}"
        return staged
    try:
        found = _search(plan, staged, inputs, art, inspect, record, log)
    except Exception as e:  # the search is a repair: its own failure leaves the original file and says why
        record.update(result="search failed", why=f"{type(e).__name__}: {str(e)[:300]}")
        art.notes.append(traceback.format_exc(limit=4))
        art.error += f"; fallback: auto failed ({record['why']})"
        return staged
    if found is None:
        art.error += f"; fallback: auto {record['why']}"
        return staged
    blob, facts = found
    record["selective"] = facts
    new = stage(blob)
    art.status, art.error = "ok", None
    inspect(art, new)
    art.notes.append(f"fallback: auto kept {', '.join(map(repr, record['kept_float']))} in float: {record['why']}")
    return new


def _search(plan, original, inputs, art, inspect, record, log):
    from ..explainer.layers import attribute, compare_layers

    with tempfile.TemporaryDirectory(prefix="edgeopt-fallback-") as tmp:
        folder = Path(tmp)
        failed = folder / f"original{plan.suffix}"  # the staged file's name ends in .part; taps read the suffix
        shutil.copyfile(original, failed)
        layers = compare_layers(plan.float_twin(folder), failed, inputs, plan.keras3, plan.output_layers)
        summary = attribute(layers, failed=True)
        record["per_layer"] = {"measure": "SNR of each layer's output against the float twin's, on the evaluation "
                                          "data (edgeopt.explainer.layers)",
                               "first_divergent_layer": summary["first_divergent_layer"],
                               "layers": [{k: r.get(k) for k in ("layer", "snr_db", "error_share")} for r in layers]}
        sets = candidate_sets(layers)
        record["candidates"] = sorted({name for s in sets for name in s}, key=[r["layer"] for r in layers].index)
        for n, keep in enumerate(sets[:MAX_TRIES]):
            tried = _try(plan, keep, folder / f"try{n}{plan.suffix}", art, inspect)
            record["tries"].append({k: v for k, v in tried.items() if k != "_blob"})
            log(f"    keep {', '.join(keep)} in float: " + ("passes" if tried.get("passed") else "still fails"))
            if tried.get("passed"):
                record.update(result="passed", kept_float=list(keep), why=_why(record, keep, layers))
                return tried["_blob"], tried["facts"]
    searched = min(len(sets), MAX_TRIES)
    record.update(result="no set passed", kept_float=None,
                  why=f"tried {searched} set(s) of up to {len(sets[searched - 1]) if searched else 0} float layers "
                      f"among {', '.join(record['candidates']) or 'no candidate'}; none passed its check"
                      + (f" (stopped at {MAX_TRIES} tries of {len(sets)})" if len(sets) > MAX_TRIES else ""))
    return None


def _try(plan, keep, path: Path, art, inspect) -> dict:
    try:
        blob, facts = plan.rebuild(list(keep))
    except Exception as e:  # ConversionError or the tool's own: this set cannot be made
        return {"layers": list(keep), "passed": False, "error": f"{type(e).__name__}: {str(e)[:300]}"}
    path.write_bytes(blob)
    trial = dataclasses.replace(art, facts=dict(art.facts), notes=[], status="ok", error=None)
    inspect(trial, path)
    return {"layers": list(keep), **_check_summary(trial.check), "size_bytes": len(blob), "facts": facts,
            "_blob": blob}


def candidate_sets(records: list) -> list:
    """Sets of layers to keep float, every set of one size before any larger one.

    Candidates: the WORST layers by share of the error added, each followed by the next layer that
    can stay float. Within a size, the sets whose layers added the most error come first.
    """
    from ..explainer.fallback import can_stay_float

    order = [r["layer"] for r in records]
    ranked = [r for r in sorted(records, key=lambda r: -r.get("error_share", 0.0))
              if r.get("error_share", 0.0) > 0 and can_stay_float(r)][:WORST]
    pool = []
    for r in ranked:
        after = next((x["layer"] for x in records[order.index(r["layer"]) + 1:] if can_stay_float(x)), None)
        pool += [name for name in (r["layer"], after) if name and name not in pool]
    share = {r["layer"]: r.get("error_share", 0.0) for r in records}
    sets = []
    for size in range(1, min(MAX_LAYERS, len(pool)) + 1):
        combos = sorted(itertools.combinations(pool, size), key=lambda c: -sum(share[x] for x in c))
        sets += [sorted(c, key=order.index) for c in combos]
    return sets


def _why(record, keep, records) -> str:
    order = [r["layer"] for r in records]
    by_layer = {r["layer"]: r for r in records}
    reasons = []
    for name in keep:
        share, snr = by_layer[name].get("error_share", 0.0), by_layer[name]["snr_db"] + 0.0  # no "-0.0 dB"
        feeder = next((k for k in keep if order.index(k) < order.index(name)), None)
        if share < 0.01 and feeder:
            reasons.append(f"{name!r} reads the output of {feeder!r}, which is quantized again unless "
                           f"{name!r} stays float too")
        else:
            reasons.append(f"{name!r} added {share:.0%} of the error ({snr:.1f} dB)")
    smaller = [t for t in record["tries"] if len(t["layers"]) < len(keep)]
    before = f"; every smaller set tried ({len(smaller)}) still failed" if smaller else ""
    return f"{'; '.join(reasons)}; the smallest set that passes among {', '.join(record['candidates'])}{before}"


def _check_summary(check) -> dict:
    check = check or {}
    outputs = check.get("outputs") or []
    return {"passed": check.get("passed"), "problems": check.get("problems"),
            "relative_max_error": max((o.get("relative_max_error", 0.0) for o in outputs), default=None),
            "accuracy": check.get("accuracy"), "top1_agreement": check.get("top1_agreement")}
