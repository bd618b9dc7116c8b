"""What the study keeps of a measurement, and how it becomes objectives and Pareto points.

Per candidate and target: `{"status", "error", "measurement" (the settings' key), "emulated", "accuracy",
"agreement", "max_abs_error", "threads": {"1": {"p50_ms", "ci95_ms", "status", "error"}, ...}}` from
the rows of one `edgeopt.benchmark` report (accuracy figures are against the source model's outputs).
"""

from __future__ import annotations

import hashlib
import json
import math

from .recommend import Point

INF = math.inf


def measurement_key(target, settings) -> str:
    """Figures are reused only for the same file on the same target measured the same way."""
    blob = json.dumps([target, settings], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def figures_from_report(report, target) -> dict:
    """{row.path (the name the file was measured under): figures} for `target`'s rows."""
    found = {}
    for row in report.rows:
        if row.target != target or not row.path:
            continue
        f = found.setdefault(row.path, {"status": "failed", "error": None, "emulated": row.emulated, "threads": {}})
        f["threads"][str(row.threads)] = {
            "status": row.status, "error": row.error,
            "p50_ms": row.latency["p50_ms"] if row.ok and row.latency else None,
            "ci95_ms": row.latency["ci95_ms"] if row.ok and row.latency else None,
        }
        if row.ok:
            f["status"], f["error"] = "ok", None
            acc = row.accuracy or {}
            f.update(accuracy=acc.get("value"), agreement=acc.get("top1_agreement"), max_abs_error=acc.get("max_abs_error"))
        elif f["status"] != "ok":
            f["error"] = row.error
    return found


def failed_figures(error, measurement=None) -> dict:
    return {"status": "failed", "error": error, "threads": {}, "measurement": measurement}


def best_latency(figures) -> tuple:
    """(threads, p50 ms) of the fastest thread count measured ok, or (None, inf)."""
    ok = [(int(t), r["p50_ms"]) for t, r in (figures or {}).get("threads", {}).items()
          if r.get("status") == "ok" and r.get("p50_ms") is not None]
    return min(ok, key=lambda x: x[1]) if ok else (None, INF)


def objective_values(attrs, targets, budget, source_accuracy) -> list:
    """[latency on each target, size, worst loss over the targets]; inf where nothing was measured."""
    figures = attrs.get("figures") or {}
    latencies = [best_latency(figures.get(t))[1] for t in targets]
    losses = [budget.loss(figures[t], source_accuracy) if figures.get(t, {}).get("status") == "ok" else None
              for t in targets]
    worst = INF if any(x is None for x in losses) else max(losses)
    size = (attrs.get("artifact") or {}).get("size_bytes") or INF
    return latencies + [float(size), float(worst)]


def constraint_values(attrs, targets, budget, source_accuracy) -> list:
    values = objective_values(attrs, targets, budget, source_accuracy)
    worst_latency = max(values[: len(targets)])
    worst_loss = None if values[-1] == INF else values[-1]
    return [min(v, 1e30) for v in budget.violations(worst_loss, worst_latency, (attrs.get("artifact") or {}).get("size_bytes"))]


def points_for(entries, target, budget, source_accuracy) -> list:
    """One Point per candidate and thread count measured ok on `target`."""
    points = []
    for e in entries:
        f = (e.get("figures") or {}).get(target) or {}
        if e.get("outcome") != "ok" or f.get("status") != "ok":
            continue
        art, cand = e["artifact"], e["candidate"]
        loss = budget.loss(f, source_accuracy)
        for threads, r in f["threads"].items():
            if r.get("status") != "ok" or r.get("p50_ms") is None:
                continue
            points.append(Point(
                key=e["key"], label=cand["label"], role=cand["role"], format=cand["export"]["format"],
                precision=cand["export"]["precision"], threads=int(threads), p50_ms=r["p50_ms"], ci95_ms=r["ci95_ms"],
                size_bytes=art.get("size_bytes"), loss=loss,
                feasible=loss is not None and budget.within(loss, r["p50_ms"], art.get("size_bytes")),
                file=f"candidates/{e['key']}/{art['path']}",
                figures={k: f.get(k) for k in ("accuracy", "agreement", "max_abs_error")}))
    return points
