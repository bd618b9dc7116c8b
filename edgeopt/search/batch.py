"""One batch of the search: ask Optuna for candidates, convert the new ones, measure them side by side, tell.

A candidate whose key the study already holds (finished by this search or an earlier, interrupted one)
is not converted or measured again: its trial takes the earlier figures. A file whose sha256 was already
measured on a target with the same settings is not measured again either (two recipes may make the same
bytes: `allow_float_ops` changes nothing when every op quantizes).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from ..errors import EdgeoptError, RecipeError
from ..fileio import write_bytes_atomic
from . import study as studylib
from .figures import constraint_values, failed_figures, figures_from_report
from .runner import target_resource


def run_batch(search, stage, n, max_asks) -> int:
    """Ask trials until `n` new candidates (or `max_asks` trials), convert and measure the new ones side by side,
    finish every trial; return how many were asked. A draw of a candidate met before, or of a combination the
    declarations refuse, costs no conversion and takes no place in the batch."""
    from optuna.trial import TrialState

    study = search.study
    _enqueue_seeds(search, stage, n)
    finished = studylib.finished_by_key(study)
    new, repeats = {}, []
    asked = 0
    while len(new) < n and asked < max_asks:
        trial = study.ask()
        asked += 1
        studylib.mark_driver(trial)
        candidate = replace(search.space.suggest(trial, stage), role=trial.user_attrs.get("role") or "search",
                            note=trial.user_attrs.get("note") or "")
        key = candidate.key(search.context)
        for name, value in {"candidate": candidate.to_dict(), "key": key, "stage": stage}.items():
            trial.set_user_attr(name, value)
        if key in finished or key in new:
            repeats.append((trial, key))
            continue
        try:
            job = search.job(key, candidate)
        except RecipeError as e:
            trial.set_user_attr("outcome", "invalid")
            trial.set_user_attr("error", str(e))
            study.tell(trial, state=TrialState.FAIL)
            continue
        new[key] = (trial, candidate, job)
    if new:
        _finish_new(search, stage, new)
    finished = studylib.finished_by_key(study)
    for trial, key in repeats:
        _tell_repeat(study, trial, finished.get(key))
    return asked


def _enqueue_seeds(search, stage, n):
    """Queue the seeds this batch has room for: queued per batch, not all at the start, so a resumed search
    takes the unfinished ones first again (the references and baselines first of all)."""
    from optuna.trial import TrialState

    waiting = search.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    queued = [t.system_attrs.get("fixed_params") for t in waiting]
    room = n - len(waiting)
    for c in search._missing_seeds(stage):
        if room <= 0:
            return
        params = search.space.params(c)
        if params not in queued:
            search.study.enqueue_trial(params, user_attrs={"role": c.role, "note": c.note})
            room -= 1


def _finish_new(search, stage, new):
    from optuna.trial import TrialState

    search.log(f"{stage}: converting {len(new)} candidate(s): " + "; ".join(c.label() for _, c, _ in new.values()))
    t0 = time.time()
    results = search.runner.convert({key: job for key, (_, _, job) in new.items()})
    search.log(f"  converted in {time.time() - t0:.0f}s: {sum(r['status'] == 'ok' for r in results.values())} ok"
               + "".join(f"\n  failed: {new[k][1].label()}: {r['error']}" for k, r in results.items() if r["status"] != "ok"))
    ensure_evaluation(search, {k: (results[k], new[k][1]) for k in new})
    figures = _measure(search, results)
    for key, (trial, _candidate, _job) in new.items():
        result = results[key]
        attrs = {"outcome": "ok" if result["status"] == "ok" else "failed", "error": result.get("error"),
                 "artifact": result.get("artifact"), "figures": figures.get(key, {})}
        for name, value in attrs.items():
            trial.set_user_attr(name, value)
        if attrs["outcome"] != "ok":
            search.study.tell(trial, state=TrialState.FAIL)
            continue
        studylib.set_constraints(trial, constraint_values(attrs, search.targets, search.budget, search.source_accuracy()))
        search.study.tell(trial, search.values(attrs))


def _tell_repeat(study, trial, original):
    """A candidate met before: the trial records which, and takes its values (nothing is converted or measured)."""
    from optuna.trial import TrialState

    trial.set_user_attr("outcome", "repeat")
    if original is None or original.state != TrialState.COMPLETE:
        trial.set_user_attr("repeat_of", original.number if original else None)
        study.tell(trial, state=TrialState.FAIL)
        return
    trial.set_user_attr("repeat_of", original.number)
    studylib.set_constraints(trial, [original.constraints[k] for k in sorted(original.constraints)])
    study.tell(trial, original.values)


def ensure_evaluation(search, batch):
    """out/evaluation.npz: the converter's evaluation data with the *source* model's outputs (an unpruned run's)."""
    path = search.out / "evaluation.npz"
    if path.exists():
        return
    for key, (result, candidate) in batch.items():
        source = search.candidate_folder(key) / "evaluation.npz"
        if result["status"] == "ok" and not candidate.steps and source.exists():
            write_bytes_atomic(path, source.read_bytes())
            return


def _measure(search, results) -> dict:
    """{key: {target: figures}} for every converted file, each target in one interleaved run."""
    known = studylib.measured_by_file(search.study)
    ok = {k: r for k, r in results.items() if r["status"] == "ok"}
    figures = {k: {} for k in ok}
    batch_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    for target in search.targets:
        mkey = search.measurement_key(target)
        todo, by_sha = {}, {}
        for key, r in ok.items():
            sha = r["artifact"]["sha256"]
            if (sha, target, mkey) in known:
                figures[key][target] = known[(sha, target, mkey)]
            elif sha in by_sha:  # the same bytes twice in this batch: measured once
                by_sha[sha].append(key)
            else:
                by_sha[sha] = [key]
                todo[file_name(key, r)] = search.candidate_folder(key) / r["artifact"]["path"]
        if todo:
            measured = _measure_target(search, target, todo, mkey, search.out / "measurements" / batch_id
                                       / target_resource(target).removeprefix("edgeopt_target_"))
            for keys in by_sha.values():
                for key in keys:
                    figures[key][target] = measured[file_name(keys[0], ok[keys[0]])]
    return figures


def _measure_target(search, target, todo, mkey, out) -> dict:
    search.log(f"  measuring {len(todo)} file(s) on {target}, side by side")
    t0 = time.time()
    try:
        report = search.measure(target, todo, out)
    except EdgeoptError as e:  # this target's figures say why; the other targets go on
        search.log(f"  {target}: {e}")
        return {name: failed_figures(str(e), mkey) for name in todo}
    found = figures_from_report(report, target)
    search.log(f"  measured on {target} in {time.time() - t0:.0f}s")
    return {name: {**found.get(name, failed_figures("no row came back for this file")), "measurement": mkey}
            for name in todo}


def file_name(key, record) -> str:
    """The name a candidate's file is measured under: unique across candidates (several share a file name)."""
    return f"{key}/{Path(record['artifact']['path']).name}"
