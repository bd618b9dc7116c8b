"""The x86-64-avx2 emulator: this machine's own Python under QEMU user mode, on an emulated Haswell CPU.

Why: onnxruntime chooses its int8 kernels from CPUID. On x86 CPUs without VNNI (AVX2 only: Haswell to
Skylake, AMD Zen 1-3, many cloud instances) s8 weights go through u8s8 kernels whose int16 pair sums
saturate, so the same file gives other numbers there than on a VNNI or an ARM CPU. A VNNI machine never
shows it. QEMU's TCG answers CPUID as the model it emulates (Haswell: AVX2 and FMA, no AVX-512, no VNNI;
TCG cannot emulate AVX-512 at all), so this machine's own wheels take their AVX2 paths. Nothing but QEMU
is downloaded: the host's Python, numpy and runtimes are x86-64 already, at the same versions.

`edgeopt target setup x86-64-avx2` builds the cache once (`setup()`), and proves the point: a probe
model whose int8 sums overflow int16 must give other outputs through onnxruntime's fused kernels than
through its unfused reference path, under emulation.

Gotchas: the CPU is Haswell-noTSX (TCG has no TSX and warns about each TSX bit of plain Haswell); the
guest would read the host's /proc/cpuinfo (VNNI and all), so the cache holds a Haswell one, served
through QEMU's -L prefix, and the machine record says what CPUID says.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import TargetError
from ..fileio import tree_size, write_text_atomic
from .emulator import STATE_FILE, host_env

NAME = "x86-64-avx2"
CACHE_ENV = "EDGEOPT_X86_CACHE"
SETUP_COMMAND = f"edgeopt target setup {NAME}"
QEMU_CPU = "Haswell-noTSX"
CPU_MODEL = "Intel Haswell (AVX2, FMA; no AVX-512, no VNNI)"
# What a Haswell's Linux kernel lists (the features sysinfo reports come from here under emulation).
HASWELL_FLAGS = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse "
                 "sse2 ss syscall nx rdtscp lm constant_tsc pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic "
                 "movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm fsgsbase bmi1 avx2 smep bmi2 erms "
                 "invpcid xsaveopt")


def cache_dir() -> Path:
    """$EDGEOPT_X86_CACHE, else $XDG_CACHE_HOME/edgeopt/x86-64-avx2 (~/.cache/...)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeopt" / NAME


def cpuinfo_text(processors: int) -> str:
    block = ("processor\t: {n}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 60\n"
             f"model name\t: {CPU_MODEL}\nflags\t\t: {HASWELL_FLAGS}\n")
    return "\n".join(block.format(n=n) for n in range(processors)) + "\n"


@dataclass(frozen=True)
class X86Emulator:
    """A finished setup: QEMU, the prefix holding the emulated /proc/cpuinfo, and what setup proved."""

    qemu: Path
    prefix: Path
    facts: dict
    cpu: str = QEMU_CPU
    arch = "x86_64"
    setup_command = SETUP_COMMAND

    @classmethod
    def load(cls, folder: Path | None = None) -> "X86Emulator":
        folder = Path(folder or cache_dir())
        try:
            state = json.loads((folder / STATE_FILE).read_text())
        except (OSError, ValueError):
            raise TargetError(f"the {NAME} emulator is not set up in {folder}: run `{SETUP_COMMAND}` "
                              "(downloads QEMU user mode once, about 60 MB; no root)") from None
        emulator = cls(Path(state["qemu"]), folder / "prefix", state)
        if not emulator.qemu.exists() or not (emulator.prefix / "proc" / "cpuinfo").exists():
            raise TargetError(f"the {NAME} emulator in {folder} is incomplete: run `{SETUP_COMMAND} --force`")
        return emulator

    def python_argv(self, python: str | None = None) -> list[str]:
        """The host's Python (default: this one) under QEMU on the emulated CPU; env rides in the argv."""
        return ["env", f"QEMU_CPU={self.cpu}", str(self.qemu), "-L", str(self.prefix), python or sys.executable]

    def describe(self) -> dict:
        return {"qemu": self.facts.get("qemu_version"), "qemu_cpu": self.cpu, "cpu_model": CPU_MODEL,
                "cpuid": self.facts.get("cpuid"), "ort_u8s8_saturates": self.facts.get("ort_u8s8_saturates"),
                "python": sys.executable}


def setup(folder: Path | None = None, force: bool = False, log=print) -> X86Emulator:
    """Build (or find) the emulator in `folder` (default: the cache); prove it runs AVX2 kernels. Idempotent."""
    import shutil

    from .emulator_setup import _check_host, _qemu

    folder = Path(folder or cache_dir())
    if force and folder.exists():
        log(f"removing the previous {NAME} emulator in {folder}")
        shutil.rmtree(folder)
    if (folder / STATE_FILE).exists():
        log(f"the {NAME} emulator is already set up in {folder}")
        return X86Emulator.load(folder)
    _check_host()
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    qemu, version = _qemu(folder, log, binary="qemu-x86_64")
    write_text_atomic(folder / "prefix" / "proc" / "cpuinfo", cpuinfo_text(os.cpu_count() or 1))
    state = {"qemu": str(qemu), "qemu_version": version, "cpu": QEMU_CPU}
    log(f"checking that onnxruntime takes its AVX2 int8 kernels under QEMU_CPU={QEMU_CPU}")
    state.update(verify(X86Emulator(qemu, folder / "prefix", state), folder))
    state["setup_seconds"] = round(time.time() - started, 1)
    state["size_bytes"] = tree_size(folder)
    write_text_atomic(folder / STATE_FILE, json.dumps(state, indent=1))
    log(f"{NAME} emulator ready in {folder} ({state['size_bytes'] / 1e6:.0f} MB): QEMU {version}, CPU {QEMU_CPU}; "
        f"CPUID seen by numpy: {', '.join(state['cpuid'])}; onnxruntime's u8s8 kernels saturate, as on a Haswell")
    return X86Emulator.load(folder)


_VERIFY = """
import json, sys
import numpy as np, onnxruntime as ort
from numpy._core._multiarray_umath import __cpu_features__ as f
x = np.ones((1, 64), np.float32)
out = {}
for name, level in (("fused", ort.GraphOptimizationLevel.ORT_ENABLE_ALL), ("reference", ort.GraphOptimizationLevel.ORT_DISABLE_ALL)):
    o = ort.SessionOptions(); o.graph_optimization_level = level
    out[name] = float(ort.InferenceSession(sys.argv[1], o, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0].max())
print(json.dumps({"cpuid": [k for k in ("AVX", "FMA3", "AVX2", "AVX512F", "AVX512VNNI") if f.get(k)], **out}))
"""


def verify(emulator: X86Emulator, folder: Path) -> dict:
    """CPUID as numpy reads it under emulation, and onnxruntime's int8 kernels saturating as on a real Haswell."""
    import subprocess

    probe = folder / "u8s8_saturation_probe.onnx"
    write_saturation_probe(probe)
    try:
        proc = subprocess.run([*emulator.python_argv(), "-c", _VERIFY, str(probe)], capture_output=True, text=True,
                              timeout=300, env=host_env())
    except subprocess.TimeoutExpired:
        raise TargetError(f"the emulated Python did not answer within 300 s ({SETUP_COMMAND} --force to retry)") from None
    if proc.returncode != 0:
        raise TargetError(f"Python under {emulator.qemu} -cpu {emulator.cpu} failed: {proc.stderr.strip()[-300:]}")
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    if "AVX2" not in facts["cpuid"] or {"AVX512F", "AVX512VNNI"} & set(facts["cpuid"]):
        raise TargetError(f"under QEMU_CPU={emulator.cpu} the runtimes see {facts['cpuid']}, not AVX2 without AVX-512")
    saturates = abs(facts["fused"] - facts["reference"]) > 1
    if not saturates:
        raise TargetError(f"onnxruntime's int8 kernels did not saturate under QEMU_CPU={emulator.cpu} (fused "
                          f"{facts['fused']:g}, reference {facts['reference']:g}): this QEMU does not reproduce AVX2 "
                          f"int8 behaviour; the {NAME} target would prove nothing")
    return {"cpuid": facts["cpuid"], "ort_u8s8_saturates": saturates, "python": platform.python_version(),
            "probe": {"fused": facts["fused"], "reference": facts["reference"], "exact": 64.0}}


def write_saturation_probe(path: Path):
    """A QDQ MatMul of 64 inputs of 1.0 with 64 weights of 127 (scale 1/127): exactly 64.

    onnxruntime fuses it into an int8 GEMM; on AVX2 without VNNI that GEMM adds pairs of u8 x s8 products
    in int16 (vpmaddubsw): 255 x 127 x 2 overflows and saturates, and the fused result is far from 64.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k = 64
    inits = [numpy_helper.from_array(np.full((k, 8), 127, np.int8), "w_q"),
             numpy_helper.from_array(np.array(1 / 127, np.float32), "s"),
             numpy_helper.from_array(np.array(k / 127, np.float32), "s_out"),
             numpy_helper.from_array(np.array(0, np.int8), "zp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["x_q"]),
             helper.make_node("DequantizeLinear", ["x_q", "s", "zp"], ["x_dq"]),
             helper.make_node("DequantizeLinear", ["w_q", "s", "zp"], ["w_dq"]),
             helper.make_node("MatMul", ["x_dq", "w_dq"], ["y_f"]),
             helper.make_node("QuantizeLinear", ["y_f", "s_out", "zp"], ["y_q"]),
             helper.make_node("DequantizeLinear", ["y_q", "s_out", "zp"], ["y"])]
    graph = helper.make_graph(nodes, "u8s8_saturation_probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
