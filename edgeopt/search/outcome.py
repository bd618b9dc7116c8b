"""What a search returns and writes: the recommendation per target, every candidate, the fronts, and a report.

OUT/search.json (everything, for tools), OUT/search.md (the page a person reads: the recommendation,
the final side-by-side run, then every candidate) and OUT/front-<target>.png are published together as
one set (`staged_set`), so the folder never shows a report of one search with the plot of another.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..table import human_bytes, render
from .figures import best_latency, points_for
from .recommend import RUNTIME, best_per_file, pareto_front

SEARCH_JSON = "search.json"
SEARCH_MD = "search.md"


@dataclass
class SearchResult:
    out: Path
    study: dict  # storage (no password) and name
    budget: object  # Budget
    targets: list
    candidates: list  # the study's records: candidate, key, outcome, artifact, figures per target
    fronts: dict  # target -> [candidate key, ...] (fastest first)
    final: dict  # target -> [Point, ...] from the final side-by-side run
    recommendations: dict  # target -> Recommendation
    source_accuracy: float | None = None
    settings: dict = field(default_factory=dict)
    runner: str = "local"
    model: str = ""

    def recommended_file(self, target) -> Path | None:
        rec = self.recommendations.get(target)
        return Path(self.out) / rec.point.file if rec and rec.point else None

    def to_dict(self) -> dict:
        return {
            "schema": "edgeopt.search/1", "model": self.model, "study": self.study, "budget": self.budget.to_dict(),
            "targets": self.targets, "runner": self.runner, "settings": self.settings,
            "source_accuracy": self.source_accuracy, "candidates": self.candidates, "fronts": self.fronts,
            "final": {t: [p.to_dict() for p in pts] for t, pts in self.final.items()},
            "recommendations": {t: r.to_dict() for t, r in self.recommendations.items()},
        }


def slug(target) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9]+", "-", target).strip("-")


def write_outputs(result: SearchResult, log=print):
    from ..publish import staged_set

    with staged_set(result.out, "search-report") as folder:
        (folder / SEARCH_JSON).write_text(json.dumps(result.to_dict(), indent=1, default=str))
        plots = {}
        for target in result.targets:
            name = f"front-{slug(target)}.png"
            if plot_front(result, target, folder / name):
                plots[target] = name
        (folder / SEARCH_MD).write_text(markdown(result, plots))
    log(f"search report: {Path(result.out) / SEARCH_MD}")


def candidate_rows(result, target) -> list:
    """One row per candidate for `target`, fastest first (failed ones last, with their reason)."""
    points = {p.key: p for p in best_per_file(points_for(result.candidates, target, result.budget,
                                                         result.source_accuracy))}
    front = set(result.fronts.get(target, []))
    rows = []
    for e in result.candidates:
        if e.get("outcome") == "invalid":  # refused before any work: listed under the table (refused_line)
            continue
        cand, p = e["candidate"], points.get(e["key"])
        if p is None:
            why = e.get("error") or ((e.get("figures") or {}).get(target) or {}).get("error") or "not measured"
            why = " ".join(why.split())  # a multi-line error (a recipe's list of problems) would break the table
            rows.append((float("inf"), [cand["label"], cand["role"], "-", "-", "-", "-", "-", f"failed: {why}"[:90]]))
            continue
        status = "front" if e["key"] in front else ("within budget" if p.feasible else "over budget")
        rows.append((p.p50_ms, [cand["label"], cand["role"], p.threads, f"{p.p50_ms:.4g}",
                                human_bytes(p.size_bytes), _loss_text(p.loss), _acc(p.figures), status]))
    return [r for _, r in sorted(rows, key=lambda x: x[0])]


def final_rows(result, target) -> list:
    rec = result.recommendations[target]
    best = {p.key: p for p in best_per_file(result.final.get(target, []))}
    chosen = rec.point
    rows = []
    for p in sorted(best.values(), key=lambda p: p.p50_ms):
        ratio = f"{p.p50_ms / chosen.p50_ms:.2f}x" if chosen else "-"
        ci = f"{p.ci95_ms[0]:.4g}-{p.ci95_ms[1]:.4g}" if p.ci95_ms else "-"
        mark = "recommended" if chosen and p.key == chosen.key else ("within budget" if p.feasible else "over budget")
        rows.append([p.label, p.role, p.threads, f"{p.p50_ms:.4g} ({ci})", ratio, human_bytes(p.size_bytes),
                     _loss_text(p.loss), mark])
    return rows


CANDIDATE_HEADERS = ["candidate", "role", "threads", "p50 ms", "size", "loss", "accuracy", "status"]
FINAL_HEADERS = ["file", "role", "threads", "p50 ms (95% CI)", "vs recommended", "size", "loss", ""]


def markdown(result, plots) -> str:
    b = result.budget
    lines = ["# edgeopt search", "",
             f"Model `{Path(result.model).name}`; budget: {b.describe()}; targets: {', '.join(result.targets)}; "
             f"runner: {result.runner}; study `{result.study['name']}` in `{result.study['storage']}`.",
             f"Source model accuracy on the evaluation data: "
             f"{'-' if result.source_accuracy is None else f'{result.source_accuracy * 100:.1f}%'}. "
             f"Loss is the budget's metric ({b.metric}) against the source model; latency is batch 1, the file's "
             "fastest thread count.", ""]
    for target in result.targets:
        rec = result.recommendations[target]
        lines += [f"## {target}", "", f"**Recommendation:** {rec.sentence}", ""]
        if target in plots:
            lines += [f"![front on {target}]({plots[target]})", ""]
        if result.final.get(target):
            lines += [f"Final run: the front, the fp32 references and the single-tool default int8 files measured "
                      f"side by side ({result.settings.get('final_rounds')} interleaved rounds):", "",
                      render(FINAL_HEADERS, final_rows(result, target), markdown=True), ""]
        lines += ["Every candidate (search-time measurements, each batch side by side):", "",
                  render(CANDIDATE_HEADERS, candidate_rows(result, target), markdown=True), ""]
        refused = refused_line(result)
        if refused:
            lines += [refused, ""]
    return "\n".join(lines)


def refused_line(result) -> str:
    """The sampler's draws that the declarations refuse (no file, no time spent; not counted as tries), in one line."""
    refused = [e for e in result.candidates if e.get("outcome") == "invalid"]
    if not refused:
        return ""
    reasons = set()
    for e in refused:  # "invalid recipe:\n  - exports[0]: a\n  - exports[0]: b" -> a, b
        text = " ".join((e.get("error") or "").split()).removeprefix("invalid recipe:")
        reasons |= {part.strip() for part in re.split(r"(?:^|\s)-\s*exports\[\d+\]:", text) if part.strip()}
    reasons = sorted(reasons)
    return (f"Also drawn and refused before any work ({len(refused)}: combinations the declarations do not allow, "
            f"not counted as tries): " + "; ".join(reasons) + ".")


def console_summary(result) -> str:
    parts = []
    for target in result.targets:
        parts += [f"\n{target}: every candidate", render(CANDIDATE_HEADERS, candidate_rows(result, target))]
        parts += [line for line in [refused_line(result)] if line]
        if result.final.get(target):
            parts += [f"{target}: final side-by-side run", render(FINAL_HEADERS, final_rows(result, target))]
        parts.append(f"{target}: {result.recommendations[target].sentence}")
    return "\n".join(parts)


def plot_front(result, target, path) -> bool:
    """Two panels: every candidate as measured in the search's batches, and the final side-by-side run of the
    front with the fp32 references and the single-tool default int8 files (where the recommendation comes from).
    Latencies of different runs are never drawn in one panel: they were not measured together."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    searched = best_per_file(points_for(result.candidates, target, result.budget, result.source_accuracy))
    panels = [(f"every candidate ({len(searched)}), search batches", searched)]
    final = best_per_file(result.final.get(target, []))
    if final:
        panels.append((f"final run, side by side ({result.settings.get('final_rounds')} rounds)", final))
    panels = [(title, [p for p in pts if p.loss is not None]) for title, pts in panels]
    if not panels[0][1]:
        return False
    rec = result.recommendations[target].point
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 5.5), squeeze=False)
    for i, (ax, (title, points)) in enumerate(zip(axes[0], panels)):
        _draw_panel(ax, points, result.budget, rec if i == 1 else None, target)  # the choice comes from the final run
        ax.set_title(title, fontsize=10)
    _legend_handles(axes[0][-1])
    emulated = " (QEMU emulation: ranks files, not a device's latency)" if result.recommendations[target].emulated else ""
    fig.suptitle(f"{Path(result.model).name} on {target}{emulated}: {result.budget.describe()}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _draw_panel(ax, points, budget, rec, target):
    front = pareto_front(points)
    for role, marker in (("reference", "s"), ("baseline", "D"), ("seed", "o"), ("search", "o")):
        group = [p for p in points if p.role == role]
        if group:
            ax.scatter([p.p50_ms for p in group], [p.loss for p in group], marker=marker, s=46, zorder=3,
                       c=["C0" if p.format == "tflite" else "C1" for p in group], alpha=0.85,
                       edgecolors=["black" if p.feasible else "none" for p in group])
    stair = sorted(front, key=lambda p: p.p50_ms)
    if stair:
        xs, ys = [stair[0].p50_ms], [stair[0].loss]
        for p in stair[1:]:
            xs += [p.p50_ms, p.p50_ms]
            ys += [ys[-1], min(ys[-1], p.loss)]
        ax.plot(xs, ys, color="grey", lw=1, ls="--", zorder=2, label="front (latency, loss)")
    ax.axhline(budget.value, color="red", lw=1, label=f"budget ({budget.metric})")
    if rec:
        ax.scatter([rec.p50_ms], [rec.loss], marker="*", s=320, c="gold", edgecolors="black", zorder=4,
                   label=f"recommended: {_short(rec)}")
    labelled = sorted((p for p in points if p.role in ("baseline", "reference") or p in front), key=lambda p: p.p50_ms)
    for i, p in enumerate(labelled):  # alternate above and below: neighbours on a log axis often touch
        ax.annotate(_short(p), (p.p50_ms, p.loss), fontsize=7, rotation=20,
                    xytext=(4, 6 if i % 2 == 0 else -12), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel(f"p50 latency on {target} (ms, batch 1, best thread count; log scale)")
    ax.set_ylabel(f"loss ({budget.metric}{' points' if budget.metric != 'max-error' else ''}, lower is better)")
    ax.grid(alpha=0.3)


def _legend_handles(ax):
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    extra = [(Line2D([], [], ls="", marker="o", color=f"C{i}"), f"{RUNTIME[f]} ({f})")
             for i, f in enumerate(("tflite", "onnx"))]
    extra += [(Line2D([], [], ls="", marker=m, color="grey"), name) for m, name in
              (("s", "fp32 reference"), ("D", "single-tool default int8"), ("o", "candidate"))]
    extra.append((Line2D([], [], ls="", marker="o", color="white", markeredgecolor="black"), "within budget (outlined)"))
    ax.legend(handles + [h for h, _ in extra], labels + [t for _, t in extra], fontsize=7, loc="best")


def _short(point) -> str:
    """A plot label: the single-tool files by their tool, the rest by the candidate's label."""
    if point.role == "baseline":
        return {"tflite": "TFLiteConverter default int8", "onnx": "ORT quantize_static default"}.get(point.format, point.label)
    return point.label if len(point.label) <= 40 else point.label[:37] + "..."


def _loss_text(loss) -> str:
    return "-" if loss is None else f"{loss:+.2f}" if abs(loss) < 100 else f"{loss:.3g}"


def _acc(figures) -> str:
    acc = (figures or {}).get("accuracy")
    return "-" if acc is None else f"{acc * 100:.1f}%"


__all__ = ["SearchResult", "write_outputs", "console_summary", "best_latency"]
