"""The one definition of a latency statistic: min, mean, std, percentiles and max of weighted samples.

A measurement keeps at most MAX_KEPT_SAMPLES of its runs: evenly spaced order statistics (so the
fastest and slowest run are always among them), each standing for runs / kept runs. Rounds pool by
concatenating their kept samples with those weights, so every figure of a report row is a statistic
of all the runs of all its rounds, and min <= p50 <= p90 <= p99 <= max holds by construction.

numpy's percentile takes weights only from numpy 2.0 and only with the inverted-CDF method (no
interpolation), and boards may have numpy 1.26: hence the few lines of `percentiles` below, which
equal np.percentile (its default, linear method) over the runs written out when weights are whole.

Self-contained (numpy only): the worker imports it on boards and emulators.
"""

from __future__ import annotations

import numpy as np

MAX_KEPT_SAMPLES = 1000
STATISTICS = ("min_ms", "mean_ms", "std_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms", "throughput_per_s")


def kept_samples(ms) -> np.ndarray:
    """All samples, sorted, when there are few; else MAX_KEPT_SAMPLES order statistics at evenly spaced ranks."""
    ms = np.sort(np.asarray(ms, dtype=np.float64))
    if len(ms) <= MAX_KEPT_SAMPLES:
        return ms
    ranks = np.round(np.linspace(0, len(ms) - 1, MAX_KEPT_SAMPLES)).astype(np.int64)
    return ms[ranks]


def percentiles(values, weights, qs) -> np.ndarray:
    """Weighted percentiles `qs` (0-100), numpy's default (linear) method generalised to weights >= 1.

    A sample of weight w stands for w runs: it holds the ranks from (weight below it) to that + w - 1,
    and ranks between two samples are interpolated linearly. With whole-number weights this is exactly
    np.percentile of the runs written out (each value repeated w times); the smallest sample is the
    0th percentile, the largest the 100th.
    """
    values, weights = np.asarray(values, np.float64), np.asarray(weights, np.float64)
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    ends = np.cumsum(w)
    ranks = np.column_stack([ends - w, ends - 1]).ravel()  # the first and last rank each sample holds
    return np.interp(np.atleast_1d(qs) / 100.0 * (ends[-1] - 1), ranks, np.repeat(v, 2))


def describe(values, weights=None) -> dict:
    """Every statistic a report row shows, from samples (ms) and their weights (runs each stands for)."""
    v = np.asarray(values, np.float64)
    w = np.ones_like(v) if weights is None else np.asarray(weights, np.float64)
    if not len(v):
        raise ValueError("no latency samples to describe")
    total = float(w.sum())
    mean = float(np.clip((w * v).sum() / total, v.min(), v.max()))  # clip: rounding must not leave [min, max]
    variance = float((w * (v - mean) ** 2).sum() / (total - 1)) if total > 1 else 0.0
    p50, p90, p99 = (float(x) for x in percentiles(v, w, [50, 90, 99]))
    return {"min_ms": float(v.min()), "mean_ms": mean, "std_ms": variance ** 0.5, "p50_ms": p50, "p90_ms": p90,
            "p99_ms": p99, "max_ms": float(v.max()), "throughput_per_s": 1000.0 / mean if mean > 0 else float("inf")}


def pool(rounds, runs=None) -> tuple:
    """(values, weights) of several rounds' kept samples; `runs`: how many runs each round timed (default: as kept)."""
    rounds = [np.asarray(r, np.float64) for r in rounds]
    runs = [len(r) for r in rounds] if runs is None else list(runs)
    kept = [(r, n) for r, n in zip(rounds, runs) if len(r)]
    if not kept:
        return np.array([]), np.array([])
    values = np.concatenate([r for r, _ in kept])
    weights = np.concatenate([np.full(len(r), max(n, len(r)) / len(r)) for r, n in kept])
    return values, weights
