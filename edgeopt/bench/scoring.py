"""Turn measured rows into answers: accuracy, agreement, and each row against its baseline.

The baseline of a row is the fp32 file of its format on the same target and thread count (or the
artifact the user names), so "speedup" and "size" say what quantization bought within one runtime.
"""

from __future__ import annotations

import importlib

from ..check import compare, task_accuracy
from ..errors import BenchmarkError
from . import filebytes, parity, stats


def finish(report, work, data, baseline=None, metric=None):
    metric_fn, metric_name = resolve_metric(metric)
    # Outputs are saved once per artifact and target (thread count does not change them): share them.
    outputs = {(t, a): w["outputs"] for (t, a, _), w in work.items() if w.get("outputs") is not None}
    for (t, a, threads), w in work.items():
        if (t, a) in outputs:
            w["outputs"] = outputs[(t, a)]
    for row in report.rows:
        w = work.get((row.target, row.artifact, row.threads), {})
        if row.ok and w.get("outputs") is not None:
            row.accuracy = _accuracy(row, w["outputs"], data, metric_fn, metric_name)
    groups = {}
    for row in report.rows:
        groups.setdefault((row.target, row.threads), []).append(row)
    for rows in groups.values():
        for row in rows:
            base = _baseline_for(row, rows, baseline)
            if base is not None:
                _against_baseline(row, base, work)
    _parity_with_local(report, work, data)


def _parity_with_local(report, work, data):
    """Each row on another target (a board, the emulator) against the same file's outputs on this CPU."""
    local = next((t["name"] for t in report.targets if t["kind"] == "local"), None)
    for row in report.rows:
        w = work.get((row.target, row.artifact, row.threads), {})
        if row.target == local or not row.ok or w.get("outputs") is None:
            continue
        ref = work.get((local, row.artifact, row.threads), {}).get("outputs") if local else None
        if ref is None:  # no local run (or it failed): the outputs are cheap to compute here
            ref = _host_outputs(row, data)
        figures = parity.compare(ref, w["outputs"], row.precision, parity.output_scales(row.path, w["output_specs"]))
        row.parity = {"vs": "local CPU", **{k: v for k, v in figures.items() if k != "outputs"}}


def _host_outputs(row, data):
    from .device.runtimes import open_model

    model = open_model(row.path)
    return model.predict(data.inputs_for(model.input_specs))


def resolve_metric(metric):
    """(callable(outputs, labels) -> float, name). Default: top-1 accuracy (binary for one sigmoid unit)."""
    if metric is None:
        return task_accuracy, "top1"
    if callable(metric):
        return metric, getattr(metric, "__name__", "metric")
    module, _, name = str(metric).partition(":")
    try:
        return getattr(importlib.import_module(module), name), str(metric)
    except (ImportError, AttributeError, ValueError) as e:
        raise BenchmarkError(f"metric {metric!r}: cannot import {name!r} from {module!r} ({e})") from None


def _accuracy(row, outputs, data, metric_fn, metric_name) -> dict:
    acc = {"metric": metric_name, "value": None}
    if data.y is not None:
        value = metric_fn(outputs[0], data.y)
        acc["value"] = None if value is None else float(value)
    if data.reference is not None:
        figures = compare(data.reference, outputs, row.precision)
        acc.update(_agreement(figures), vs="keras")
    return acc


def _agreement(figures) -> dict:
    return {k: figures.get(k) for k in ("top1_agreement", "max_abs_error", "cosine")}


def _baseline_for(row, rows, chosen):
    if chosen:
        return next((r for r in rows if r.artifact == chosen), None)
    same_format = [r for r in rows if r.format == row.format]
    return next((r for r in same_format if r.precision == "fp32"), same_format[0] if same_format else None)


def _against_baseline(row, base, work):
    row_w = work.get((row.target, row.artifact, row.threads), {})
    base_w = work.get((base.target, base.artifact, base.threads), {})
    if base.size_bytes and row.size_bytes:
        row.size_ratio = row.size_bytes / base.size_bytes
        if base.format == row.format and base.precision == "fp32":
            row.size_note = filebytes.size_note(row.artifact, row.path, row.format, row.precision, base.artifact,
                                                base.path)
    if not (row.ok and base.ok):
        return
    if "draws" in row_w and "draws" in base_w:
        row.speedup = {"vs": base.artifact, **stats.speedup(base_w["draws"], row_w["draws"],
                                                            base.latency["p50_ms"], row.latency["p50_ms"])}
    if row.accuracy is None or base.accuracy is None:
        return
    if row.accuracy.get("value") is not None and base.accuracy.get("value") is not None:
        row.accuracy["delta_points"] = (row.accuracy["value"] - base.accuracy["value"]) * 100
    if row.accuracy.get("vs") is None and base_w.get("outputs") is not None:
        # No Keras outputs to compare with: agreement with the baseline file is the next best thing.
        figures = compare(base_w["outputs"], row_w["outputs"], row.precision)
        row.accuracy.update(_agreement(figures), vs=base.artifact)
