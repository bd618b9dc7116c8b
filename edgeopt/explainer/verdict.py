"""The sentences a person reads, and the same figures as node data for Google's Model Explorer.

Node data follows ai-edge-model-explorer's `node_data_builder` format (a ModelNodeData: graph id ->
GraphNodeData {name, results: {node key: {value}}, gradient}), written as plain JSON so explain
needs no Model Explorer install; `edgeopt[explorer]` has the package to open it. Keys are the
graph's own nodes: the op index for a .tflite file (Model Explorer's node ids), the node name for
an .onnx file.
"""

from __future__ import annotations

import math
import re

from ..fileio import write_json_atomic

_RED_TO_GREEN = [{"stop": 0, "bgColor": "#d73027"}, {"stop": 0.5, "bgColor": "#fee08b"},
                 {"stop": 1, "bgColor": "#1a9850"}]
_GREEN_TO_RED = [{"stop": 0, "bgColor": "#ffffff"}, {"stop": 0.5, "bgColor": "#fdae61"},
                 {"stop": 1, "bgColor": "#d73027"}]


def accuracy_verdict(art_id, section) -> str:
    if section.get("error"):
        return f"{art_id}: per-layer error could not be measured ({section['error']})"
    check = section.get("check") or {}
    head = f"{art_id} " + ("failed its check (" + "; ".join(check.get("problems") or []) + ")"
                           if check.get("passed") is False else "passed its check")
    layers = {r["layer"]: r for r in section["layers"]}
    parts = [head]
    first = section.get("first_divergent_layer")
    if first and layers[first]["snr_db"] < section["threshold_db"]:
        parts.append(f"its error first exceeds the {section['threshold_db']:.0f} dB SNR bound at layer {first!r} "
                     f"({layers[first]['snr_db']:.1f} dB)")
    elif first:
        parts.append(f"first divergent layer {first!r} ({layers[first]['snr_db']:.1f} dB; "
                     f"{section['divergence_rule']})")
    else:
        final = section.get("final_snr_db")
        parts.append(f"no layer falls below {section['threshold_db']:.0f} dB SNR"
                     + (f" (output {final:.1f} dB)" if final is not None and math.isfinite(final) else ""))
    worst = [f"{name!r} {layers[name]['error_share']:.0%}" for name in section.get("worst_layers", [])[:3]]
    if worst:
        parts.append("the error was added at " + ", ".join(worst))
    for c in section.get("causes", [])[:3]:
        where = f" at {', '.join(repr(x) for x in c['layers'])}" if c["layers"] else ""
        parts.append(f"{c['cause']}{where}")
    best = best_fallback(section)
    if best:
        parts.append(fallback_sentence(best))
    return "; ".join(parts) + "."


def best_fallback(section):
    """The measured fallback that passes its check with the fewest float layers, else the most accurate."""
    made = [f for f in section.get("fallbacks", []) if f.get("check")]
    if not made:
        return None
    passing = [f for f in made if f["check"].get("passed")]
    if passing:
        return min(passing, key=lambda f: len(f["layers"]))
    return min(made, key=lambda f: f["check"].get("relative_max_error") or math.inf)


def fallback_sentence(fb) -> str:
    kept = ", ".join(repr(x) for x in fb["layers"])
    parts = [f"keeping {kept} in float " + ("passes the check" if fb["check"].get("passed") else "still fails")]
    if fb.get("gain"):
        parts.append(fb["gain"])
    if fb.get("size_ratio"):
        parts.append(f"{fb['size_ratio']:.2f}x the size")
    lat = fb.get("latency") or {}
    if lat.get("ratio_to_original"):
        parts.append(f"{lat['ratio_to_original']:.2f}x the latency ({lat['p50_ms']:.3g} ms against "
                     f"{lat['original_p50_ms']:.3g} ms, {lat['target']}, 1 thread)")
    return " (".join([parts[0], ", ".join(parts[1:]) + ")"]) if len(parts) > 1 else parts[0]


# ---- Model Explorer ------------------------------------------------------------------------------------
def write_node_data(folder, art, path, accuracy, profile) -> dict:
    """Per-layer SNR and per-op time (`profile`: a benchmark row's, 1 thread) as Model Explorer node data.

    Returns {kind: file name} for what was written.
    """
    graph = _graph_id(path, art.format)
    written = {}
    if accuracy and accuracy.get("layers"):
        results = {r["node"]: {"value": round(r["snr_db"], 2) + 0.0 if math.isfinite(r["snr_db"]) else 999.0}
                   for r in accuracy["layers"] if r.get("node") is not None}
        if results:
            name = f"{art.id}.snr.node_data.json"
            write_json_atomic(folder / name, {graph: {"name": "edgeopt: SNR vs float (dB)", "results": results,
                                                      "gradient": _RED_TO_GREEN}})
            written["snr"] = name
    times = _node_times(profile, path, art.format) if profile and not profile.get("error") else {}
    if times:
        name = f"{art.id}.time.node_data.json"
        write_json_atomic(folder / name, {graph: {"name": _time_label(profile), "results":
                                                  {k: {"value": round(v, 3)} for k, v in times.items()},
                                                  "gradient": _GREEN_TO_RED}})
        written["time"] = name
    return written


def _time_label(profile) -> str:
    if profile.get("runtime") == "onnxruntime":
        return "edgeopt: onnxruntime kernel time (µs per run, 1 thread)"
    return "edgeopt: LiteRT built-in kernel time (µs per run, 1 thread, XNNPACK off)"


def _graph_id(path, fmt) -> str:
    if fmt == "onnx":
        import onnx

        return onnx.load(str(path), load_external_data=False).graph.name or "main"
    return "main"


def _node_times(profile, path, fmt) -> dict:
    """{graph node key: µs}: LiteRT's built-in pass by op index; ORT's nodes mapped back to the file's names."""
    if fmt == "tflite":
        builtin = next((p for p in profile.get("passes", []) if p.get("kernels") == "builtin"), None)
        return {str(o["index"]): o["us"] for o in (builtin or {}).get("operators", []) if o["kind"] == "tflite"}
    import onnx

    names = [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.name]
    known = set(names)
    found = {}
    for node in profile.get("nodes", []):
        original = original_node(node["name"], known)
        if original:
            found[original] = found.get(original, 0.0) + node["us"]
    return found


_ORT_SUFFIXES = re.compile(r"(_token_\d+|_nchwc|_quant|:\d+)+$")


def original_node(profiled: str, known: set) -> str | None:
    """onnxruntime renames nodes it fuses ('fused X', 'X_token_17', 'X:0_nchwc'): find the file's node."""
    name = profiled[len("fused "):] if profiled.startswith("fused ") else profiled
    for candidate in (name, _ORT_SUFFIXES.sub("", name)):
        if candidate in known:
            return candidate
    return None
