"""Per-operator time of one model, measured where it runs: onnxruntime's session profiler, LiteRT's profiler.

Run by the worker after the timed runs (never during them: profiling adds its own overhead), on the
same inputs, thread count and kernels. Every figure is a runtime's own measurement, averaged over
the profiled runs after a warm-up; nothing is estimated.

- onnxruntime: `SessionOptions.enable_profiling`, one `<node>_kernel_time` event per node and run,
  with the node's op type (the kernel ORT chose after its graph optimisations: QLinearConv,
  ConvInteger, FusedConv...), execution provider and input/output element types.
- LiteRT: the CompiledModel profiler (see litert_profiler.py). With XNNPACK, one pass as the
  benchmark ran (time per XNNPACK operator, ops XNNPACK left to LiteRT's own kernels by name) and
  one with the built-in kernels, whose events are the .tflite file's own nodes.

Self-contained (standard library, numpy, the runtimes): pushed to boards with the worker.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np

from litert_profiler import profile as litert_profile  # sibling: this file runs beside worker.py
from litert_profiler import trimmed_mean

DEFAULT_PROFILE = {"runs": 20, "warmup_runs": 3, "max_seconds": 5.0}


def profile(path, fmt, model, feed, threads=None, xnnpack=True, settings=None) -> dict:
    """Per-operator times of `path` on `feed` (the encoded batch-1 inputs the timing used)."""
    settings = {**DEFAULT_PROFILE, **(settings or {})}
    named = dict(zip([s["name"] for s in model.input_specs], feed))
    if fmt == "onnx":
        return profile_onnx(path, named, threads, settings)
    passes = [litert_profile(path, named, threads, xnnpack, settings["runs"], settings["warmup_runs"],
                             settings["max_seconds"])]
    if xnnpack:  # the same file on LiteRT's own kernels: one event per .tflite node
        passes.append(litert_profile(path, named, threads, False, settings["runs"], settings["warmup_runs"],
                                     settings["max_seconds"]))
    return {"runtime": "ai-edge-litert", "tool": "LiteRT CompiledModel profiler (C API)", "threads": threads,
            "passes": passes, "nodes": tflite_nodes(path)}


def tflite_nodes(path) -> list:
    """Every node of the .tflite file in execution order: op, output tensor names, element types."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}

    def types(indices):
        return [np.dtype(tensors[i]["dtype"]).name for i in indices if i >= 0 and i in tensors]

    nodes = []
    for op in interp._get_ops_details():
        outputs = [i for i in op["outputs"] if i >= 0]
        nodes.append({"index": op["index"], "op": op["op_name"], "outputs": [tensors[i]["name"] for i in outputs],
                      "input_types": types(op["inputs"]), "output_types": types(outputs)})
    return nodes


def profile_onnx(path, feed: dict, threads, settings) -> dict:
    import onnxruntime as ort

    folder = tempfile.mkdtemp(prefix="edgeopt-ortprof-")
    try:
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(folder, "ort")
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        runs = _run_for(lambda: session.run(None, feed), settings)
        with open(session.end_profiling()) as f:
            events = json.load(f)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"runtime": "onnxruntime", "tool": "onnxruntime session profiling", "threads": threads,
            **_onnx_nodes(events, settings["warmup_runs"], runs)}


def _run_for(run, settings) -> int:
    """Warm up, then run `runs` times (at least 3, at most `max_seconds` after the third)."""
    import time

    for _ in range(settings["warmup_runs"]):
        run()
    done, started = 0, time.perf_counter()
    while done < settings["runs"] and (done < 3 or time.perf_counter() - started < settings["max_seconds"]):
        run()
        done += 1
    return done


def _onnx_nodes(events, warmup, runs) -> dict:
    """Kernel times of the profiled runs (the warm-up runs dropped), per node, in execution order."""
    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[warmup:]
    if not windows:
        return {"runs": 0, "run_us": None, "nodes": []}
    start = windows[0][0]
    nodes = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] < start:
            continue
        name = e["name"][: -len("_kernel_time")]
        args = e.get("args", {})
        node = nodes.setdefault(name, {"name": name, "op_type": args.get("op_name"), "provider": args.get("provider"),
                                       "input_types": _types(args.get("input_type_shape")),
                                       "output_types": _types(args.get("output_type_shape")), "times": []})
        node["times"].append(e["dur"])
    for node in nodes.values():
        node["us"] = trimmed_mean(node.pop("times"), len(windows))
    return {"runs": len(windows), "run_us": float(np.median([b - a for a, b in windows])),
            "nodes": list(nodes.values())}


def _types(entries) -> list:
    """[{'float': [1, 8]}, {'uint8': []}] -> ['float', 'uint8']."""
    return [next(iter(e)) for e in entries or [] if isinstance(e, dict) and e]
