"""The Optuna study behind a search: its storage, its objectives, and recovery after an interruption.

Every candidate is a trial. The study stores keys and figures only (user attributes: the candidate, its
cache key, its file's sha256 and cache key, what was measured on each target); files live in the output
folder. Storage is a SQLite file in the output folder by default, or any database URL Optuna takes, so
a team can share one study.

Objectives (all minimised): each target's latency (ms, the file's best thread count), the file's size
(bytes), and the worst loss over the targets under the budget's metric. The budget is Optuna's
constraint: samplers prefer candidates within it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .. import owner

STUDY_FILE = "study.db"


def storage_url(storage, out: Path) -> str:
    return storage or f"sqlite:///{(Path(out) / STUDY_FILE).resolve()}"


def public_url(url: str) -> str:
    """The URL without a password, fit for a report."""
    import re

    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def study_name(model_sha: str, targets, budget_metric, settings: dict, explicit=None) -> str:
    """One study per model, targets, metric and measurement settings: its figures are comparable."""
    if explicit:
        return explicit
    blob = json.dumps([model_sha, list(targets), budget_metric, settings], sort_keys=True, default=str)
    return f"edgeopt-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def directions(targets) -> list:
    return ["minimize"] * (len(targets) + 2)


def open_study(url, name, targets, budget, seed, log=print):
    """Create or load the study; trials a dead search left running are failed and queued again."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    # The budget reaches the sampler as trial constraints (set_constraint in batch.py): it prefers files within it.
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=10)
    study = optuna.create_study(storage=url, study_name=name, directions=directions(targets), sampler=sampler,
                                load_if_exists=True)
    study.set_user_attr("targets", list(targets))
    study.set_user_attr("budget_metric", budget.metric)
    abandoned = requeue_abandoned(study)
    finished = [t for t in finished_by_key(study).values() if t.user_attrs.get("outcome") != "invalid"]
    if finished or abandoned:
        log(f"resuming study {name}: {len(finished)} finished candidate(s) kept (not converted or measured again)"
            + (f", {len(abandoned)} an interrupted search left unfinished tried again" if abandoned else ""))
    return study


def requeue_abandoned(study) -> list:
    """RUNNING trials whose search process is gone (killed, crashed, a lost machine) -> FAIL; sampled ones are
    queued again (seeds are queued per batch anyway). Returns the abandoned trials' numbers.

    Only this machine's dead processes are judged: a teammate's search on another machine sharing the
    study keeps its trials.
    """
    from optuna.trial import TrialState

    abandoned = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        driver = t.user_attrs.get("driver") or {}
        if driver and owner.alive(driver):
            continue
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        abandoned.append(t.number)
        params = t.params or t.system_attrs.get("fixed_params")
        if params and t.user_attrs.get("role", "search") == "search":  # seeds are queued again per batch
            keep = {k: t.user_attrs[k] for k in ("role", "note") if k in t.user_attrs}
            study.enqueue_trial(params, user_attrs={**keep, "retry_of": t.number}, skip_if_exists=False)
    return abandoned


def finished_by_key(study) -> dict:
    """candidate key -> the trial that holds its result (converted and measured, or failed for its own reason)."""
    from optuna.trial import TrialState

    found = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        key, outcome = t.user_attrs.get("key"), t.user_attrs.get("outcome")
        if key and outcome in ("ok", "failed", "invalid") and key not in found:
            found[key] = t
    return found


def measured_by_file(study) -> dict:
    """(file sha256, target, measurement settings key) -> figures already measured: a file is measured once."""
    found = {}
    for t in study.get_trials(deepcopy=False):
        sha = (t.user_attrs.get("artifact") or {}).get("sha256")
        for target, figures in (t.user_attrs.get("figures") or {}).items():
            if sha and figures.get("measurement"):
                found.setdefault((sha, target, figures["measurement"]), figures)
    return found


def set_constraints(trial, values):
    """Optuna's constraints for this trial: each value <= 0 when that limit of the budget holds."""
    for i, value in enumerate(values):
        trial.set_constraint(f"limit{i}", min(float(value), 1e30))


def mark_driver(trial):
    """Say which process works on this trial, so a later search can tell an abandoned one."""
    trial.set_user_attr("driver", owner.current())
