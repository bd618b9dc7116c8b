"""Where candidates are converted and measured: a local process pool, or tasks on a Ray cluster.

Locally, conversions run in a pool of processes (TensorFlow is imported once per process, never in the
search's own process) and each target's measurements run through `edgeopt.benchmark`, one target at a
time and never while a conversion runs, so no measurement shares the CPU with our own work.

On Ray (`ray=auto` or an address), conversions are tasks on any node, and the measurements of a target
are tasks that need that target's custom resource (`edgeopt_target_<name>`, one unit): the node that
owns a board declares it (`ray start --resources '{"edgeopt_target_local": 1}'`), Ray runs them there,
and two measurements never share a board. The model, the data and the files travel through Ray's
object store; results come back to the driver, which alone writes the study and the output folder.
"""

from __future__ import annotations

import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from ..bench.report import Report
from ..errors import TargetError
from . import jobs

CRASHED = ("the converter process died (killed, or a native library crashed) while converting this candidate; "
           "the other candidates are unaffected")


def target_resource(target: str) -> str:
    """The Ray custom resource a node declares to own `target`: 'edgeopt_target_local', ..."""
    return "edgeopt_target_" + re.sub(r"[^A-Za-z0-9]+", "_", target).strip("_")


class LocalRunner:
    kind = "local"

    def __init__(self, workers=1, log=print):
        self.workers, self.log, self._pool = max(1, int(workers)), log, None

    def convert(self, batch: dict) -> dict:
        """{key: job} -> {key: result}; a crashed converter process fails its candidate only."""
        results = {}
        try:
            self._run(batch, results)
        except BrokenProcessPool:
            # The pool cannot say which job killed it: the unfinished ones run again one at a time.
            self._pool = None
            for key in [k for k in batch if k not in results]:
                try:
                    self._run({key: batch[key]}, results)
                except BrokenProcessPool:
                    self._pool = None
                    results[key] = {"status": "failed", "error": CRASHED}
        return results

    def _run(self, batch, results):
        pool = self._get_pool()
        futures = {pool.submit(jobs.convert_candidate, job): key for key, job in batch.items()}
        for future in as_completed(futures):
            results[futures[future]] = future.result()

    def measure(self, target: str, files: dict, evaluation: Path | None, settings: dict, out: Path) -> Report:
        """Benchmark {name: path} on `target` side by side; the report set is written into `out`."""
        from ..bench.harness import benchmark

        report = benchmark(list(files.values()), targets=[target], evaluation=evaluation, out=out,
                           progress=False, log=lambda *_: None, **settings)
        names = {str(Path(p).resolve()): name for name, p in files.items()}
        for row in report.rows:
            row.path = names.get(str(Path(row.path).resolve()), row.path) if row.path else None
        return report

    def close(self):
        if self._pool:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _get_pool(self):
        if self._pool is None:
            # spawn: a fork of a process that has loaded native runtimes is not safe
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self._pool


class RayRunner:
    kind = "ray"

    def __init__(self, address, targets, log=print):
        try:
            import ray
        except ImportError:
            raise TargetError("--ray needs Ray: pip install 'edgeopt[search]' (or pip install ray)") from None
        self.ray, self.log = ray, log
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False, ignore_reinit_error=True)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise TargetError(f"cannot join the Ray cluster at {address!r}: {e}. Start one with `ray start --head` "
                              "(or give its address, e.g. --ray 10.0.0.5:6379)") from None
        self._check_resources(targets)
        self._convert = ray.remote(num_cpus=1)(jobs.convert_candidate_remote)
        self._measure = ray.remote(jobs.measure_files)
        self._model_ref, self._data_refs = None, {}

    def _check_resources(self, targets):
        have = self.ray.cluster_resources()
        missing = [t for t in targets if have.get(target_resource(t), 0) < 1]
        if missing:
            examples = ", ".join(f'"{target_resource(t)}": 1' for t in missing)
            raise TargetError(
                f"no node of the Ray cluster owns target(s) {', '.join(missing)}: start the node that runs them with "
                f"`ray start --address ... --resources '{{{examples}}}'` (one unit each: measurements never share a target)")

    def convert(self, batch: dict) -> dict:
        refs = {}
        for key, job in batch.items():
            model = Path(job["model"])
            if self._model_ref is None:
                self._model_ref = (model.name, self.ray.put(jobs.pack_model(model)))
            roles = tuple(sorted(job["data"]))  # training candidates also get the training data
            if roles not in self._data_refs:
                self._data_refs[roles] = self.ray.put(job["data"])  # put once, shared by every task
            remote_job = {k: v for k, v in job.items() if k not in ("model", "out", "data")}
            refs[key] = self._convert.remote(self._model_ref[0], self._model_ref[1], self._data_refs[roles], remote_job)
        results = {}
        for key, ref in refs.items():
            try:
                result = self.ray.get(ref)
            except self.ray.exceptions.RayError as e:
                result = {"status": "failed", "error": f"{CRASHED} ({type(e).__name__})"}
            blob = result.pop("folder_tar", None)
            if blob:
                jobs.unpack_folder(blob, Path(batch[key]["out"]))
            results[key] = result
        return results

    def measure(self, target, files, evaluation, settings, out) -> Report:
        from ..bench.harness import write_report

        blobs = {name: Path(p).read_bytes() for name, p in files.items()}
        eval_blob = Path(evaluation).read_bytes() if evaluation else None
        task = self._measure.options(resources={target_resource(target): 1}, num_cpus=0)
        try:
            report = Report.from_dict(self.ray.get(task.remote(blobs, eval_blob, target, settings)))
        except self.ray.exceptions.RayError as e:
            raise TargetError(f"the measurement task for {target} failed on the Ray cluster: {e}") from None
        write_report(report, out, log=lambda *_: None)
        return report

    def close(self):
        self.ray.shutdown()
