"""Run a benchmark plan where the models will run: `python runner.py PLAN.json [--worker-command JSON]`.

The plan lists jobs (a model, a thread count, inputs, timing) and a number of rounds. Every round
runs every job once, each in a fresh worker process, in the same order (A B C A B C ...), so drift
of a shared machine hits all alike. A job that fails is not repeated; a worker that hangs is killed
at the plan's timeout; either way the other jobs go on. Results go to `results.json` beside the plan
(written atomically), and the outputs of the first round to `outputs/`.

Self-contained (standard library only; the workers need numpy and the runtimes). Paths in the plan
are relative to its folder, so the folder can be copied to a board as is.
`--worker-command` is the argv that starts a Python for each worker: under QEMU user mode without
binfmt, an emulated Python cannot start another emulated one by itself, so the host passes the
full emulator command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import sysinfo  # noqa: E402

RESULTS = "results.json"


def run_plan(plan_path, worker_command=None, log=None) -> dict:
    folder = os.path.dirname(os.path.abspath(plan_path))
    with open(plan_path) as f:
        plan = json.load(f)
    worker_command = worker_command or plan.get("worker_command") or [sys.executable]
    timeout = float(plan.get("job_timeout_seconds", 300))
    rounds = int(plan.get("rounds", 3))
    os.makedirs(os.path.join(folder, "outputs"), exist_ok=True)
    os.makedirs(os.path.join(folder, "jobs"), exist_ok=True)
    started = time.time()
    measurements, failed = [], set()
    total = rounds * len(plan["jobs"])
    done = 0
    for rnd in range(rounds):
        for job in plan["jobs"]:
            done += 1
            key = (job["id"], job.get("threads"))
            if key in failed:
                continue
            result = _run_job(folder, job, rnd, worker_command, timeout)
            measurements.append(result)
            if result["status"] != "ok":
                failed.add(key)
            if log:
                log(done, total, result)
    results = {
        "schema": "edgeopt.bench.results",
        "schema_version": 1,
        "machine": sysinfo.describe(),
        "rounds": rounds,
        "seconds": round(time.time() - started, 2),
        "measurements": measurements,
    }
    _write_json_atomic(os.path.join(folder, RESULTS), results)
    return results


def _run_job(folder, job, rnd, worker_command, timeout) -> dict:
    tag = f"{_safe(job['id'])}.t{job.get('threads') or 'auto'}.r{rnd}"
    job_file = os.path.join(folder, "jobs", tag + ".json")
    result_file = os.path.join(folder, "jobs", tag + ".result.json")
    concrete = {
        **job,
        "round": rnd,
        "model": os.path.join(folder, job["model"]),
        "inputs": os.path.join(folder, job["inputs"]),
        # Outputs once per job (first round): accuracy does not change between rounds.
        "outputs": os.path.join(folder, "outputs", f"{_safe(job['id'])}.t{job.get('threads') or 'auto'}.npz")
        if job.get("save_outputs") and rnd == 0 else None,
        "profile": job.get("profile") if rnd == 0 else None,  # per-operator times once, like the outputs
    }
    _write_json_atomic(job_file, concrete)
    base = {"id": job["id"], "threads": job.get("threads"), "round": rnd, "status": "failed"}
    argv = [*worker_command, os.path.join(HERE, "worker.py"), job_file, result_file]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**base, "error": f"timed out after {timeout:.0f}s (the worker was killed)"}
    except OSError as e:
        return {**base, "error": f"cannot start the worker ({' '.join(worker_command)}): {e.strerror or e}"}
    if not os.path.exists(result_file):
        how = f"was killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exited with code {proc.returncode}"
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return {**base, "error": f"the worker {how} without a result" + (f": {tail}" if tail else "")}
    with open(result_file) as f:
        return json.load(f)


def _safe(name) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in str(name))


def _write_json_atomic(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def _print_progress(done, total, result):
    what = f"{result['id']} threads={result.get('threads') or 'auto'} round {result['round'] + 1}"
    if result["status"] == "ok":
        lat = result["latency"]
        print(f"[{done}/{total}] {what}: p50 {lat['p50_ms']:.3f} ms over {lat['runs']} runs", file=sys.stderr, flush=True)
    else:
        print(f"[{done}/{total}] {what}: FAILED {result['error']}", file=sys.stderr, flush=True)


def main(argv) -> int:
    if len(argv) < 2:
        print("usage: runner.py PLAN.json [--worker-command JSON-LIST]", file=sys.stderr)
        return 2
    worker_command = None
    if "--worker-command" in argv:
        worker_command = json.loads(argv[argv.index("--worker-command") + 1])
    run_plan(argv[1], worker_command, log=_print_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
