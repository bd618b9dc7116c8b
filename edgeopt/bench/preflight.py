"""Read a target's probe (device/probe.py) into facts to print and problems, each with the command that fixes it.

Example:
    report = assess(facts, python="python3")
    for what, fix in report.problems: print(what, "->", fix)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata

SIXTY_FOUR_BIT = {"aarch64", "arm64", "x86_64", "amd64"}
MIN_PYTHON = (3, 11)  # onnxruntime 1.32 and ai-edge-litert 2.3 publish wheels for CPython >= 3.11 only
MIN_FREE_BYTES = 50_000_000


@dataclass
class Preflight:
    """What a target is (label -> value, in print order) and what stops it running the benchmark."""

    facts: dict
    rows: list = field(default_factory=list)
    problems: list = field(default_factory=list)  # (what is wrong, the command or step that fixes it)

    @property
    def ok(self) -> bool:
        return not self.problems

    def message(self) -> str:
        return "; ".join(f"{what} (fix: {fix})" for what, fix in self.problems)


def runtime_pins() -> list[str]:
    """The runtime requirements of this edgeopt, as pip takes them: the board needs the same ones."""
    wanted = ("numpy", "ai-edge-litert", "onnxruntime")
    reqs = [r.split(";")[0].strip() for r in metadata.requires("edgeopt") or [] if "extra ==" not in r]
    return [r for r in reqs if any(r.startswith(name) and r[len(name):][:1] in "=<>!~" for name in wanted)]


def install_command(python: str) -> str:
    pins = " ".join(f"'{p}'" for p in runtime_pins())
    if python in ("python3", "python", "/usr/bin/python3"):
        # Debian 12 / Raspberry Pi OS refuse `pip install` into the system Python (PEP 668): use a venv.
        return (f"{python} -m venv ~/edgeopt-venv && ~/edgeopt-venv/bin/pip install {pins}, "
                "then add ?python=~/edgeopt-venv/bin/python to the target")
    return f"{python} -m pip install {pins}"


def assess(facts: dict, python: str, needed_bytes: int = MIN_FREE_BYTES, reinstall: str | None = None) -> Preflight:
    """Facts from probe.py -> a Preflight. `reinstall` replaces the pip advice (the emulator's own setup)."""
    cpu = facts.get("cpu", {})
    imports = facts.get("imports", {})
    report = Preflight(facts)
    report.rows = [
        ("architecture", cpu.get("arch")),
        ("CPU", f"{cpu.get('model')} ({cpu.get('cores')} cores)"),
        ("ISA features", " ".join(k for k, v in (cpu.get("features") or {}).items() if v) or "-"),
        ("OS", facts.get("os")),
        ("Python", f"{facts.get('python')} ({facts.get('executable')})"),
        ("glibc", facts.get("libc") or "-"),
        *[(name, state["version"] if state["ok"] else "MISSING: " + state["error"]) for name, state in imports.items()],
        ("CPU governor", cpu.get("governor") or "not readable"),
        ("temperature", f"{cpu['temperature_c']} C" if cpu.get("temperature_c") is not None else "not readable"),
        ("free disk", f"{facts['disk_free_bytes'] / 1e6:.0f} MB" if facts.get("disk_free_bytes") is not None else "-"),
    ]
    arch = str(cpu.get("arch", "")).lower()
    if "python" not in facts:  # the probe did not run: only `uname -m` answered
        report.rows = report.rows[:1]
    if arch not in SIXTY_FOUR_BIT:
        report.problems.append((
            f"the board is {arch} (32-bit): onnxruntime and ai-edge-litert publish no wheels for 32-bit ARM",
            "install a 64-bit OS (e.g. Raspberry Pi OS 64-bit, which reports aarch64)",
        ))
    if arch not in SIXTY_FOUR_BIT or "python" not in facts:
        return report
    version = tuple(int(p) for p in str(facts.get("python", "0.0")).split(".")[:2])
    if version < MIN_PYTHON:
        report.problems.append((
            f"Python {facts.get('python')} is too old: the runtimes need Python >= 3.11",
            "install Python 3.11 or newer and pass it as ?python=/path/to/python3.11",
        ))
    missing = [name for name, state in imports.items() if not state["ok"]]
    if missing and version >= MIN_PYTHON:
        report.problems.append((f"{', '.join(missing)} cannot be imported there", reinstall or install_command(python)))
    free = facts.get("disk_free_bytes")
    if free is not None and free < needed_bytes:
        report.problems.append((
            f"only {free / 1e6:.0f} MB free in the working folder; the benchmark needs {needed_bytes / 1e6:.0f} MB",
            "free some space, or choose another folder with ?workdir=/path",
        ))
    return report
