"""Do a model's outputs on another target (an ARM board, the emulator) match its outputs on the local CPU?

The same file on the same inputs with the same runtime versions: only the kernels differ (ARM NEON vs
x86 AVX). Measured on the emulator, float32 was never bit-identical but always within
allclose(rtol=1e-5, atol=1e-6); int8 through XNNPACK was bit-exact, and LiteRT's own int8 kernels up
to 2 LSB apart. So:

- float outputs of fp32 models: max |diff| <= 1e-6 + 1e-5 x max |reference| (scaled to the output's magnitude);
  fp16 models: 1e-3 x, because XNNPACK may compute fp16 models in half precision on ARM cores that have it;
- int8 models: max |diff| <= 2 LSB, the LSB being the output's quantization scale (from the worker's
  output specs for int8 outputs, else from the model's final dequantize);
- int8 models without an output scale (int8-dynamic: float outputs of integer kernels): 2 steps of an
  8-bit grid over the reference output's range.

TensorFlow-free (numpy, onnx and LiteRT to read a scale from a model file).
Example:
    figures = artifact_parity("local/outputs/m.t1.npz", "arm/outputs/m.t1.npz", "int8", "m.tflite", specs)
    figures["verdict"]  # "ok", "differs" or "failed"
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

RTOL = {"fp32": 1e-5, "fp16": 1e-3}
ATOL = 1e-6
MAX_LSB = 2.0


def compare(reference, candidate, precision: str, scales=None) -> dict:
    """Figures and a verdict for lists of output arrays (the local ones first). `scales`: LSB per output or None."""
    reference, candidate = list(reference), list(candidate)
    scales = list(scales or [None] * len(reference))
    if len(reference) != len(candidate):
        return {"verdict": "failed", "reason": f"{len(reference)} outputs locally, {len(candidate)} on the target"}
    outputs = []
    for i, (ref, cand, scale) in enumerate(zip(reference, candidate, scales)):
        if ref.shape != cand.shape:
            return {"verdict": "failed", "reason": f"output {i} has shape {ref.shape} locally, {cand.shape} on the target"}
        outputs.append(_compare_one(np.asarray(ref, np.float64), np.asarray(cand, np.float64), precision, scale))
    worst = max(outputs, key=lambda o: o["max_abs_diff"] / o["limit"] if o["limit"] else np.inf)
    figures = {
        "verdict": "ok" if all(o["ok"] for o in outputs) else "differs",
        "rule": worst["rule"],
        "max_abs_diff": worst["max_abs_diff"],
        "limit": worst["limit"],
        "lsb": worst.get("lsb"),
        "relative_diff": worst["relative_diff"],
        "top1_agreement": _top1(reference[0], candidate[0]),
        "outputs": outputs,
    }
    if figures["verdict"] != "ok":
        figures["reason"] = f"max |diff| {worst['max_abs_diff']:.3g} exceeds {worst['rule']}"
    return figures


def _compare_one(ref, cand, precision, scale) -> dict:
    diff = float(np.max(np.abs(ref - cand))) if ref.size else 0.0
    magnitude = float(np.max(np.abs(ref))) if ref.size else 0.0
    figures = {"max_abs_diff": diff, "max_abs_reference": magnitude,
               "relative_diff": diff / magnitude if magnitude else diff}
    if precision.startswith("int8"):
        grid = scale or (float(ref.max() - ref.min()) / 255 if ref.size else 0.0)
        rule = f"{MAX_LSB:g} LSB of {grid:.3g}" + ("" if scale else " (8-bit grid over the output range)")
        lsb = diff / grid if grid else (0.0 if diff == 0 else np.inf)
        # A hair of slack: dequantized outputs carry float32 rounding of (q - zp) x scale.
        return {**figures, "rule": rule, "lsb": lsb, "limit": MAX_LSB * grid, "ok": lsb <= MAX_LSB + 1e-3}
    rtol = RTOL.get(precision, RTOL["fp32"])
    limit = ATOL + rtol * magnitude
    return {**figures, "rule": f"{ATOL:g} + {rtol:g} x max|reference| = {limit:.3g}", "limit": limit, "ok": diff <= limit}


def _top1(ref, cand):
    if ref.ndim != 2 or ref.shape[1] < 2:
        return None
    return float(np.mean(np.argmax(ref, axis=1) == np.argmax(cand, axis=1)))


def output_scales(model_path, output_specs=None) -> list:
    """The LSB of each output: its quantization scale (int8 outputs) or that of the dequantize producing it."""
    specs = output_specs or []
    from_specs = [(s.get("quantization") or {}).get("scale") for s in specs]
    if specs and all(from_specs):
        return from_specs
    from_file = (_tflite_dequantize_scales if str(model_path).endswith(".tflite") else _onnx_dequantize_scales)(model_path)
    return [a or b for a, b in zip(from_specs or [None] * len(from_file), from_file)]


def _onnx_dequantize_scales(path) -> list:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    producer = {out: node for node in graph.node for out in node.output}
    inits = {init.name: init for init in graph.initializer}
    scales = []
    for output in graph.output:
        node = producer.get(output.name)
        scale = None
        if node is not None and node.op_type == "DequantizeLinear" and node.input[1] in inits:
            values = numpy_helper.to_array(inits[node.input[1]])
            scale = float(values.max())  # per-channel: the coarsest channel bounds the error
        scales.append(scale)
    return scales


def _tflite_dequantize_scales(path) -> list:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Without the default delegate, so that the model's own ops (not XNNPACK's) are listed.
    interp = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    producer = {out: op for op in interp._get_ops_details() for out in op["outputs"]}
    scales = []
    for detail in _tflite_outputs_in_order(interp):
        op = producer.get(detail["index"])
        scale = None
        if op is not None and op["op_name"] == "DEQUANTIZE":
            scale = tensors[op["inputs"][0]]["quantization"][0] or None
        scales.append(scale)
    return scales


def _tflite_outputs_in_order(interp) -> list:
    """Output details in the signature's order, the order the worker saves outputs in (see runtimes.py)."""
    outs = interp.get_output_details()
    sig = interp._get_full_signature_list().get("serving_default", {}).get("outputs", {})
    order = {index: pos for pos, index in enumerate(sig.values())}
    return sorted(outs, key=lambda d: order.get(d["index"], 0)) if len(order) == len(outs) else outs


def load_outputs(npz_path) -> list:
    with np.load(npz_path) as z:
        return [z[f"y{i}"] for i in range(len(z.files))]


def artifact_parity(reference_npz, candidate_npz, precision, model_path, output_specs=None) -> dict:
    """One artifact: its saved outputs locally and on the target -> figures and a verdict."""
    return compare(load_outputs(reference_npz), load_outputs(candidate_npz), precision,
                   output_scales(model_path, output_specs))


def bundle_parity(reference_bundle, candidate_bundle, precision_of) -> dict:
    """Every job with saved outputs in both bundles: job id -> artifact_parity figures.

    `precision_of(job_id)` names the artifact's precision (fp32, fp16, int8-dynamic, int8), from the manifest.
    A job that failed or saved nothing on either side gets verdict 'failed' with the reason.
    """
    reference_bundle, candidate_bundle = Path(reference_bundle), Path(candidate_bundle)
    plan = json.loads((reference_bundle / "plan.json").read_text())
    models = {job["id"]: reference_bundle / job["model"] for job in plan["jobs"]}
    ref, cand = _saved_outputs(reference_bundle), _saved_outputs(candidate_bundle)
    parity = {}
    for key in sorted(set(ref) | set(cand), key=str):
        job_id = key[0]
        if key not in ref or key not in cand:
            where = "locally" if key not in ref else "on the target"
            parity[job_id] = {"verdict": "failed", "reason": f"no outputs were saved {where} (see that row)"}
            continue
        parity[job_id] = artifact_parity(ref[key][0], cand[key][0], precision_of(job_id), models[job_id], ref[key][1])
    return parity


def _saved_outputs(bundle: Path) -> dict:
    """(job id, threads) -> (outputs file, output specs), for measurements that saved outputs."""
    results = json.loads((bundle / "results.json").read_text())
    return {(m["id"], m.get("threads")): (bundle / "outputs" / m["outputs_file"], m.get("outputs"))
            for m in results["measurements"] if m.get("status") == "ok" and m.get("outputs_file")}
