"""What `edgeopt convert` costs over the hand-written path: wall time and peak memory, side by side.

MobileNetV2 224x224 (models/builders.py, seeded random weights) is converted to edgeopt's default
exports (TFLite fp32, fp16, int8-dynamic, int8; ONNX fp32, int8-dynamic, int8), each file checked on
64 samples, by two commands run alternately in paired rounds on the same machine:

- edgeopt: `edgeopt convert mobilenet_v2.h5 --recipe recipe.yaml --calibration calib.npz --evaluation eval.npz
  --no-reuse --quiet` (the suite's MobileNetV2 tolerances, 64 calibration and 64 evaluation samples);
- plain: `python benchmarks/plain_convert.py ...`, the same files with the same libraries and options,
  the same calibration samples, each file run on the same 64 samples and compared with the Keras outputs.

Each run is a fresh process tree. Wall time is the command's; CPU time is the user+system seconds of the
tree (the command and every process it waited for, edgeopt's converter process included: a figure
that contention for the cores of a shared machine disturbs far less than wall time); memory is the
peak, sampled every 50 ms, of the summed resident memory (VmRSS) of every process in its tree
(edgeopt's converter process included), and the largest single process. Which side goes first
alternates between pairs; ratios are per pair (edgeopt / plain), then the median over pairs. The
cost of crash isolation, one converter process start (Python, TensorFlow and the converters imported,
one job answered), is measured in the same rounds.

    .venv/bin/python benchmarks/convert_overhead.py --pairs 2      # writes results/convert_overhead.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # models/ is a top-level folder, not an installed package
sys.path.insert(0, str(HERE))

RECIPE = """name: mobilenet_v2
data: {calibration_samples: 64, evaluation_samples: 64}
check: {tolerances: %s}
"""
SAMPLES = 64
START_COST = ("import time; t = time.perf_counter()\n"
              "from edgeopt.converter.isolation import ConverterProcess\n"
              "with ConverterProcess() as c:\n"
              "    c.call('math:hypot', 3, 4, what='a first job')\n"
              "    print(time.perf_counter() - t)\n")


def parse_args(argv):
    p = argparse.ArgumentParser(description="edgeopt convert against a plain script: wall time and peak memory.")
    p.add_argument("--pairs", type=int, default=2, help="paired rounds (each runs both sides once; default 2)")
    p.add_argument("--work", type=Path, default=HERE / "work" / "convert_overhead", help="model, data and outputs")
    p.add_argument("--results", type=Path, default=HERE / "results", help="where the .json and .md go")
    p.add_argument("--fresh", action="store_true", help="rebuild the model and the data")
    args = p.parse_args(argv)
    if args.pairs < 2:
        p.error("--pairs must be at least 2: a ratio needs pairs, and one pair is one draw of the noise")
    return args


def prepare(work: Path, fresh: bool) -> dict:
    """MobileNetV2 saved as .h5, 64 calibration and 64 evaluation images (uniform noise in [-1, 1)), the recipe."""
    import numpy as np

    from suite_models import MOBILENET_TOLERANCES

    work.mkdir(parents=True, exist_ok=True)
    files = {"model": work / "mobilenet_v2.h5", "calibration": work / "calib.npz",
             "evaluation": work / "eval.npz", "recipe": work / "recipe.yaml"}
    if fresh or not files["model"].exists():
        # In a subprocess: this process stays free of TensorFlow's threads and memory while it measures.
        script = ("import sys; sys.path.insert(0, sys.argv[2]); import edgeopt\n"
                  "from models import mobilenet_v2\nmobilenet_v2().save(sys.argv[1])\n")
        subprocess.run([sys.executable, "-c", script, str(files["model"]), str(ROOT)], check=True,
                       capture_output=True)
    for name, seed in (("calibration", 1), ("evaluation", 2)):
        x = np.random.default_rng(seed).uniform(-1.0, 1.0, (SAMPLES, 224, 224, 3)).astype(np.float32)
        np.savez(files[name], x=x)
    files["recipe"].write_text(RECIPE % json.dumps(MOBILENET_TOLERANCES))
    return files


def commands(files: dict, work: Path) -> dict:
    """side -> (command, the output folder it writes, emptied before each run)."""
    data = ["--calibration", files["calibration"], "--evaluation", files["evaluation"]]
    return {
        "edgeopt": ([sys.executable, "-m", "edgeopt.cli", "convert", files["model"], "--recipe", files["recipe"],
                     *data, "--out", work / "out-edgeopt", "--no-reuse", "--quiet"], work / "out-edgeopt"),
        "plain": ([sys.executable, HERE / "plain_convert.py", files["model"], files["calibration"],
                   files["evaluation"], work / "out-plain"], work / "out-plain"),
    }


class TreeMemory(threading.Thread):
    """Samples the resident memory of a process and all its descendants every `interval` seconds."""

    def __init__(self, pid: int, interval=0.05):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_sum_kb, self.peak_process_kb, self.pids = 0, {}, set()
        self._done = threading.Event()

    def run(self):
        while not self._done.is_set():
            rss = {pid: kb for pid in _tree(self.pid) if (kb := _status_kb(pid, "VmRSS")) is not None}
            self.peak_sum_kb = max(self.peak_sum_kb, sum(rss.values()))
            for pid, kb in rss.items():
                hwm = _status_kb(pid, "VmHWM") or kb
                self.peak_process_kb[pid] = max(self.peak_process_kb.get(pid, 0), hwm)
            self.pids |= set(rss)
            self._done.wait(self.interval)

    def stop(self):
        self._done.set()
        self.join()


def _tree(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        p = queue.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                queue += [int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split()]
        except OSError:
            continue  # it exited between two reads
    return found


def _status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def measure(name: str, cmd: list, out: Path, work: Path) -> dict:
    """One run of one side: wall seconds, peak tree and single-process memory (MB), exit status."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    log = (work / f"{name}.log").open("w")
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], stdout=log, stderr=subprocess.STDOUT)
    sampler = TreeMemory(proc.pid)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    sampler.stop()
    log.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    main_peak_kb = usage.ru_maxrss  # exact for the command's own process (KB on Linux)
    sampler.peak_process_kb[proc.pid] = max(sampler.peak_process_kb.get(proc.pid, 0), main_peak_kb)
    return {"side": name, "returncode": proc.returncode, "wall_s": round(wall, 2),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),  # includes the descendants it waited for
            "peak_tree_rss_mb": round(max(sampler.peak_sum_kb, main_peak_kb) / 1024, 1),
            "peak_process_rss_mb": round(max(sampler.peak_process_kb.values()) / 1024, 1),
            # An upper bound on the tree's peak: every process at its own peak at once.
            "sum_of_process_peaks_mb": round(sum(sampler.peak_process_kb.values()) / 1024, 1),
            "processes": len(sampler.pids), "load_before": round(load, 2),
            "load_after": round(os.getloadavg()[0], 2), "steps": _step_seconds(work / f"{name}.log")}


def _step_seconds(log: Path) -> dict:
    """plain_convert.py's 'step NAME: S s' lines (edgeopt's own step times are in its manifest)."""
    steps = {}
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("step ") and line.endswith(" s") and ": " in line:
            name, _, seconds = line[5:-2].rpartition(": ")
            steps[name] = float(seconds)
    return steps


def converter_start_seconds() -> float:
    result = subprocess.run([sys.executable, "-c", START_COST], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def run_pairs(cmds: dict, work: Path, pairs: int, log=print) -> tuple[list, list]:
    rounds, starts = [], []
    for i in range(pairs):
        order = ["edgeopt", "plain"] if i % 2 == 0 else ["plain", "edgeopt"]
        runs = {}
        for side in order:
            log(f"pair {i + 1}/{pairs}: {side} ...")
            run = runs[side] = measure(side, *cmds[side], work)
            log(f"  {side}: {run['wall_s']} s wall, {run['cpu_s']} s CPU, peak {run['peak_tree_rss_mb']} MB "
                f"(exit {run['returncode']})")
        starts.append(round(converter_start_seconds(), 2))
        log(f"  converter process start: {starts[-1]} s")
        rounds.append({"order": order, **runs})
    return rounds, starts


def edgeopt_statuses(work: Path) -> dict:
    manifest = json.loads((work / "out-edgeopt" / "manifest.json").read_text())
    return {a["id"]: {"status": a["status"], "seconds": a["seconds"]} for a in manifest["artifacts"]}


def summarise(rounds, starts) -> dict:
    def ratio(key):
        return statistics.median(r["edgeopt"][key] / r["plain"][key] for r in rounds)

    def median(side, key):
        return round(statistics.median(r[side][key] for r in rounds), 2)

    summary = {f"{side}_median_{key}": median(side, key) for side in ("edgeopt", "plain")
               for key in ("wall_s", "cpu_s", "peak_tree_rss_mb", "peak_process_rss_mb", "sum_of_process_peaks_mb")}
    summary.update({"wall_ratio": round(ratio("wall_s"), 3), "cpu_ratio": round(ratio("cpu_s"), 3),
                    "memory_ratio": round(ratio("peak_tree_rss_mb"), 3),
                    "process_memory_ratio": round(ratio("peak_process_rss_mb"), 3),
                    "sum_of_process_peaks_ratio": round(ratio("sum_of_process_peaks_mb"), 3),
                    "converter_start_median_s": round(statistics.median(starts), 2)})
    summary["converter_start_share_of_plain_wall"] = round(
        summary["converter_start_median_s"] / summary["plain_median_wall_s"], 3)
    return summary


def write_markdown(path: Path, result: dict):
    s, cpu = result["summary"], result["machine"]["cpu"]
    flags = ", ".join(f for f, on in cpu["features"].items() if on)
    lines = [
        "# edgeopt convert against a plain script (MobileNetV2 224, 7 files, 64-sample checks)",
        "",
        f"Measured {result['date']} on {cpu['model']} ({cpu['usable_cores']} usable cores; {flags}), "
        f"a machine shared with other jobs (1-minute load before each run: "
        f"{min(r['load_before'] for p in result['rounds'] for r in (p['edgeopt'], p['plain']))}-"
        f"{max(r['load_before'] for p in result['rounds'] for r in (p['edgeopt'], p['plain']))}). "
        f"{len(result['rounds'])} pairs, order alternating; ratios are edgeopt / plain per pair, then the median.",
        "",
        "| | edgeopt (median) | plain (median) | ratio (median of pairs) |",
        "|---|---|---|---|",
        f"| wall time | {s['edgeopt_median_wall_s']} s | {s['plain_median_wall_s']} s | **{s['wall_ratio']}x** |",
        f"| CPU time (user+system, whole tree) | {s['edgeopt_median_cpu_s']} s | {s['plain_median_cpu_s']} s | "
        f"{s['cpu_ratio']}x |",
        f"| peak memory, whole process tree | {s['edgeopt_median_peak_tree_rss_mb']} MB | "
        f"{s['plain_median_peak_tree_rss_mb']} MB | **{s['memory_ratio']}x** |",
        f"| peak memory, largest process | {s['edgeopt_median_peak_process_rss_mb']} MB | "
        f"{s['plain_median_peak_process_rss_mb']} MB | {s['process_memory_ratio']}x |",
        f"| sum of each process's own peak (an upper bound) | {s['edgeopt_median_sum_of_process_peaks_mb']} MB | "
        f"{s['plain_median_sum_of_process_peaks_mb']} MB | {s['sum_of_process_peaks_ratio']}x |",
        "",
        f"Crash isolation: one converter process start (Python, TensorFlow, tf2onnx, onnxruntime and LiteRT "
        f"imported, one job answered) takes a median {s['converter_start_median_s']} s, "
        f"{s['converter_start_share_of_plain_wall']:.1%} of the plain script's wall time; edgeopt starts one "
        "per run (another only after a crash), while it loads the model and the data.",
        "",
        "| pair | order | edgeopt wall | plain wall | wall ratio | edgeopt CPU | plain CPU | edgeopt peak | "
        "plain peak | memory ratio | load (1 min) before/after each |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(result["rounds"], 1):
        e, p = r["edgeopt"], r["plain"]
        lines.append(f"| {i} | {' then '.join(r['order'])} | {e['wall_s']} s | {p['wall_s']} s | "
                     f"{e['wall_s'] / p['wall_s']:.3f} | {e['cpu_s']} s | {p['cpu_s']} s | "
                     f"{e['peak_tree_rss_mb']} MB | {p['peak_tree_rss_mb']} MB | "
                     f"{e['peak_tree_rss_mb'] / p['peak_tree_rss_mb']:.3f} | "
                     f"edgeopt {e['load_before']}/{e['load_after']}, plain {p['load_before']}/{p['load_after']} |")
    lines += ["", "edgeopt's files in the last run (status, seconds of the step):", ""]
    lines += [f"- {name}: {v['status']}, {v['seconds']} s" for name, v in result["edgeopt_files"].items()]
    lines += ["", "The plain script's steps in the last run (wall seconds):", ""]
    lines += [f"- {name}: {seconds} s" for name, seconds in result["rounds"][-1]["plain"]["steps"].items()]
    lines += ["", f"Reproduce: `{result['command']}`", ""]
    path.write_text("\n".join(lines))


def main(argv=None):
    from edgeopt.bench.device import sysinfo

    args = parse_args(argv)
    files = prepare(args.work, args.fresh)
    rounds, starts = run_pairs(commands(files, args.work), args.work, args.pairs)
    failed = [f"{r[side]['side']} exit {r[side]['returncode']}" for r in rounds for side in ("edgeopt", "plain")
              if r[side]["returncode"] != 0]
    if failed:
        sys.exit(f"runs failed ({', '.join(failed)}): see {args.work}/*.log")
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": sysinfo.describe(),
              "command": f"python benchmarks/convert_overhead.py --pairs {args.pairs}",
              "summary": summarise(rounds, starts), "rounds": rounds, "converter_start_s": starts,
              "edgeopt_files": edgeopt_statuses(args.work)}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "convert_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(args.results / "convert_overhead.md", result)
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
