"""Medians with confidence intervals, and whether two medians differ by more than noise.

Timings come in rounds (every artifact measured once per round, interleaved). Between-round drift
on a shared machine is the larger error, so the bootstrap resamples rounds first, then runs within
each chosen round: a median whose rounds disagree gets the wide interval it deserves.
"""

from __future__ import annotations

import numpy as np

BOOTSTRAP = 1000
CONFIDENCE = 0.95


def bootstrap_medians(rounds: list, seed=0, n=BOOTSTRAP) -> np.ndarray:
    """`rounds`: one array of latency samples per round. Returns `n` bootstrap draws of the pooled median."""
    rounds = [np.asarray(r, np.float64) for r in rounds if len(r)]
    if not rounds:
        return np.array([])
    rng = np.random.default_rng(seed)
    draws = np.empty(n)
    for b in range(n):
        picked = rng.integers(len(rounds), size=len(rounds))
        pooled = np.concatenate([rounds[i][rng.integers(len(rounds[i]), size=len(rounds[i]))] for i in picked])
        draws[b] = np.median(pooled)
    return draws


def interval(draws: np.ndarray, confidence=CONFIDENCE) -> list:
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(draws, [alpha, 1 - alpha])
    return [float(lo), float(hi)]


def median_with_interval(rounds: list, seed=0) -> dict:
    pooled = np.concatenate([np.asarray(r, np.float64) for r in rounds])
    draws = bootstrap_medians(rounds, seed)
    return {"p50_ms": float(np.median(pooled)), "ci95_ms": interval(draws), "draws": draws}


def speedup(baseline_draws: np.ndarray, draws: np.ndarray, baseline_p50: float, p50: float) -> dict:
    """Baseline time / this time (above 1: faster), its interval, and whether 1.0 lies inside it."""
    ratios = baseline_draws / draws
    lo, hi = interval(ratios)
    return {"ratio": baseline_p50 / p50, "ci95": [lo, hi], "within_noise": bool(lo <= 1.0 <= hi)}


def percent_slower(old_p50: float, new_p50: float) -> float:
    return (new_p50 / old_p50 - 1.0) * 100.0
