"""Where a benchmark runs. Every target runs the same device runner over the same bundle folder.

A bundle is a folder holding `plan.json`, the models and inputs it names (paths relative to the
bundle), and `device/` (the self-contained runner, worker and runtimes). A target runs
`device/runner.py plan.json` where the models will run and leaves `results.json` and `outputs/`
in the local bundle folder, whatever it had to copy to get there.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from ..errors import TargetError

PROGRESS = re.compile(r"^\[(\d+)/(\d+)\] (.*)$")
DEVICE_DIR = Path(__file__).parent / "device"  # the files a bundle carries to the device


class Target:
    """Base: a name as the user wrote it, a kind (local / ssh / emulated), and `run(bundle)`."""

    name = "local"
    kind = "local"
    emulated = False

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "emulated": self.emulated}

    def prepare(self):
        """Check the target can run the harness; raise TargetError naming what is missing and the fix."""
        report = self.check()
        if not report.ok:
            raise TargetError(f"{self.name} cannot run the benchmark: {report.message()}")

    def check(self):
        """A Preflight: what the target is (for `edgeopt target check`) and what stops it running the harness."""
        raise NotImplementedError

    def run(self, bundle: Path, on_progress=None, timeout=None) -> Path:
        """Run the plan in `bundle`; return the local path of results.json."""
        raise NotImplementedError


class LocalTarget(Target):
    """This machine, with the Python that runs edgeopt."""

    def check(self):
        from .preflight import assess

        proc = subprocess.run([sys.executable, str(DEVICE_DIR / "probe.py")], capture_output=True, text=True,
                              timeout=120)
        if proc.returncode != 0:
            raise TargetError(f"the local probe failed: {proc.stderr.strip()[-300:]}")
        return assess(json.loads(proc.stdout.strip().splitlines()[-1]), python=sys.executable)

    def run(self, bundle, on_progress=None, timeout=None):
        argv = [sys.executable, str(bundle / "device" / "runner.py"), str(bundle / "plan.json")]
        run_streaming(argv, on_progress, timeout, what="the local benchmark runner")
        return bundle / "results.json"


def run_streaming(argv, on_progress=None, timeout=None, what="the runner", env=None):
    """Run `argv`, passing each `[done/total] text` line it prints to `on_progress(done, total, text)`.

    Raise TargetError with the last lines of its output when it fails or outlives `timeout`.
    """
    tail = []
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    except OSError as e:
        raise TargetError(f"cannot start {what} ({argv[0]}): {e.strerror or e}") from None
    import threading

    timer = threading.Timer(timeout, proc.kill) if timeout else None
    if timer:
        timer.start()
    try:
        for line in proc.stderr:
            line = line.rstrip("\n")
            m = PROGRESS.match(line)
            if m and on_progress:
                on_progress(int(m.group(1)), int(m.group(2)), m.group(3))
            elif line.strip():
                tail = (tail + [line])[-5:]
        code = proc.wait()
    finally:
        if timer:
            timer.cancel()
    if code != 0:
        reason = "was stopped after its time limit" if code < 0 and timeout else f"exited with code {code}"
        raise TargetError(f"{what} {reason}: " + (" | ".join(tail) or "no output"))


def parse_target(spec: str) -> Target:
    """'local', 'aarch64-emulated', 'x86-64-avx2' or 'ssh://user@host[:port][?python=...&workdir=...]' -> a Target."""
    if spec in ("local", "", None):
        return LocalTarget()
    if spec == "aarch64-emulated":
        from .emulated import EmulatedTarget

        return EmulatedTarget()
    if spec == "x86-64-avx2":
        from .emulated import X86Avx2Target

        return X86Avx2Target()
    if spec.startswith("ssh://"):
        from .ssh import SshTarget

        return SshTarget.from_spec(spec)
    raise TargetError(f"unknown target {spec!r}: use 'local', 'aarch64-emulated', 'x86-64-avx2' "
                      "or 'ssh://user@host[:port]'")
