"""explain(): why each quantized file lost accuracy or speed, from the converter's and the benchmark's records.

Reads the manifest (checks, lineage), the benchmark report (measured latency and per-operator
profiles; benchmarked here, with profiles, when the folder has no such report), and the files
themselves (per-layer error). Writes everything under OUT/explain/.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import EdgeoptError
from ..fileio import check_writable_dir
from . import accuracy as explain_accuracy
from . import speed as explain_speed
from .context import Context
from .layers import DEFAULT_SNR_THRESHOLD_DB
from .ops import cpu_features
from .report import Explanation, console
from .verdict import accuracy_verdict, write_node_data

EXPLAIN_DIR = "explain"


def explain(source, *, files=None, evaluation=None, calibration=None, report=None, targets=("local",),
            threads=(1,), fallback=True, snr_threshold_db=DEFAULT_SNR_THRESHOLD_DB, samples=128, rounds=3,
            out=None, trust_model_code=False, html=True, accuracy=True, speed=True, log=print) -> Explanation:
    """Explain every quantized file of a converter output folder; write explain.json/.md/.html and plots.

    Args:
        source: a converter output folder (or its manifest.json).
        files: artifact ids to explain (default: every quantized .tflite/.onnx file).
        evaluation: .npz with x (and y) to measure per-layer error on (default: the converter's).
        calibration: the calibration data, when the converter's cannot be loaded again (fallbacks need it).
        report: a benchmark report.json with per-operator profiles (default: the folder's, else one is
            measured here on `targets` at `threads`).
        fallback: make and measure float fallbacks for the files that failed their check.
        snr_threshold_db: a layer whose output SNR falls below this is where the file diverged.
        out: folder for the results (default: SOURCE/explain).
        accuracy / speed: the per-layer error part / the per-operator time part (both by default).

    Example:
        >>> ex = edgeopt.explain("edgeopt-demo")  # doctest: +SKIP
        >>> print("\\n".join(ex.verdicts))  # doctest: +SKIP

    Gotchas: per-layer error runs both files with LiteRT's built-in kernels / onnxruntime without graph
    optimisations, so every tensor is readable; the files' own check figures come from the converter.
    """
    from ..bench.inputs import load_evaluation
    from ..manifest import Manifest

    from ..bench.harness import _check_threads

    manifest = Manifest.load(source)
    root = manifest.root
    chosen = _choose(manifest, files)
    threads = _check_threads(list(threads))
    out = check_writable_dir(Path(out) if out else root / EXPLAIN_DIR)
    data = load_evaluation(evaluation, manifest, [], samples)
    if data.x is None or data.reference is None:
        raise EdgeoptError(f"{root} has no evaluation.npz with reference outputs: run `edgeopt convert` into it, "
                           "or pass evaluation=... with x and reference outputs")
    ctx = Context(manifest, root, out, data, snr_threshold_db, samples, list(targets), rounds=rounds,
                  calibration_source=calibration, trust_model_code=trust_model_code, log=log)
    ex = Explanation(source=str(root), created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     settings={"snr_threshold_db": snr_threshold_db, "samples": min(samples, len(data.x[0])),
                               "evaluation": data.source, "fallback": fallback})
    bench = _bench_report(ctx, chosen, report, threads, log) if speed else {"where": "not asked for"}
    ex.settings["bench_report"] = bench.get("where")
    ex.machines = _machines(bench.get("report"))
    sections = explain_accuracy.explain_files(ctx, chosen, make_fallbacks=fallback) if accuracy else {}
    timing = explain_speed.explain_rows(bench["report"], {a.id for a in chosen}) if bench.get("report") else {}
    for art in chosen:
        ex.files.append(_file(ctx, art, sections.get(art.id), timing.get(art.id), bench.get("report")))
    _carry_over(ex, out, manifest)
    for entry in ex.files:
        entry["verdicts"] = _verdicts(entry)
    ex.pruning = _pruning(manifest)
    _write(ex, out, html)
    log(console(ex))
    return ex


def _choose(manifest, ids):
    quantized = [a for a in manifest.artifacts if a.format in ("tflite", "onnx") and a.precision != "fp32"
                 and a.path and (manifest.root / a.path).exists()]
    if ids is None:
        return quantized
    unknown = [i for i in ids if i not in {a.id for a in quantized}]
    if unknown:
        raise EdgeoptError(f"no quantized file {', '.join(map(repr, unknown))} in {manifest.root}; "
                           f"these can be explained: {', '.join(a.id for a in quantized) or 'none'}")
    return [a for a in quantized if a.id in ids]


def _bench_report(ctx, chosen, report, threads, log) -> dict:
    """The report with profiles to read: the one given, the folder's own, else one measured now.

    Measured now: only the chosen files and their fp32 parents, on the converter's evaluation data.
    """
    from ..bench.harness import benchmark
    from ..bench.report import REPORT_JSON, Report

    path = Path(report) if report else ctx.root / REPORT_JSON
    if path.exists():
        found = Report.load(path)
        if any(r.profile and not r.profile.get("error") for r in found.rows):
            return {"report": found, "where": f"measured by `edgeopt bench` ({path})"}
        log(f"explain: {path} has no per-operator profiles (benchmarked before profiling existed); measuring")
    log(f"explain: benchmarking with per-operator profiles on {', '.join(ctx.targets)} "
        f"({', '.join(map(str, threads))} thread(s))")
    files = list(dict.fromkeys([ctx.path(a) for a in chosen] + [ctx.parent_path(a) for a in chosen if ctx.parent(a)]))
    measured = benchmark([str(f) for f in files], targets=ctx.targets, threads=list(threads), rounds=ctx.rounds,
                         timing=ctx.timing, evaluation=str(ctx.manifest.evaluation_path()), out=ctx.out / "bench",
                         progress=False, log=lambda *_: None, profile=True)
    return {"report": measured, "where": f"measured by explain ({ctx.out / 'bench' / REPORT_JSON})"}


def _machines(report) -> list:
    found = []
    for t in (report.targets if report else []):
        cpu = (t.get("machine") or {}).get("cpu", {})
        found.append({"name": t["name"], "emulated": t.get("emulated"), "cpu_model": cpu.get("model"),
                      "arch": cpu.get("arch"), "features": cpu_features(t.get("machine"))})
    return found


def _file(ctx, art, acc, timing, report) -> dict:
    entry = {"id": art.id, "format": art.format, "precision": art.precision, "status": art.status,
             "sha256": art.sha256, "path": str(ctx.path(art)), "parent": getattr(ctx.parent(art), "id", None),
             "samples": len(ctx.data.x[0]), "accuracy": acc, "speed": timing or [], "parity": _parity(art, report)}
    profile = _profile_for_node_data(report, art.id)
    entry["node_data"] = write_node_data(ctx.out, art, ctx.path(art), acc, profile)
    return entry


def _verdicts(entry) -> list:
    acc, found = entry.get("accuracy"), []
    if acc and ((acc.get("check") or {}).get("passed") is False or acc.get("error")):
        found.append(accuracy_verdict(entry["id"], acc))
    found += [s["verdict"] for s in entry.get("speed") or [] if s.get("verdict")]
    entry["accuracy_summary"] = accuracy_verdict(entry["id"], acc) if acc else None
    return found


def _carry_over(ex, out, manifest):
    """Keep what an earlier explain run found and this one did not redo (same file, same bytes).

    `convert` explains accuracy and `bench` speed, into the same folder: neither drops the other's.
    """
    import json

    from .report import EXPLAIN_JSON, SCHEMA

    try:
        previous = json.loads((Path(out) / EXPLAIN_JSON).read_text())
    except (OSError, ValueError):
        return
    if previous.get("schema") != SCHEMA:
        return
    current = {f["id"]: f for f in ex.files}
    for old in previous.get("files", []):
        art = manifest.get(old["id"])
        if art is None or art.sha256 != old.get("sha256"):
            continue  # the file was made again (or is gone): its old findings no longer hold
        new = current.get(old["id"])
        if new is None:
            ex.files.append({**old, "carried_from": previous.get("created")})
            continue
        for part in ("accuracy", "speed"):
            if not new.get(part) and old.get(part):
                new[part] = old[part]
                new.setdefault("carried_from", previous.get("created"))
        new["node_data"] = {**(old.get("node_data") or {}), **(new.get("node_data") or {})}


def _profile_for_node_data(report, art_id):
    if not report:
        return None
    row = next((r for r in report.rows if r.artifact == art_id and r.threads == 1 and r.profile
                and not r.emulated), None)
    return row.profile if row else None


def _parity(art, report):
    """The benchmark's parity figures for this file on each target where they were not ok, with its diagnosis
    (bench/diagnosis.py: which target's kernels deviate, by how much, and why)."""
    if not report:
        return None
    flagged = [{"target": r.target, "threads": r.threads, **(r.parity or {})} for r in report.rows
               if r.artifact == art.id and r.parity and r.parity.get("verdict") != "ok"]
    return {"flagged": flagged, "diagnosis": report.parity.get(art.id)} if flagged else None


def _pruning(manifest):
    pruned = next((a for a in manifest.artifacts if a.stage == "prune" and a.sparsity), None)
    if pruned is None:
        return None
    fp32 = next((a for a in manifest.artifacts if a.parent == pruned.id and a.precision == "fp32"
                 and a.format == "tflite" and a.ok), None)
    sparsity = pruned.sparsity.get("model")
    figures = {"artifact": pruned.id, "sparsity": sparsity}
    text = f"{pruned.id}: {sparsity:.0%} of its weights are zero (measured)"
    if fp32 and fp32.size_bytes and fp32.gzip_bytes:
        figures.update(size_bytes=fp32.size_bytes, gzip_bytes=fp32.gzip_bytes)
        text += (f"; its fp32 .tflite is {fp32.size_bytes / 1024:.1f} KB on disk and {fp32.gzip_bytes / 1024:.1f} KB "
                 f"gzipped ({fp32.gzip_bytes / fp32.size_bytes:.2f}x): zeros shrink a file only under compression")
    macs = _macs(manifest, fp32)
    if macs:
        figures["macs"] = macs
        text += (f"; the file stores the zeros as dense weights and its graph still asks for {macs:,} "
                 "multiply-accumulates per inference (counted from the file), as many as before pruning: "
                 "LiteRT's and onnxruntime's dense kernels multiply the zeros too, so sparsity alone buys no speed here")
    return {**figures, "verdict": text + "."}


def _macs(manifest, art):
    from ..bench.graph import describe

    try:
        return describe(manifest.path_of(art), art.format)["macs"] if art else None
    except Exception:  # a graph the counter cannot follow: the sentence goes without the count
        return None


def _write(ex, out, html):
    from .plots import plot_all

    ex.written.update(plot_all(ex, out))
    ex.save(out, html=html)
