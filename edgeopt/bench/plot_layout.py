"""Geometry that keeps every point of a latency-vs-accuracy plot visible when points share a score.

Quantized files often keep the fp32 accuracy to the last digit, so most points of a panel sit on one
line. Three things keep them apart: a y-range fitted to the data with a minimum span (no axis of 0.2
points made to look like a cliff, none of 13 points with nothing on it), markers that would overlap
moved apart vertically by whole marker sizes (a beeswarm, in pixels), and labels placed beside their
markers where they collide with nothing, else left to the legend. matplotlib has no label placement
of its own; adjustText would add a dependency for a dozen labels, so the few lines are here.
"""

from __future__ import annotations

MIN_SPAN = {"percent": 2.0, "cosine": 0.02}  # the least a y-axis spans: differences below it read as ties


def score_limits(scores, kind="percent") -> tuple:
    """(low, high) y-limits around `scores` with a minimum span; a percentage never shown above 100."""
    lo, hi = min(scores), max(scores)
    span = max(hi - lo, MIN_SPAN[kind])
    pad = 0.25 * span
    mid = (lo + hi) / 2
    low, high = mid - span / 2 - pad, mid + span / 2 + pad
    ceiling = 100.0 if kind == "percent" else 1.0
    if high > ceiling + pad / 2 and hi <= ceiling:  # room above the ceiling for a marker, no more
        low, high = low - (high - ceiling - pad / 2), ceiling + pad / 2
    return low, high


def dodge(points, size, bottom=float("-inf"), top=float("inf")) -> list:
    """Pixel positions for markers of diameter `size`: each where it is unless it would cover one placed
    before, else moved up or down (alternately, by whole sizes) to the nearest free place between
    `bottom` and `top`; with no free place there, where it is."""
    placed = []
    for x, y in points:
        spot = (x, y)
        for step in _steps_limited(2 * len(points) + 1):  # the others can block at most that many places
            candidate = (x, y + step * size)
            if step and not bottom + size / 2 <= candidate[1] <= top - size / 2:
                continue
            if all(abs(candidate[0] - px) >= size or abs(candidate[1] - py) >= size for px, py in placed):
                spot = candidate
                break
        placed.append(spot)
    return placed


def _steps():
    yield 0
    n = 1
    while True:
        yield n
        yield -n
        n += 1


def place_labels(anchors, sizes, obstacles, bounds, marker, tries=8) -> list:
    """Offsets (dx, dy) in pixels for labels of `sizes` (w, h) at `anchors` (dx: to the label's left edge,
    dy: to its middle), or None where no place is free.

    Candidates: right of the marker, above it, below it, left of it, then stepped up and down on either
    side; a place must stay inside `bounds` (x0, y0, x1, y1) and overlap no obstacle (markers, interval
    bars: boxes) and no earlier label.
    """
    taken = list(obstacles)
    offsets = []
    for (x, y), (w, h) in zip(anchors, sizes):
        found = None
        for dx, dy in _candidates(w, h, marker, tries):
            box = (x + dx, y + dy - h / 2, x + dx + w, y + dy + h / 2)
            if _inside(box, bounds) and not any(_overlap(box, t) for t in taken):
                found = (dx, dy)
                taken.append(box)
                break
        offsets.append(found)
    return offsets


def _candidates(w, h, marker, tries):
    gap = marker / 2 + 2
    yield gap, 0
    yield -w / 2, gap + h / 2
    yield -w / 2, -gap - h / 2
    yield -gap - w, 0
    for step in _steps_limited(tries + 1)[1:]:
        yield gap, step * h
        yield -gap - w, step * h


def _steps_limited(n):
    steps = _steps()
    return [next(steps) for _ in range(n)]


def _inside(box, bounds) -> bool:
    return box[0] >= bounds[0] and box[1] >= bounds[1] and box[2] <= bounds[2] and box[3] <= bounds[3]


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
