"""Two pictures people would rather look at than read: latency vs accuracy, and size per artifact."""

from __future__ import annotations

from pathlib import Path

from ..fileio import atomic_path
from . import plot_layout
from .report import short_names

LATENCY_ACCURACY_PNG = "latency_vs_accuracy.png"
SIZE_PNG = "size.png"
MARKER_PT, LABEL_PT = 8, 7.5


def plot_all(report, out) -> dict:
    """Write the plots into `out`; return {key: file name} for the report. Skips what has no data."""
    import matplotlib

    matplotlib.use("Agg")  # files only: works on a board or CI without a display
    files = {}
    if _plot_latency_accuracy(report, Path(out) / LATENCY_ACCURACY_PNG):
        files["plot_latency_accuracy"] = LATENCY_ACCURACY_PNG
    if _plot_sizes(report, Path(out) / SIZE_PNG):
        files["plot_size"] = SIZE_PNG
    return files


def _score(row):
    """Accuracy when labels exist, else top-1 agreement (or cosine) with the reference."""
    acc = row.accuracy or {}
    for key, label in (("value", "accuracy"), ("top1_agreement", "top-1 agreement"), ("cosine", "cosine")):
        if acc.get(key) is not None:
            return acc[key] * (100 if key != "cosine" else 1), label
    return None, None


def pareto_front(points):
    """Indices of points no other point beats on both: lower latency and higher score."""
    front = []
    for i, (lat, score) in enumerate(points):
        dominated = any(lat2 <= lat and s2 >= score and (lat2, s2) != (lat, score) for lat2, s2 in points)
        if not dominated:
            front.append(i)
    return front


def _plot_latency_accuracy(report, path) -> bool:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    rows = [r for r in report.rows if r.ok and r.latency and _score(r)[0] is not None]
    if not rows:
        return False
    panels = sorted({(r.target, r.threads) for r in rows}, key=lambda k: (k[0], k[1] or 0))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels) + 3, 5), squeeze=False)
    label = _score(rows[0])[1]
    names = short_names([r.artifact for r in rows])
    colors = {a: f"C{i % 10}" for i, a in enumerate(dict.fromkeys(r.artifact for r in rows))}
    groups = []
    for ax, (target, threads) in zip(axes[0], panels):
        group = [r for r in rows if r.target == target and r.threads == threads]
        groups.append(group)
        _frame(ax, group, label)
        emulated = " (EMULATED)" if any(r.emulated for r in group) else ""
        ax.set_title(f"{target}, {threads} thread(s){emulated}")
    handles = [Line2D([], [], ls="", marker="o" if r.format == "tflite" else "s", color=colors[a], ms=7, label=names[a])
               for a, r in {r.artifact: r for r in rows}.items()]
    handles.append(Line2D([], [], color="red", ls="--", marker="o", mfc="none", ms=10, label="Pareto front"))
    axes[0][-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8,
                       title="○ tflite  □ onnx")
    fig.tight_layout()  # first: markers and labels are placed in pixels of the final layout
    for ax, group in zip(axes[0], groups):
        _draw_points(fig, ax, group, names, colors)
    _save(fig, path)
    return True


def _frame(ax, group, label):
    """Axis limits, labels and the Pareto front (at the true scores) of one panel."""
    points = [(r.latency["p50_ms"], _score(r)[0]) for r in group]
    right = max(r.latency["ci95_ms"][1] for r in group) * 1.2
    ax.set_xlim(0, right)
    ax.set_ylim(*plot_layout.score_limits([s for _, s in points], "cosine" if label == "cosine" else "percent"))
    front = sorted(points[i] for i in pareto_front(points))
    xs, ys = [p[0] for p in front] + [right], [p[1] for p in front] + [front[-1][1]]
    bottom = ax.get_ylim()[0]
    ax.fill_between(xs, ys, bottom, step="post", color="red", alpha=0.06, lw=0)
    ax.step(xs, ys, where="post", color="red", ls="--", lw=1)
    ax.plot([xs[0], xs[0]], [bottom, ys[0]], color="red", ls="--", lw=1)
    for x, y in front:
        ax.plot(x, y, "o", ms=15, mfc="none", mec="red", mew=1.5, zorder=4)
    ax.set_xlabel("p50 latency, ms (batch 1; bars: 95% CI; shaded: beaten by the Pareto front)")
    ax.set_ylabel(f"{label}, %" if label != "cosine" else label)
    ax.grid(alpha=0.3)


def _draw_points(fig, ax, group, names, colors):
    """Markers (set apart where they would cover each other), their intervals, and direct labels."""
    px_per_pt = fig.dpi / 72
    true = ax.transData.transform([(r.latency["p50_ms"], _score(r)[0]) for r in group])
    order = sorted(range(len(group)), key=lambda i: tuple(true[i]))
    size = MARKER_PT * px_per_pt * 1.15
    frame = ax.get_window_extent()
    placed = dict(zip(order, plot_layout.dodge([tuple(true[i]) for i in order], size, frame.y0, frame.y1)))
    shown = ax.transData.inverted().transform([placed[i] for i in range(len(group))])
    for r, (_, y) in zip(group, shown):  # only y moves: x stays the measured p50, not a pixel round trip
        lat, (lo, hi) = r.latency["p50_ms"], r.latency["ci95_ms"]
        if abs(y - _score(r)[0]) > 0:  # set apart: a faint stem down (or up) to its true score
            ax.plot([lat, lat], [_score(r)[0], y], color=colors[r.artifact], lw=0.8, alpha=0.5, zorder=3)
        ax.errorbar(lat, y, xerr=[[max(lat - lo, 0)], [max(hi - lat, 0)]], color=colors[r.artifact],
                    fmt="o" if r.format == "tflite" else "s", ms=MARKER_PT, capsize=3, zorder=5)
    if any(abs(placed[i][1] - true[i][1]) > 0.5 for i in range(len(group))):
        ax.text(0.01, 0.01, "markers with equal scores are set apart vertically to stay visible",
                transform=ax.transAxes, fontsize=7, color="gray")
    front = set(pareto_front([(r.latency["p50_ms"], _score(r)[0]) for r in group]))
    rings = [(x - size, y - size, x + size, y + size) for x, y in (true[i] for i in front)]
    _label(fig, ax, group, names, [placed[i] for i in range(len(group))], size, rings)


def _label(fig, ax, group, names, anchors, size, rings):
    renderer = fig.canvas.get_renderer()
    sizes = []
    for r in group:
        t = ax.text(0, 0, names[r.artifact], fontsize=LABEL_PT)
        box = t.get_window_extent(renderer=renderer)
        sizes.append((box.width, box.height))
        t.remove()
    frame = ax.get_window_extent(renderer=renderer)
    obstacles = [(x - size / 2, y - size / 2, x + size / 2, y + size / 2) for x, y in anchors] + rings
    for r, (_, y) in zip(group, anchors):  # the interval bars, drawn at the markers' heights
        (lo, _), (hi, _) = ax.transData.transform([(v, 0) for v in r.latency["ci95_ms"]])
        obstacles.append((lo, y - 3, hi, y + 3))
    offsets = plot_layout.place_labels(anchors, sizes, obstacles, (frame.x0, frame.y0, frame.x1, frame.y1), size)
    pt_per_px = 72 / fig.dpi
    for r, (x, y), offset, (w, h) in zip(group, ax.transData.inverted().transform(anchors), offsets, sizes):
        if offset is None:
            continue  # no free place: the legend names it
        dx, dy = offset
        # Placed away from its marker: a thin line leads back to it.
        far = max(dx, -(dx + w), abs(dy) - h / 2) > size  # gap between the label box and the marker
        ax.annotate(names[r.artifact], (x, y), xytext=(dx * pt_per_px, dy * pt_per_px), textcoords="offset points",
                    fontsize=LABEL_PT, va="center", ha="left", color="0.2", zorder=6,
                    arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6, "shrinkA": 0, "shrinkB": size / 2 * pt_per_px}
                    if far else None)


def _plot_sizes(report, path) -> bool:
    import matplotlib.pyplot as plt

    seen, rows = set(), []
    for r in report.rows:
        if r.size_bytes and r.artifact not in seen:
            seen.add(r.artifact)
            rows.append(r)
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    short = short_names([r.artifact for r in rows])
    names = [short[r.artifact] for r in rows]
    ax.barh(names, [r.size_bytes / 1024 for r in rows], color="C0", label="file")
    ax.barh(names, [(r.gzip_bytes or 0) / 1024 for r in rows], color="C1", height=0.4, label="gzip")
    for i, r in enumerate(rows):
        if r.size_ratio is not None:
            ax.annotate(f"{r.size_ratio:.2f}x", (r.size_bytes / 1024, i), xytext=(4, -3),
                        textcoords="offset points", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("KiB")
    ax.set_title("Size per artifact (ratio to the baseline of its format)")
    ax.legend(loc="best")
    _save(fig, path)
    return True


def _save(fig, path):
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
