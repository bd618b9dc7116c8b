"""Why the real-world models' quantized files failed their checks: the survey's conversions, explained.

Converts every model of ../shared/realmodels as `edgeopt survey` does (every export, synthetic
data: these models ship without any), then runs `edgeopt.explain` on each model whose quantized
files failed their check: per-layer error, the first divergent layer, causes, and the float
fallbacks made and measured (check, size, latency beside the original). Writes
benchmarks/realmodels/explain/<model>/ (explain.json/.md/.html and plots) and
benchmarks/realmodels/explain/SUMMARY.md + summary.json.

    .venv/bin/python benchmarks/realmodels/explain_realmodels.py [--models ecg_conv1d_synthblade7,...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

import edgeopt  # noqa: E402
from edgeopt.manifest import MANIFEST_NAME, Manifest  # noqa: E402

MODELS = ROOT.parent / "shared" / "realmodels"
KEEP = ("explain.json", "explain.md", "explain.html", "snr_depth.png")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", help="comma-separated model names (default: every model with a failed file)")
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "realmodels")
    p.add_argument("--results", type=Path, default=HERE / "explain")
    args = p.parse_args(argv)
    t0 = time.time()
    converted = args.work / "models"
    if not converted.exists():
        edgeopt.survey(MODELS, args.work, log=print)
    wanted = set(args.models.split(",")) if args.models else None
    rows = []
    for folder in sorted(f for f in converted.iterdir() if (f / MANIFEST_NAME).exists()):
        if wanted and folder.name not in wanted:
            continue
        manifest = Manifest.load(folder)
        failed = [a.id for a in manifest.artifacts if a.format in ("tflite", "onnx") and a.precision != "fp32"
                  and a.path and a.check and not a.check.get("passed", True)]
        if not failed:
            continue
        print(f"\n=== {folder.name}: {', '.join(failed)}", flush=True)
        ex = edgeopt.explain(folder, files=failed, speed=False, out=folder / "explain", log=print)
        results = args.results / folder.name
        results.mkdir(parents=True, exist_ok=True)
        for f in (folder / "explain").iterdir():
            if f.name in KEEP or f.name.endswith(".node_data.json"):
                shutil.copy2(f, results / f.name)
        rows += [_row(folder.name, f) for f in ex.files]
    done = {r["model"] for r in rows}
    kept = [r for r in _previous_rows(args.results) if r["model"] not in done]  # models not rerun keep their rows
    summary = {"command": "python benchmarks/realmodels/explain_realmodels.py " + " ".join(argv or sys.argv[1:]),
               "seconds": round(time.time() - t0), "synthetic_data": True,
               "rows": sorted(kept + rows, key=lambda r: (r["model"], r["file"]))}
    (args.results / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (args.results / "SUMMARY.md").write_text(_markdown(summary))
    print(f"done in {summary['seconds']}s: {args.results / 'SUMMARY.md'}")
    return 0


def _previous_rows(results: Path) -> list:
    try:
        return json.loads((results / "summary.json").read_text())["rows"]
    except (OSError, ValueError, KeyError):
        return []


def _row(model, f) -> dict:
    from edgeopt.explainer.verdict import best_fallback

    a = f.get("accuracy") or {}
    layers = {r["layer"]: r for r in a.get("layers", [])}
    first = a.get("first_divergent_layer")
    best = best_fallback(a) if a else None
    return {"model": model, "file": f["id"], "problems": (a.get("check") or {}).get("problems"),
            "first_divergent_layer": first, "rule": a.get("divergence_rule"),
            "snr_db_there": layers[first]["snr_db"] if first in layers else None,
            "worst_layers": a.get("worst_layers"), "causes": [c["cause"] for c in a.get("causes", [])],
            "original": a.get("check"), "fallbacks": [_fallback(fb) for fb in a.get("fallbacks", [])],
            "proposed": _fallback(best) if best else None, "note": a.get("fallback_note") or a.get("error"),
            "verdict": f["verdicts"][0] if f.get("verdicts") else None}


def _fallback(fb) -> dict:
    check, lat = fb.get("check") or {}, fb.get("latency") or {}
    return {"layers": fb["layers"], "error": fb.get("error"), "passed": check.get("passed"),
            "relative_max_error": check.get("relative_max_error"), "cosine": check.get("cosine"),
            "size_bytes": fb.get("size_bytes"), "size_ratio": fb.get("size_ratio"),
            "p50_ms": lat.get("p50_ms"), "original_p50_ms": lat.get("original_p50_ms"),
            "latency_ratio": lat.get("ratio_to_original")}


def _markdown(summary) -> str:
    lines = ["# Real-world models: where each failed file's error enters, and the measured float fallback", "",
             f"`{summary['command']}` ({summary['seconds']} s). These models ship without data: every check, "
             "calibration and per-layer comparison here uses the survey's **synthetic** inputs, so the figures say "
             "where the quantized files depart from the float ones on such inputs, not how accurate the models are. "
             "Latency: the fallback and the original file timed side by side (interleaved rounds, 1 thread, local CPU).",
             "", "| model | file | first divergent layer (SNR dB) | worst layers | proposed float fallback | "
             "check after | max error / range before -> after | size | latency |",
             "|---|---|---|---|---|---|---|---:|---:|"]
    for r in summary["rows"]:
        p, o = r["proposed"], r["original"] or {}
        snr = "-" if r["snr_db_there"] is None else f"{r['snr_db_there']:.1f}"
        if p:
            after = "passed" if p["passed"] else "still fails"
            err = f"{_pct(o.get('relative_max_error'))} -> {_pct(p['relative_max_error'])}"
            size = f"{p['size_ratio']:.2f}x" if p["size_ratio"] else "-"
            lat = f"{p['latency_ratio']:.2f}x" if p["latency_ratio"] else "-"
            kept = ", ".join(p["layers"])
        else:
            after, err, size, lat, kept = "-", "-", "-", "-", r["note"] or "none made"
        lines.append(f"| {r['model']} | {r['file']} | {r['first_divergent_layer'] or '-'} ({snr}) | "
                     f"{', '.join(r['worst_layers'] or [])} | {kept} | {after} | {err} | {size} | {lat} |")
    lines += ["", "## Verdicts", ""] + [f"- {r['verdict']}" for r in summary["rows"] if r["verdict"]]
    return "\n".join(lines) + "\n"


def _pct(v):
    return "-" if v is None else f"{v:.1%}"


if __name__ == "__main__":
    raise SystemExit(main())
