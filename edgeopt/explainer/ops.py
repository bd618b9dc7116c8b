"""Where the time goes: per-operator profiles (measured in the benchmark worker) summarised per op type.

Reads the `profile` each benchmark row carries (bench/device/op_profile.py) and never times
anything itself. For each file: time per op type, the share spent converting between float and
int8, which ops ran in int8 and which in float, which LiteRT ops XNNPACK took and which it left,
the kernels onnxruntime chose. TensorFlow-free.
"""

from __future__ import annotations

import re

QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QUANTIZE", "DEQUANTIZE", "Convert"}
LAYOUT_WORDS = ("reshape", "transpose", "reorder", "copy", "squeeze", "expand", "flatten", "concat", "slice", "pack")
INT8_TYPES = {"int8", "uint8"}
# XNNPACK datatype tags in operator names: QC8/QS8/QU8 int8, QD8/QDU8 dynamically quantized, S8/U8 raw bytes.
_XNN_INT8 = re.compile(r"^(Q\w*|S8|U8)$")
_XNN_FLOAT = {"F32", "F16", "BF16"}
# ISA features that decide the int8 kernels (sysinfo.X86_FEATURES / ARM_FEATURES), as people say them.
FEATURE_NAMES = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI",
                 "amx_int8": "AMX-INT8", "asimd": "NEON", "asimddp": "dotprod", "i8mm": "i8mm", "sve": "SVE"}


def duration(us: float) -> str:
    """12.3 µs, 4.75 ms: three significant digits in the unit a person reads."""
    return f"{us:.3g} µs" if us < 1000 else f"{us / 1000:.3g} ms"


def family(op_type: str) -> str:
    """A coarse role for comparing a quantized file with its float parent, whose kernels have other names."""
    low = op_type.lower()
    if op_type in QDQ_OPS or low.startswith("convert"):
        return "quantize/dequantize"
    if "conv" in low:
        return "convolution"
    if any(w in low for w in ("matmul", "gemm", "fully connected", "fully_connected")):
        return "matmul"
    if any(w in low for w in LAYOUT_WORDS):
        return "layout"
    return "other"


MIN_RESOLVED_US = 1.0  # LiteRT reports XNNPACK operators in whole microseconds


def litert_pass(profile: dict) -> tuple[dict, str | None]:
    """The LiteRT pass to read op times from, and why if it is not the one that was timed.

    XNNPACK's per-operator times reach LiteRT's profiler in whole microseconds (truncated), so when
    a model's operators each take less than one they all read 0: then the built-in kernels' pass,
    whose events span begin and end clock readings, is the only per-operator split measured.
    """
    passes = profile.get("passes") or [{}]
    ran = passes[0]
    builtin = next((p for p in passes[1:] if p.get("kernels") == "builtin"), None)
    total = sum(o["us"] for o in ran.get("operators", []))
    if ran.get("kernels") == "xnnpack" and total < MIN_RESOLVED_US and builtin:
        return builtin, (f"XNNPACK's operators total {total:.2g} µs per run, below the 1 µs resolution LiteRT "
                         "reports them in: op times are from LiteRT's built-in kernels (XNNPACK off), a "
                         "different kernel path than the one timed")
    return ran, None


def operators(profile: dict) -> list:
    """[{name, op_type, us, precision ('int8'/'float'/'-'), delegated (LiteRT) or provider (ORT)}], as run."""
    if not profile or profile.get("error"):
        return []
    if profile.get("runtime") == "onnxruntime":
        return [{"name": n["name"], "op_type": n["op_type"], "us": n["us"], "provider": n.get("provider"),
                 "precision": _onnx_precision(n)} for n in profile.get("nodes", [])]
    nodes = {n["index"]: n for n in profile.get("nodes", [])}
    ran, _ = litert_pass(profile)
    found = []
    for op in ran.get("operators", []):
        if op["kind"] == "xnnpack":
            op_type, tags = _xnnpack_name(op["name"])
            precision = "int8" if any(_XNN_INT8.match(t) for t in tags) else (
                "float" if tags & _XNN_FLOAT else "-")
            found.append({"name": op["name"], "op_type": op_type, "us": op["us"], "delegated": True,
                          "precision": precision})
        else:
            node = nodes.get(op["index"], {})
            found.append({"name": (node.get("outputs") or [op["name"]])[0].split(";")[0], "op_type": op["name"],
                          "us": op["us"], "delegated": False if ran.get("kernels") == "xnnpack" else None,
                          "precision": _types_precision(node.get("input_types"))})
    return found


def _xnnpack_name(name):
    """'Convolution (NHWC, QC8) IGEMM' -> ('Convolution', {'NHWC', 'QC8'})."""
    head, _, rest = name.partition(" (")
    return head.strip(), {t.strip() for t in rest.split(")")[0].split(",") if t.strip()}


def _onnx_precision(node):
    if node["op_type"] in QDQ_OPS:
        return "-"
    return _types_precision(node.get("input_types"))


def _types_precision(types):
    types = set(types or [])
    if types & INT8_TYPES:
        return "int8"
    return "float" if types & {"float", "float32", "float16"} else "-"


def summarise(profile: dict) -> dict | None:
    """Per-op-type time and shares of one profile, plus the facts a verdict needs."""
    ops = operators(profile)
    if not ops:
        return None
    total = sum(o["us"] for o in ops) or 1e-9
    by_type = {}
    for o in ops:
        entry = by_type.setdefault(o["op_type"], {"op_type": o["op_type"], "family": family(o["op_type"]), "us": 0.0,
                                                   "count": 0, "precisions": set()})
        entry["us"] += o["us"]
        entry["count"] += 1
        entry["precisions"].add(o["precision"])
    types = sorted(by_type.values(), key=lambda e: -e["us"])
    for e in types:
        e["share"] = e["us"] / total
        e["precisions"] = sorted(e["precisions"] - {"-"}) or ["-"]
    families = {}
    for e in types:
        families[e["family"]] = families.get(e["family"], 0.0) + e["us"]
    qdq = [o for o in ops if family(o["op_type"]) == "quantize/dequantize"]
    ran, note = litert_pass(profile) if profile.get("runtime") != "onnxruntime" else ({}, None)
    run_us = profile.get("run_us") or ran.get("invoke_us")
    return {
        "runtime": profile.get("runtime"),
        "kernels_profiled": ran.get("kernels"),
        "resolution_note": note,
        "operator_us": total,
        "run_us": run_us,
        "coverage": (total / run_us) if run_us else None,
        "op_types": types,
        "families": {k: {"us": v, "share": v / total} for k, v in families.items()},
        "qdq": {"us": sum(o["us"] for o in qdq), "share": sum(o["us"] for o in qdq) / total, "nodes": len(qdq),
                "op_types": sorted({o["op_type"] for o in qdq})},
        "int8_share": sum(o["us"] for o in ops if o["precision"] == "int8") / total,
        "float_compute": sorted({o["op_type"] for o in ops if o["precision"] == "float"
                                 and family(o["op_type"]) in ("convolution", "matmul")}),
        "not_delegated": sorted({o["op_type"] for o in ops if o.get("delegated") is False}),
        "kernels": sorted({o["op_type"] for o in ops if family(o["op_type"]) in ("convolution", "matmul")}),
        "sees": _what_it_sees(profile),
    }


def _what_it_sees(profile) -> str:
    if profile.get("runtime") == "onnxruntime":
        return ("onnxruntime's own timing of each node's kernel, after its graph optimisations (fused nodes are "
                "one entry); time between nodes and in the session's run overhead is not attributed to any node")
    return ("LiteRT's profiler: with XNNPACK, one entry per XNNPACK operator inside the delegate (its own split "
            "of the graph, not the .tflite file's ops), and LiteRT's own kernels for the ops XNNPACK did not "
            "take; whole microseconds per event, so sub-microsecond operators average out over the runs")


def cpu_features(machine: dict | None) -> str:
    """'AVX-512 VNNI yes, AMX-INT8 yes' from a report's machine record."""
    features = ((machine or {}).get("cpu") or {}).get("features") or {}
    parts = [f"{FEATURE_NAMES[k]} {'yes' if v else 'no'}" for k, v in features.items() if k in FEATURE_NAMES]
    return ", ".join(parts)
