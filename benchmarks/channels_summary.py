"""SUMMARY.md and summary.json of the channel-pruning benchmark (see channels.py).

Speedups are dense p50 / pruned p50 of the same kind of file (format, precision, ONNX layout) in one
interleaved run. The 95% interval pairs the two files round by round (both were measured in every
round, back to back, so drift between rounds cancels) and resamples rounds.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgeopt.fileio import write_json_atomic, write_text_atomic
from edgeopt.table import human_bytes, render
from summary import machine_parts  # benchmarks/ is on sys.path, as for every script here

SUMMARY_MD, SUMMARY_JSON = "SUMMARY.md", "summary.json"
GOAL = 1.3  # issue 13: p50 latency drops at least 1.3x against the dense model
# Variants whose every group keeps a multiple of 16 channels: the runtimes' fast paths, so p50 follows MACs.
ALIGNED = ("dense", "channels30-r16", "channels50-r16")
_BOOTSTRAP = 2000


def write(results: Path, runs: dict, sparse, command: str, seconds: float, quick: bool) -> dict:
    import channels_plot

    record = build(runs, sparse, command, seconds, quick)
    record["plot"] = channels_plot.plot(record, results)
    write_json_atomic(Path(results) / SUMMARY_JSON, record)
    write_text_atomic(Path(results) / SUMMARY_MD, markdown(record))
    return {"markdown": str(Path(results) / SUMMARY_MD), "json": str(Path(results) / SUMMARY_JSON)}


def measured_by(results: Path, command: str, seconds: float) -> tuple:
    """(command, seconds) of the run that measured the figures in `results`, when its summary says so."""
    path = Path(results) / SUMMARY_JSON
    if not path.exists():
        return command, seconds
    import json

    old = json.loads(path.read_text())
    return old.get("command", command), old.get("seconds", seconds)


def build(runs, sparse, command, seconds, quick) -> dict:
    models = {name: _model(run) for name, run in runs.items()}
    machine = next((m["machine"] for m in models.values() if m["machine"]), None)
    return {
        "schema": "edgeopt.benchmarks.channels", "schema_version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command, "seconds": round(seconds), "quick": quick, "goal_speedup": GOAL,
        "machine": machine or (_machine(sparse["report"]) if sparse else None),
        "models": models,
        "sparse_encoding": _sparse(sparse) if sparse else None,
    }


def _machine(report):
    return next((t.get("machine") for t in report.targets if t.get("machine")), None)


def _model(run) -> dict:
    report = run["report"]
    rows = {r.path: r for r in report.rows}
    files = [{**f, **_measured(rows.get(f["path"]))} for f in run["files"]]
    dense = {f["kind"]: f for f in files if f["variant"] == "dense"}
    comparisons = []
    for f in files:
        base = dense.get(f["kind"])
        if f["variant"] == "dense" or not base or f["p50_ms"] is None or base["p50_ms"] is None:
            continue
        comparisons.append({"variant": f["variant"], "kind": f["kind"], "dense_p50_ms": base["p50_ms"],
                            "p50_ms": f["p50_ms"], "macs_ratio": _ratio(f["macs"], base["macs"]),
                            # the fastest run of each: the least disturbed by other jobs, a cross-check
                            "min_speedup": _ratio(base["min_ms"], f["min_ms"]), **_speedup(base, f)})
    variants = {v: _variant(info) for v, info in run["variants"].items()}
    return {"machine": _machine(report), "settings": report.settings, "created": report.created,
            "variants": variants, "files": files, "comparisons": comparisons, "fixed_cost": _fixed_cost(files)}


def _fixed_cost(files) -> dict:
    """Per kind of file: p50 = fixed + per_mac x MACs fitted over the aligned variants (least squares).

    The fixed part is what no channel pruning removes (per-op dispatch, quantize/dequantize, I/O), so
    dense p50 / fixed bounds the speedup any number of removed channels could give.
    """
    out = {}
    for kind in dict.fromkeys(f["kind"] for f in files):
        points = [(f["macs"], f["p50_ms"]) for f in files
                  if f["kind"] == kind and f["variant"] in ALIGNED and f["macs"] and f["p50_ms"]]
        dense = next((f["p50_ms"] for f in files if f["kind"] == kind and f["variant"] == "dense"), None)
        if len(points) < 3 or not dense:
            continue
        per_mac, fixed = np.polyfit(*zip(*points), 1)
        out[kind] = {"fixed_ms": round(float(fixed), 6), "ms_per_mmac": round(float(per_mac) * 1e6, 6),
                     "max_speedup": round(dense / fixed, 3) if fixed > 0 else None, "points": len(points)}
    return out


def _measured(row) -> dict:
    if row is None:
        return {"p50_ms": None, "ci95_ms": None, "round_p50_ms": None, "min_ms": None, "macs": None,
                "size_bytes": None}
    lat = row.latency or {}
    return {"p50_ms": lat.get("p50_ms"), "ci95_ms": lat.get("ci95_ms"), "round_p50_ms": lat.get("round_p50_ms"),
            "min_ms": lat.get("min_ms"), "macs": row.macs, "size_bytes": row.size_bytes,
            "bench_status": row.status, "bench_error": row.error}


def _speedup(base, f) -> dict:
    """Pooled p50 ratio, and the round-paired ratios' median with a bootstrap interval over rounds."""
    ratio = base["p50_ms"] / f["p50_ms"]
    paired = np.asarray(base["round_p50_ms"], float) / np.asarray(f["round_p50_ms"], float)
    rng = np.random.default_rng(0)
    draws = np.median(paired[rng.integers(len(paired), size=(_BOOTSTRAP, len(paired)))], axis=1)
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return {"speedup": round(ratio, 4), "paired_median": round(float(np.median(paired)), 4),
            "paired_ci95": [round(float(lo), 4), round(float(hi), 4)], "rounds": len(paired),
            "meets_goal": bool(ratio >= GOAL)}


def _variant(info) -> dict:
    rec = info["record"]
    out = {"accuracy": info["accuracy"]}
    if rec:
        out.update(fraction=rec["fraction"], macs=rec["macs"], params=rec["params"], channels=rec["channels"],
                   criterion=rec["spec"]["criterion"], epochs=rec["spec"]["epochs"],
                   surgery_max_abs_error=max(s["surgery_check"]["max_abs_error"] for s in rec["steps"]))
    return out


def _ratio(a, b):
    return round(a / b, 4) if a and b else None


def _sparse(sparse) -> dict:
    rows = {r.path: r for r in sparse["report"].rows}
    files = [{**f, **_measured(rows.get(f["path"]))} for f in sparse["files"]]
    dense = {(f["model"], f["precision"]): f for f in files if f["encoding"] == "dense"}
    pairs = []
    for f in files:
        base = dense.get((f["model"], f["precision"]))
        if f["encoding"] != "sparse" or base is None:
            continue
        pair = {"model": f["model"], "precision": f["precision"], "dense_bytes": base["bytes"],
                "sparse_bytes": f["bytes"], "dense_p50_ms": base["p50_ms"], "sparse_p50_ms": f["p50_ms"],
                "sparse_status": f.get("bench_status"), "sparse_error": f.get("bench_error")}
        if f["p50_ms"] is not None and base["p50_ms"] is not None:
            pair.update(_speedup(base, f))
        pairs.append(pair)
    return {"pairs": pairs, "files": files, "converter_facts": sparse["pipeline_facts"],
            "machine": _machine(sparse["report"])}


# ---- Markdown --------------------------------------------------------------------------------------
def markdown(s: dict) -> str:
    lines = ["# Channel pruning: fewer channels, fewer operations, less time", ""]
    if s["quick"]:
        lines += ["**Quick mode: a smoke run with short timing; these figures are not results.**", ""]
    lines += _about(s) + [""]
    if s.get("plot"):
        lines += [f"![p50 latency against MACs]({s['plot']})", ""]
    for name, m in s["models"].items():
        lines += [f"## {name}", "", _variant_table(m), "", _speed_table(m), "", *_fixed_cost_lines(m),
                  f"Full report: [{name}/report.md]({name}/report.md) (its latency-vs-agreement plot compares every "
                  "file with the dense fp32 file on synthetic inputs: for pruned models that agreement means nothing).",
                  ""]
    lines += _goal_section(s) + [""]
    if s["sparse_encoding"]:
        lines += _sparse_section(s["sparse_encoding"]) + [""]
    return "\n".join(lines)


def _about(s) -> list:
    m = s["machine"] or {}
    cpu, features, versions = machine_parts(m)
    rounds = ", ".join(f"{name}: {x['settings'].get('rounds')}" for name, x in s["models"].items())
    timing = "; ".join(f"{name}: {x['settings'].get('timing')}" for name, x in s["models"].items())
    measured = ", ".join(sorted({x.get("created") for x in s["models"].values() if x.get("created")}))
    return [
        f"- command: `{s['command']}` ({s['seconds']} s in all; measured {measured or s['created']})",
        f"- machine: {cpu.get('model', '?')}, {cpu.get('arch', '?')}, {cpu.get('cores', '?')} cores; CPU flags: "
        f"{features or '?'}; {m.get('os', '?')}; Python {m.get('python', '?')}; {versions}",
        f"- 1 thread, batch 1; every file of a model measured in one run of interleaved rounds "
        f"({rounds} rounds), each "
        "measurement in a process of its own; the machine is shared with other jobs",
        "- speedup = dense p50 / pruned p50 for the same kind of file; the interval pairs the two files round by "
        f"round and resamples rounds. Goal (issue 13): at least {s['goal_speedup']}x. *Speedup of min latency*: "
        "dense / pruned fastest run, the runs least disturbed by other jobs, as a cross-check. "
        f"Timing per measurement: {timing}",
    ]


def _variant_table(m) -> str:
    rows = []
    for v, info in m["variants"].items():
        acc = "-" if info["accuracy"] is None else f"{100 * info['accuracy']:.1f}%"
        if v == "dense":
            rows.append([v, "-", "-", "-", "-", acc, "-"])
            continue
        rows.append([v, f"{info['channels']['before'] - info['channels']['after']} of {info['channels']['before']}",
                     f"{info['macs']['before']:,} -> {info['macs']['after']:,} ({info['macs']['ratio']:.2f}x)",
                     f"{info['params']['before']:,} -> {info['params']['after']:,}",
                     f"{info['criterion']}, {info['epochs']} epochs", acc, f"{info['surgery_max_abs_error']:.1e}"])
    return render(["model", "channels removed", "MACs (Keras count)", "parameters", "pruning", "accuracy",
                   "surgery check"], rows, markdown=True, align="lllllrr")


def _speed_table(m) -> str:
    sizes = {(f["variant"], f["kind"]): f["size_bytes"] for f in m["files"]}
    rows = []
    for c in sorted(m["comparisons"], key=lambda c: (c["kind"], c["variant"])):
        lo, hi = c["paired_ci95"]
        min_speedup = "-" if c["min_speedup"] is None else f"{c['min_speedup']:.2f}x"
        rows.append([c["kind"], c["variant"], _ms(c["dense_p50_ms"]), _ms(c["p50_ms"]),
                     f"**{c['speedup']:.2f}x** ({lo:.2f}-{hi:.2f})", min_speedup, f"{c['macs_ratio']}x",
                     human_bytes(sizes.get((c["variant"], c["kind"]))), "yes" if c["meets_goal"] else "no"])
    return render(["file", "pruned", "dense p50 ms", "pruned p50 ms", "speedup (95% CI)", "speedup of min latency",
                   "MACs vs dense", "pruned size", f"≥ {GOAL}x"], rows, markdown=True, align="llrrrrrrl")


def _fixed_cost_lines(m) -> list:
    fits = m["fixed_cost"]
    bounded = [f"{kind} {c['fixed_ms']:.3g} ms (so at most {c['max_speedup']:.2f}x)"
               for kind, c in fits.items() if c["max_speedup"]]
    superlinear = [kind for kind, c in fits.items() if not c["max_speedup"]]
    lines = []
    if bounded:
        lines.append("What no pruning removes: p50 = fixed + per-MAC cost, fitted over " + ", ".join(ALIGNED) +
                     " (every group a multiple of 16 channels), leaves a fixed cost per inference of " +
                     "; ".join(bounded) + ". Dense p50 / fixed cost bounds the speedup any channel pruning gives.")
    if superlinear:
        lines.append(f"For {', '.join(superlinear)}, p50 fell faster than the MACs (the fit's fixed cost is "
                     "negative), most likely because the smaller models suffer less from other jobs' contention "
                     "for cache and memory bandwidth on this shared machine: expect speedups nearer the MAC ratio "
                     "on a quiet one.")
    return lines + [""] if lines else []


def _goal_section(s) -> list:
    lines = [f"## Against the goal: p50 at least {s['goal_speedup']}x faster than dense, 1 thread", ""]
    missed = [(n, c) for n, m in s["models"].items() for c in m["comparisons"] if not c["meets_goal"]]
    met = sum(len(m["comparisons"]) for m in s["models"].values()) - len(missed)
    lines.append(f"{met} of {met + len(missed)} comparisons meet it.")
    for name, c in missed:
        lines.append(f"- missed: {name} {c['variant']} {c['kind']}: {c['speedup']:.2f}x "
                     f"({_ms(c['dense_p50_ms'])} -> {_ms(c['p50_ms'])} ms)")
    return lines


def _sparse_section(sp) -> list:
    rows = []
    for p in sp["pairs"]:
        speed = (f"{p['speedup']:.2f}x ({p['paired_ci95'][0]:.2f}-{p['paired_ci95'][1]:.2f})" if "speedup" in p
                 else f"does not run: {p['sparse_error']}")
        rows.append([p["model"], p["precision"], human_bytes(p["dense_bytes"]), human_bytes(p["sparse_bytes"]),
                     f"{p['sparse_bytes'] / p['dense_bytes']:.2f}x", _ms(p["dense_p50_ms"]), _ms(p["sparse_p50_ms"]),
                     speed])
    kept = "; ".join(f"{k}: {'sparse' if v and v.get('used') else 'dense'} ({(v or {}).get('why', '-')})"
                     for k, v in sp["converter_facts"].items())
    return [
        "## Unstructured pruning: sparse-encoded TFLite files", "",
        "The same weights encoded dense and sparse (TFLite's sparsity optimization), measured side by side with "
        "LiteRT's default delegate (XNNPACK). Speedup = dense-encoded p50 / sparse-encoded p50 (above 1: the "
        "sparse file runs faster).", "",
        render(["model", "precision", "dense file", "sparse file", "size", "dense p50 ms", "sparse p50 ms",
                "speedup (95% CI)"], rows, markdown=True, align="llrrrrrl"), "",
        f"What `edgeopt convert` kept for the pruned digits CNN: {kept}.",
    ]


def _ms(v):
    if v is None:
        return "-"
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"
