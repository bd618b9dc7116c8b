"""What machine this is: CPU, ISA features that matter for int8, OS, runtimes; and this process's memory.

Self-contained (standard library only): pushed to boards and emulators beside the worker.
"""

from __future__ import annotations

import os
import platform
import sys

# ISA features that decide which kernels a runtime can use. x86: AVX2/FMA for float, VNNI/AMX for
# int8 dot products. ARM: asimd is NEON, asimddp the int8 dot product, i8mm int8 matrix multiply.
X86_FEATURES = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
ARM_FEATURES = ("asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2")

# ARM CPU part numbers (implementer 0x41, Arm Ltd) as /proc/cpuinfo reports them, for a readable name.
ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78",
    "0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd49": "Neoverse-N2",
    "0xd4f": "Neoverse-V2", "0xd80": "Cortex-A520", "0xd81": "Cortex-A720",
}


def _read(path) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _cpuinfo() -> dict:
    """First processor block of /proc/cpuinfo as a dict (plus 'Hardware'/'Model' lines that follow it)."""
    text = _read("/proc/cpuinfo") or ""
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in info:
            info[key.strip()] = value.strip()
    return info


def cpu() -> dict:
    info = _cpuinfo()
    arch = platform.machine()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    model = info.get("model name") or info.get("Model") or info.get("Hardware")
    if not model and info.get("CPU part"):
        model = ARM_PARTS.get(info["CPU part"].lower(), f"ARM part {info['CPU part']}")
    wanted = ARM_FEATURES if arch in ("aarch64", "arm64") or "asimd" in flags else X86_FEATURES
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        usable = os.cpu_count()
    return {
        "arch": arch,
        "model": model or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "features": {f: f in flags for f in wanted},
        "governor": (_read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") or "").strip() or None,
        "temperature_c": _temperature(),
    }


def _temperature():
    raw = _read("/sys/class/thermal/thermal_zone0/temp")
    try:
        return round(int(raw) / 1000, 1) if raw else None
    except ValueError:
        return None


def _version(module_name, dist_name):
    try:
        from importlib.metadata import version

        return version(dist_name)
    except Exception:
        mod = sys.modules.get(module_name)
        return getattr(mod, "__version__", None)


def describe() -> dict:
    """The machine and software a measurement ran on, as recorded in every report."""
    libc = platform.libc_ver()
    return {
        "hostname": platform.node(),
        "cpu": cpu(),
        "os": platform.platform(),
        "libc": "-".join(v for v in libc if v) or None,
        "python": platform.python_version(),
        "versions": {
            "numpy": _version("numpy", "numpy"),
            "ai-edge-litert": _version("ai_edge_litert", "ai-edge-litert"),
            "onnxruntime": _version("onnxruntime", "onnxruntime"),
        },
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
                       if k in os.environ},
    }


def memory_kb() -> dict:
    """This process's resident memory now and at its peak, in KiB (Linux /proc; ru_maxrss elsewhere)."""
    status = _read("/proc/self/status")
    if status:
        fields = {}
        for line in status.splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
        if len(fields) == 2:
            return {"rss": fields["VmRSS"], "peak": fields["VmHWM"]}
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = peak // 1024 if sys.platform == "darwin" else peak  # macOS reports bytes
    return {"rss": None, "peak": peak}
