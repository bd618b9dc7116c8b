"""Recurrent models reach int8: every LSTM/GRU file in ../shared/realmodels, every way there is, measured.

    .venv/bin/python benchmarks/realmodels/recurrent_int8.py                 # about 25 minutes on 2 cores
    .venv/bin/python benchmarks/realmodels/recurrent_int8.py --models stock_lstm_aj1401

For each model whose layers include LSTM or GRU (per the corpus' MANIFEST.json), `edgeopt.convert` makes
every candidate below on synthetic data (the models ship without any), then `edgeopt.benchmark` times the
files at 1 thread in interleaved rounds. Each model ends with a verdict: the full-int8 file that passed
its check (the fastest of them), or the best dynamic-range file and the reasons full int8 failed.
Writes recurrent_int8.json and recurrent_int8.md beside this script; converted files go to --work.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CORPUS = ROOT.parent / "shared" / "realmodels"
sys.path.insert(0, str(ROOT))

import edgeopt  # noqa: E402  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)

AEQ = {"backend": "ai-edge-quantizer"}
# (label, export) in table order; int8 exports get io_type float32 where the input is token ids.
CANDIDATES = [
    ("fp32, loops", {"precision": "fp32"}),
    ("int8, loops (TFLiteConverter)", {"precision": "int8", "recurrent": "loop"}),
    ("int8, unrolled (TFLiteConverter; the default)", {"precision": "int8"}),
    ("int8, fused LSTMs (TFLiteConverter)", {"precision": "int8", "recurrent": "fused"}),
    ("int8, loops (ai-edge-quantizer)", {"precision": "int8", "recurrent": "loop", **AEQ}),
    ("int8, unrolled (ai-edge-quantizer)", {"precision": "int8", "recurrent": "unroll", **AEQ}),
    # Integer-only but not int8: int16 activations (LiteRT's reference kernels), for states 8 bits cannot hold.
    ("16x8, unrolled (ai-edge-quantizer)",
     {"precision": "int8", "recurrent": "unroll", "activations": "int16", "io_type": "float32", **AEQ}),
    ("int8-dynamic, loops (TFLiteConverter)", {"precision": "int8-dynamic"}),
    ("int8-dynamic, loops (ai-edge-quantizer)", {"precision": "int8-dynamic", **AEQ}),
    ("weight-only int8, loops (ai-edge-quantizer)", {"precision": "int8-dynamic", "weight_only": True, **AEQ}),
]
TOKEN_IO_NOTE = ("its input is token ids, which int8 inputs cannot hold (0..{high} in 256 steps): its int8 files "
                 "take float32 ids (io_type: float32, quantized inside); one int8-I/O file shows the loss")
THREADS, ROUNDS, TIMING = [1], 3, {"min_seconds": 0.5}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", help="comma-separated model names (default: every LSTM/GRU model in the corpus)")
    p.add_argument("--realmodels", type=Path, default=CORPUS, help="the corpus folder (default: %(default)s)")
    p.add_argument("--work", type=Path, default=HERE.parent / "work" / "recurrent", help="converted files (default: %(default)s)")
    return p.parse_args(argv)


def recurrent_models(corpus: Path) -> list[dict]:
    """Corpus entries whose model holds recurrent layers, found by loading each as edgeopt does.

    MANIFEST.json's layer_types cannot say: it is empty for files its loader could not open (the
    Windows-saved LSTM/GRU model among them).
    """
    from edgeopt.converter.anatomy import recurrent_layers
    from edgeopt.converter.keras_io import load_model
    from edgeopt.errors import EdgeoptError

    found = []
    for entry in json.loads((corpus / "MANIFEST.json").read_text()):
        try:
            layers = recurrent_layers(load_model(str(corpus / entry["file"])).model)
        except EdgeoptError:  # refused (stored code) or unreadable: no recurrent model to convert
            continue
        if layers:
            found.append({**entry, "recurrent_layers": layers})
    return found


def exports_for(token_input) -> list[dict]:
    exports = []
    for _, export in CANDIDATES:
        e = {"format": "tflite", **export}
        if token_input and e["precision"] == "int8":
            e["io_type"] = "float32"
        exports.append(e)
    if token_input:
        exports.append({"format": "tflite", "precision": "int8"})  # int8 I/O: the ids get quantized
    return exports


def convert(entry, corpus: Path, work: Path):
    """Convert one model every way; evaluation inputs are drawn apart from the calibration inputs (seed 1)."""
    from edgeopt import data as datalib
    from edgeopt.converter.anatomy import input_ranges
    from edgeopt.converter.keras_io import input_specs, load_model

    model = load_model(str(corpus / entry["file"])).model
    ranges = input_ranges(model)
    evaluation = datalib.synthetic(input_specs(model), 256, seed=1, ranges=ranges)
    token_input = bool(ranges[0]["integer"])
    recipe = {"name": entry["name"], "exports": exports_for(token_input)}
    manifest = edgeopt.convert(str(corpus / entry["file"]), recipe, calibration="synthetic", evaluation=evaluation,
                               out=work / entry["name"], progress=False, log=print)
    return manifest, token_input, ranges[0]


def benchmark(manifest, work: Path):
    fp32 = next(a.id for a in manifest.artifacts if a.precision == "fp32" and a.ok and "unrolled" not in a.id)
    return edgeopt.benchmark(manifest, threads=THREADS, rounds=ROUNDS, timing=TIMING, baseline=fp32,
                             out=work / "bench", progress=False, log=print)


def rows_for(manifest, report, token_input) -> list[dict]:
    timed = {r.artifact: r for r in report.rows if r.ok}
    labels = {json.dumps(_export_key(e), sort_keys=True): label for label, e in CANDIDATES}
    rows = []
    for a in manifest.artifacts:
        key = json.dumps(_export_key({"precision": a.precision, **a.options}), sort_keys=True)
        label = labels.get(key, "fp32, unrolled (parent of the ai-edge-quantizer pass)")
        if token_input and a.precision == "int8" and not _is_16x8(a.options):
            label += ", float32 I/O" if a.options.get("io_type") == "float32" else ", int8 I/O (token ids quantized)"
        row = timed.get(a.id)
        out = (a.check or {}).get("outputs", [{}])[0]
        rows.append({
            "model": manifest.source["name"], "label": label, "artifact": a.id, "status": a.status,
            "error": a.error, "size_bytes": a.size_bytes, "convert_seconds": a.seconds,
            "max_abs_error": (a.check or {}).get("max_abs_error"), "relative_max_error": out.get("relative_max_error"),
            "top1_agreement": (a.check or {}).get("top1_agreement"), "recurrent": a.facts.get("recurrent"),
            "full_int8": a.precision == "int8" and a.ok and not _is_16x8(a.options),
            "integer_16x8": a.ok and _is_16x8(a.options),
            "p50_ms": row.latency["p50_ms"] if row else None,
            "speedup": row.speedup["ratio"] if row and row.speedup else None,
            "size_ratio": row.size_ratio if row else None,
        })
    return rows


def _is_16x8(options) -> bool:
    return options.get("activations") == "int16"


def _export_key(export):
    ignored = {"format", "io_type", "allow_float_ops", "calibration_method"}
    defaults = {"recurrent": "auto", "backend": "tflite-converter", "weight_only": False, "activations": "int8"}
    return {k: v for k, v in export.items() if k not in ignored and defaults.get(k) != v}


def verdict(rows) -> dict:
    """The fastest full-int8 file that passed its check; else the fastest int8-weight file that did, and why."""
    full = [r for r in rows if r["full_int8"] and r["p50_ms"] is not None]
    if full:
        best = min(full, key=lambda r: r["p50_ms"])
        return {"outcome": "full int8", "artifact": best["artifact"], "label": best["label"]}
    weights = [r for r in rows if r["p50_ms"] is not None and r["artifact"].split(".")[1] == "int8-dynamic"]
    best = min(weights, key=lambda r: r["p50_ms"]) if weights else None
    integer = [r for r in rows if r.get("integer_16x8") and r["p50_ms"] is not None]
    alternative = {"artifact": integer[0]["artifact"], "label": integer[0]["label"]} if integer else None
    return {"outcome": "int8 weights only", "artifact": best and best["artifact"], "label": best and best["label"],
            "integer_alternative": alternative}


def markdown(results, machine, command, seconds) -> str:
    from edgeopt.table import render

    lines = [
        "# Recurrent models to int8: every LSTM/GRU model of `../shared/realmodels`, every way",
        "",
        f"Made by `python benchmarks/realmodels/recurrent_int8.py` (one model: `--models NAME`; the last run, "
        f"`{command}`, took {seconds / 60:.0f} minutes) on {machine}. Every file is checked against the "
        "Keras model on 256 **synthetic** inputs (drawn apart from the 200 synthetic calibration inputs): the "
        "figures prove a conversion faithful, not a model accurate. Latency: median of one inference, 1 thread, "
        f"{ROUNDS} interleaved rounds (`edgeopt.benchmark`); `vs fp32` is the loop fp32 file's p50 over this one's.",
        "",
    ]
    for result in results:
        lines += [f"## {result['model']}", "",
                  f"{result['description']}; recurrent layers: {', '.join(result['recurrent_layers'])}. Measured "
                  f"{result['measured']}.", ""]
        if result.get("note"):
            lines += [f"Note: {result['note']}", ""]
        v = result["verdict"]
        if v["outcome"] == "full int8":
            lines += [f"**Verdict: full int8**: `{v['artifact']}` ({v['label']}), the fastest int8 file that "
                      "passed its check.", ""]
        else:
            lines += [f"**Verdict: no full-int8 file passed its check**; the best measured file is `{v['artifact']}` "
                      f"({v['label']}: the fastest with int8 weights that passed). Why each int8 file failed is "
                      "listed under the table.", ""]
            if v.get("integer_alternative"):
                alt = v["integer_alternative"]
                lines += [f"Integer-only alternative that passed: `{alt['artifact']}` ({alt['label']}): int16 "
                          "activations hold what int8 cannot, on LiteRT's reference kernels.", ""]
        if result.get("why"):
            lines += [f"Why full int8 fails here: {result['why']}", ""]
        table = [[r["label"], r["status"], _kb(r["size_bytes"]), _fmt(r["size_ratio"], "{:.2f}x"),
                  _fmt(r["max_abs_error"], "{:.2g}"), _fmt(r["relative_max_error"], "{:.1%}"),
                  _fmt(r["top1_agreement"], "{:.0%}"), _fmt(r["p50_ms"], "{:.3g}"), _fmt(r["speedup"], "{:.2f}x"),
                  _fmt(r["convert_seconds"], "{:.0f}")] for r in result["rows"]]
        lines += [render(["file", "status", "size", "vs fp32", "max abs err", "of range", "top-1 agree",
                          "p50 ms", "vs fp32", "convert s"], table, markdown=True), ""]
        failures = [r for r in result["rows"] if r["error"]]
        if failures:
            lines += ["Failures, as the manifest records them:", ""]
            lines += [f"- {r['label']}: {r['error']}" for r in failures] + [""]
    return "\n".join(lines)


def merged(results, subset) -> list:
    """With --models, the other models' results of the last run are kept (each result says when it was made)."""
    path = HERE / "recurrent_int8.json"
    if not subset or not path.exists():
        return results
    fresh = {r["model"] for r in results}
    return [r for r in json.loads(path.read_text())["results"] if r["model"] not in fresh] + results


def _kb(n):
    return "-" if n is None else f"{n / 1024:.0f} KB"


def _fmt(value, pattern):
    return "-" if value is None else pattern.format(value)


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.time()
    wanted = args.models.split(",") if args.models else None
    results, machine = [], None
    for entry in recurrent_models(args.realmodels):
        if wanted and entry["name"] not in wanted:
            continue
        print(f"\n=== {entry['name']}: {entry['description']}", flush=True)
        manifest, token_input, input_range = convert(entry, args.realmodels, args.work)
        report = benchmark(manifest, args.work / entry["name"])
        machine = machine or report.targets[0].get("machine")
        rows = rows_for(manifest, report, token_input)
        note = TOKEN_IO_NOTE.format(high=input_range["high"] - 1) if token_input else None
        why = HERE / f"{entry['name']}_int8_why.json"  # lstm_int8_why.py's measured explanation, if run
        results.append({"model": entry["name"], "description": entry["description"], "note": note, "rows": rows,
                        "verdict": verdict(rows), "recurrent_layers": entry["recurrent_layers"],
                        "why": json.loads(why.read_text())["text"] if why.exists() else None,
                        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine})
    command = "python benchmarks/realmodels/recurrent_int8.py" + (f" --models {args.models}" if args.models else "")
    cpu = (machine or {}).get("cpu", {})
    flags = ", ".join(f for f, on in cpu.get("features", {}).items() if on)
    where = f"{cpu.get('model', 'this machine')} ({cpu.get('usable_cores', '?')} cores; {flags})"
    seconds = time.time() - t0
    results = merged(results, args.models)
    (HERE / "recurrent_int8.json").write_text(json.dumps({"command": command, "seconds": round(seconds),
                                                          "machine": machine, "results": results}, indent=1))
    (HERE / "recurrent_int8.md").write_text(markdown(results, where, command, seconds))
    print(f"\nwritten: {HERE / 'recurrent_int8.md'} ({seconds / 60:.0f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
