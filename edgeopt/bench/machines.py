"""The machines a report was measured on, as a table a person reads: one column per target.

The record itself (report.json's targets[].machine, from device/sysinfo.py) keeps every field; this
is its view in report.md.
"""

from __future__ import annotations

from ..table import render

# What the ISA flags mean for inference: float SIMD width, int8 dot products, matrix units.
FEATURE_NAMES = {
    "sse4_2": "SSE4.2", "avx": "AVX", "avx2": "AVX2", "fma": "FMA", "f16c": "F16C", "avx512f": "AVX-512",
    "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI", "amx_int8": "AMX-INT8",
    "asimd": "NEON", "asimdhp": "FP16 arithmetic", "asimddp": "dotprod", "i8mm": "i8mm", "bf16": "BF16",
    "sve": "SVE", "sve2": "SVE2",
}


def features_text(features: dict) -> str:
    """'AVX2, FMA, AVX-512 VNNI (not: AMX-INT8)': what the CPU has of the features that matter, and lacks."""
    have = [FEATURE_NAMES.get(f, f) for f, on in features.items() if on]
    lack = [FEATURE_NAMES.get(f, f) for f, on in features.items() if not on]
    return (", ".join(have) or "none of note") + (f" (not: {', '.join(lack)})" if lack else "")


def machine_rows(target: dict) -> dict:
    """{property: value} for one target's record; '-' where the target did not report it."""
    m = target.get("machine") or {}
    cpu, versions = m.get("cpu") or {}, m.get("versions") or {}
    cores = cpu.get("cores")
    if cores is not None and cpu.get("usable_cores") not in (None, cores):
        cores = f"{cores} ({cpu['usable_cores']} usable)"
    kind = target.get("kind", "?") + (", EMULATED: not device figures" if target.get("emulated") else "")
    return {
        "kind": kind,
        "CPU": cpu.get("model"),
        "architecture": cpu.get("arch"),
        "cores": cores,
        "ISA features": features_text(cpu["features"]) if cpu.get("features") else None,
        "governor": cpu.get("governor"),
        "OS": m.get("os"),
        "libc": m.get("libc"),
        "Python": m.get("python"),
        **{name: versions.get(name) for name in ("numpy", "ai-edge-litert", "onnxruntime")},
        "thread settings": ", ".join(f"{k}={v}" for k, v in (m.get("thread_env") or {}).items()) or None,
        "status": target.get("status") if target.get("status") != "ok" else None,
    }


def machines_table(targets: list, markdown=True) -> str:
    columns = [machine_rows(t) for t in targets]
    keys = [k for k in (columns[0] if columns else {}) if any(c.get(k) not in (None, "") for c in columns)]
    rows = [[k, *["-" if c.get(k) in (None, "") else c[k] for c in columns]] for k in keys]
    return render(["", *[t["name"] for t in targets]], rows, markdown=markdown)
