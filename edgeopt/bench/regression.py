"""Compare a report with an earlier one: which artifacts got slower or less accurate, beyond what limit.

For users' CI: `edgeopt bench OUT --compare old/report.json --fail-on-regression 10%`.
"""

from __future__ import annotations

from ..errors import BenchmarkError


def parse_percent(text) -> float:
    """'10%', '10' or 0.1-style '10%' -> 10.0 (percent)."""
    raw = str(text).strip().rstrip("%")
    try:
        value = float(raw)
    except ValueError:
        raise BenchmarkError(f"--fail-on-regression takes a percentage such as 10%, got {text!r}") from None
    if value <= 0:
        raise BenchmarkError(f"--fail-on-regression must be above 0%, got {text!r}")
    return value


def find_regressions(old, new, slower_percent, accuracy_points=1.0) -> list:
    """Rows of `new` slower than the same row of `old` by more than `slower_percent` (and beyond both
    intervals, so noise alone never fails a build), or less accurate by more than `accuracy_points`.

    Rows are matched by target, artifact and thread count; rows only in one report are ignored.
    """
    before = {(r.target, r.artifact, r.threads): r for r in old.rows}
    found = []
    for r in new.rows:
        o = before.get((r.target, r.artifact, r.threads))
        if o is None or not o.ok:
            continue
        where = f"{r.artifact} on {r.target} with {r.threads} thread(s)"
        if not r.ok:
            found.append(f"{where}: now {r.status} ({r.error})")
            continue
        if o.latency and r.latency:
            change = (r.latency["p50_ms"] / o.latency["p50_ms"] - 1) * 100
            beyond_noise = r.latency["ci95_ms"][0] > o.latency["ci95_ms"][1]
            if change > slower_percent and beyond_noise:
                found.append(f"{where}: p50 {o.latency['p50_ms']:.3f} -> {r.latency['p50_ms']:.3f} ms "
                             f"({change:+.1f}%, limit +{slower_percent:g}%)")
        old_acc, new_acc = (o.accuracy or {}).get("value"), (r.accuracy or {}).get("value")
        if old_acc is not None and new_acc is not None and (old_acc - new_acc) * 100 > accuracy_points:
            found.append(f"{where}: accuracy {old_acc:.2%} -> {new_acc:.2%} "
                         f"({(new_acc - old_acc) * 100:+.2f} points, limit -{accuracy_points:g})")
    return found
