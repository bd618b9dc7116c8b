"""ai-edge-quantizer (LiteRT's own quantizer) as a pass over an fp32 .tflite file.

TensorFlow-free: it reads and rewrites the flatbuffer and calibrates with LiteRT's interpreter. Its
recipes, by (precision, option):

- int8 (`static_wi8_ai8`): int8 weights (per channel, symmetric) and int8 activations (per tensor,
  asymmetric), calibrated; int8 inputs/outputs unless `io_type: float32`.
- int8 with `activations: int16` (`static_wi8_ai16`): 16x8, int16 activations (symmetric).
- int8-dynamic (`dynamic_wi8_afp32`): int8 weights, activations quantized at run time.
- int8-dynamic with `weight_only: true` (`weight_only_wi8_afp32`): int8 weights, float compute.

Calibration: ai-edge-quantizer's default merges each calibration step's min/max into an exponential
moving average (smoothing 0.95). Fed one sample per step, that average of per-sample extremes is a
narrower range than the data's: on mnist_cnn_janithab it clipped activations and gave a max error 35x
TFLiteConverter's (0.31 against 8.8e-3, same inputs). `calibration_method: minmax` (the default here)
merges with the running min and max instead, as TFLiteConverter and onnxruntime do; the file is then
as accurate as TFLiteConverter's. `moving_average` keeps ai-edge-quantizer's own behaviour.

Gotchas: it runs in a child process (calibration runs the model in native code, and a crash must cost
this export only): quantize() starts one per file, which runs quantize_here(), the whole pass as one
module-level function of plain arguments, ready to be a job of a shared converter process; calibration is profiler-based (the tensor-preserving mode failed with "Tensor data
is null" on an unrolled LSTM and was 20x slower); LiteRT runs 16x8 on reference kernels, not XNNPACK.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ConversionError

_TIMEOUT_S = 900
# What a quantized file shares with its fp32 parent: how it was traced (the checks feed it at that batch).
INHERITED_FACTS = ("fixed_batch", "recurrent", "recurrent_why", "fused_lstms", "unrolled_layers")
KERNEL_NOTES = {
    "static_wi8_ai16": "int16 activations run on LiteRT's reference kernels (XNNPACK has no 16x8 kernels): expect it "
                       "to be many times slower than int8 (see benchmarks/results/SUMMARY.md)",
    "weight_only_wi8_afp32": "weights are dequantized to float before every op at run time: smaller file, float "
                             "compute, often slower than fp32",
}


def recipe_name(precision: str, options: dict) -> str:
    if precision == "int8":
        return "static_wi8_ai16" if options.get("activations") == "int16" else "static_wi8_ai8"
    return "weight_only_wi8_afp32" if options.get("weight_only") else "dynamic_wi8_afp32"


def quantize(fp32, precision: str, options: dict, calibration=None) -> tuple[bytes, dict]:
    """(file bytes, facts) of `fp32` (a path, or the file's bytes) quantized by ai-edge-quantizer in a child
    process (quantize_here there).

    Raises ConversionError naming the cause, PartialQuantization (with the file) when ops stayed float.
    """
    from .tflite import PartialQuantization

    name = recipe_name(precision, options)
    with tempfile.TemporaryDirectory(prefix="edgeopt-aeq-") as tmp:
        job = Path(tmp)
        if isinstance(fp32, bytes):
            (job / "fp32.tflite").write_bytes(fp32)
            fp32 = job / "fp32.tflite"
        (job / "job.json").write_text(json.dumps({"fp32": str(fp32), "precision": precision,
                                                  "options": options}))
        if calibration is not None and precision == "int8":
            np.savez(job / "calibration.npz", **{f"x{i}": x for i, x in enumerate(calibration.x)})
        try:
            result = subprocess.run([sys.executable, "-m", __name__, str(job)], capture_output=True, text=True,
                                    timeout=_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ConversionError(f"ai-edge-quantizer {name} did not finish in {_TIMEOUT_S}s") from None
        if result.returncode < 0:
            raise ConversionError(f"ai-edge-quantizer {name} crashed ({signal.Signals(-result.returncode).name}) "
                                  "in its child process; the other exports are unaffected")
        error = job / "error.json"
        if error.exists():
            e = json.loads(error.read_text())
            if e["partial"]:
                raise PartialQuantization(e["message"], (job / "model.tflite").read_bytes())
            raise ConversionError(e["message"])
        if result.returncode != 0:
            tail = result.stderr.strip().splitlines()[-1:] or ["no output"]
            raise ConversionError(f"ai-edge-quantizer {name} failed in its child process: {tail[0][:400]}")
        return (job / "model.tflite").read_bytes(), json.loads((job / "facts.json").read_text())


def quantize_here(fp32_path, precision: str, options: dict, xs: list | None = None) -> tuple[bytes, dict]:
    """The whole pass in this process: quantize, prove LiteRT loads the file, refuse float ops in int8.

    Module-level with plain arguments (the calibration inputs as a list of arrays), so that it can run as
    a job of any converter process. It runs native code that can crash: call it in a child process.
    """
    from .tflite import PartialQuantization, find_float_ops, float_detours

    name = recipe_name(precision, options)
    try:
        data, facts = _run(Path(fp32_path).read_bytes(), precision, options, name, xs)
        _load_or_explain(data, name)
    except ConversionError:
        raise
    except Exception as e:  # the quantizer raises ValueError/RuntimeError/KeyError for graphs it cannot handle
        raise ConversionError(_describe_failure(e, Path(fp32_path).read_bytes(), name)) from None
    if precision != "int8":
        return data, facts
    detours = float_detours(data)
    facts = {**facts, "float_detours": detours} if detours else facts
    float_ops = find_float_ops(data)
    if float_ops and not options.get("allow_float_ops", False):
        listed = "; ".join(f"{op} (layer {layer!r})" for op, layer in float_ops[:12])
        more = f" and {len(float_ops) - 12} more" if len(float_ops) > 12 else ""
        raise PartialQuantization(f"ai-edge-quantizer {name} left {len(float_ops)} op(s) in float32: {listed}{more}. "
                                  "Set allow_float_ops: true to accept a mixed model, or use backend: tflite-converter",
                                  data)
    return data, facts


def build_recipe(name: str, io_type: str) -> list:
    """ai-edge-quantizer's named recipe; float32 I/O keeps the model's inputs and outputs unquantized."""
    from ai_edge_quantizer import recipe

    entries = list(getattr(recipe, name)())
    if io_type == "float32":
        entries += [{"regex": ".*", "operation": op, "algorithm_key": "no_quantize", "op_config": {}}
                    for op in ("INPUT", "OUTPUT")]
    return entries


def global_min_max(old: dict, new: dict) -> dict:
    """Merge one calibration step's statistics into the running min and max (ranges cover every sample)."""
    return {"min": np.minimum(old["min"], new["min"]), "max": np.maximum(old["max"], new["max"])}


def calibrate(model_bytes, recipe_entries, xs: list, method: str) -> dict:
    """Tensor name -> {min, max} over the calibration samples, fed one at a time through the serving signature."""
    from ai_edge_quantizer import calibrator, recipe_manager

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe_entries)
    kwargs = {"qsv_update_func": global_min_max} if method == "minmax" else {}
    cal = calibrator.Calibrator(model_bytes, mode=calibrator.CalibrationMode.CALIBRATION_PROFILER_BASED, **kwargs)
    key, names = signature_inputs(model_bytes)
    samples = ({n: x[i:i + 1] for n, x in zip(names, xs)} for i in range(len(xs[0])))
    cal.calibrate({key: list(samples)}, manager)
    return cal.get_model_qsvs()


def signature_inputs(model_bytes) -> tuple[str, list]:
    """(signature key, its input names in the order of the model's input tensors, as the checks feed them)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model_bytes)
    signatures = interp._get_full_signature_list()
    key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
    by_index = {index: name for name, index in signatures[key]["inputs"].items()}
    return key, [by_index[d["index"]] for d in interp.get_input_details()]


def _run(model_bytes: bytes, precision: str, options: dict, name: str, xs) -> tuple[bytes, dict]:
    from importlib.metadata import version

    from ai_edge_quantizer import quantizer

    io_type = options.get("io_type", "int8") if precision == "int8" else "float32"
    entries = build_recipe(name, io_type)
    facts = {"tool": f"ai-edge-quantizer {version('ai-edge-quantizer')}", "recipe": name, "aeq_recipe": entries}
    qsvs = None
    if xs is not None and precision == "int8":
        method = options.get("calibration_method", "minmax")
        qsvs = calibrate(model_bytes, entries, xs, method)
        facts["calibration"] = {"method": method, "samples": len(xs[0]), "mode": "profiler-based",
                                "merge": "running min/max" if method == "minmax" else "moving average (0.95)"}
    q = quantizer.Quantizer(model_bytes, entries)
    out = bytes(q.quantize(qsvs, enable_progress_report=False).quantized_model)
    if name in KERNEL_NOTES:
        facts["note"] = KERNEL_NOTES[name]
    return out, facts


def _describe_failure(e: Exception, model_bytes: bytes, name: str) -> str:
    from ai_edge_litert.interpreter import Interpreter

    loops = any(op["op_name"] == "WHILE" for op in Interpreter(model_content=model_bytes)._get_ops_details())
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    why = (" The model holds WHILE loops (recurrent layers), whose tensors its calibration cannot read: export "
           "with recurrent: unroll.") if loops else ""
    return f"ai-edge-quantizer {name} failed: {type(e).__name__}: {first}.{why}"


def _child(job: Path):
    """Runs quantize_here on a job folder written by quantize(); the answer goes back as files."""
    from .tflite import PartialQuantization

    spec = json.loads((job / "job.json").read_text())
    xs = None
    if (job / "calibration.npz").exists():
        with np.load(job / "calibration.npz") as z:
            xs = [z[f"x{i}"] for i in range(len(z.files))]
    try:
        data, facts = quantize_here(spec["fp32"], spec["precision"], spec["options"], xs)
    except PartialQuantization as e:
        (job / "model.tflite").write_bytes(e.model_bytes)
        (job / "error.json").write_text(json.dumps({"partial": True, "message": str(e)}))
        return
    except ConversionError as e:
        (job / "error.json").write_text(json.dumps({"partial": False, "message": str(e)}))
        return
    (job / "model.tflite").write_bytes(data)
    (job / "facts.json").write_text(json.dumps(facts))


def _load_or_explain(data: bytes, name: str):
    """A file LiteRT cannot load (with its default XNNPACK delegate) is no result: say so, and why where we can."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        Interpreter(model_content=data).allocate_tensors()
    except (ValueError, RuntimeError) as e:
        mixed = mixed_output_ops(data)
        why = ""
        if any(op.startswith("WHILE") for op in mixed):
            why = (" ai-edge-quantizer gave a WHILE loop (a recurrent layer) int8 and float32 state at once; export "
                   "with recurrent: unroll")
        elif mixed:
            why = (f" {len(mixed)} op(s) have int8 and float32 outputs at once ({', '.join(mixed[:4])}): "
                   "ai-edge-quantizer leaves an output that no op reads in float32 (in an unrolled LSTM or GRU: a "
                   "first-step gate that only met the zero initial state, which the converter folded away), and "
                   "XNNPACK cannot run such an op")
        raise ConversionError(f"ai-edge-quantizer {name} wrote a file LiteRT cannot load: "
                              f"{' '.join(str(e).split())[:200].rstrip('.')}.{why}") from None


def mixed_output_ops(data: bytes) -> list:
    """'OP (layer)' for every op whose outputs mix float32 and integer tensors."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from .tflite import layer_from_tensor_name

    interp = Interpreter(model_content=data,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    found = []
    for op in interp._get_ops_details():
        kinds = {tensors[i]["dtype"] == np.float32 for i in op["outputs"] if i >= 0}
        if kinds == {True, False}:
            found.append(f"{op['op_name']} ({layer_from_tensor_name(tensors[op['outputs'][0]]['name'])})")
    return found


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
