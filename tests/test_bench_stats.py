"""Intervals, noise calls, regression checks and MAC counts: the arithmetic behind the report."""

import copy

import numpy as np
import pytest

from edgeopt.bench import graph, stats
from edgeopt.bench.regression import find_regressions, parse_percent
from edgeopt.bench.report import Report, Row


def _rounds(center, spread, n_rounds=3, n=200, seed=0):
    rng = np.random.default_rng(seed)
    return [center * (1 + spread * rng.standard_normal(n)) for _ in range(n_rounds)]


def test_median_interval_contains_the_median_and_narrows_with_less_spread():
    wide = stats.median_with_interval(_rounds(10.0, 0.2))
    narrow = stats.median_with_interval(_rounds(10.0, 0.01))
    for m in (wide, narrow):
        assert m["ci95_ms"][0] <= m["p50_ms"] <= m["ci95_ms"][1]
    assert np.diff(narrow["ci95_ms"])[0] < np.diff(wide["ci95_ms"])[0] / 5


def test_rounds_that_disagree_widen_the_interval():
    steady = stats.median_with_interval([r for r in _rounds(10.0, 0.01)])
    drifting = stats.median_with_interval([r * f for r, f in zip(_rounds(10.0, 0.01), (0.9, 1.0, 1.1))])
    assert np.diff(drifting["ci95_ms"])[0] > 5 * np.diff(steady["ci95_ms"])[0]


def test_speedup_calls_equal_timings_noise_and_a_2x_difference_real():
    a = stats.median_with_interval(_rounds(10.0, 0.05, seed=1))
    b = stats.median_with_interval(_rounds(10.0, 0.05, seed=2))
    c = stats.median_with_interval(_rounds(5.0, 0.05, seed=3))
    same = stats.speedup(a["draws"], b["draws"], a["p50_ms"], b["p50_ms"])
    faster = stats.speedup(a["draws"], c["draws"], a["p50_ms"], c["p50_ms"])
    assert same["within_noise"] and not faster["within_noise"]
    assert faster["ratio"] == pytest.approx(2.0, rel=0.05) and faster["ci95"][0] > 1.5


def _report(p50, ci, accuracy):
    row = Row(target="local", artifact="m.tflite", path=None, format="tflite", precision="int8", threads=1,
              latency={"p50_ms": p50, "ci95_ms": ci}, accuracy={"value": accuracy})
    return Report(rows=[row])


@pytest.mark.parametrize("new,found", [
    (_report(1.3, [1.25, 1.35], 0.95), ["p50 1.000 -> 1.300 ms (+30.0%, limit +10%)"]),
    (_report(1.05, [1.0, 1.1], 0.95), []),  # within the limit
    (_report(1.3, [0.9, 1.4], 0.95), []),  # past the limit but within noise: never fails a build
    (_report(1.0, [0.98, 1.02], 0.92), ["accuracy 95.00% -> 92.00% (-3.00 points, limit -1)"]),
])
def test_regressions_beyond_the_limit_and_beyond_noise_are_found(new, found):
    old = _report(1.0, [0.98, 1.02], 0.95)
    messages = find_regressions(old, new, 10.0, accuracy_points=1.0)
    assert [m.split(": ", 1)[1] for m in messages] == found


def test_a_row_that_now_fails_is_a_regression():
    old = _report(1.0, [0.98, 1.02], 0.95)
    new = copy.deepcopy(old)
    new.rows[0].status, new.rows[0].error = "failed", "LiteRT cannot load"
    assert find_regressions(old, new, 10.0) == ["m.tflite on local with 1 thread(s): now failed (LiteRT cannot load)"]


@pytest.mark.parametrize("text,value", [("10%", 10.0), ("2.5", 2.5)])
def test_percent_parsing(text, value):
    assert parse_percent(text) == value


@pytest.mark.parametrize("text", ["ten", "0%", "-5%"])
def test_bad_percent_is_refused(text):
    from edgeopt.errors import BenchmarkError

    with pytest.raises(BenchmarkError, match="--fail-on-regression"):
        parse_percent(text)


def test_mac_counts_match_the_keras_layers_for_every_format(trained_model, converted):
    expected = 0
    for layer in trained_model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            kh, kw = layer.kernel_size
            expected += int(np.prod(layer.output_shape[1:])) * kh * kw * layer.input_shape[-1]
        elif kind == "Dense":
            expected += layer.input_shape[-1] * layer.units
    manifest, out, _ = converted
    counts = {a.id: graph.describe(out / a.path, a.format) for a in manifest.artifacts if a.format != "keras"}
    assert {k: v["macs"] for k, v in counts.items()} == {k: expected for k in counts}
    assert {k: v["precision"] for k, v in counts.items()} == {
        a.id: a.precision for a in manifest.artifacts if a.format != "keras"}
