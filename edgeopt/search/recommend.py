"""From measured candidates to an answer: the Pareto front per target and the file to ship, in one sentence.

Plain functions over plain records (TensorFlow-free, no Optuna): a `Point` is one file at one thread
count on one target. The recommendation is the fastest point within the budget (by median latency,
from the final run that measured the front and the single-tool baselines side by side); the sentence
says what it bought against fp32 and how the next-best other runtime and the baselines compare.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

RUNTIME = {"tflite": "LiteRT", "onnx": "onnxruntime"}


@dataclass
class Point:
    key: str  # the candidate's cache key
    label: str
    role: str  # reference / baseline / seed / search
    format: str
    precision: str
    threads: int
    p50_ms: float
    ci95_ms: list | None
    size_bytes: int | None
    loss: float | None  # under the budget's metric (None: not measurable)
    feasible: bool
    file: str | None = None  # path relative to the search's output folder
    figures: dict = field(default_factory=dict)  # accuracy, agreement, max_abs_error on this target

    def to_dict(self):
        return asdict(self)


@dataclass
class Recommendation:
    target: str
    point: Point | None
    sentence: str
    comparisons: list = field(default_factory=list)  # {label, role, threads, p50_ms, ratio, feasible}
    emulated: bool = False

    def to_dict(self):
        return {"target": self.target, "point": self.point.to_dict() if self.point else None,
                "sentence": self.sentence, "comparisons": self.comparisons, "emulated": self.emulated}


def dominates(a: Point, b: Point) -> bool:
    pa, pb = (a.p50_ms, a.size_bytes or 0, a.loss or 0.0), (b.p50_ms, b.size_bytes or 0, b.loss or 0.0)
    return all(x <= y for x, y in zip(pa, pb)) and pa != pb


def pareto_front(points) -> list:
    """Feasible points that no other feasible point beats on latency, size and loss at once; fastest first."""
    feasible = [p for p in points if p.feasible]
    front = [p for p in feasible if not any(dominates(q, p) for q in feasible)]
    return sorted(front, key=lambda p: (p.p50_ms, p.size_bytes or 0))


def best_per_file(points) -> list:
    """One point per file: its fastest thread count."""
    best = {}
    for p in points:
        if p.key not in best or p.p50_ms < best[p.key].p50_ms:
            best[p.key] = p
    return list(best.values())


def recommend(target, points, budget, emulated=False) -> Recommendation:
    """The fastest feasible point, and the sentence that says why (points: one run, side by side)."""
    feasible = sorted((p for p in points if p.feasible), key=lambda p: p.p50_ms)
    if not feasible:
        return Recommendation(target, None, _nothing_fits(points, budget), [], emulated)
    choice = feasible[0]
    comparisons = _comparisons(choice, points)
    return Recommendation(target, choice, _sentence(choice, points, budget, emulated), comparisons, emulated)


def _sentence(choice, points, budget, emulated) -> str:
    parts = [f"{choice.label} at {choice.threads} thread{'s' if choice.threads > 1 else ''}"]
    fp32 = _same_threads(points, choice, lambda p: p.format == choice.format and p.role == "reference")
    if fp32 and fp32.key != choice.key:
        speed, size = fp32.p50_ms / choice.p50_ms, (choice.size_bytes or 0) / (fp32.size_bytes or 1)
        parts.append(f"{_times(speed)} than fp32, {size:.2f}x the size, {_loss_words(choice, budget)}")
    else:
        parts.append(f"the fastest file within the budget, {_loss_words(choice, budget)}")
    other = _next_other_runtime(choice, points)
    text = f"{parts[0]}: {', '.join(parts[1:])}"
    if other:
        text += f"; the fastest {RUNTIME.get(other.format, other.format)} file within budget ({other.label}, " \
                f"{other.threads} thread{'s' if other.threads > 1 else ''}) is {_slower(other.p50_ms / choice.p50_ms)} here"
    baselines = _baseline_words(choice, points)
    if baselines:
        text += f"; single-tool default int8 in the same run: {baselines}"
    return text + (" (emulated: QEMU's latency, not a device's)" if emulated else "")


BASELINE_NAMES = {"tflite": "TFLiteConverter", "onnx": "onnxruntime quantize_static"}


def _baseline_words(choice, points) -> str:
    """'TFLiteConverter 1.01x, onnxruntime quantize_static 2.88x the latency' (at the choice's thread count)."""
    words = []
    for fmt, name in BASELINE_NAMES.items():
        found = _same_threads(points, choice, lambda p, fmt=fmt: p.role == "baseline" and p.format == fmt)
        if found and found.key != choice.key:
            words.append(f"{name} {found.p50_ms / choice.p50_ms:.2f}x")
        elif found:
            words.append(f"{name}'s is this file")
    return ", ".join(words) + (" the latency" if any(w[-1] == "x" for w in words) else "")


def _loss_words(point, budget) -> str:
    if point.loss is None:
        return "accuracy not measured"
    if budget.metric == "accuracy":
        return f"{0.0 - point.loss:+.1f} accuracy points".replace("-0.0", "+0.0")
    if budget.metric == "agreement":
        return f"{100 - point.loss:.1f}% top-1 agreement with the source model"
    return f"max abs error {point.loss:.3g}"


def _times(ratio) -> str:
    return f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"


def _slower(ratio) -> str:
    return f"{(ratio - 1) * 100:.0f}% slower" if ratio >= 1.005 else "as fast (within 0.5%)"


def _same_threads(points, choice, predicate):
    found = [p for p in points if predicate(p)]
    same = [p for p in found if p.threads == choice.threads]
    return min(same or found, key=lambda p: p.p50_ms) if (same or found) else None


def _next_other_runtime(choice, points):
    others = [p for p in points if p.feasible and p.format != choice.format]
    return min(others, key=lambda p: p.p50_ms) if others else None


def _comparisons(choice, points) -> list:
    """Every baseline and reference point against the choice: p50 ratio (>1: slower than the choice)."""
    return [{"label": p.label, "role": p.role, "threads": p.threads, "p50_ms": p.p50_ms,
             "ratio_to_choice": p.p50_ms / choice.p50_ms, "feasible": p.feasible, "loss": p.loss}
            for p in sorted(points, key=lambda p: (p.role, p.label, p.threads)) if p.role in ("baseline", "reference")]


def _nothing_fits(points, budget) -> str:
    measured = [p for p in points if p.loss is not None]
    if not measured:
        return "no file could be measured here: see the candidate table for each file's error"
    closest = min(measured, key=lambda p: (p.loss, p.p50_ms))
    return (f"no file meets the budget ({budget.describe()}): the closest is {closest.label} "
            f"({_loss_words(closest, budget)}); loosen the budget or add training data (--train) for training steps")
