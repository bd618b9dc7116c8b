"""What a CPU's int8 kernels do to a file: which CPUs saturate which ONNX int8 weights, and why.

TensorFlow-free knowledge, read by the bench (parity diagnosis, warnings) and the converter (which
ONNX int8 variant to make for which targets). The facts behind it:

- onnxruntime on x86 without VNNI (AVX2, or AVX-512 without VNNI) multiplies u8 activations by s8
  weights with vpmaddubsw, which adds each pair of products in int16 and saturates: 255 x 127 x 2 >
  32767. Full-range s8 weights lose accuracy there; 7-bit weights (reduce_range) and u8 weights (U8U8)
  do not. onnxruntime's quantization docs say the same.
- With VNNI (AVX-512 VNNI, AVX-VNNI) or AMX, vpdpbusd/tdpbusd add the products in int32: no saturation.
- On ARM, onnxruntime's int8 kernels accumulate in int32 (sdot/udot, or widening NEON multiplies).
- LiteRT's int8 kernels (XNNPACK and the built-in ones) accumulate int8 products exactly in int32 on
  every CPU: their differences from the reference kernels are requantization rounding, a LSB or two.
Measured on the digits CNN (benchmarks/results/onnx_int8_variants.md): on an emulated Haswell the s8 QDQ
file's outputs are 13 LSB from onnxruntime's unfused execution, with 10x the error against the float
model; reduce_range and U8U8 files stay within 1 LSB there, as on VNNI x86 and ARM.

Example:
    cls = cpu_class({"arch": "x86_64", "features": {"avx2": True, "avx512_vnni": False}})   # "x86-avx2"
    risk = onnx_int8_risk({"weight_type": "int8", "weight_bits": 8}, cls)   # risk["safe"] is False
"""

from __future__ import annotations

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
U8U8_SAFE = ("u8 weights take onnxruntime's u8u8 kernels, which do not saturate (measured: within 1 LSB of its "
             "unfused execution on VNNI x86, an emulated Haswell and an emulated Neoverse-N1)")

# CPU classes by how onnxruntime's int8 kernels behave on them.
X86_VNNI, X86_AVX2, X86_OLD, ARM, UNKNOWN = "x86-vnni", "x86-avx2", "x86-pre-avx2", "arm", "unknown"

# Names a conversion may be made for (`--target`), besides `local` (this CPU, read here).
NAMED_CPUS = {
    "x86-64-avx2": X86_AVX2,  # the emulated target; also what any x86 without VNNI is
    "x86-64-vnni": X86_VNNI,
    "aarch64-emulated": ARM,
    "aarch64": ARM,
}


def cpu_class(cpu: dict | None) -> str:
    """A machine record's `cpu` (sysinfo.cpu()) -> one of the classes above."""
    if not cpu:
        return UNKNOWN
    arch = str(cpu.get("arch", "")).lower()
    features = cpu.get("features") or {}
    if arch in ("aarch64", "arm64") or "asimd" in features:
        return ARM
    if arch in ("x86_64", "amd64"):
        if any(features.get(f) for f in VNNI_FLAGS):
            return X86_VNNI
        return X86_AVX2 if features.get("avx2") else X86_OLD
    return UNKNOWN


def describe_cpu(cpu: dict | None) -> str:
    """'x86 with AVX-512 VNNI', 'x86 with AVX2, without VNNI', 'ARM with int8 dot product (asimddp)', ..."""
    cls, features = cpu_class(cpu), (cpu or {}).get("features") or {}
    if cls == X86_VNNI:
        names = {"avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI", "amx_int8": "AMX"}
        return "x86 with " + ", ".join(v for k, v in names.items() if features.get(k))
    if cls == X86_AVX2:
        return "x86 with AVX2" + (" and AVX-512" if features.get("avx512f") else "") + ", without VNNI"
    if cls == X86_OLD:
        return "x86 without AVX2"
    if cls == ARM:
        return "ARM with int8 dot product (asimddp)" if features.get("asimddp") else "ARM (NEON, no dot product)"
    return "a CPU whose features are unknown"


def onnx_weight_facts(path) -> dict:
    """How an ONNX int8 file stores its weights: type, bits used, layout (QDQ or QOperator).

    Read from the file, so it holds for files edgeopt did not make: the widest |q| over every weight
    initializer that a DequantizeLinear or a QLinear op takes as its weight.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: i for i in graph.initializer}
    weight_inputs = {"QLinearConv": 3, "QLinearMatMul": 3, "QGemm": 3, "DequantizeLinear": 0}
    ops = {n.op_type for n in graph.node}
    widest, dtype = 0, None
    for node in graph.node:
        index = weight_inputs.get(node.op_type)
        if index is None or len(node.input) <= index or node.input[index] not in inits:
            continue
        q = numpy_helper.to_array(inits[node.input[index]])
        if q.ndim < 2 or q.dtype not in (np.int8, np.uint8):
            continue  # a scalar or a bias: not a weight matrix
        zero = 128 if q.dtype == np.uint8 else 0
        widest = max(widest, int(np.abs(q.astype(np.int32) - zero).max()))
        dtype = "uint8" if q.dtype == np.uint8 else "int8"
    layout = "qoperator" if ops & {"QLinearConv", "QLinearMatMul", "QGemm"} else "qdq"
    return {"weight_type": dtype, "weight_bits": 8 if widest > 64 else 7, "layout": layout}


def onnx_int8_risk(weights: dict, cls: str) -> dict:
    """Is an ONNX int8 file with these weights (onnx_weight_facts) safe on this CPU class, and why."""
    if cls == X86_AVX2:
        if weights.get("weight_type") == "int8" and weights.get("weight_bits", 8) > 7:
            return {"safe": False, "why": "s8 weights through onnxruntime's u8s8 kernels (vpmaddubsw) saturate "
                                          "their int16 pair sums"}
        if weights.get("weight_type") == "uint8":
            return {"safe": True, "why": U8U8_SAFE}
        return {"safe": True, "why": "7-bit weights (reduce_range) keep the int16 pair sums of onnxruntime's "
                                     "u8s8 kernels in range"}
    if cls == X86_VNNI:
        if weights.get("weight_type") == "uint8":
            return {"safe": True, "why": U8U8_SAFE}
        return {"safe": True, "why": "VNNI adds u8 x s8 products in int32 (vpdpbusd): no int16 saturation"}
    if cls == ARM:
        return {"safe": True, "why": "onnxruntime's ARM int8 kernels accumulate in int32: no saturation"}
    if cls == X86_OLD:
        return {"safe": None, "why": "without AVX2, onnxruntime's SSE int8 kernels were not measured here"}
    return {"safe": None, "why": "the CPU is not known"}


def tflite_int8_risk(cls: str) -> dict:
    """LiteRT's int8 kernels: no saturation on any CPU this knows; rounding differs by a LSB or two."""
    if cls == UNKNOWN:
        return {"safe": None, "why": "the CPU is not known"}
    return {"safe": True, "why": "LiteRT's int8 kernels accumulate int8 products exactly in int32 on every "
                                 "CPU: only requantization rounding differs"}
