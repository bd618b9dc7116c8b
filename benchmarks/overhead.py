"""Harness-overhead check: the harness's p50 for a model against a bare loop over the runtime, same run.

For each case (a .tflite or .onnx file) and thread count, every round measures the model twice, back
to back, in an order that alternates between rounds: (a) the harness's own measurement, the device
worker that `edgeopt.benchmark` runs (a process of its own: load, warm-up, then `invoke()` timed
alone), and (b) in this process, a bare loop that calls the runtime directly and does the same work
per call (LiteRT: set_tensor, invoke, get_tensor; onnxruntime: run). Both load the model afresh, do
the harness's warm-up and the same number of timed runs, each timed with perf_counter_ns.

Many short rounds, pooled: on a shared machine, contention comes in bursts of seconds, and the only
fair answer is to spread both sides evenly over them. Each side's p50 pools its rounds (as the
harness does) and its 95% interval resamples rounds, then runs (edgeopt.bench.stats); the ratio is
harness p50 / bare p50, with the interval of the same bootstrap. The bar: at most 1.05.

    .venv/bin/python benchmarks/overhead.py NAME=PATH [NAME=PATH ...] --out overhead.json

TensorFlow-free, like the harness; run.py runs it in a process of its own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeopt.bench import stats
from edgeopt.bench.device import latency, sysinfo
from edgeopt.bench.harness import DEFAULT_TIMING, DEVICE_DIR

BAR = 1.05
CHUNK_MS = 400.0  # timed calls per measurement; short, so that many rounds fit in the run
MIN_RUNS = 30
# The worker keeps at most MAX_KEPT_SAMPLES latencies, evenly spaced order statistics (edgeopt/bench/device/
# latency.py); the bare loop keeps the same ones, so both sides pool alike. A cap on the runs instead would
# time a microsecond model for only milliseconds, a regime (thread pools just woken, a fresh process) that the
# harness, timing for at least 0.5-1 s, never measures.
WARMUP_RUNS = DEFAULT_TIMING["warmup_runs"]


# ---- (b) the bare loop ------------------------------------------------------------------------------
def bare_tflite(path, threads):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    inputs = [(d["index"], _sample(d["shape"], d["dtype"])) for d in interpreter.get_input_details()]
    outputs = [d["index"] for d in interpreter.get_output_details()]

    def call():
        for index, x in inputs:
            interpreter.set_tensor(index, x)
        interpreter.invoke()
        return [interpreter.get_tensor(i) for i in outputs]

    return call


def bare_onnx(path, threads):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    dtypes = {"tensor(float)": np.float32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8}
    feed = {i.name: _sample(i.shape, dtypes[i.type]) for i in session.get_inputs()}
    return lambda: session.run(None, feed)


def _sample(shape, dtype):
    shape = [1] + [int(d) if isinstance(d, (int, np.integer)) and d > 0 else 1 for d in list(shape)[1:]]
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":
        return rng.random(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


def bare_samples(path, threads, runs, warmup=WARMUP_RUNS) -> np.ndarray:
    """Latencies in ms of `runs` timed calls after `warmup` untimed ones, on a freshly loaded model."""
    call = (bare_tflite if Path(path).suffix == ".tflite" else bare_onnx)(path, threads)
    for _ in range(warmup):
        call()
    clock = time.perf_counter_ns
    ns = np.empty(runs, dtype=np.int64)
    for i in range(runs):
        t0 = clock()
        call()
        ns[i] = clock() - t0
    return latency.kept_samples(ns / 1e6)


# ---- (a) the harness's measurement --------------------------------------------------------------------
def harness_samples(path, threads, runs, folder: Path) -> np.ndarray:
    """One measurement by the harness's device worker, exactly as `edgeopt.benchmark` starts it."""
    job = {"id": Path(path).name, "model": str(path), "threads": threads, "inputs": str(_inputs_for(path, folder)),
           "timing": {**DEFAULT_TIMING, "warmup_runs": WARMUP_RUNS, "min_runs": runs, "min_seconds": 0.0}}
    job_file, result_file = folder / "job.json", folder / "result.json"
    job_file.write_text(json.dumps(job))
    result_file.unlink(missing_ok=True)
    subprocess.run([sys.executable, str(DEVICE_DIR / "worker.py"), str(job_file), str(result_file)], check=True)
    result = json.loads(result_file.read_text())
    if result["status"] != "ok":
        raise RuntimeError(f"the harness's worker failed on {path}: {result['error']}")
    return np.asarray(result["latency"]["samples_ms"])


def _inputs_for(path, folder: Path) -> Path:
    """One sample of the model's input, as the harness feeds synthetic inputs: uniform [0, 1)."""
    from edgeopt.bench.device.runtimes import open_model

    dest = folder / f"{Path(path).name}.inputs.npz"
    if not dest.exists():
        model = open_model(str(path), threads=1)
        xs = [_sample(s["shape"], np.float32) for s in model.input_specs]
        np.savez(dest, **({"x": xs[0]} if len(xs) == 1 else {f"x{i}": x for i, x in enumerate(xs)}))
    return dest


# ---- the check -------------------------------------------------------------------------------------
def runs_for(path, threads):
    """Timed runs for a ~0.4 s measurement, judged from a short bare probe (fast models get more)."""
    probe = float(np.median(bare_samples(path, threads, runs=20, warmup=3)))
    return max(MIN_RUNS, int(CHUNK_MS / max(probe, 1e-4)))


def measure(cases: dict, threads=(1, 2), rounds=20, runs=None, log=print) -> dict:
    """cases: {name: path}. Returns the overhead record: per case and thread count, pooled p50s and the ratio."""
    threads = sorted(set(threads))
    plan = {name: runs or runs_for(path, threads[0]) for name, path in cases.items()}
    samples = {(name, t): {"harness": [], "bare": []} for name in cases for t in threads}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="edgeopt-overhead-") as tmp:
        for rnd in range(rounds):
            for name, path in cases.items():
                for t in threads:
                    sides = {"harness": lambda: harness_samples(path, t, plan[name], Path(tmp)),
                             "bare": lambda: bare_samples(path, t, plan[name])}
                    for side in (("harness", "bare") if rnd % 2 == 0 else ("bare", "harness")):
                        samples[(name, t)][side].append(sides[side]())
            log(f"overhead round {rnd + 1}/{rounds} done ({time.time() - started:.0f}s)")
    results = [_result(name, cases[name], t, plan[name], s) for (name, t), s in samples.items()]
    return {
        "schema": "edgeopt.benchmarks.overhead", "schema_version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bar": BAR, "rounds": rounds, "warmup_runs": WARMUP_RUNS, "threads": threads,
        "method": "each round measures every case back to back (a) with the harness's device worker in its own "
                  "process, as edgeopt.benchmark runs it, and (b) with a bare loop over the runtime in this "
                  "process (alternating which goes first), the same warm-up and number of timed runs; each "
                  "side's p50 pools its rounds and its interval resamples rounds, then runs; "
                  "ratio = harness p50 / bare p50",
        "seconds": round(time.time() - started, 1), "machine": sysinfo.describe(), "results": results,
    }


def _result(name, path, threads, runs, s) -> dict:
    harness = stats.median_with_interval(s["harness"], seed=1)
    bare = stats.median_with_interval(s["bare"], seed=2)
    ratio = harness["p50_ms"] / bare["p50_ms"]
    return {
        "case": name, "model": Path(path).name, "threads": threads, "runs_per_measurement": runs,
        "harness_p50_ms": harness["p50_ms"], "harness_ci95_ms": harness["ci95_ms"],
        "bare_p50_ms": bare["p50_ms"], "bare_ci95_ms": bare["ci95_ms"],
        "ratio": ratio, "ratio_ci95": stats.interval(harness["draws"] / bare["draws"]), "passed": ratio <= BAR,
        "round_harness_p50_ms": [round(float(np.median(x)), 5) for x in s["harness"]],
        "round_bare_p50_ms": [round(float(np.median(x)), 5) for x in s["bare"]],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="+", help="NAME=PATH of a .tflite or .onnx file")
    parser.add_argument("--out", required=True, help="where to write overhead.json")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--runs", type=int, default=None, help="timed runs per measurement (default: ~0.4 s worth)")
    args = parser.parse_args(argv)
    cases = dict(c.split("=", 1) for c in args.cases)
    record = measure(cases, [int(t) for t in args.threads.split(",")], args.rounds, args.runs)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    for r in record["results"]:
        lo, hi = r["ratio_ci95"]
        print(f"{r['case']} threads={r['threads']}: harness {r['harness_p50_ms']:.4g} ms / bare "
              f"{r['bare_p50_ms']:.4g} ms = {r['ratio']:.3f} (95% CI {lo:.3f}-{hi:.3f}; "
              f"{'ok' if r['passed'] else 'ABOVE ' + str(BAR)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
