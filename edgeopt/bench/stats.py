"""A row's latency statistics with its p50's confidence interval; whether two medians differ by more than noise.

Every statistic pools the runs of all rounds (one definition: device/latency.py). Timings come in
rounds (every artifact measured once per round, interleaved). Between-round drift on a shared
machine is the larger error, so the bootstrap resamples rounds first, then runs within each chosen
round: a median whose rounds disagree gets the wide interval it deserves. Written here because
scipy.stats.bootstrap resamples one level of unweighted samples, not rounds, then weighted runs.
"""

from __future__ import annotations

import numpy as np

from .device import latency

BOOTSTRAP = 1000
CONFIDENCE = 0.95


def bootstrap_medians(rounds: list, seed=0, n=BOOTSTRAP, runs=None) -> np.ndarray:
    """`rounds`: one array of latency samples per round (`runs`: the runs each stands for, see device.latency).

    Returns `n` bootstrap draws of the pooled median: rounds resampled, then samples within each.
    A round picked c times contributes Multinomial(c * k, uniform) copies of its k samples, so a draw is
    a weight vector over the pooled samples, sorted once; the medians of a block of draws come at once.
    """
    rounds, per_sample = _rounds_with_weights(rounds, runs)
    if not rounds:
        return np.array([])
    rng = np.random.default_rng(seed)
    values = np.concatenate(rounds)
    order = np.argsort(values, kind="stable")
    draws = []
    for size in [_BLOCK] * (n // _BLOCK) + ([n % _BLOCK] if n % _BLOCK else []):
        picks = rng.integers(len(rounds), size=(size, len(rounds)))
        weights = [_resample_counts(rng, (picks == i).sum(axis=1) * len(r), len(r)) * w
                   for i, (r, w) in enumerate(zip(rounds, per_sample))]
        draws.append(_weighted_medians(values[order], np.concatenate(weights, axis=1)[:, order]))
    return np.concatenate(draws)


def _resample_counts(rng, draws_per_row, k) -> np.ndarray:
    """Per row, how often each of k samples is drawn in draws_per_row[row] uniform draws (a multinomial)."""
    rows = np.repeat(np.arange(len(draws_per_row)), draws_per_row)
    flat = rows * k + rng.integers(k, size=len(rows))
    return np.bincount(flat, minlength=len(draws_per_row) * k).reshape(len(draws_per_row), k)


_BLOCK = 100  # draws computed together: a block's weights are BLOCK x pooled samples


def _weighted_medians(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Row-wise device.latency.percentiles(v, w[row], [50]) for sorted `v`; zero-weight samples are absent.

    The median's rank r = (runs - 1) / 2 falls on a sample's run of ranks (its value) or in the gap of
    one rank between two samples (interpolated), as in latency.percentiles.
    """
    present = w > 0
    ends = np.cumsum(w, axis=1) - 1  # the last rank each sample holds
    r = (ends[:, -1] / 2)[:, None]
    rows = np.arange(len(w))
    hi = np.argmax(present & (ends >= r), axis=1)  # the first sample whose ranks reach r
    before = present & (ends < r)
    lo = np.where(before.any(axis=1), v.size - 1 - np.argmax(before[:, ::-1], axis=1), hi)
    on_run = ends[rows, hi] - w[rows, hi] + 1 <= r[:, 0]
    frac = np.clip(r[:, 0] - ends[rows, lo], 0.0, 1.0)
    return np.where(on_run, v[hi], v[lo] + frac * (v[hi] - v[lo]))


def _rounds_with_weights(rounds, runs):
    runs = [len(r) for r in rounds] if runs is None else list(runs)
    kept = [(np.asarray(r, np.float64), n) for r, n in zip(rounds, runs) if len(r)]
    return [r for r, _ in kept], [max(n, len(r)) / len(r) for r, n in kept]


def interval(draws: np.ndarray, confidence=CONFIDENCE) -> list:
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(draws, [alpha, 1 - alpha])
    return [float(lo), float(hi)]


def summarize(rounds: list, runs=None, seed=0, n=BOOTSTRAP) -> dict:
    """Every statistic of the pooled runs of all rounds (device.latency.describe), with the p50's 95% interval."""
    values, weights = latency.pool(rounds, runs)
    draws = bootstrap_medians(rounds, seed, n, runs)
    return {**latency.describe(values, weights), "ci95_ms": interval(draws), "draws": draws}


def median_with_interval(rounds: list, seed=0, runs=None) -> dict:
    s = summarize(rounds, runs, seed)
    return {"p50_ms": s["p50_ms"], "ci95_ms": s["ci95_ms"], "draws": s["draws"]}


def speedup(baseline_draws: np.ndarray, draws: np.ndarray, baseline_p50: float, p50: float) -> dict:
    """Baseline time / this time (above 1: faster), its interval, and whether 1.0 lies inside it."""
    ratios = baseline_draws / draws
    lo, hi = interval(ratios)
    return {"ratio": baseline_p50 / p50, "ci95": [lo, hi], "within_noise": bool(lo <= 1.0 <= hi)}


def percent_slower(old_p50: float, new_p50: float) -> float:
    return (new_p50 / old_p50 - 1.0) * 100.0
