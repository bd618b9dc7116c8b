"""speed_vs_macs.png: p50 latency against multiply-accumulates, per kind of file, dense and pruned.

The harness's latency-vs-accuracy plot says nothing here (standalone files, synthetic inputs), so the
channel benchmark draws the picture it is about: does each runtime's time follow the MACs down?
"""

from __future__ import annotations

from pathlib import Path

from edgeopt.fileio import atomic_path

PNG = "speed_vs_macs.png"
ALIGNED = ("dense", "channels30-r16", "channels50-r16")


def plot(summary: dict, out: Path) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = {n: m for n, m in summary["models"].items() if any(f["p50_ms"] for f in m["files"])}
    if not models:
        return None
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 5), squeeze=False)
    for ax, (name, m) in zip(axes[0], models.items()):
        _model_axes(ax, name, m)
    fig.tight_layout()
    with atomic_path(Path(out) / PNG, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return PNG


def _model_axes(ax, name, m):
    kinds = list(dict.fromkeys(f["kind"] for f in m["files"]))
    colours = dict(zip(kinds, ["C0", "C1", "C2", "C3", "C4", "C5", "C6"]))
    for kind in kinds:
        files = [f for f in m["files"] if f["kind"] == kind and f["p50_ms"] and f["macs"]]
        aligned = sorted((f for f in files if f["variant"] in ALIGNED), key=lambda f: f["macs"])
        ax.plot([f["macs"] / 1e6 for f in aligned], [f["p50_ms"] for f in aligned], "-o", color=colours[kind],
                label=kind)
        literal = [f for f in files if f["variant"] not in ALIGNED]
        ax.scatter([f["macs"] / 1e6 for f in literal], [f["p50_ms"] for f in literal], facecolors="none",
                   edgecolors=colours[kind], s=60)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("multiply-accumulates per inference, millions (counted in each file)")
    ax.set_ylabel("p50 latency, ms (1 thread, batch 1)")
    ax.set_title(f"{name}: dense and pruned\nfilled: dense, 30% and 50% kept at multiples of 16 channels; "
                 "hollow: literal 30%, 50%", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
