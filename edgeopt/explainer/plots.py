"""Two pictures: SNR along the depth of the network (one line per file), and time per op role per file."""

from __future__ import annotations

import math
from pathlib import Path

from ..bench.plots import _save
from ..bench.report import short_names
from .ops import duration

SNR_PNG, OP_TIME_PNG = "snr_depth.png", "op_time.png"
_FAMILY_COLORS = {"convolution": "C0", "matmul": "C1", "quantize/dequantize": "C3", "layout": "C7", "other": "C2"}
_CAP_DB = 80.0  # exact layers (no noise at all) are drawn at the top of the axis


def plot_all(ex, out) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    files = {}
    if _plot_snr(ex, Path(out) / SNR_PNG):
        files["plot_snr"] = SNR_PNG
    if _plot_op_time(ex, Path(out) / OP_TIME_PNG):
        files["plot_op_time"] = OP_TIME_PNG
    return files


def _plot_snr(ex, path) -> bool:
    import matplotlib.pyplot as plt

    measured = [f for f in ex.files if (f.get("accuracy") or {}).get("layers")]
    if not measured:
        return False
    formats = sorted({f["format"] for f in measured})
    names = short_names([f["id"] for f in measured])
    fig, axes = plt.subplots(1, len(formats), figsize=(7 * len(formats), 4.8), squeeze=False)
    threshold = ex.settings.get("snr_threshold_db", 20)
    for ax, fmt in zip(axes[0], formats):
        group = [f for f in measured if f["format"] == fmt]
        longest = max(group, key=lambda f: len(f["accuracy"]["layers"]))
        labels = [r["layer"] for r in longest["accuracy"]["layers"]]
        for i, f in enumerate(group):
            by_layer = {r["layer"]: r["snr_db"] for r in f["accuracy"]["layers"]}
            xs = [k for k, name in enumerate(labels) if name in by_layer]
            ys = [_capped(by_layer[labels[k]]) for k in xs]
            failed = (f["accuracy"].get("check") or {}).get("passed") is False
            ax.plot(xs, ys, "o-" if not failed else "s--", ms=4, color=f"C{i % 10}",
                    label=names[f["id"]] + (" (failed check)" if failed else ""))
        ax.axhline(threshold, color="red", lw=1, ls=":", label=f"{threshold:.0f} dB bound")
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7 if len(labels) < 30 else 5)
        if len(labels) > 40:
            for k, tick in enumerate(ax.get_xticklabels()):
                tick.set_visible(k % max(1, len(labels) // 40) == 0)
        ax.set_ylim(0, _CAP_DB + 2)
        ax.set_ylabel(f"SNR vs the fp32 {fmt} file, dB (exact = {_CAP_DB:.0f})")
        ax.set_title(f"{fmt}: SNR along the depth (layers in execution order)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    _save(fig, path)
    return True


def _capped(db):
    if db is None or (isinstance(db, float) and math.isinf(db)):
        return _CAP_DB
    return max(0.0, min(_CAP_DB, db))


def _plot_op_time(ex, path) -> bool:
    import matplotlib.pyplot as plt

    bars = []  # (label, {family: us}, total)
    for f in ex.files:
        sec = next((s for s in f.get("speed") or [] if s.get("threads") == 1 and s.get("profile")), None)
        if not sec:
            continue
        for label, p in ((f["id"], sec["profile"]), (f"{sec['baseline']} (fp32)", sec.get("baseline_profile"))):
            if p and label not in {b[0] for b in bars}:
                bars.append((label, {k: v["us"] for k, v in p["families"].items()}, p["operator_us"]))
    if not bars:
        return False
    names = short_names([b[0].split(" ")[0] for b in bars])
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(bars) + 1.8))
    for i, (label, fams, total) in enumerate(bars):
        left = 0.0
        for fam, color in _FAMILY_COLORS.items():
            share = fams.get(fam, 0.0) / total if total else 0.0
            ax.barh(i, share * 100, left=left, color=color, label=fam if i == 0 else None)
            left += share * 100
        ax.annotate(duration(total) if total >= 0.01 else "< 1 µs resolution", (101, i), va="center", fontsize=7)
    ax.set_yticks(range(len(bars)))
    ax.set_yticklabels([names[b[0].split(" ")[0]] + (" (fp32)" if b[0].endswith("(fp32)") else "") for b in bars],
                       fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 115)
    ax.set_xlabel("share of operator time, % (1 thread; operator time per run at the right)")
    ax.set_title("Where the time goes, by op role (measured profiles)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.6 / max(len(bars), 1)), ncol=5)
    _save(fig, path)
    return True
