"""Harness-overhead check: the harness's p50 for a model against a bare loop over the runtime, same run.

For each case (a .tflite or .onnx file) and thread count, every round measures the model twice, in an
order that alternates between rounds: (a) through `edgeopt.benchmark` (a worker process, exactly as
the suite measures), and (b) in this process, a bare loop that calls the runtime directly and does
the same work per call (LiteRT: set_tensor, invoke, get_tensor; onnxruntime: run). Both do the same
warm-up and the same number of timed runs, each timed with perf_counter_ns. The ratio is the median
over rounds of the harness's p50 over the median of the bare loop's p50: at most 1.05 is the bar.

    .venv/bin/python benchmarks/overhead.py CASE=PATH [CASE=PATH ...] --out overhead.json

TensorFlow-free, like the harness; run.py runs it in a process of its own.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

BAR = 1.05
# A fixed number of runs (min_seconds 0) so that both sides time exactly the same number of calls.
TIMED_MS_TARGET = 1000.0  # ~1 s of timed calls per measurement, within the run limits below
MIN_RUNS, MAX_RUNS, WARMUP_RUNS = 50, 20000, 10


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
    feed = {i.name: _sample([d if isinstance(d, int) else 1 for d in i.shape], dtypes[i.type])
            for i in session.get_inputs()}
    return lambda: session.run(None, feed)


def _sample(shape, dtype):
    shape = [1] + [int(d) for d in shape[1:]]
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":
        return rng.random(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


def bare_p50(path, threads, runs, warmup):
    call = (bare_tflite if Path(path).suffix == ".tflite" else bare_onnx)(path, threads)
    for _ in range(warmup):
        call()
    clock = time.perf_counter_ns
    samples = np.empty(runs, dtype=np.int64)
    for i in range(runs):
        t0 = clock()
        call()
        samples[i] = clock() - t0
    return float(np.median(samples)) / 1e6


def harness_p50s(path, threads, timing, folder):
    """One round of the harness for every thread count: {threads: (p50 ms, runs)}."""
    import edgeopt

    report = edgeopt.benchmark([path], threads=threads, rounds=1, timing=timing, out=folder,
                               progress=False, log=lambda *_: None)
    found = {}
    for row in report.rows:
        if not row.ok:
            raise RuntimeError(f"the harness failed on {row.artifact} threads={row.threads}: {row.error}")
        found[row.threads] = (row.latency["round_p50_ms"][0], row.latency["runs"])
    return found


def runs_for(path, threads):
    """Enough runs for ~1 s at one thread, judged from a short bare probe (fast models get more)."""
    probe = bare_p50(path, threads, runs=20, warmup=3)
    return int(np.clip(TIMED_MS_TARGET / max(probe, 1e-3), MIN_RUNS, MAX_RUNS))


def measure(cases: dict, threads=(1, 2), rounds=10, runs=None, log=print) -> dict:
    """cases: {name: path}. Returns the overhead record (per case and thread count, with every round)."""
    threads = sorted(set(threads))
    plan = {name: runs or runs_for(path, threads[0]) for name, path in cases.items()}
    rows = {(name, t): {"round_harness_p50_ms": [], "round_bare_p50_ms": [], "round_harness_runs": []}
            for name in cases for t in threads}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="edgeopt-overhead-") as tmp:
        for rnd in range(rounds):
            for name, path in cases.items():
                timing = {"warmup_runs": WARMUP_RUNS, "min_runs": plan[name], "min_seconds": 0.0}
                harness_first = rnd % 2 == 0
                if harness_first:
                    harness = harness_p50s(path, threads, timing, tmp)
                bare = {t: bare_p50(path, t, plan[name], WARMUP_RUNS) for t in threads}
                if not harness_first:
                    harness = harness_p50s(path, threads, timing, tmp)
                for t in threads:
                    r = rows[(name, t)]
                    r["round_harness_p50_ms"].append(harness[t][0])
                    r["round_harness_runs"].append(harness[t][1])
                    r["round_bare_p50_ms"].append(bare[t])
                    log(f"round {rnd + 1}/{rounds} {name} threads={t}: harness {harness[t][0]:.4g} ms, "
                        f"bare {bare[t]:.4g} ms ({'harness' if harness_first else 'bare'} first)")
    results = []
    for (name, t), r in rows.items():
        h, b = float(np.median(r["round_harness_p50_ms"])), float(np.median(r["round_bare_p50_ms"]))
        per_round = [x / y for x, y in zip(r["round_harness_p50_ms"], r["round_bare_p50_ms"])]
        results.append({
            "case": name, "model": Path(cases[name]).name, "threads": t, "runs_per_measurement": plan[name],
            "harness_p50_ms": h, "bare_p50_ms": b, "ratio": h / b,
            "round_ratios": [round(x, 4) for x in per_round], "passed": h / b <= BAR, **r,
        })
    from edgeopt.bench.device import sysinfo

    return {
        "schema": "edgeopt.benchmarks.overhead", "schema_version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bar": BAR, "rounds": rounds, "warmup_runs": WARMUP_RUNS, "threads": threads,
        "method": "ratio = median over rounds of the harness's p50 (edgeopt.benchmark, one worker process per "
                  "measurement) / median over rounds of a bare in-process loop's p50; same warm-up and number "
                  "of runs; the order of the two alternates between rounds",
        "seconds": round(time.time() - started, 1), "machine": sysinfo.describe(), "results": results,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="+", help="NAME=PATH of a .tflite or .onnx file")
    parser.add_argument("--out", required=True, help="where to write overhead.json")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=None, help="timed runs per measurement (default: ~1 s worth)")
    args = parser.parse_args(argv)
    cases = dict(c.split("=", 1) for c in args.cases)
    record = measure(cases, [int(t) for t in args.threads.split(",")], args.rounds, args.runs)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    for r in record["results"]:
        print(f"{r['case']} threads={r['threads']}: harness {r['harness_p50_ms']:.4g} ms / bare "
              f"{r['bare_p50_ms']:.4g} ms = {r['ratio']:.3f} ({'ok' if r['passed'] else 'ABOVE ' + str(BAR)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

