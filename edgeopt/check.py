"""Check a converted model against the model it came from: shapes, values, agreement, task accuracy.

TensorFlow-free: takes arrays (the reference model's outputs, computed by the converter) and runs
the artifact through LiteRT or onnxruntime.
"""

from __future__ import annotations

import numpy as np

# Per precision. Errors are relative to the output's scale: max(1, max |reference|) for the float
# precisions, the reference's range for int8 (whose error is a few quantization steps of it).
DEFAULT_TOLERANCES = {
    "fp32": {"max_abs_error": 1e-4, "min_cosine": 0.99999, "min_top1_agreement": 0.99},
    "fp16": {"max_abs_error": 1e-2, "min_cosine": 0.9999, "min_top1_agreement": 0.98},
    "int8-dynamic": {"max_rel_error": 0.25, "min_cosine": 0.99, "min_top1_agreement": 0.95},
    "int8": {"max_rel_error": 0.5, "min_cosine": 0.98, "min_top1_agreement": 0.93, "max_accuracy_drop": 3.0},
}


def tolerances_for(precision, overrides=None) -> dict:
    return {**DEFAULT_TOLERANCES.get(precision, DEFAULT_TOLERANCES["int8"]), **(overrides or {}).get(precision, {})}


def is_classifier_output(y) -> bool:
    return y.ndim == 2 and y.shape[1] > 1


def task_accuracy(output, labels):
    """Top-1 accuracy (class indices or one-hot labels); binary accuracy for a single sigmoid/logit unit.

    Returns None when the labels do not describe a classification of this output.
    """
    labels = np.asarray(labels)
    if is_classifier_output(output):
        if labels.ndim == 2 and labels.shape == output.shape:
            labels = labels.argmax(axis=1)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            return None
        return float(np.mean(output.argmax(axis=1) == labels))
    if output.ndim == 2 and output.shape[1] == 1 and set(np.unique(labels)) <= {0, 1}:
        threshold = 0.5 if np.all((output >= 0) & (output <= 1)) else 0.0
        return float(np.mean((output[:, 0] > threshold) == labels.reshape(-1).astype(bool)))
    return None


def compare(reference, candidate, precision, labels=None, overrides=None) -> dict:
    """Figures and a verdict for `candidate` outputs against `reference` outputs (lists of arrays)."""
    tol = tolerances_for(precision, overrides)
    problems, per_output = [], []
    if len(reference) != len(candidate):
        problems.append(f"the model has {len(candidate)} output(s), the reference {len(reference)}")
    for i, (ref, got) in enumerate(zip(reference, candidate)):
        ref = np.asarray(ref, np.float64)
        got = np.asarray(got, np.float64)
        if ref.shape != got.shape:
            problems.append(f"output {i}: shape {got.shape} differs from the reference's {ref.shape}")
            per_output.append({"index": i, "shape": list(got.shape), "shape_ok": False})
            continue
        blame = _non_finite_outputs(ref, got)
        if blame:  # error figures over NaN mean nothing; say which side produced it
            problems.append(f"output {i}: {blame}")
            per_output.append({"index": i, "shape": list(got.shape), "shape_ok": True, "non_finite": blame})
            continue
        diff = np.abs(ref - got)
        scale = max(1.0, float(np.abs(ref).max()))
        span = float(ref.max() - ref.min()) or 1.0
        flat_r, flat_g = ref.reshape(len(ref), -1), got.reshape(len(got), -1)
        norms = np.linalg.norm(flat_r, axis=1) * np.linalg.norm(flat_g, axis=1)
        cos = np.where(norms > 0, np.sum(flat_r * flat_g, axis=1) / np.where(norms > 0, norms, 1), 1.0)
        figures = {
            "index": i,
            "shape": list(got.shape),
            "shape_ok": True,
            "max_abs_error": float(diff.max()),
            "mean_abs_error": float(diff.mean()),
            "relative_max_error": float(diff.max() / span),
            "cosine": float(cos.mean()),
            "min_cosine": float(cos.min()),
            "top1_agreement": float(np.mean(ref.argmax(1) == got.argmax(1))) if is_classifier_output(ref) else None,
        }
        per_output.append(figures)
        if "max_abs_error" in tol and figures["max_abs_error"] > tol["max_abs_error"] * scale:
            problems.append(
                f"output {i}: max abs error {figures['max_abs_error']:.3g} exceeds {tol['max_abs_error'] * scale:.3g}"
            )
        if "max_rel_error" in tol and figures["relative_max_error"] > tol["max_rel_error"]:
            problems.append(
                f"output {i}: max error is {figures['relative_max_error']:.1%} of the output range "
                f"(limit {tol['max_rel_error']:.0%})"
            )
        if figures["cosine"] < tol["min_cosine"]:
            problems.append(f"output {i}: cosine similarity {figures['cosine']:.6f} below {tol['min_cosine']}")
        agree = figures["top1_agreement"]
        if agree is not None and agree < tol["min_top1_agreement"]:
            problems.append(f"output {i}: top-1 agreement {agree:.1%} below {tol['min_top1_agreement']:.1%}")
    result = {
        "samples": int(len(reference[0])) if reference else 0,
        "max_abs_error": max((o.get("max_abs_error", np.inf) for o in per_output), default=None),
        "cosine": min((o.get("cosine", 0.0) for o in per_output), default=None),
        "top1_agreement": _first(o.get("top1_agreement") for o in per_output),
        "accuracy": None,
        "reference_accuracy": None,
        "outputs": per_output,
        "tolerance": tol,
    }
    if labels is not None and candidate and reference:
        result["accuracy"] = task_accuracy(np.asarray(candidate[0]), labels)
        result["reference_accuracy"] = task_accuracy(np.asarray(reference[0]), labels)
        drop_limit = tol.get("max_accuracy_drop")
        if drop_limit is not None and result["accuracy"] is not None:
            drop = 100 * (result["reference_accuracy"] - result["accuracy"])
            if drop > drop_limit:
                problems.append(f"accuracy fell {drop:.2f} points (limit {drop_limit})")
    result["passed"] = not problems
    result["problems"] = problems
    return result


def _non_finite_outputs(ref, got) -> str | None:
    """Who produced NaN/inf: the reference (the Keras model on these inputs) or the candidate file, or nobody."""
    bad_ref, bad_got = int(np.sum(~np.isfinite(ref))), int(np.sum(~np.isfinite(got)))
    if bad_ref:
        return (f"the Keras model's own outputs hold {bad_ref} NaN/infinite value(s) on the evaluation inputs, so "
                "nothing can be compared: the reference is at fault, not this file (check the model's weights, "
                "and that the inputs are in the range it was trained on)")
    if bad_got:
        return f"{bad_got} NaN/infinite value(s) where the Keras model's outputs are finite"
    return None


def _first(values):
    return next((v for v in values if v is not None), None)


def check_io(artifact_outputs: list, reference_outputs: list) -> list:
    """Problems with an artifact's declared outputs vs the Keras model's (count and per-sample shape)."""
    problems = []
    if len(artifact_outputs) != len(reference_outputs):
        problems.append(f"{len(artifact_outputs)} output(s) where the Keras model has {len(reference_outputs)}")
    for got, want in zip(artifact_outputs, reference_outputs):
        if list(got["shape"][1:]) != list(want["shape"][1:]):
            problems.append(
                f"output {got['name']!r} has per-sample shape {got['shape'][1:]}, "
                f"the Keras output {want['name']!r} has {want['shape'][1:]}"
            )
    return problems


def run_file(path, xs, fixed_batch=None, input_names=None, output_names=None, fmt=None) -> dict:
    """A .tflite/.onnx file's I/O specs and its outputs on `xs`, run with LiteRT or onnxruntime.

    `xs` and the returned outputs are in the Keras model's order (`input_names`, `output_names`): a TFLite
    file lists its inputs and outputs sorted by name, so they are matched by name where all names match.
    `fmt` ('tflite'/'onnx') is given for staged files, whose names carry no suffix. A file traced at a
    fixed batch > 1 is fed whole batches. Runs in the converter process (see converter.isolation), so a
    runtime that crashes on a converted file fails that file's check only.

    Returns {"inputs": specs, "outputs": specs (both in the file's order), "keras_order_outputs": specs and
    "got": outputs, both in the Keras order}.
    """
    from .bench.device.runtimes import ModelOpenError, open_model
    from .errors import ConversionError

    try:
        m = open_model(str(path), fmt=fmt)
    except ModelOpenError as e:
        raise ConversionError(f"the converted file does not load: {e}") from None
    feed = [xs[i] for i in _order(output=False, file_specs=m.input_specs, names=input_names)]
    # A small batch: a runtime keeps the arena of its largest batch (GBs for MobileNet at 64).
    got = predict_at_batch(m, feed, fixed_batch) if fixed_batch and fixed_batch > 1 else m.predict(feed, batch_size=16)
    keras_order = _order(output=True, file_specs=m.output_specs, names=output_names)
    return {"inputs": m.input_specs, "outputs": m.output_specs, "got": [got[i] for i in keras_order],
            "keras_order_outputs": [m.output_specs[i] for i in keras_order]}


def _order(output, file_specs, names):
    """Inputs: for each file input, the index of its Keras input. Outputs: for each Keras output, its file index.

    Positional (identity) unless the file's names are exactly the Keras names in another order.
    """
    file_names = [s["name"] for s in file_specs]
    if not names or sorted(file_names) != sorted(names) or len(set(names)) != len(names):
        return list(range(len(file_specs)))
    return [file_names.index(n) for n in names] if output else [names.index(n) for n in file_names]


def predict_at_batch(m, xs, batch):
    """Outputs of a file traced at a fixed batch > 1: whole batches, the last one padded and trimmed."""
    n, chunks = len(xs[0]), []
    for start in range(0, n, batch):
        chunk = [x[start:start + batch] for x in xs]
        short = batch - len(chunk[0])
        padded = [np.concatenate([c, np.repeat(c[-1:], short, axis=0)]) if short else c for c in chunk]
        out = m.decode(m.invoke(m.encode(padded)))
        chunks.append([o[:batch - short] for o in out])
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]
