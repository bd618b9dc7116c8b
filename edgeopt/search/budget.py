"""What a file may lose and still ship: accuracy points, agreement points or max error; latency and size ceilings.

Losses are measured against the source Keras model on the search's evaluation data, on each target
(a file's outputs on an ARM board are what the user will get there). Without labels, accuracy means
top-1 agreement with the source model.

Example:
    >>> b = Budget(1.0, "accuracy")
    >>> b.loss({"accuracy": 0.95, "agreement": 0.99, "max_abs_error": 0.1}, source_accuracy=0.96)
    1.0000000000000009
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from ..errors import RecipeError

METRICS = {
    "accuracy": "accuracy points lost against the source model (needs labels)",
    "agreement": "points of top-1 disagreement with the source model's outputs",
    "max-error": "largest absolute difference from the source model's outputs",
}
UNITS = {"accuracy": "points", "agreement": "points", "max-error": ""}


@dataclass(frozen=True)
class Budget:
    value: float = 1.0
    metric: str = "accuracy"
    max_latency_ms: float | None = None  # on every target, at the file's best thread count
    max_size_bytes: int | None = None

    def problems(self) -> list:
        found = []
        if self.metric not in METRICS:
            found.append(f"budget metric {self.metric!r} is not one of {', '.join(METRICS)}")
        if not self.value >= 0:
            found.append(f"the budget must be 0 or more {UNITS.get(self.metric, '')}, got {self.value}".replace("  ", " "))
        if self.max_latency_ms is not None and not self.max_latency_ms > 0:
            found.append(f"--max-latency must be above 0 ms, got {self.max_latency_ms}")
        if self.max_size_bytes is not None and not self.max_size_bytes > 0:
            found.append(f"--max-size must be above 0 bytes, got {self.max_size_bytes}")
        return found

    def for_data(self, has_labels: bool) -> "Budget":
        """Without labels there is no accuracy: the budget becomes agreement points (and says so)."""
        if self.metric == "accuracy" and not has_labels:
            return Budget(self.value, "agreement", self.max_latency_ms, self.max_size_bytes)
        return self

    def loss(self, figures: dict, source_accuracy: float | None) -> float | None:
        """This file's loss under the budget's metric, from one target's figures (None: not measurable)."""
        if self.metric == "accuracy":
            acc = figures.get("accuracy")
            return None if acc is None or source_accuracy is None else (source_accuracy - acc) * 100
        if self.metric == "agreement":
            agreement = figures.get("agreement")
            return None if agreement is None else (1 - agreement) * 100
        return figures.get("max_abs_error")

    def violations(self, loss, latency_ms, size_bytes) -> list:
        """Optuna's constraint values: each <= 0 when that limit holds (a positive value says by how much not)."""
        values = [float("inf") if loss is None else loss - self.value]
        if self.max_latency_ms is not None:
            values.append(float("inf") if latency_ms is None else latency_ms - self.max_latency_ms)
        if self.max_size_bytes is not None:
            values.append(float("inf") if size_bytes is None else size_bytes - self.max_size_bytes)
        return values

    def within(self, loss, latency_ms, size_bytes) -> bool:
        return all(v <= 1e-9 for v in self.violations(loss, latency_ms, size_bytes))

    def describe(self) -> str:
        unit = UNITS[self.metric]
        unit = unit.removesuffix("s") if self.value == 1 else unit
        text = {"accuracy": f"at most {self.value:g} accuracy {unit} lost",
                "agreement": f"at most {self.value:g} {unit} of top-1 disagreement with the source model",
                "max-error": f"max abs error at most {self.value:g}"}[self.metric]
        if self.max_latency_ms is not None:
            text += f", at most {self.max_latency_ms:g} ms"
        if self.max_size_bytes is not None:
            text += f", at most {self.max_size_bytes:,} bytes"
        return text

    def to_dict(self):
        return asdict(self)


def parse_size(text) -> int:
    """'4MB', '512 KB', '1000000' -> bytes (KB = 1024 bytes, as the tables print them)."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kKmMgG]?)[bB]?\s*", str(text))
    if not m:
        raise RecipeError(f"--max-size takes a size such as 4MB or 512KB, got {text!r}")
    return int(float(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()])


def parse_duration(text) -> float:
    """'30m', '2h', '90s', '45' (seconds) -> seconds."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([smh]?)\s*", str(text))
    if not m:
        raise RecipeError(f"--time takes a duration such as 30m, 2h or 90s, got {text!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
