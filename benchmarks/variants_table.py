"""onnx_int8_variants.json and .md: each ONNX int8 variant's accuracy, error and parity per target, and speed here."""

from __future__ import annotations

import json
import time
from pathlib import Path

from edgeopt.bench.kernels import describe_cpu
from edgeopt.fileio import write_json_atomic, write_text_atomic
from edgeopt.table import pct, render

NAME = "onnx_int8_variants"


def model_record(spec, manifest, parity, speed) -> dict:
    """One model: the targets (CPU flags), and per int8 file its figures on every target and its local p50."""
    targets = {t["name"]: _target(t) for t in parity.targets}
    p50 = {r.artifact: r.latency for r in speed.rows if r.ok and r.threads == 1}
    files = []
    for a in manifest.artifacts:
        if a.precision != "int8" or a.format != "onnx":
            continue
        rows = {r.target: r for r in parity.rows if r.artifact == a.id}
        files.append({
            "artifact": a.id, "layout": a.options["quant_format"], "variant": a.options["int8_variant"],
            "status": a.status, "weights": {k: a.facts.get(k) for k in ("weight_type", "activation_type", "reduce_range")},
            "targets": {t: _figures(rows.get(t)) for t in targets},
            "local_p50_ms": (p50.get(a.id) or {}).get("p50_ms"), "local_ci95_ms": (p50.get(a.id) or {}).get("ci95_ms"),
        })
    return {"note": spec.note, "evaluation": parity.evaluation, "targets": targets, "files": files,
            "sentences": [d["sentence"] for d in parity.parity.values() if ".int8." in d["artifact"]]}


def _target(t) -> dict:
    cpu = (t.get("machine") or {}).get("cpu") or {}
    return {"cpu": cpu.get("model"), "arch": cpu.get("arch"), "emulated": t.get("emulated"),
            "flags": [k for k, v in (cpu.get("features") or {}).items() if v], "int8": describe_cpu(cpu),
            "status": t.get("status"), "error": t.get("error")}


def _figures(row) -> dict | None:
    if row is None or not row.ok:
        return {"status": row.status if row else "missing", "error": row.error if row else None}
    acc, par = row.accuracy or {}, row.parity or {}
    err = par.get("error_vs_float") or {}
    return {"status": "ok", "accuracy": acc.get("value"), "agreement": acc.get("top1_agreement"),
            "error_mean": err.get("mean"), "error_max": err.get("max", acc.get("max_abs_error")),
            "parity_lsb": par.get("lsb"), "parity_vs": par.get("vs"), "parity": par.get("verdict")}


def write(results: Path, name: str, model: dict, quick: bool) -> dict:
    """Add (or replace) one model's record in the results JSON and rewrite the Markdown from all of them."""
    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{NAME}.json"
    record = json.loads(path.read_text()) if path.exists() else {"schema": "edgeopt.benchmarks.onnx_int8_variants",
                                                                 "schema_version": 1, "models": {}}
    model.update(created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), quick=quick)
    record["models"][name] = model
    write_json_atomic(path, record)
    write_text_atomic(results / f"{NAME}.md", markdown(record))
    return {"json": str(path), "markdown": str(results / f"{NAME}.md")}


def markdown(record) -> str:
    lines = ["# ONNX int8 variants on three CPUs", "",
             "Made by `benchmarks/onnx_int8_variants.py` (each model's command, time and date below). Per target: accuracy on the labels (agreement with the Keras model where "
             "there are none), mean and max |error| against the Keras model's outputs, and parity: the largest "
             "distance in LSB from onnxruntime's unfused execution of the same file (QDQ) or from the target "
             "closest to the float model (QOperator). p50: 1 thread on this machine only (emulated latency "
             "means nothing), against the s8 file of the same layout (>1 faster; ≈ where the 95% intervals "
             "overlap).", ""]
    for name, m in record["models"].items():
        when = f"`{m['command']}`, {m['seconds']} s, {m['created']}" + (", QUICK: not results" if m["quick"] else "")
        lines += [f"## {name}", "", f"{m['note']} ({when}; {m['evaluation'].get('samples')} samples)", ""]
        lines += [f"- **{t}**{' (emulated)' if d['emulated'] else ''}: {d['cpu']} ({d['arch']}): {d['int8']}; "
                  f"flags: {' '.join(d['flags'])}" + (f" FAILED: {d['error']}" if d["status"] != "ok" else "")
                  for t, d in m["targets"].items()]
        lines += ["", render(*_table(m), markdown=True, align="lllrrrrrl"), ""]
        lines += [f"- {s}" for s in m["sentences"]] + [""]
    return "\n".join(lines)


def _table(m):
    headers = ["layout", "variant", "target", "accuracy", "mean err", "max err", "parity", "p50 ms here", "verdict"]
    s8 = {f["layout"]: f for f in m["files"] if f["variant"] == "s8"}
    rows = []
    for f in m["files"]:
        for t, fig in f["targets"].items():
            if fig.get("status") != "ok":
                rows.append([f["layout"], f["variant"], t, "-", "-", "-", "-", "-", fig.get("status")])
                continue
            acc = pct(fig["accuracy"]) if fig["accuracy"] is not None else f"{pct(fig['agreement'])} agr"
            lsb = "-" if fig["parity_lsb"] is None else f"{fig['parity_lsb']:.0f} LSB"
            p50 = ""
            if t == "local" and f["local_p50_ms"]:
                p50 = f"{f['local_p50_ms']:.3g} ({_vs_s8(f, s8.get(f['layout']))} s8)"
            rows.append([f["layout"], f["variant"], t, acc, _num(fig["error_mean"]), _num(fig["error_max"]), lsb, p50,
                         fig["parity"] or "-"])
    return headers, rows


def _num(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def summary_table(record) -> str:
    """The README's view: per model, layout and variant, accuracy and mean |error| on each target, speed here."""
    targets = ["local", "x86-64-avx2", "aarch64-emulated"]
    headers = ["model", "layout", "variant", *(f"{t}: accuracy, mean err, parity" for t in targets), "p50 here vs s8"]
    rows = []
    for name, m in record["models"].items():
        s8 = {f["layout"]: f for f in m["files"] if f["variant"] == "s8"}
        for f in m["files"]:
            cells = []
            for t in targets:
                fig = f["targets"].get(t) or {}
                if fig.get("status") != "ok":
                    cells.append(fig.get("status", "-"))
                    continue
                acc = pct(fig["accuracy"]) if fig["accuracy"] is not None else f"{pct(fig['agreement'])} agr"
                mark = "" if fig["parity"] == "ok" else " **" + fig["parity"] + "**"
                cells.append(f"{acc}, {_num(fig['error_mean'])}, {fig['parity_lsb']:.0f} LSB{mark}")
            rows.append([name, f["layout"], f["variant"], *cells, _vs_s8(f, s8.get(f["layout"]))])
    return render(headers, rows, markdown=True, align="lll" + "l" * len(targets) + "r")


def _vs_s8(f, s8) -> str:
    """Speed against the s8 file of the same layout (>1 faster); ≈ when their p50 intervals overlap."""
    if not s8 or not s8["local_p50_ms"] or not f["local_p50_ms"]:
        return "-"
    (lo, hi), (slo, shi) = f["local_ci95_ms"], s8["local_ci95_ms"]
    overlap = f is not s8 and lo <= shi and slo <= hi
    return ("≈" if overlap else "") + f"{s8['local_p50_ms'] / f['local_p50_ms']:.2f}x"
