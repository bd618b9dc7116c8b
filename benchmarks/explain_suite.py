"""Why, on the benchmark suite: every reference model benchmarked with per-operator profiles, then explained.

For each model of the suite (benchmarks/run.py converts them; this reuses its work folder and
converts what is missing): `edgeopt.benchmark` at 1 and 2 threads with profiles, then
`edgeopt.explain` on that report. Writes benchmarks/explain/<model>/ (explain.json/.md/.html, the
plots, Model Explorer node data, the report it read) and benchmarks/explain/SUMMARY.md + summary.json:
every int8 file slower than its fp32 parent, with its verdict. The benchmark report it read
(report.json with the profiles, report.md) is kept beside them in bench/.

    .venv/bin/python benchmarks/explain_suite.py                  # the full run (~15 min on 2 cores)
    .venv/bin/python benchmarks/explain_suite.py --models digits_cnn --quick
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import edgeopt  # noqa: E402

import run as suite_run  # noqa: E402
from suite_models import QUICK_TIMING, SUITE  # noqa: E402

THREADS, ROUNDS = [1, 2], 5
KEEP = ("explain.json", "explain.md", "explain.html", "snr_depth.png", "op_time.png")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(SUITE))
    p.add_argument("--quick", action="store_true", help="1 thread, 2 rounds, short timing (a smoke run)")
    p.add_argument("--results", type=Path, default=HERE / "explain")
    p.add_argument("--reuse-reports", action="store_true",
                   help="explain the profiled reports already in --results instead of benchmarking again")
    args = p.parse_args(argv)
    work = HERE / "work" / ("quick" if args.quick else "full")
    t0, summary = time.time(), {"models": {}, "slower": []}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        spec = SUITE[name]
        print(f"\n=== {name}", flush=True)
        manifest = suite_run.convert_model(spec, work / name, args.quick, print)
        results, bench = args.results / name, work / name / "bench"
        (results / "bench").mkdir(parents=True, exist_ok=True)
        if args.reuse_reports and (results / "bench" / "report.json").exists():
            bench = results / "bench"
        else:
            edgeopt.benchmark(manifest, threads=[1] if args.quick else THREADS, rounds=2 if args.quick else ROUNDS,
                              timing=QUICK_TIMING if args.quick else spec.timing, out=bench,
                              progress=False, log=print, profile=True)
        ex = edgeopt.explain(work / name, report=bench / "report.json", out=work / name / "explain", log=print)
        _publish(work / name / "explain", results)
        for report in ("report.json", "report.md"):  # the page and plots of the report are in explain.html
            if (bench / report).resolve() != (results / "bench" / report).resolve():
                shutil.copy2(bench / report, results / "bench" / report)
        summary["models"][name] = _model_summary(ex)
        summary["slower"] += [{"model": name, **s} for s in _slower(ex)]
    summary["seconds"] = round(time.time() - t0)
    summary["command"] = "python benchmarks/explain_suite.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (args.results / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (args.results / "SUMMARY.md").write_text(_markdown(summary))
    print(f"done in {summary['seconds']}s: {args.results / 'SUMMARY.md'}")
    return 0


def _publish(folder: Path, results: Path):
    """The reports, plots and node data; not the fallback model files (binaries stay in the work folder)."""
    for f in folder.iterdir():
        if f.name in KEEP or f.name.endswith(".node_data.json"):
            shutil.copy2(f, results / f.name)


def _model_summary(ex) -> dict:
    files = {}
    for f in ex.files:
        a = f.get("accuracy") or {}
        files[f["id"]] = {"first_divergent_layer": a.get("first_divergent_layer"), "final_snr_db": a.get("final_snr_db"),
                          "worst_layers": a.get("worst_layers"), "check_passed": (a.get("check") or {}).get("passed")}
    return {"machines": ex.machines, "files": files}


def _slower(ex) -> list:
    return [{"file": f["id"], "target": s["target"], "threads": s["threads"], "speedup": s["speedup"],
             "ci95": s["speedup_ci95"], "within_noise": s["within_noise"], "p50_ms": s["p50_ms"], "baseline_p50_ms": s["baseline_p50_ms"],
             "top_op_types": [t["op_type"] for t in (s["profile"] or {}).get("op_types", [])[:3]],
             "qdq_share": ((s["profile"] or {}).get("qdq") or {}).get("share"), "verdict": s["verdict"]}
            for f in ex.files if f["precision"].startswith("int8") for s in f["speed"] if s.get("slower")]


def _markdown(summary) -> str:
    lines = ["# Why int8 is slower, where it is: the benchmark suite explained", "",
             f"`{summary['command']}` ({summary['seconds']} s). Latency from the interleaved benchmark "
             "(p50 ratio, fp32 of the same runtime / this file); op times from the runtimes' own profilers "
             "(onnxruntime session profiling; LiteRT's CompiledModel profiler, per XNNPACK operator), measured "
             "in the benchmark worker after the timed runs.", ""]
    for name, m in summary["models"].items():
        cpu = ", ".join(f"{x['name']}: {x['cpu_model']} ({x['features']})" for x in m["machines"])
        lines.append(f"- **{name}**: {cpu}; details in [{name}/explain.md]({name}/explain.md)")
    for title, noisy in (("Every int8 file slower than its fp32 parent", False),
                         ("Slower at the median, within noise (the ratio's 95% interval contains 1)", True)):
        lines += ["", f"## {title}", ""]
        found = [s for s in summary["slower"] if bool(s["within_noise"]) == noisy]
        lines += [f"- **{s['model']}** — {s['verdict']}" for s in found] or ["None in this run."]
    lines += ["", "## Per-layer error of every quantized file", "",
              "| model | file | check | first divergent layer | output SNR dB | worst layers |", "|---|---|---|---|---:|---|"]
    for name, m in summary["models"].items():
        for fid, f in m["files"].items():
            snr = f["final_snr_db"]
            lines.append(f"| {name} | {fid} | {'passed' if f['check_passed'] else 'failed'} | "
                         f"{f['first_divergent_layer'] or '-'} | {'exact' if snr is None else f'{snr:.1f}'} | "
                         f"{', '.join(f['worst_layers'] or [])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
