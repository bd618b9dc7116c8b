"""The latency-vs-accuracy plot keeps every point visible when points share a score."""

import itertools

import pytest

from edgeopt.bench import plot_layout
from edgeopt.bench.plots import LATENCY_ACCURACY_PNG, pareto_front, plot_all
from edgeopt.bench.report import Report, Row


@pytest.mark.parametrize("scores,kind,within", [
    ([95.6] * 9, "percent", (93.0, 98.0)),  # all tied: a 2-point span around them, not 91-104 with nothing on it
    ([95.0, 95.2], "percent", (93.0, 97.5)),  # 0.2 points apart: shown as the small difference it is
    ([100.0, 100.0, 99.6], "percent", (97.0, 100.5)),  # at the ceiling: no axis far above 100%
    ([60.0, 95.0], "percent", (50.0, 105.0)),  # a real spread is shown whole
    ([0.999, 0.9995], "cosine", (0.97, 1.01)),
])
def test_the_score_axis_fits_the_data_with_a_minimum_span(scores, kind, within):
    lo, hi = plot_layout.score_limits(scores, kind)
    assert within[0] <= lo < min(scores) and max(scores) < hi <= within[1]
    assert hi - lo >= plot_layout.MIN_SPAN[kind]


def _apart(a, b, size):
    return abs(a[0] - b[0]) >= size - 1e-9 or abs(a[1] - b[1]) >= size - 1e-9


def test_markers_that_would_cover_each_other_are_set_apart_and_others_stay():
    points = [(100.0, 200.0)] * 5 + [(104.0, 200.0), (300.0, 200.0), (500.0, 50.0)]
    placed = plot_layout.dodge(points, size=10.0, bottom=0.0, top=400.0)
    assert all(_apart(a, b, 10.0) for a, b in itertools.combinations(placed, 2))
    assert placed[0] == points[0] and placed[6:] == points[6:]  # nothing in the way: the true place
    assert all(abs(p[1] - 200.0) <= 30.0 for p in placed[:6])  # moved by whole marker sizes, nearest first


def test_set_apart_markers_stay_inside_the_axes():
    placed = plot_layout.dodge([(50.0, 395.0)] * 4, size=10.0, bottom=0.0, top=400.0)
    assert all(5.0 <= y <= 395.0 for _, y in placed)
    assert all(_apart(a, b, 10.0) for a, b in itertools.combinations(placed, 2))


def test_labels_overlap_no_marker_and_no_other_label():
    anchors = [(100.0 + 6 * i, 200.0) for i in range(6)]
    sizes = [(70.0, 10.0)] * 6
    markers = [(x - 5, y - 5, x + 5, y + 5) for x, y in anchors]
    offsets = plot_layout.place_labels(anchors, sizes, markers, (0, 0, 800, 400), marker=10.0)
    boxes = [(x + dx, y + dy - h / 2, x + dx + w, y + dy + h / 2)
             for (x, y), (dx, dy), (w, h) in zip(anchors, offsets, sizes) if (dx, dy) != (None, None)]
    assert all(o is not None for o in offsets)
    assert not any(plot_layout._overlap(a, b) for a, b in itertools.combinations(boxes + markers, 2)
                   if a in boxes or b in boxes)


def test_a_pareto_front_of_one_point_when_every_score_ties():
    points = [(0.005 * (i + 1), 95.6) for i in range(9)]
    assert pareto_front(points) == [0]


def test_nine_files_with_one_accuracy_make_a_plot(tmp_path):
    rows = [Row(target="local", artifact=f"m.{i}.tflite", path=None, format="tflite", precision="int8", threads=t,
                latency={"p50_ms": 0.01 + 0.0001 * (i % 3), "ci95_ms": [0.0095, 0.0105]}, accuracy={"value": 0.956})
            for i in range(9) for t in (1, 2)]
    files = plot_all(Report(rows=rows), tmp_path)
    assert files["plot_latency_accuracy"] == LATENCY_ACCURACY_PNG
    assert (tmp_path / LATENCY_ACCURACY_PNG).stat().st_size > 10_000


def test_an_interval_that_starts_at_its_p50_plots(tmp_path):
    # Latencies tied at the clock's resolution: the p50 and an end of its interval are the same number.
    rows = [Row(target="local", artifact=f"m.{i}.tflite", path=None, format="tflite", precision="int8", threads=1,
                latency={"p50_ms": p50, "ci95_ms": ci}, accuracy={"value": 0.956})
            for i, (p50, ci) in enumerate([(0.004437, [0.004437, 0.004446]), (0.004647, [0.004637, 0.004647]),
                                           (0.010215, [0.010215, 0.010215])])]
    assert plot_all(Report(rows=rows), tmp_path)["plot_latency_accuracy"] == LATENCY_ACCURACY_PNG
