"""One measurement of one model, in a process of its own: `python worker.py JOB.json RESULT.json`.

A process per measurement keeps memory figures the model's own and a crash contained. The job says
which model, how many threads, which inputs and how long to time; the result holds load time, first
inference, the timed runs (only `invoke`: encoding int8 inputs is done before the clock starts),
resident memory at each stage, and, when asked, the model's outputs on every input sample.

Self-contained (standard library, numpy, the runtimes): pushed to boards and emulators as is.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

import numpy as np

from latency import describe, kept_samples  # siblings: this file runs as a script
from runtimes import ModelOpenError, detect_format, import_runtime, open_model
from sysinfo import memory_kb

DEFAULT_TIMING = {"warmup_runs": 5, "min_runs": 30, "min_seconds": 1.0, "max_seconds": 60.0}


def load_inputs(path) -> list:
    with np.load(path, allow_pickle=False) as z:
        if "x" in z.files:
            return [z["x"]]
        keys = sorted((k for k in z.files if k[:1] == "x" and k[1:].isdigit()), key=lambda k: int(k[1:]))
        if not keys:
            raise ValueError(f"inputs file {os.path.basename(path)!r} holds no 'x' (or x0, x1, ...) arrays")
        return [z[k] for k in keys]


def check_inputs(model, inputs):
    """Refuse inputs that do not fit the model, naming the input, before anything is timed."""
    if len(inputs) != len(model.input_specs):
        raise ValueError(f"the model takes {len(model.input_specs)} input(s), the data has {len(inputs)} array(s)")
    for spec, x in zip(model.input_specs, inputs):
        want = spec["shape"][1:]
        got = list(x.shape[1:])
        if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got)):
            raise ValueError(
                f"input {spec['name']!r} takes samples of shape {tuple('?' if d is None else d for d in want)}, "
                f"the data has {tuple(got)}"
            )


def time_invocations(model, feed, timing) -> tuple:
    """Warm up, then time `invoke` until both min_runs and min_seconds are reached (or max_seconds passes)."""
    for _ in range(timing["warmup_runs"]):
        model.invoke(feed)
    samples = []
    clock = time.perf_counter_ns
    started = clock()
    deadline_ns = timing["max_seconds"] * 1e9
    min_ns = timing["min_seconds"] * 1e9
    while True:
        t0 = clock()
        model.invoke(feed)
        t1 = clock()
        samples.append(t1 - t0)
        elapsed = t1 - started
        if (len(samples) >= timing["min_runs"] and elapsed >= min_ns) or elapsed >= deadline_ns:
            break
    return np.asarray(samples, dtype=np.float64) / 1e6, (clock() - started) / 1e9


def summarise(ms: np.ndarray, wall_seconds: float) -> dict:
    """This round's statistics over all its runs, and the samples the harness pools across rounds."""
    return {
        "runs": int(len(ms)),
        "seconds": round(wall_seconds, 4),
        **describe(ms),
        # Order statistics (fastest and slowest included), each standing for runs / len(samples_ms) runs;
        # 6 decimals of a millisecond are the clock's nanoseconds, so rounding adds no ties.
        "samples_ms": [round(float(v), 6) for v in kept_samples(ms)],
    }


def measure(job) -> dict:
    path = job["model"]
    fmt = detect_format(path)
    import_runtime(fmt)
    inputs = load_inputs(job["inputs"])
    mem_start = memory_kb()
    t0 = time.perf_counter()
    model = open_model(path, threads=job.get("threads"), xnnpack=job.get("xnnpack", True))
    load_seconds = time.perf_counter() - t0
    mem_loaded = memory_kb()
    check_inputs(model, inputs)
    model.set_batch(1)
    feed = model.encode([x[:1] for x in inputs])  # outside the clock: int8 encoding is not inference
    t0 = time.perf_counter()
    model.invoke(feed)
    first_seconds = time.perf_counter() - t0
    timing = {**DEFAULT_TIMING, **(job.get("timing") or {})}
    ms, wall = time_invocations(model, feed, timing)
    mem_run = memory_kb()
    result = {
        "format": fmt,
        "runtime": model.runtime,
        "delegates": model.delegates,
        "settings": model.settings,
        "inputs": model.input_specs,
        "outputs": model.output_specs,
        "load_seconds": load_seconds,
        "first_inference_seconds": first_seconds,
        "latency": summarise(ms, wall),
        "memory_kb": {
            "before_load": mem_start["rss"],
            "after_load": mem_loaded["rss"],
            "load_delta": _delta(mem_loaded["rss"], mem_start["rss"]),
            "run_delta": _delta(mem_run["peak"], mem_loaded["rss"]),
            "peak": mem_run["peak"],
        },
    }
    if job.get("outputs"):
        # After timing, so that batching the whole data set does not inflate the peak memory above.
        outputs = model.predict(inputs)
        np.savez(job["outputs"], **{f"y{i}": y for i, y in enumerate(outputs)})
        result["outputs_file"] = os.path.basename(job["outputs"])
    return result


def _delta(a, b):
    return None if a is None or b is None else a - b


def main(argv) -> int:
    job_path, result_path = argv[1], argv[2]
    with open(job_path) as f:
        job = json.load(f)
    result = {"id": job["id"], "threads": job.get("threads"), "round": job.get("round", 0)}
    try:
        result.update(measure(job))
        result["status"] = "ok"
    except Exception as e:  # every failure becomes a row with its reason; the runner goes on
        result["status"] = "failed"
        expected = isinstance(e, (ModelOpenError, ValueError))  # messages written for the user
        result["error"] = str(e).strip() if expected else f"{type(e).__name__}: {str(e).strip()}"
        result["traceback"] = traceback.format_exc(limit=4)
    tmp = result_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
