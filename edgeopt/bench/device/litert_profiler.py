"""Per-operator time from LiteRT's own profiler, through the C API that ai-edge-litert ships.

ai-edge-litert 2.3's Python classes (`Interpreter`, `CompiledModel`) expose no profiler, but the
`libLiteRt.so` in the same wheel exports the CompiledModel C API with one
(`LiteRtCompiledModelGetProfiler`, `LiteRtGetProfilerEvents`; litert/c/litert_profiler.h). It is
switched on by the runtime options (`enable_profiling = true`, the payload `LrtRuntimeOptions`
serialises to; litert/c/options/litert_runtime_options.cc). This module drives that API with ctypes,
so it needs nothing beyond the standard library, numpy and the wheel.

What it sees: with XNNPACK (the default CPU path) the delegate reports each of its own operators
("Convolution (NHWC, QC8) IGEMM", "Fully Connected (NC, F32) GEMM"), so time inside the delegate is
split per XNNPACK operator and its datatype, but those operators are XNNPACK's, not the .tflite
file's (one TFLite op may become several, and XNNPACK may fuse). Ops XNNPACK did not take appear as
TFLite operators. With the built-in kernels (XNNPACK off) every event is one TFLite node, by index.
Times are whole microseconds per event (a sub-microsecond op reads 0 or 1; averages over many runs
are still unbiased, since each is a difference of two truncated clock readings).

Self-contained (standard library, numpy and the runtime): pushed to boards with the worker.
"""

from __future__ import annotations

import ctypes as C
import os

import numpy as np

_P = C.c_void_p
_CPU = 1  # kLiteRtHwAcceleratorCpu
_LOCK_READ, _LOCK_WRITE = 0, 1
# LiteRtProfilerEventType (litert/c/litert_profiler_event.h)
_DEFAULT, _OPERATOR, _DELEGATE_OPERATOR, _DELEGATE_PROFILED_OPERATOR = 1, 2, 4, 8
_KERNEL_MODES = {True: "delegate", False: "builtin"}


class _Layout(C.Structure):
    # rank:7 and has_strides:1 share one 32-bit unit (litert/c/litert_layout.h, 68 bytes).
    _fields_ = [("bits", C.c_uint32), ("dimensions", C.c_int32 * 8), ("strides", C.c_uint32 * 8)]

    @property
    def rank(self):
        return self.bits & 0x7F


class _RankedType(C.Structure):
    _fields_ = [("element_type", C.c_int), ("layout", _Layout)]


class _MemoryUsage(C.Structure):
    _fields_ = [("total", C.c_size_t), ("in_use", C.c_size_t), ("private", C.c_size_t)]


class _Event(C.Structure):
    _fields_ = [("tag", C.c_char_p), ("event_type", C.c_int), ("start_us", C.c_uint64), ("elapsed_us", C.c_uint64),
                ("begin_mem", _MemoryUsage), ("end_mem", _MemoryUsage), ("metadata1", C.c_uint64),
                ("metadata2", C.c_uint64), ("source", C.c_int)]


class LiteRtProfilerError(RuntimeError):
    """The C API refused a call; the message names the call and its status code."""


def _library():
    import ai_edge_litert

    lib = C.CDLL(os.path.join(os.path.dirname(ai_edge_litert.__file__), "libLiteRt.so"))
    lib.LiteRtGetProfileSummary.argtypes = [_P, _P, C.POINTER(C.c_char_p)]
    return lib


class _Session:
    """One compiled model with profiling on; destroyed (in reverse order) by close()."""

    def __init__(self, path, threads, xnnpack):
        self.lib = _library()
        self._keep = []  # ctypes objects the C side points into, alive as long as the session
        self.env, self.model, self.options, self.compiled = _P(), _P(), _P(), _P()
        self.buffers = []
        self._call("LiteRtCreateEnvironment", 0, None, C.byref(self.env))
        self._call("LiteRtCreateModelFromFile", self.env, os.fsencode(path), C.byref(self.model))
        self._call("LiteRtCreateOptions", C.byref(self.options))
        self._call("LiteRtSetOptionsHardwareAccelerators", self.options, _CPU)
        self._add_options("runtime_options_string", "enable_profiling = true\n")
        cpu = f'kernel_mode = "{_KERNEL_MODES[bool(xnnpack)]}"\n' + (f"num_threads = {int(threads)}\n" if threads else "")
        self._add_options("xnnpack", cpu)
        self._call("LiteRtCreateCompiledModel", self.env, self.model, self.options, C.byref(self.compiled))
        self.signature = _P()
        self._call("LiteRtGetModelSignature", self.model, 0, C.byref(self.signature))

    def _call(self, name, *args):
        status = getattr(self.lib, name)(*args)
        if status != 0:
            raise LiteRtProfilerError(f"LiteRT C API {name} failed (status {status})")

    def _add_options(self, identifier, toml):
        payload = C.create_string_buffer(toml.encode())
        keep_alive = C.CFUNCTYPE(None, _P)(lambda _p: None)  # the payload belongs to Python
        self._keep += [payload, keep_alive]
        opaque = _P()
        self._call("LiteRtCreateOpaqueOptions", identifier.encode(), C.cast(payload, _P), keep_alive, C.byref(opaque))
        self._call("LiteRtAddOpaqueOptions", self.options, opaque)  # the options now own it

    def names(self, kind):
        count = C.c_size_t()
        self._call(f"LiteRtGetNumSignature{kind}s", self.signature, C.byref(count))
        getter = getattr(self.lib, f"LiteRtGetSignature{kind}Name")
        names = []
        for i in range(count.value):
            name = C.c_char_p()
            getter(self.signature, i, C.byref(name))
            names.append((name.value or b"").decode())
        return names

    def bind(self, feed: dict):
        """Resize the inputs to `feed`'s shapes, make buffers and write the inputs once."""
        in_names, out_names = self.names("Input"), self.names("Output")
        arrays = [feed[n] if n in feed else list(feed.values())[i] for i, n in enumerate(in_names)]
        for i, x in enumerate(arrays):
            dims = (C.c_int * x.ndim)(*x.shape)
            self._call("LiteRtCompiledModelResizeInputTensorNonStrict", self.compiled, 0, i, dims, x.ndim)
        layouts = (_Layout * len(out_names))()
        self._call("LiteRtGetCompiledModelOutputTensorLayouts", self.compiled, 0, len(out_names), layouts, True)
        inputs = [self._buffer("Input", i, x.shape) for i, x in enumerate(arrays)]
        outputs = [self._buffer("Output", i, list(layouts[i].dimensions)[: layouts[i].rank])
                   for i in range(len(out_names))]
        for buf, x in zip(inputs, arrays):
            self._write(buf, np.ascontiguousarray(x))
        self._inputs = (_P * len(inputs))(*inputs)
        self._outputs = (_P * len(outputs))(*outputs)

    def _buffer(self, kind, index, shape):
        tensor, ranked = _P(), _RankedType()
        self._call(f"LiteRtGetSignature{kind}TensorByIndex", self.signature, index, C.byref(tensor))
        self._call("LiteRtGetRankedTensorType", tensor, C.byref(ranked))
        for d, size in enumerate(shape):
            ranked.layout.dimensions[d] = int(size)
        requirements, buffer = _P(), _P()
        self._call(f"LiteRtGetCompiledModel{kind}BufferRequirements", self.compiled, 0, index, C.byref(requirements))
        self._call("LiteRtCreateManagedTensorBufferFromRequirements", self.env, C.byref(ranked), requirements,
                   C.byref(buffer))
        self.buffers.append(buffer)
        return buffer

    def _write(self, buffer, x):
        address = _P()
        self._call("LiteRtLockTensorBuffer", buffer, C.byref(address), _LOCK_WRITE)
        try:
            C.memmove(address, x.ctypes.data, x.nbytes)
        finally:
            self.lib.LiteRtUnlockTensorBuffer(buffer)

    def run(self):
        self._call("LiteRtRunCompiledModel", self.compiled, 0, len(self._inputs), self._inputs,
                   len(self._outputs), self._outputs)

    def profiler(self):
        handle = _P()
        self._call("LiteRtCompiledModelGetProfiler", self.compiled, C.byref(handle))
        if not handle:
            raise LiteRtProfilerError("LiteRT returned no profiler although profiling was enabled")
        return handle

    def events(self, profiler):
        count = C.c_int()
        self._call("LiteRtGetNumProfilerEvents", profiler, C.byref(count))
        events = (_Event * count.value)()
        if count.value:
            self._call("LiteRtGetProfilerEvents", profiler, count, events)
        return [(e.tag.decode(errors="replace") if e.tag else "", e.event_type, int(e.elapsed_us), int(e.metadata1))
                for e in events]

    def close(self):
        for buffer in self.buffers:
            self.lib.LiteRtDestroyTensorBuffer(buffer)
        for name, handle in (("LiteRtDestroyCompiledModel", self.compiled), ("LiteRtDestroyOptions", self.options),
                             ("LiteRtDestroyModel", self.model), ("LiteRtDestroyEnvironment", self.env)):
            if handle:
                getattr(self.lib, name)(handle)


def profile(path, feed: dict, threads=None, xnnpack=True, runs=20, warmup=3, max_seconds=5.0) -> dict:
    """Mean microseconds per run of every operator LiteRT reports, over `runs` profiled runs.

    Returns {"kernels": "xnnpack"|"builtin", "runs", "invoke_us", "operators": [{name, kind, index, us}]}:
    kind "tflite" is a TFLite node (index = node index), "xnnpack" an operator inside the delegate.
    """
    import time

    session = _Session(path, threads, xnnpack)
    try:
        session.bind(feed)
        for _ in range(warmup):
            session.run()
        profiler = session.profiler()
        session._call("LiteRtStartProfiler", profiler)
        done, started = 0, time.perf_counter()
        while done < runs and (done < 3 or time.perf_counter() - started < max_seconds):
            session.run()
            done += 1
        session._call("LiteRtStopProfiler", profiler)
        events = session.events(profiler)
    finally:
        session.close()
    return {"kernels": "xnnpack" if xnnpack else "builtin", "runs": done, **_aggregate(events, done)}


def trimmed_mean(times, runs) -> float:
    """Microseconds per run: the mean per call without the slowest tenth of calls, times calls per run.

    One preempted run on a shared machine must not decide an op's share.
    """
    values = np.sort(np.asarray(times, dtype=np.float64))
    kept = values[: len(values) - len(values) // 10]
    return float(kept.mean() * len(values) / max(1, runs))


def _aggregate(events, runs) -> dict:
    """Per-run means: the whole invoke, and each operator keyed by (kind, index, name)."""
    invoke, ops = [], {}
    for tag, kind, elapsed, index in events:
        if kind == _DEFAULT and tag == "Invoke":
            invoke.append(elapsed)
        elif kind in (_OPERATOR, _DELEGATE_OPERATOR, _DELEGATE_PROFILED_OPERATOR):
            key = ("tflite" if kind == _OPERATOR else "xnnpack", index, tag)
            ops.setdefault(key, []).append(elapsed)
    # In order of execution (a dict keeps the order keys first appeared in).
    operators = [{"name": name, "kind": kind, "index": index, "us": trimmed_mean(times, runs)}
                 for (kind, index, name), times in ops.items()]
    return {"invoke_us": float(np.median(invoke)) if invoke else None, "operators": operators}
