"""benchmark(): every artifact, on every target and thread count, timed, sized and scored.

TensorFlow-free. The plan is built here, run by the device runner on each target (each measurement
in a process of its own, in interleaved rounds), and the raw results become a Report. A converter
folder is repaired before it is read (edgeopt.verify), and the report, its page and its plots are
published together (edgeopt.publish.staged_set): never a mix of two runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BenchmarkError, EdgeoptError, TargetError
from ..fileio import check_writable_dir, gzip_size, write_json_atomic
from ..scratch import in_private_tempdir
from ..verification import repair_on_start
from ..progress import Progress
from . import graph, stats
from .device import latency, runtimes
from .inputs import load_evaluation
from .scoring import finish
from .report import Report, Row
from .targets import parse_target

DEVICE_DIR = Path(__file__).parent / "device"
DEFAULT_TIMING = {"warmup_runs": 10, "min_runs": 50, "min_seconds": 1.0, "max_seconds": 60.0}


@dataclass
class Candidate:
    """One file to benchmark, with what the converter (or its graph) says it is."""

    id: str
    path: Path | None
    format: str
    precision: str
    size_bytes: int | None = None
    gzip_bytes: int | None = None
    macs: int | None = None
    input_specs: list | None = None
    output_specs: list | None = None
    skip_reason: str | None = None  # set: a row that says why it was not measured (file or data)
    skip_status: str = "failed"  # "skipped" when an earlier stage, not this file, is why
    synthetic_calibration: bool = False  # the converter calibrated it on random inputs


@in_private_tempdir
def benchmark(source, *, targets=("local",), threads=None, rounds=3, timing=None, evaluation=None,
              samples=1000, baseline=None, metric=None, out=None, progress=True, log=print) -> Report:
    """Measure latency, memory and accuracy of every model in `source`; write report.json/.md and plots.

    Args:
        source: a converter output folder (or its manifest.json), a Manifest, or a list of .tflite/.onnx paths.
        targets: where to run: 'local', 'aarch64-emulated', 'ssh://user@host[:port]'.
        threads: thread counts to measure (default: 1 and all cores).
        rounds: interleaved repetitions of the whole measurement, for intervals that include drift.
        timing: warmup_runs, min_runs, min_seconds, max_seconds per measurement.
        evaluation: .npz with x (or x0, x1, ...), optional y and optional reference outputs; default: the
            converter's evaluation.npz, else synthetic inputs (latency and agreement only).
        samples: at most this many evaluation samples are scored.
        baseline: artifact id that speedups and size ratios refer to (default: the fp32 file of each format).
        metric: 'module:function' or callable(outputs, labels) -> float; default top-1 accuracy.
        out: folder for report.json, report.md and the plots (default: the folder benchmarked, else
            edgeopt-bench).

    Example:
        >>> report = edgeopt.benchmark("edgeopt-demo", threads=[1])  # doctest: +SKIP
        >>> [(r.artifact, r.latency["p50_ms"]) for r in report.rows if r.ok]  # doctest: +SKIP

    Gotchas: latency is of one sample (batch 1), the way an on-device app calls a model.
    """
    threads = _check_threads(threads)
    if int(rounds) < 1:
        raise BenchmarkError(f"rounds must be at least 1, got {rounds}")
    timing = {**DEFAULT_TIMING, **(timing or {})}
    folder = _source_folder(source)
    if folder:
        repair_on_start(folder, log)  # a half-done swap there must not be measured as a good file
    manifest, candidates = _collect(source)
    data = load_evaluation(evaluation, manifest, candidates, samples)
    for c in candidates:  # data that cannot feed a file fails its rows, on every target alike
        c.skip_reason = c.skip_reason or data.mismatch(c)
    out = check_writable_dir(out or (manifest.root if manifest else folder or "edgeopt-bench"))
    if Path(out).resolve() != (folder.resolve() if folder else None):
        repair_on_start(out, log)
    resolved = [parse_target(t) for t in (targets or ["local"])]
    report = Report(
        settings={"threads": threads, "rounds": int(rounds), "timing": timing, "targets": [t.name for t in resolved]},
        evaluation=data.describe(),
        reference=data.reference_summary(manifest),
        source=str(manifest.root) if manifest else None,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    work = {}  # (target, artifact, threads) -> bootstrap draws and outputs, used for the comparisons
    for target in resolved:
        work.update(_run_target(report, target, candidates, data, threads, int(rounds), timing, progress, log))
    finish(report, work, data, baseline, metric)
    _write(report, out, log)
    return report


def _check_threads(threads):
    threads = list(threads) if threads else sorted({1, os.cpu_count() or 1})
    bad = [t for t in threads if isinstance(t, bool) or not isinstance(t, int) or t < 1]
    if bad:
        raise BenchmarkError(f"thread counts must be whole numbers of at least 1, got {', '.join(map(repr, bad))}")
    return sorted(set(threads))


# ---- what to measure -------------------------------------------------------------------------------
def _source_folder(source) -> Path | None:
    """The folder benchmarked (a converter output or a folder of files), if the source is one."""
    from ..manifest import MANIFEST_NAME

    if not isinstance(source, (str, Path)):
        return None
    p = Path(source)
    return p if p.is_dir() else p.parent if p.name == MANIFEST_NAME and p.exists() else None


def _collect(source):
    from ..manifest import MANIFEST_NAME, Manifest

    if isinstance(source, Manifest):
        return source, _from_manifest(source)
    if isinstance(source, (str, Path)):
        p = Path(source)
        if p.is_dir() and (p / MANIFEST_NAME).exists() or p.name == MANIFEST_NAME:
            manifest = Manifest.load(p)
            return manifest, _from_manifest(manifest)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix in runtimes.FORMATS)
            if not files:
                raise BenchmarkError(f"{str(p)!r} holds no manifest.json and no .tflite or .onnx files")
            return None, [_from_file(f) for f in files]
        source = [p]
    paths = [Path(s) for s in source]
    if not paths:
        raise BenchmarkError("nothing to benchmark: give a converter output folder or .tflite/.onnx files")
    return None, _unique_ids([_from_file(f) for f in paths])


def _unique_ids(candidates):
    """Rows are keyed by artifact id: files that share a name are told apart by their folder (or position)."""
    names = [c.id for c in candidates]
    for c in candidates:
        if names.count(c.id) > 1:
            c.id = f"{c.path.parent.name}/{c.path.name}"
    ids = [c.id for c in candidates]
    for n, c in enumerate(candidates):
        if ids.count(c.id) > 1:
            c.id = f"{n + 1}:{c.id}"
    return candidates


def _from_manifest(manifest) -> list:
    found = []
    for a in manifest.artifacts:
        if a.format not in ("tflite", "onnx"):
            continue  # the pruned .keras model is the reference, measured by the converter
        path = manifest.path_of(a) if a.path else None
        c = Candidate(a.id, path, a.format, a.precision, a.size_bytes, a.gzip_bytes,
                      input_specs=a.inputs or None, output_specs=a.outputs or None,
                      synthetic_calibration=bool(a.facts.get("synthetic_calibration")))
        if a.status != "ok":
            c.skip_reason = f"not benchmarked: the converter marked it {a.status} ({a.error})"
            c.skip_status = "skipped"
        elif not path or not path.exists():
            c.skip_reason = f"not benchmarked: its file {a.path!r} is missing from {manifest.root}"
        else:
            c.macs = _count_macs(path, a.format)
        found.append(c)
    if not found:
        raise BenchmarkError(f"the manifest in {manifest.root} lists no .tflite or .onnx files")
    return found


def _count_macs(path, fmt):
    try:
        return graph.describe(path, fmt)["macs"]
    except Exception:  # the count is a nicety: a graph it cannot follow must not cost the measurement
        return None


def _from_file(path: Path) -> Candidate:
    if not path.exists():
        raise BenchmarkError(f"model file {str(path)!r} does not exist")
    try:
        fmt = runtimes.detect_format(path)
    except runtimes.ModelOpenError as e:
        return Candidate(path.name, path, "?", "?", path.stat().st_size, skip_reason=str(e))
    c = Candidate(path.name, path, fmt, "?", path.stat().st_size, gzip_size(path))
    try:
        facts = graph.describe(path, fmt)
        c.precision, c.macs = facts["precision"], facts["macs"]
        model = runtimes.open_model(str(path), threads=1)
        c.input_specs, c.output_specs = model.input_specs, model.output_specs
    except Exception as e:  # a corrupt file: its row says why; the others run
        c.skip_reason = f"cannot read {path.name!r}: {str(e).strip().splitlines()[0] if str(e).strip() else e}"
    return c


# ---- running on a target ---------------------------------------------------------------------------
def _run_target(report, target, candidates, data, threads, rounds, timing, progress, log):
    record = {**target.describe(), "status": "ok", "error": None, "machine": None, "seconds": None}
    report.targets.append(record)
    runnable = [c for c in candidates if not c.skip_reason]
    bundle = Path(tempfile.mkdtemp(prefix="edgeopt-bench-"))
    try:
        plan = _write_bundle(bundle, runnable, data, threads, rounds, timing)
        bar = Progress(len(plan["jobs"]) * rounds, f"benchmark on {target.name}", unit="run",
                       enabled=progress and bool(plan["jobs"]))
        # Every job may use its own timeout in the runner; past all of them together, the target hangs.
        whole_plan = plan["job_timeout_seconds"] * len(plan["jobs"]) * rounds + 300
        t0 = time.time()
        try:
            target.prepare()
            results_path = target.run(bundle, on_progress=lambda done, _total, text: bar.update(done, text),
                                      timeout=whole_plan)
            results = _read_results(results_path)
        except EdgeoptError as e:  # TargetError and its kin: this target's rows say why; others go on
            record.update(status="failed", error=str(e))
            results = None
        finally:
            bar.close()
        record["seconds"] = round(time.time() - t0, 1)
        if results:
            record["machine"] = results["machine"]
        work = _add_rows(report, target, candidates, data, threads, results, bundle)
    finally:
        shutil.rmtree(bundle, ignore_errors=True)
    log(f"{target.name}: {record['status']}" + (f" ({record['error']})" if record["error"] else "")
        + f" in {record['seconds']}s")
    return work


def _write_bundle(bundle, candidates, data, threads, rounds, timing) -> dict:
    shutil.copytree(DEVICE_DIR, bundle / "device", ignore=shutil.ignore_patterns("__pycache__"))
    (bundle / "models").mkdir()
    jobs = []
    for n, c in enumerate(candidates):
        name = f"{n}-{c.path.name}"  # two users' files may share a name
        _link_or_copy(c.path, bundle / "models" / name)
        inputs = data.write_inputs(bundle, c)
        for i, t in enumerate(threads):
            jobs.append({"id": c.id, "model": f"models/{name}", "threads": t, "inputs": inputs,
                         "timing": timing, "save_outputs": i == 0})
    plan = {"jobs": jobs, "rounds": rounds, "job_timeout_seconds": timing["max_seconds"] * 2 + 120}
    write_json_atomic(bundle / "plan.json", plan)
    return plan


def _link_or_copy(src, dest):
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def _read_results(path):
    import json

    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise TargetError(f"the runner left no readable results ({e})") from None


def _add_rows(report, target, candidates, data, threads, results, bundle) -> dict:
    work = {}
    by_key = {}
    for m in (results or {}).get("measurements", []):
        by_key.setdefault((m["id"], m["threads"]), []).append(m)
    for c in candidates:
        for t in threads:
            row = Row(target=target.name, artifact=c.id, path=str(c.path) if c.path else None, format=c.format,
                      precision=c.precision, threads=t, emulated=target.emulated, size_bytes=c.size_bytes,
                      gzip_bytes=c.gzip_bytes, macs=c.macs, synthetic_calibration=c.synthetic_calibration)
            if c.skip_reason:
                row.status, row.error = c.skip_status, c.skip_reason
            elif results is None:
                row.status, row.error = "failed", f"target {target.name} did not run: {report.targets[-1]['error']}"
            else:
                work[(target.name, c.id, t)] = _fill(row, by_key.get((c.id, t), []), bundle)
            report.rows.append(row)
    return work


def _fill(row, measured, bundle) -> dict:
    """Fill `row` from its rounds; return the working data the comparisons need (draws, outputs)."""
    if not measured:
        row.status, row.error = "failed", "no measurement came back"
        return {}
    bad = next((m for m in measured if m["status"] != "ok"), None)
    if bad:
        row.status, row.error = "failed", bad["error"]
        return {}
    pooled = stats.summarize([m["latency"]["samples_ms"] for m in measured],
                             runs=[m["latency"]["runs"] for m in measured])
    row.latency = {
        **{k: pooled[k] for k in (*latency.STATISTICS, "ci95_ms")},
        "runs": int(sum(m["latency"]["runs"] for m in measured)),
        "round_p50_ms": [m["latency"]["p50_ms"] for m in measured],
        "unit": "ms per inference, batch 1; every statistic pools the runs of all rounds",
    }
    row.runtime, row.delegates = measured[0]["runtime"], measured[0]["delegates"]
    row.runtime_settings = measured[0].get("settings", {})
    row.load_seconds = float(np.median([m["load_seconds"] for m in measured]))
    row.first_inference_ms = float(np.median([m["first_inference_seconds"] for m in measured])) * 1000
    mem = [m["memory_kb"] for m in measured]
    row.memory_mb = {k: _median_mb([x[k] for x in mem]) for k in ("peak", "load_delta", "run_delta")}
    if row.macs:
        row.gmacs_per_s = row.macs / (row.latency["p50_ms"] / 1000) / 1e9
    work = {"draws": pooled["draws"], "output_specs": measured[0]["outputs"]}
    outputs = next((m.get("outputs_file") for m in measured if m.get("outputs_file")), None)
    if outputs:
        with np.load(bundle / "outputs" / outputs) as z:
            work["outputs"] = [z[f"y{i}"] for i in range(len(z.files))]
    return work


def _median_mb(values):
    values = [v for v in values if v is not None]
    return round(float(np.median(values)) / 1024, 2) if values else None


def _write(report, out, log):
    from ..publish import staged_set
    from .plots import plot_all

    with staged_set(out, "bench-report") as staged:  # every file written in `staged` appears in `out` at once
        report.files.update(plot_all(report, staged))
        report.save(staged)
    log(f"report: {Path(out) / report.files['json']}, {Path(out) / report.files['markdown']}")
