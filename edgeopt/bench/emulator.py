"""The aarch64 emulator: QEMU user mode running a genuine arm64 CPython with the arm64 runtimes.

`edgeopt target setup aarch64-emulated` builds it once into a cache folder (see emulator_setup.py);
this module finds it there and starts an arm64 Python under it. No root, no Docker, no binfmt.

Gotchas (measured, see the project's notes on ARM emulation): QEMU_CPU is always pinned, because the
default `max` CPU enables SME, which QEMU 7.2 emulates wrongly (int8 results silently off by up to
196 LSB); and QEMU 7.2 shows the guest the host's x86 /proc/cpuinfo, on which `import onnxruntime`
segfaults, so the rootfs carries an ARM one describing the pinned CPU (served through `-L`).
Emulated latency and memory are not device figures: everything this target measures is marked emulated.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import TargetError

CACHE_ENV = "EDGEOPT_AARCH64_CACHE"
SETUP_COMMAND = "edgeopt target setup aarch64-emulated"
STATE_FILE = "emulator.json"
# What the setup fetches, measured on a fresh cache (QEMU 10.0.2 from bookworm-backports, Python 3.11 from
# bookworm, numpy 2.4.6, ai-edge-litert 2.3.0, onnxruntime 1.32.0); the README quotes the same figures.
FETCH_MB = {"qemu": 63,  # QEMU 10 user mode (Debian's qemu-user package)
            "python": 23,  # an arm64 Python 3.11: 39 Debian packages (14 MB) and the 9 MB package list
            "wheels": 55}  # aarch64 wheels of numpy, ai-edge-litert, onnxruntime and their dependencies
DISK_MB = 290  # the folder afterwards (du -sh shows it as 275M: mebibytes)
FETCH_SUMMARY = f"downloads about {sum(FETCH_MB.values()) // 10 * 10} MB once, about {DISK_MB} MB on disk"


@dataclass(frozen=True)
class ArmCpu:
    """An ARM CPU as QEMU names it and as its /proc/cpuinfo describes it."""

    qemu_name: str
    model: str
    variant: str
    part: str
    revision: int
    features: str


CPUS = {
    cpu.qemu_name: cpu
    for cpu in (
        ArmCpu("neoverse-n1", "Neoverse-N1 (AWS Graviton2, Ampere Altra)", "0x3", "0xd0c", 1,
               "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"),
        ArmCpu("cortex-a76", "Cortex-A76 (Raspberry Pi 5)", "0x4", "0xd0b", 1,
               "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"),
        ArmCpu("cortex-a72", "Cortex-A72 (Raspberry Pi 4)", "0x0", "0xd08", 3, "fp asimd evtstrm crc32 cpuid"),
    )
}
DEFAULT_CPU = "neoverse-n1"


def cpuinfo_text(cpu: ArmCpu, processors: int) -> str:
    """/proc/cpuinfo as an arm64 Linux kernel writes it for `processors` cores of `cpu`."""
    block = (
        "processor\t: {n}\nBogoMIPS\t: 50.00\nFeatures\t: {f.features}\nCPU implementer\t: 0x41\n"
        "CPU architecture: 8\nCPU variant\t: {f.variant}\nCPU part\t: {f.part}\nCPU revision\t: {f.revision}\n"
    )
    return "\n".join(block.format(n=n, f=cpu) for n in range(processors)) + "\n"


def host_env() -> dict:
    """This process's environment without the host's Python settings, which must not reach the arm64 Python."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}


def cache_dir() -> Path:
    """Where the emulator lives: $EDGEOPT_AARCH64_CACHE, else $XDG_CACHE_HOME/edgeopt/aarch64 (~/.cache/...)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgeopt" / "aarch64"


@dataclass(frozen=True)
class Emulator:
    """A finished setup: where QEMU, the arm64 root filesystem and the arm64 packages are, and what they are."""

    qemu: Path
    rootfs: Path
    site: Path
    cpu: str
    facts: dict

    @classmethod
    def load(cls, folder: Path | None = None) -> "Emulator":
        """The emulator set up in `folder` (default: the cache); TargetError naming the fix if there is none."""
        folder = Path(folder or cache_dir())
        try:
            state = json.loads((folder / STATE_FILE).read_text())
        except (OSError, ValueError):
            raise TargetError(
                f"the aarch64 emulator is not set up in {folder}: run `{SETUP_COMMAND}` "
                f"(QEMU, an arm64 Python 3.11 and the arm64 runtimes: {FETCH_SUMMARY}; no root)"
            ) from None
        emulator = cls(Path(state["qemu"]), folder / "rootfs", folder / "site", state["cpu"], state)
        missing = [p for p in (emulator.qemu, emulator.python_binary, emulator.site) if not p.exists()]
        if missing:
            raise TargetError(
                f"the aarch64 emulator in {folder} is incomplete ({missing[0]} is missing): "
                f"run `{SETUP_COMMAND} --force`"
            )
        return emulator

    @property
    def python_binary(self) -> Path:
        return self.rootfs / "usr" / "bin" / "python3.11"

    def python_argv(self) -> list[str]:
        """An argv that starts the arm64 Python, usable from any shell (env, then QEMU, then Python).

        The environment rides in the argv (`env ...`) so that it also reaches Pythons started by a
        runner under emulation, and never leaks into the host's own Python.
        """
        return [
            "env", f"QEMU_CPU={self.cpu}", f"PYTHONPATH={self.site}", "PYTHONNOUSERSITE=1",
            str(self.qemu), "-L", str(self.rootfs), str(self.python_binary),
        ]

    def describe(self) -> dict:
        """What is emulated, for the target record: the pinned CPU and the emulator's versions."""
        return {
            "qemu": self.facts.get("qemu_version"),
            "qemu_cpu": self.cpu,
            "cpu_model": CPUS[self.cpu].model if self.cpu in CPUS else self.cpu,
            "python": self.facts.get("python"),
            "versions": self.facts.get("versions"),
        }
