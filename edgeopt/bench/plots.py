"""Two pictures people would rather look at than read: latency vs accuracy, and size per artifact."""

from __future__ import annotations

from pathlib import Path

from ..fileio import atomic_path
from .report import short_names

LATENCY_ACCURACY_PNG = "latency_vs_accuracy.png"
SIZE_PNG = "size.png"


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

    rows = [r for r in report.rows if r.ok and r.latency and _score(r)[0] is not None]
    if not rows:
        return False
    panels = sorted({(r.target, r.threads) for r in rows}, key=lambda k: (k[0], k[1] or 0))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels) + 3, 4.5), squeeze=False)
    label = _score(rows[0])[1]
    names = short_names([r.artifact for r in rows])
    colors = {a: f"C{i % 10}" for i, a in enumerate(dict.fromkeys(r.artifact for r in rows))}
    for ax, (target, threads) in zip(axes[0], panels):
        group = [r for r in rows if r.target == target and r.threads == threads]
        points = [(r.latency["p50_ms"], _score(r)[0]) for r in group]
        front = set(pareto_front(points))
        for i, (r, (lat, score)) in enumerate(zip(group, points)):
            lo, hi = r.latency["ci95_ms"]
            # Points often share an accuracy: a legend names them where labels would overlap.
            ax.errorbar(lat, score, xerr=[[lat - lo], [hi - lat]], fmt="o" if r.format == "tflite" else "s",
                        color=colors[r.artifact], ms=8, capsize=3, label=names[r.artifact],
                        markeredgecolor="red" if i in front else colors[r.artifact], markeredgewidth=2)
        fx = sorted(points[i] for i in front)
        ax.plot([p[0] for p in fx], [p[1] for p in fx], "--", color="red", lw=1, label="Pareto front (red edge)")
        emulated = " (EMULATED)" if any(r.emulated for r in group) else ""
        ax.set_title(f"{target}, {threads} thread(s){emulated}")
        ax.set_xlabel("p50 latency, ms (batch 1; bars: 95% CI)")
        ax.set_ylabel(f"{label}, %" if label != "cosine" else label)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, title="○ tflite  □ onnx")
    _save(fig, path)
    return True


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
