"""Emulated targets: 'aarch64-emulated' (a genuine arm64 Python under QEMU user mode) and 'x86-64-avx2'
(this machine's Python on an emulated Haswell, x86 without VNNI).

For correctness of other CPUs' kernels (parity), not speed: their latency and memory figures include
QEMU and say nothing about a device, so the results are marked emulated in the machine record and
in every measurement.
"""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

from ..errors import TargetError
from ..fileio import write_json_atomic
from .emulator import Emulator, host_env
from .preflight import Preflight, assess
from .targets import DEVICE_DIR, Target, run_streaming
from .x86_emulator import X86Emulator

EMULATED_NOTE = "measured under QEMU user-mode emulation: latency and memory are not device figures"


class EmulatedTarget(Target):
    """Runs the bundle on the aarch64 emulator set up by `edgeopt target setup aarch64-emulated`."""

    name = "aarch64-emulated"
    kind = "emulated"
    emulated = True
    emulator_class = Emulator

    def __init__(self, folder: Path | None = None):
        self.folder = folder
        self._emulator = None

    @property
    def emulator(self):
        if self._emulator is None:
            self._emulator = self.emulator_class.load(self.folder)
        return self._emulator

    def describe(self) -> dict:
        record = {**super().describe(), "arch": self.emulator_class.arch, "note": EMULATED_NOTE}
        try:
            record["emulation"] = self.emulator.describe()
            record["cpu"] = record["emulation"]["cpu_model"]
        except TargetError:
            pass  # not set up: prepare() says how
        return record

    def prepare(self):
        self.emulator

    def check(self) -> Preflight:
        argv = [*self.emulator.python_argv(), str(DEVICE_DIR / "probe.py")]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=host_env())
        if proc.returncode != 0:
            raise TargetError(f"the emulated Python failed to start: {proc.stderr.strip()[-300:]} "
                              f"(fix: {self.emulator.setup_command} --force)")
        report = assess(json.loads(proc.stdout.strip().splitlines()[-1]), python="the emulated Python",
                        reinstall=f"{self.emulator.setup_command} --force")
        emu = self.emulator.describe()
        report.rows.insert(0, ("emulated by", f"QEMU {emu['qemu']} user mode, QEMU_CPU={emu['qemu_cpu']} "
                                              f"({emu['cpu_model']}), on {platform.machine()}"))
        return report

    def run(self, bundle, on_progress=None, timeout=None) -> Path:
        bundle = Path(bundle)
        python = self.emulator.python_argv()
        # Without binfmt an emulated Python cannot start another one: the runner gets the full command line.
        argv = [*python, str(bundle / "device" / "runner.py"), str(bundle / "plan.json"),
                "--worker-command", json.dumps(python)]
        run_streaming(argv, on_progress, timeout, what=f"the runner under {self.name} emulation", env=host_env())
        results = bundle / "results.json"
        mark_emulated(results, self.emulator)
        return results


class X86Avx2Target(EmulatedTarget):
    """x86-64 without VNNI (AVX2 only), emulated: `edgeopt target setup x86-64-avx2` first."""

    name = "x86-64-avx2"
    emulator_class = X86Emulator

    def check(self) -> Preflight:
        report = super().check()
        emu = self.emulator.describe()
        report.rows.insert(1, ("CPUID seen by the runtimes", " ".join(emu.get("cpuid") or []) or "-"))
        if emu.get("ort_u8s8_saturates"):
            report.rows.insert(2, ("onnxruntime int8 kernels", "u8s8 with int16 saturation, as on a real AVX2 CPU "
                                                               "(proved at setup)"))
        return report


def mark_emulated(results_path: Path, emulator):
    """Say in results.json, in the machine record and in every measurement, that the figures are emulated."""
    results = json.loads(Path(results_path).read_text())
    cpu = results["machine"]["cpu"]
    cpu["reported_model"] = cpu.get("model")  # QEMU's generic "ARMv8 Processor rev 1 (v8l)"
    cpu["model"] = emulator.describe()["cpu_model"]
    results["machine"]["emulated"] = {**emulator.describe(), "host_cpu": _host_cpu(), "note": EMULATED_NOTE}
    for m in results["measurements"]:
        m["emulated"] = True
    write_json_atomic(results_path, results)


def _host_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
