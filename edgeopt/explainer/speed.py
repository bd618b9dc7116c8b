"""Where the time goes, file by file against its fp32 parent, from a benchmark report's measured profiles.

One section per benchmark row of a quantized file (target x thread count): its op-type table, the
same for its baseline, what changed per role (convolutions, matmuls, quantize/dequantize, layout)
and, when the file came out slower than its parent, a verdict naming the op types that take the
time. Every number is from the report: the speedup from the timed runs, the op times from the
runtime's profiler. TensorFlow-free.
"""

from __future__ import annotations

from .ops import cpu_features, duration, summarise


def explain_rows(report, ids=None) -> dict:
    """{artifact id: [section per target and thread count]} for the quantized rows of `report`."""
    machines = {t["name"]: t.get("machine") for t in report.targets}
    rows = {(r.target, r.artifact, r.threads): r for r in report.rows}
    found = {}
    for row in report.rows:
        if row.precision in ("fp32", "?") or not row.ok or (ids is not None and row.artifact not in ids):
            continue
        base_id = (row.speedup or {}).get("vs")
        base = rows.get((row.target, base_id, row.threads)) if base_id else None
        found.setdefault(row.artifact, []).append(_section(row, base, report, machines.get(row.target)))
    return found


def _section(row, base, report, machine) -> dict:
    mine, theirs = summarise(row.profile), summarise(base.profile) if base else None
    sp = row.speedup or {}
    section = {
        "target": row.target, "threads": row.threads, "emulated": row.emulated, "runtime": row.runtime,
        "p50_ms": (row.latency or {}).get("p50_ms"), "baseline": base.artifact if base else None,
        "baseline_p50_ms": (base.latency or {}).get("p50_ms") if base else None,
        "speedup": sp.get("ratio"), "speedup_ci95": sp.get("ci95"), "within_noise": sp.get("within_noise"),
        # Slower at the median; `within_noise` says when the ratio's 95% interval still contains 1.
        "slower": bool(sp.get("ratio") and sp["ratio"] < 1),
        "profile": mine, "baseline_profile": theirs, "cpu": cpu_features(machine),
        "profile_error": (row.profile or {}).get("error") if row.profile else "no profile in this report",
    }
    section["changes"] = _changes(mine, theirs)
    section["siblings"] = _siblings(row, report)
    section["verdict"] = verdict(row, section) if section["slower"] else None
    return section


def _changes(mine, theirs) -> list:
    """Per role, microseconds in this file and in its baseline, largest increase first."""
    if not mine or not theirs:
        return []
    roles = set(mine["families"]) | set(theirs["families"])
    changes = [{"family": f, "us": mine["families"].get(f, {}).get("us", 0.0),
                "baseline_us": theirs["families"].get(f, {}).get("us", 0.0)} for f in roles]
    for c in changes:
        c["delta_us"] = c["us"] - c["baseline_us"]
        c["op_types"] = [t["op_type"] for t in mine["op_types"] if t["family"] == c["family"]]
        c["baseline_op_types"] = [t["op_type"] for t in theirs["op_types"] if t["family"] == c["family"]]
    return sorted(changes, key=lambda c: -c["delta_us"])


def _siblings(row, report) -> list:
    """Other quantized files of the same format measured alongside, faster than the baseline."""
    found = []
    for r in report.rows:
        if (r.target, r.threads, r.format) != (row.target, row.threads, row.format) or r.artifact == row.artifact:
            continue
        ratio = (r.speedup or {}).get("ratio")
        if r.ok and r.precision.startswith("int8") and ratio and ratio > 1 and not r.speedup.get("within_noise"):
            found.append({"artifact": r.artifact, "speedup": ratio})
    return sorted(found, key=lambda s: -s["speedup"])


def verdict(row, s) -> str:
    """The sentence a person acts on, with this run's numbers."""
    where = f"{s['runtime']}, {s['threads']} thread{'s' if s['threads'] != 1 else ''}, {row.target}" + \
        (" (emulated)" if s["emulated"] else "")
    head = f"{row.artifact} is {s['speedup']:.2f}x its fp32 parent here ({where})"
    if s.get("within_noise"):
        lo, hi = s.get("speedup_ci95") or (None, None)
        head += (f", within noise (the ratio's 95% interval, {lo:.2f}-{hi:.2f}, contains 1)" if lo is not None
                 else ", within noise")
    p = s["profile"]
    if not p:
        return head + f"; no per-operator profile to say why ({s['profile_error']})"
    parts = [head]
    top = ", ".join(f"{t['op_type']} {t['share']:.0%}" for t in p["op_types"][:3])
    parts.append(f"its operator time goes to {top}")
    qdq = p["qdq"]
    if qdq["share"] >= 0.1:
        parts.append(f"{qdq['share']:.0%} of it is {'/'.join(qdq['op_types'])} ({qdq['nodes']} nodes), "
                     f"converting between float and int8, time its fp32 parent does not spend")
    grown = [c for c in s["changes"] if c["delta_us"] > 0 and c["family"] in ("convolution", "matmul", "layout")]
    for c in grown[:2]:
        parts.append(f"its {c['family']} ops ({', '.join(c['op_types'][:3])}) take {duration(c['us'])} per run "
                     f"against {duration(c['baseline_us'])} for fp32's ({', '.join(c['baseline_op_types'][:3]) or 'none'})")
    if p["float_compute"]:
        parts.append(f"{', '.join(p['float_compute'])} still run in float")
    if p["not_delegated"]:
        parts.append(f"XNNPACK left {', '.join(p['not_delegated'])} to LiteRT's own kernels")
    if p.get("resolution_note"):
        parts.append(p["resolution_note"])
    if p.get("coverage") is not None and p["coverage"] < 0.5:
        parts.append(f"its operators account for only {p['coverage']:.0%} of the profiled run "
                     f"({duration(p['operator_us'])} of {duration(p['run_us'])}); the rest is the runtime's own "
                     "per-run work outside the kernels")
    if s["siblings"]:
        best = s["siblings"][0]
        parts.append(f"the {best['artifact']} file of the same model runs {best['speedup']:.2f}x faster than fp32")
    if s["cpu"]:
        parts.append(f"CPU: {s['cpu']}")
    return "; ".join(parts) + "."
