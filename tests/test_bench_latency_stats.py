"""Every latency statistic of a row is one definition over the pooled runs of all rounds: a property test.

Random round layouts (one round or several, a handful of runs or tens of thousands subsampled by the
worker, ties, outliers, drift between rounds) go through the worker's sample keeping and the harness's
pooling, as a benchmark row's do.
"""

import numpy as np
import pytest

from edgeopt.bench import stats
from edgeopt.bench.device import latency

SIZES = [1, 2, 3, 5, 30, 999, 1000, 1001, 1999, 2000, 5000, 20000]
KINDS = ["normal", "ties", "outliers", "constant", "drift", "nanosecond steps"]


def _layout(rng):
    """One benchmark row's rounds: the raw latencies (ms) of every run, as a worker would time them."""
    kind = KINDS[int(rng.integers(len(KINDS)))]
    rounds = []
    for r in range(int(rng.integers(1, 6))):
        n = int(rng.choice(SIZES))
        base = 0.01 * (1 + 0.3 * r if kind == "drift" else 1)
        if kind == "ties":
            x = rng.choice([0.0046, 0.0047, 0.0052], size=n)
        elif kind == "constant":
            x = np.full(n, 0.0123)
        elif kind == "nanosecond steps":
            x = base + 1e-6 * rng.integers(0, 3, n)
        else:
            x = base * np.clip(1 + 0.05 * rng.standard_normal(n), 0.5, None)
        if kind == "outliers":
            x[rng.random(n) < 0.02] *= 50
        rounds.append(x)
    return kind, rounds


def _row(rounds, seed):
    """What the harness computes for a row from the workers' results."""
    kept = [latency.kept_samples(r) for r in rounds]
    return stats.summarize(kept, runs=[len(r) for r in rounds], seed=seed, n=200)


@pytest.mark.parametrize("block", range(4))
def test_pooled_statistics_are_ordered_and_the_interval_is_sane_for_any_round_layout(block):
    rng = np.random.default_rng(block)
    for i in range(40):
        kind, rounds = _layout(rng)
        s = _row(rounds, seed=i)
        where = f"layout {block}/{i} ({kind}, rounds of {[len(r) for r in rounds]} runs)"
        assert s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"], where
        assert s["min_ms"] <= s["mean_ms"] <= s["max_ms"] and s["std_ms"] >= 0, where
        assert s["throughput_per_s"] == pytest.approx(1000 / s["mean_ms"]), where
        lo, hi = s["ci95_ms"]
        assert s["min_ms"] <= lo <= s["p50_ms"] <= hi <= s["max_ms"], where
        assert all(np.isfinite([lo, hi, *[s[k] for k in latency.STATISTICS]])), where
        # One definition: the figures are those of every run of every round, whatever was subsampled.
        runs = np.concatenate(rounds)
        assert (s["min_ms"], s["max_ms"]) == (runs.min(), runs.max()), where
        # A percentile sits within one kept sample's share of the runs of its exact rank.
        resolution = 100 / min(len(runs), latency.MAX_KEPT_SAMPLES) + 0.05
        for q in (50, 90, 99):
            share_below = np.mean(runs < s[f"p{q}_ms"]) * 100
            share_at_or_below = np.mean(runs <= s[f"p{q}_ms"]) * 100
            assert share_below - resolution <= q <= share_at_or_below + resolution, (where, q)


def test_without_subsampling_the_statistics_are_numpys_over_the_concatenated_runs():
    rng = np.random.default_rng(7)
    rounds = [rng.random(n) for n in (40, 700, 3)]
    s = _row(rounds, seed=0)
    runs = np.concatenate(rounds)
    assert [s["p50_ms"], s["p90_ms"], s["p99_ms"]] == pytest.approx(np.percentile(runs, [50, 90, 99]), abs=1e-12)
    assert s["mean_ms"] == pytest.approx(runs.mean()) and s["std_ms"] == pytest.approx(runs.std(ddof=1))


def test_a_subsampled_round_counts_for_all_its_runs():
    # 20,000 runs at 1 ms and 100 at 3 ms: pooled, the median is 1 ms whatever was kept of the long round.
    s = _row([np.full(20_000, 1.0), np.full(100, 3.0)], seed=0)
    assert s["p50_ms"] == 1.0 and s["p99_ms"] == 1.0 and s["max_ms"] == 3.0
    assert s["mean_ms"] == pytest.approx((20_000 * 1.0 + 100 * 3.0) / 20_100)


def test_the_worker_keeps_the_fastest_and_slowest_runs_and_evenly_spaced_ranks():
    ms = np.random.default_rng(3).permutation(np.arange(1, 10_001, dtype=float))
    kept = latency.kept_samples(ms)
    assert len(kept) == latency.MAX_KEPT_SAMPLES and kept[0] == 1 and kept[-1] == 10_000
    assert np.all(np.diff(kept) > 0) and np.ptp(np.diff(kept)) <= 1


def test_weighted_percentiles_are_numpys_over_the_runs_written_out():
    rng = np.random.default_rng(11)
    for _ in range(200):
        values = rng.choice([0.0044, 0.00441, 0.0045, 0.01], size=int(rng.integers(1, 40)))  # ties, as a clock makes
        weights = rng.integers(1, 6, len(values))
        runs = np.repeat(values, weights)
        assert latency.percentiles(values, weights, [0, 50, 90, 99, 100]) == pytest.approx(
            np.percentile(runs, [0, 50, 90, 99, 100]), abs=1e-15)


def test_each_bootstrap_draw_is_the_pooled_median_of_its_resampled_runs():
    rng = np.random.default_rng(12)
    values = np.sort(rng.choice([1.0, 1.1, 1.2, 5.0], size=30))
    counts = rng.integers(0, 4, size=(50, 30)) * 2.0  # a resample's counts, times the runs each sample stands for
    counts[counts.sum(axis=1) == 0, 0] = 2.0
    expected = [latency.percentiles(values[c > 0], c[c > 0], [50])[0] for c in counts]
    assert stats._weighted_medians(values, counts) == pytest.approx(expected, abs=1e-12)
