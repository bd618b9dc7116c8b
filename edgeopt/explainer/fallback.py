"""The proposed fix for a file that lost accuracy, made and measured: its worst layers kept in float.

For each failed quantized file: keep the worst layer in float, then the fewest worst layers that
together added at least half of the final error (up to three). Each candidate is made with the
selective-quantization functions in converter/selective.py, written under `explain/fallback/`,
checked against the Keras model's outputs like any export (error bound, agreement, accuracy), and
its size and latency measured beside the original file in one interleaved benchmark run.
"""

from __future__ import annotations

from pathlib import Path

from ..check import compare
from ..fileio import write_bytes_atomic
from .ops import family

MAX_LAYERS = 3
_DATA_MOVEMENT = {"MAX_POOL_2D", "MaxPool", "NhwcMaxPool"}  # share their input's scale: nothing to keep float


def candidate_sets(records: list, first_divergent=None) -> list:
    """Up to three sets of layers to keep float, smallest first.

    The worst layer alone; the worst with the layer after it (so the tensor between them, whose one
    int8 scale may be the problem, stays float too); the first divergent layer with the worst layers
    until they added half the error (at most three).
    """
    ranked = [r for r in sorted(records, key=lambda r: -r.get("error_share", 0.0))
              if r.get("error_share", 0.0) > 0 and can_stay_float(r)]
    if not ranked:
        return []
    worst = ranked[0]["layer"]
    sets = [[worst]]
    order = [r["layer"] for r in records]
    after = next((r["layer"] for r in records[order.index(worst) + 1:] if can_stay_float(r)), None)
    if after:
        sets.append([worst, after])
    first = next((r for r in records if r["layer"] == first_divergent and can_stay_float(r)), None)
    chosen, share = ([first["layer"]], first.get("error_share", 0.0)) if first else ([], 0.0)
    for r in ranked[:MAX_LAYERS]:
        if share >= 0.5 or len(chosen) >= MAX_LAYERS:
            break
        if r["layer"] not in chosen:
            chosen.append(r["layer"])
            share += r["error_share"]
    if all(sorted(chosen) != sorted(s) for s in sets):
        sets.append(chosen)
    return sets


def can_stay_float(record) -> bool:
    op = record.get("float_op") or record.get("op") or ""
    return op not in _DATA_MOVEMENT and family(op) != "layout"


def build_in_process(ctx, art, layers) -> tuple[bytes, dict]:
    """One selective file for `art` without TensorFlow (TFLite int8 goes through quant_debug instead)."""
    from ..converter import selective

    parent = ctx.parent_path(art)
    if art.format == "onnx" and art.precision == "int8":
        return selective.onnx_int8(parent, ctx.calibration(), art.options, layers, ctx.keras3, ctx.output_layers)
    if art.format == "onnx" and art.precision == "int8-dynamic":
        return selective.onnx_int8_dynamic(parent, layers, ctx.keras3, ctx.output_layers)
    if art.format == "tflite" and art.precision == "int8-dynamic":
        return selective.tflite_int8_dynamic(parent, layers, ctx.keras3, ctx.output_layers)
    raise NotImplementedError(f"no float fallback for {art.format} {art.precision}")


def write(ctx, art, layers, blob, facts) -> dict:
    """Save a fallback file under explain/fallback/ and check it as the converter checks an export."""
    from ..bench.device.runtimes import open_model

    suffix = Path(art.path).suffix
    name = f"{Path(art.path).stem}.keep-float-{'+'.join(_safe(layer) for layer in layers)}{suffix}"
    path = ctx.out / "fallback" / name
    write_bytes_atomic(path, blob)
    model = open_model(str(path))
    got = model.predict(ctx.data.x)
    check = compare(ctx.data.reference, got, art.precision, ctx.data.y, ctx.tolerances) if ctx.data.reference \
        else None
    return {"layers": list(layers), "file": str(path.relative_to(ctx.out)), "size_bytes": path.stat().st_size,
            "check": _check_summary(check), "facts": facts, "_path": str(path)}


def _check_summary(check):
    if not check:
        return None
    keys = ("passed", "problems", "max_abs_error", "cosine", "top1_agreement", "accuracy", "reference_accuracy")
    found = {k: check.get(k) for k in keys}
    found["relative_max_error"] = max((o.get("relative_max_error", 0.0) for o in check["outputs"]), default=None)
    return found


def _safe(text) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:40]


def measure_latency(ctx, pairs: list) -> None:
    """Time every fallback beside its original in one interleaved run; fill `latency` of each fallback."""
    from ..bench.harness import benchmark

    paths, owners = [], []
    for art, fallbacks in pairs:
        original = ctx.root / art.path
        paths.append(original)
        owners.append((None, art.id))
        for fb in fallbacks:
            if fb.get("_path"):
                paths.append(Path(fb["_path"]))
                owners.append((fb, art.id))
    if len(paths) < 2:
        return
    report = benchmark([str(p) for p in paths], threads=[1], rounds=ctx.rounds, timing=ctx.timing,
                       evaluation=None, out=ctx.out / "fallback" / "bench", progress=False, log=lambda *_: None,
                       profile=False, targets=ctx.targets[:1])
    rows = [r for r in report.rows if r.ok]
    by_path = {str(Path(r.path).resolve()): r for r in rows}
    originals = {a.id: by_path.get(str((ctx.root / a.path).resolve())) for a, _ in pairs}
    for fb, art_id in owners:
        if fb is None:
            continue
        row, base = by_path.get(str(Path(fb["_path"]).resolve())), originals.get(art_id)
        if row and row.latency:
            fb["latency"] = {"p50_ms": row.latency["p50_ms"], "ci95_ms": row.latency["ci95_ms"],
                             "target": row.target, "threads": 1}
            if base and base.latency:
                fb["latency"]["original_p50_ms"] = base.latency["p50_ms"]
                fb["latency"]["ratio_to_original"] = row.latency["p50_ms"] / base.latency["p50_ms"]


def agreement_gain(original_check, fallback_check) -> str:
    """'max error 86.8% -> 12.1% of the output range, accuracy 71.0% -> 93.5%' from two checks."""
    parts = []
    a = (original_check or {}).get("outputs", [{}])
    before = max((o.get("relative_max_error", 0.0) for o in a), default=None) if a else None
    after = (fallback_check or {}).get("relative_max_error")
    if before is not None and after is not None:
        parts.append(f"max error {before:.1%} -> {after:.1%} of the output range")
    acc_b, acc_a = (original_check or {}).get("accuracy"), (fallback_check or {}).get("accuracy")
    if acc_b is not None and acc_a is not None:
        parts.append(f"accuracy {acc_b:.1%} -> {acc_a:.1%}")
    cos_b, cos_a = (original_check or {}).get("cosine"), (fallback_check or {}).get("cosine")
    if cos_b is not None and cos_a is not None and not parts:
        parts.append(f"cosine {cos_b:.4f} -> {cos_a:.4f}")
    return ", ".join(parts)

