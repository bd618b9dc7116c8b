"""SUMMARY.md and summary.json: the suite's per-model reports and overhead check, in one place to act on.

Built from every `<model>/report.json` and `overhead.json` found in the results folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from edgeopt.bench.report import Report
from edgeopt.fileio import write_json_atomic, write_text_atomic
from edgeopt.table import human_bytes, pct, render

OVERHEAD_JSON, SUMMARY_MD, SUMMARY_JSON = "overhead.json", "SUMMARY.md", "summary.json"
QUANTIZED = ("int8", "int8-dynamic")


def write(results: Path, command: str, seconds: float, quick: bool, notes: dict) -> dict:
    results = Path(results)
    reports = {name: Report.load(results / name) for name in notes if (results / name / "report.json").exists()}
    overhead_path = results / OVERHEAD_JSON
    overhead = json.loads(overhead_path.read_text()) if overhead_path.exists() else None
    record = build(reports, overhead, command, seconds, quick, notes)
    write_json_atomic(results / SUMMARY_JSON, record)
    write_text_atomic(results / SUMMARY_MD, markdown(record))
    return {"markdown": str(results / SUMMARY_MD), "json": str(results / SUMMARY_JSON)}


def build(reports: dict, overhead, command, seconds, quick, notes) -> dict:
    models = {}
    for name, report in reports.items():
        machine = next((t.get("machine") for t in report.targets if t.get("machine")), None)
        models[name] = {"note": notes.get(name, ""), "created": report.created, "settings": report.settings,
                        "evaluation": report.evaluation, "machine": machine,
                        "rows": [_row(r) for r in report.rows]}
    rows = [dict(model=name, **r) for name, m in models.items() for r in m["rows"]]
    quantized = [r for r in rows if r["precision"] in QUANTIZED and r["status"] == "ok" and r["speedup"]]
    return {
        "schema": "edgeopt.benchmarks.summary", "schema_version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command, "seconds": round(seconds), "quick": quick,
        "machine": next((m["machine"] for m in models.values() if m["machine"]), None),
        "models": models,
        "int8_slower_than_fp32": [_brief(r) for r in quantized if r["verdict"] == "slower"],
        "int8_no_faster_than_fp32": [_brief(r) for r in quantized if r["verdict"] == "within noise"],
        "int8_faster_than_fp32": [_brief(r) for r in quantized if r["verdict"] == "faster"],
        "failed": [_brief(r) for r in rows if r["status"] != "ok"],
        "aeq_vs_tfliteconverter": aeq_pairs(rows),
        "overhead": overhead,
    }


def aeq_pairs(rows) -> list:
    """Each ai-edge-quantizer file beside TFLiteConverter's file of its precision, same model and thread count."""
    by_key = {(r["model"], r["artifact"], r["threads"]): r for r in rows}
    pairs = []
    for r in rows:
        if ".aeq." not in r["artifact"] or r["status"] != "ok":
            continue
        twin = by_key.get((r["model"], f"{r['model']}.{r['precision']}.tflite", r["threads"]))
        if not twin or twin["status"] != "ok":
            continue
        rounds = [t / a for a, t in zip(r["round_p50_ms"] or [], twin["round_p50_ms"] or []) if a]
        pairs.append({
            "model": r["model"], "threads": r["threads"], "aeq": r["artifact"], "tfliteconverter": twin["artifact"],
            "size_ratio": r["size_bytes"] / twin["size_bytes"],
            "max_abs_error": [r["max_abs_error"], twin["max_abs_error"]],
            "accuracy": [r["accuracy"], twin["accuracy"]], "top1_agreement": [r["top1_agreement"], twin["top1_agreement"]],
            "p50_ms": [r["p50_ms"], twin["p50_ms"]],
            "speed_vs_tfliteconverter": twin["p50_ms"] / r["p50_ms"],  # > 1: ai-edge-quantizer's file is faster
            "speed_vs_tfliteconverter_rounds": [min(rounds), max(rounds)] if rounds else None,
            "speedup_vs_fp32": r["speedup"],
        })
    return pairs


def _row(r) -> dict:
    lat, sp, acc = r.latency or {}, r.speedup or {}, r.accuracy or {}
    if sp.get("vs") == r.artifact:
        verdict = "baseline"
    elif sp.get("ratio") is None:
        verdict = None
    else:
        verdict = "within noise" if sp["within_noise"] else "faster" if sp["ratio"] > 1 else "slower"
    return {
        "artifact": r.artifact, "format": r.format, "precision": r.precision, "threads": r.threads,
        "status": r.status, "error": r.error, "size_bytes": r.size_bytes, "size_ratio": r.size_ratio,
        "p50_ms": lat.get("p50_ms"), "ci95_ms": lat.get("ci95_ms"), "round_p50_ms": lat.get("round_p50_ms"),
        "speedup": sp.get("ratio"), "speedup_ci95": sp.get("ci95"), "verdict": verdict,
        "accuracy": acc.get("value"), "top1_agreement": acc.get("top1_agreement"), "agreement_vs": acc.get("vs"),
        "max_abs_error": acc.get("max_abs_error"),
        "peak_memory_mb": (r.memory_mb or {}).get("peak"),
    }


def _brief(r) -> dict:
    return {k: r[k] for k in ("model", "artifact", "format", "precision", "threads", "p50_ms", "speedup",
                              "speedup_ci95", "verdict", "status", "error")}


# ---- Markdown --------------------------------------------------------------------------------------
def markdown(s: dict) -> str:
    lines = ["# Benchmark suite results", ""]
    if s["quick"]:
        lines += ["**Quick mode: a smoke run with short timing; these figures are not results.**", ""]
    lines += _about(s) + [""]
    lines += ["## int8 against fp32", "", _int8_table(s), "", *_int8_findings(s), ""]
    if s.get("aeq_vs_tfliteconverter"):
        lines += _aeq_section(s["aeq_vs_tfliteconverter"]) + [""]
    if s["overhead"]:
        lines += _overhead_section(s["overhead"]) + [""]
    for name, m in s["models"].items():
        lines += [f"## {name}", "", f"{m['note']}. Full report: [{name}/report.md]({name}/report.md).", "",
                  _model_table(m), ""]
    if s["failed"]:
        lines += ["## Failed or skipped", ""]
        lines += [f"- {r['model']} {r['artifact']} threads={r['threads']}: {r['status']}: {r['error']}"
                  for r in s["failed"]] + [""]
    return "\n".join(lines)


def machine_parts(m: dict) -> tuple[dict, str, str]:
    """(cpu record, its ISA flags joined, tool versions joined) of a recorded machine."""
    cpu = m.get("cpu", {})
    features = ", ".join(k for k, v in (cpu.get("features") or {}).items() if v)
    return cpu, features, ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items())


def _about(s) -> list:
    m = s["machine"] or {}
    cpu, features, versions = machine_parts(m)
    first = next(iter(s["models"].values()), {})
    settings = first.get("settings", {})
    return [
        f"- command: `{s['command']}` ({s['seconds']} s in all, {s['created']})",
        f"- machine: {cpu.get('model', '?')}, {cpu.get('arch', '?')}, {cpu.get('cores', '?')} cores "
        f"({features}); {m.get('os', '?')}; Python {m.get('python', '?')}; {versions}",
        "- machines like this one are shared, so every file is measured in interleaved rounds (A B C A B C ...) "
        "and drift hits all alike; the intervals resample rounds",
        f"- threads {settings.get('threads')}, {settings.get('rounds')} rounds; each measurement is batch 1 in a "
        "process of its own; speedup = fp32 p50 / this p50 within the same format and thread count, "
        "≈ where its 95% interval contains 1",
    ]


def _speed(r) -> str:
    if r["verdict"] == "baseline":
        return "base"
    if r["speedup"] is None:
        return "-"
    lo, hi = r["speedup_ci95"]
    return f"{'≈' if r['verdict'] == 'within noise' else ''}{r['speedup']:.2f}x ({lo:.2f}-{hi:.2f})"


def _p50(r) -> str:
    if r["p50_ms"] is None:
        return "-"
    lo, hi = r["ci95_ms"]
    return f"{_ms(r['p50_ms'])} ({_ms(lo)}-{_ms(hi)})"


def _ms(v):
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def _int8_table(s) -> str:
    rows = []
    for name, m in s["models"].items():
        for r in m["rows"]:
            if r["precision"] in QUANTIZED and r["status"] == "ok":
                rows.append([name, r["threads"], r["artifact"], _ratio(r["size_ratio"]), _p50(r), _speed(r),
                             r["verdict"] or "-"])
    headers = ["model", "threads", "artifact", "size vs fp32", "p50 ms (95% CI)", "speedup vs fp32", "verdict"]
    return render(headers, rows, markdown=True, align="lrlrrrl")


def _int8_findings(s) -> list:
    """Per model and thread count: which int8 files are slower, no faster, or faster than fp32."""
    groups = {}
    for verdict, key in (("slower", "int8_slower_than_fp32"), ("within noise", "int8_no_faster_than_fp32"),
                         ("faster", "int8_faster_than_fp32")):
        for r in s[key]:
            cell = groups.setdefault((r["model"], r["threads"]), {}).setdefault(verdict, [])
            cell.append(f"{r['artifact'].removeprefix(r['model'] + '.')} {r['speedup']:.2f}x")
    order = list(s["models"])
    rows = [[model, threads, *("; ".join(g.get(v, [])) or "-" for v in ("slower", "within noise", "faster"))]
            for (model, threads), g in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1]))]
    headers = ["model", "threads", "int8 SLOWER than fp32", "no faster (within noise)", "faster"]
    return ["Where int8 is slower than fp32 on this CPU (speedup = fp32 p50 / int8 p50, same format):", "",
            render(headers, rows, markdown=True, align="lrlll")]


def _aeq_section(pairs) -> list:
    rows = []
    for p in pairs:
        lo_hi = p["speed_vs_tfliteconverter_rounds"]
        spread = f" ({lo_hi[0]:.2f}-{lo_hi[1]:.2f})" if lo_hi else ""
        rows.append([p["model"], p["threads"], p["aeq"].removeprefix(p["model"] + "."),
                     p["tfliteconverter"].removeprefix(p["model"] + "."), f"{p['size_ratio']:.2f}x",
                     " / ".join(_g(v) for v in p["max_abs_error"]),
                     " / ".join(pct(v) if v is not None else "-" for v in p["accuracy"]),
                     " / ".join(_ms(v) for v in p["p50_ms"]), f"{p['speed_vs_tfliteconverter']:.2f}x{spread}",
                     _ratio(p["speedup_vs_fp32"])])
    headers = ["model", "threads", "ai-edge-quantizer file", "TFLiteConverter file", "size vs TFLC",
               "max abs err (AEQ / TFLC)", "accuracy (AEQ / TFLC)", "p50 ms (AEQ / TFLC)",
               "speed vs TFLC (round range)", "speedup vs fp32"]
    return ["## ai-edge-quantizer against TFLiteConverter", "",
            "Each file of LiteRT's quantizer (`backend: ai-edge-quantizer`, a pass over the fp32 .tflite file) beside "
            "TFLiteConverter's file of the same precision, measured in the same interleaved rounds. `max abs err` is "
            "against the Keras model; `speed vs TFLC` is TFLiteConverter's p50 over ai-edge-quantizer's (> 1: "
            "faster), with the range of the per-round ratios. 16x8 (`activations: int16`) and weight-only are "
            "ai-edge-quantizer's mixed recipes, set beside TFLiteConverter's int8 and int8-dynamic files.", "",
            render(headers, rows, markdown=True, align="lrllrrrrrr")]


def _g(v) -> str:
    return "-" if v is None else f"{v:.2g}"


def _ratio(v) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _overhead_section(o) -> list:
    rows = [[r["case"], r["threads"], r["runs_per_measurement"], _ci(r["harness_p50_ms"], r["harness_ci95_ms"]),
             _ci(r["bare_p50_ms"], r["bare_ci95_ms"]), f"{r['ratio']:.3f} ({r['ratio_ci95'][0]:.3f}-"
             f"{r['ratio_ci95'][1]:.3f})", "ok" if r["passed"] else f"above {o['bar']}"] for r in o["results"]]
    headers = ["case", "threads", "runs per round", "harness p50 ms (95% CI)", "bare loop p50 ms (95% CI)",
               "ratio (95% CI)", "verdict"]
    return ["## Harness overhead", "",
            f"The harness's p50 against a bare loop over the runtime, {o['rounds']} interleaved rounds in one run "
            f"({o['seconds']:.0f} s); the bar is a ratio of at most {o['bar']} for MobileNetV2. Method: "
            f"{o['method']}. Data, with every round: [{OVERHEAD_JSON}]({OVERHEAD_JSON}).", "",
            render(headers, rows, markdown=True, align="lrrrrrl")]


def _ci(p50, ci) -> str:
    return f"{p50:.4g} ({ci[0]:.4g}-{ci[1]:.4g})"


def _model_table(m) -> str:
    rows = [[r["artifact"], r["threads"], human_bytes(r["size_bytes"]), _ratio(r["size_ratio"]), _p50(r),
             _speed(r), pct(r["accuracy"]) if r["accuracy"] is not None else "-",
             pct(r["top1_agreement"]) if r["top1_agreement"] is not None else "-", r["status"]]
            for r in m["rows"]]
    headers = ["artifact", "threads", "size", "vs fp32", "p50 ms (95% CI)", "speedup", "accuracy",
               "agreement", "status"]
    return render(headers, rows, markdown=True, align="lrrrrrrrl")
