"""A Docker engine and a Python base image for the image tests, on machines that have no registry.

The engine already running is used as is. Otherwise, as root with Debian's `dockerd` installed, one is
started (its own pid and log files) and stopped again by `stop()`. The base image is the official
one when the engine has it or can pull it; without a reachable registry it is built from Debian
packages with debootstrap (bookworm: Python 3.11 and its venv module), with this machine's CA bundle
so that pip inside the build trusts the same package-registry proxy the host does.

Every method raises `Unavailable` with the reason when this machine cannot do it; tests skip on it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

OFFICIAL_BASE = "python:3.11.11-slim-bookworm"  # the Dockerfiles' default BASE
LOCAL_BASE = "local/edgeopt-test-bookworm-python:latest"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


class Unavailable(Exception):
    """This machine cannot run Docker (or build a base image); the message says why."""


def _docker(*args, timeout=60, **kwargs):
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, **kwargs)


def _answers() -> bool:
    try:
        return _docker("info", timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class DockerEngine:
    def __init__(self):
        self.process = None
        self.folder = None

    def start(self) -> "DockerEngine":
        if not shutil.which("docker"):
            raise Unavailable("no docker client (apt-get install docker.io)")
        if _answers():
            return self
        if not shutil.which("dockerd"):
            raise Unavailable("no Docker engine is running and dockerd is not installed (apt-get install docker.io)")
        if os.geteuid() != 0:
            raise Unavailable("no Docker engine is running, and starting dockerd needs root")
        self.folder = Path(tempfile.mkdtemp(prefix="edgeopt-dockerd-"))
        log = open(self.folder / "dockerd.log", "wb")
        self.process = subprocess.Popen(["dockerd", "--pidfile", str(self.folder / "dockerd.pid")],
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None or _answers():
                break
            time.sleep(1)
        if not _answers():
            tail = (self.folder / "dockerd.log").read_text(errors="replace").strip().splitlines()[-3:]
            self.stop()
            raise Unavailable(f"dockerd did not start: {' | '.join(tail) or 'no output'}")
        return self

    def stop(self):
        """Stop the engine if this object started it (images it built are removed by the caller)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        shutil.rmtree(self.folder, ignore_errors=True)

    def base_image(self, log=print) -> tuple[str, bool]:
        """(image name, whether it was built here): the official base, else one built from Debian packages."""
        if _docker("image", "inspect", OFFICIAL_BASE).returncode == 0:
            return OFFICIAL_BASE, False
        try:
            if _docker("pull", OFFICIAL_BASE, timeout=120).returncode == 0:
                return OFFICIAL_BASE, False
        except subprocess.TimeoutExpired:
            pass
        log(f"{OFFICIAL_BASE} cannot be pulled here: building a base image from Debian packages")
        return self._debootstrap_base(), True

    def _debootstrap_base(self) -> str:
        if not shutil.which("debootstrap"):
            raise Unavailable(f"{OFFICIAL_BASE} cannot be pulled and debootstrap is missing (apt-get install debootstrap)")
        with tempfile.TemporaryDirectory(prefix="edgeopt-rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            proc = subprocess.run(
                ["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                 "bookworm", str(rootfs), "http://deb.debian.org/debian"],
                capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                raise Unavailable(f"debootstrap failed: {proc.stderr.strip()[-300:]}")
            if HOST_CA.exists():
                shutil.copy(HOST_CA, rootfs / "etc/ssl/certs/ca-certificates.crt")
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            imported = _docker("import", "--change", f"ENV PIP_CERT={HOST_CA}", "--change", 'CMD ["python3"]',
                               "-", LOCAL_BASE, stdin=tar.stdout, timeout=600)
            tar.wait()
            if imported.returncode != 0:
                raise Unavailable(f"docker import of the Debian base failed: {imported.stderr.strip()[-300:]}")
        return LOCAL_BASE
