"""Build the aarch64 emulator into its cache folder, once: `edgeopt target setup aarch64-emulated`.

1. QEMU 10 user mode: the `qemu-user` package of Debian bookworm-backports, unpacked (it fixes both
   QEMU 7.2 traps); else the host's `qemu-aarch64-static`.
2. An arm64 Python 3.11 userland: its Debian packages fetched with `apt-get download` under a private
   apt configuration (the host's apt state is untouched; no root) and unpacked with `dpkg-deb -x`,
   plus an ARM /proc/cpuinfo describing the pinned CPU.
3. aarch64 wheels of numpy, ai-edge-litert and onnxruntime at the versions installed on this machine,
   so both sides run the same kernels' code.

Each step is skipped when its result is already there; the state file is written last.
Example:
    from edgeopt.bench.emulator_setup import setup
    emulator = setup(log=print)
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from ..errors import TargetError
from ..fileio import tree_size, write_text_atomic
from .emulator import (CPUS, DEFAULT_CPU, FETCH_MB, FETCH_SUMMARY, STATE_FILE, Emulator, cache_dir, cpuinfo_text,
                       host_env)

MIRROR_ENV = "EDGEOPT_DEBIAN_MIRROR"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
RUNTIMES = ("numpy", "ai-edge-litert", "onnxruntime")
# Packages python3.11 pulls in that only matter to a system being administered (dpkg, perl, docs).
NOT_NEEDED = {"dpkg", "tar", "install-info", "perl", "perl-base", "perl-modules-5.36", "libperl5.36",
              "debconf", "mailcap", "mime-support"}
# ai-edge-litert 2.x wheels are tagged exactly manylinux_2_27, and pip does not widen a tag it is
# given: a shorter list silently finds litert 1.x only.
PLATFORMS = ["manylinux2014_aarch64"] + [f"manylinux_2_{minor}_aarch64" for minor in range(17, 37)]


def setup(folder: Path | None = None, cpu: str = DEFAULT_CPU, force: bool = False, log=print) -> Emulator:
    """Build (or find) the emulator in `folder` (default: the cache); return it. Idempotent."""
    if cpu not in CPUS:
        raise TargetError(f"unknown emulated CPU {cpu!r}: use one of {', '.join(CPUS)}")
    folder = Path(folder or cache_dir())
    if force and folder.exists():
        log(f"removing the previous emulator in {folder}")
        shutil.rmtree(folder)
    state_file = folder / STATE_FILE
    versions = {name: metadata.version(name) for name in RUNTIMES}
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if state.get("cpu") == cpu and state.get("versions") == versions:
            log(f"the aarch64 emulator is already set up in {folder} (nothing to download)")
            return Emulator.load(folder)
        if state.get("versions") != versions:
            log(f"the runtimes here are now {versions}: fetching their aarch64 wheels again")
            shutil.rmtree(folder / "site", ignore_errors=True)
    _check_host()
    folder.mkdir(parents=True, exist_ok=True)
    log(f"setting up the aarch64 emulator in {folder}: it {FETCH_SUMMARY} (no root)")
    started = time.time()
    qemu, qemu_version = _qemu(folder, log)
    rootfs = folder / "rootfs"
    _rootfs(rootfs, log)
    _write_cpuinfo(rootfs, cpu)
    _wheels(folder / "site", versions, log)
    state = {"qemu": str(qemu), "qemu_version": qemu_version, "cpu": cpu}
    emulator = Emulator(qemu, rootfs, folder / "site", cpu, state)
    log("checking the arm64 Python imports the runtimes under emulation")
    state.update(_verify(emulator))
    state["setup_seconds"] = round(time.time() - started, 1)
    state["size_bytes"] = tree_size(folder)
    write_text_atomic(state_file, json.dumps(state, indent=1))
    log(f"aarch64 emulator ready in {folder} ({state['size_bytes'] / 1e6:.0f} MB on disk, set up in "
        f"{state['setup_seconds']:.0f} s): "
        f"QEMU {qemu_version}, CPU {cpu}, Python {state['python']}, "
        + ", ".join(f"{k} {v}" for k, v in state["versions"].items()))
    return Emulator.load(folder)


def _check_host():
    if platform.machine() not in ("x86_64", "AMD64"):
        raise TargetError(f"this machine is {platform.machine()}, not x86-64: measure on it with --target local")
    missing = [tool for tool in ("apt-get", "apt-cache", "dpkg-deb") if not shutil.which(tool)]
    if missing:
        raise TargetError(f"setting up the aarch64 emulator needs {', '.join(missing)} (Debian or Ubuntu); "
                          "on other systems use a real ARM board over ssh://")


def _run(argv, what, timeout=600, **kwargs) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired:
        raise TargetError(f"{what} took more than {timeout} s (is the network slow or down?)") from None
    if proc.returncode != 0:
        noise = ("W:", "Ign:", "Hit:", "Get:", "Reading", "Fetched")
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip() and not ln.startswith(noise)]
        raise TargetError(f"{what} failed: " + " | ".join(lines[-4:]))
    return proc.stdout


class PrivateApt:
    """apt-get under a configuration of its own: one architecture and suite, its own lists and cache.

    Nothing of the host's apt state is read or written, so it works without root.
    """

    def __init__(self, folder: Path, arch: str, suite: str):
        self.folder = folder
        for sub in ("lists/partial", "cache/archives/partial", "etc"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / "status").touch()
        mirror = os.environ.get(MIRROR_ENV, DEFAULT_MIRROR)
        signed = f" signed-by={KEYRING}" if KEYRING.exists() else ""
        (folder / "etc" / "sources.list").write_text(f"deb [arch={arch}{signed}] {mirror} {suite} main\n")
        options = {
            "APT::Architecture": arch, "APT::Architectures": arch, "Dir::State::Lists": folder / "lists",
            "Dir::State::status": folder / "status", "Dir::Cache": folder / "cache",
            "Dir::Etc::SourceList": folder / "etc" / "sources.list", "Dir::Etc::SourceParts": "/dev/null",
            "Debug::NoLocking": "1", "APT::Sandbox::User": _user(),
        }
        self.options = [arg for key, value in options.items() for arg in ("-o", f"{key}={value}")]
        self.where = f"{mirror} {suite} ({arch})"

    def update(self):
        try:
            _run(["apt-get", *self.options, "update", "--error-on=any"], f"reading the package list of {self.where}",
                 timeout=300)
        except TargetError as e:
            raise TargetError(f"{e} (no network? set {MIRROR_ENV} to a Debian mirror this machine can reach)") from None

    def dependencies(self, packages) -> list[str]:
        """`packages` and everything they depend on (recursively, without recommends), minus NOT_NEEDED."""
        out = _run(["apt-cache", *self.options, "depends", "--recurse", "--no-recommends", "--no-suggests",
                    "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *packages],
                   "resolving the dependencies of " + " ".join(packages))
        names = {ln.strip() for ln in out.splitlines() if ln.strip() and not ln.startswith((" ", "<"))}
        return sorted(names - NOT_NEEDED)

    def download(self, packages, into: Path) -> list[Path]:
        into.mkdir(parents=True, exist_ok=True)
        _run(["apt-get", *self.options, "download", *packages], f"downloading {len(packages)} packages from {self.where}",
             cwd=into)
        return sorted(into.glob("*.deb"))


def _user() -> str:
    import getpass

    return getpass.getuser()


def _qemu(folder: Path, log) -> tuple[Path, str]:
    """QEMU 10 from bookworm-backports; the host's qemu-aarch64-static when that cannot be had."""
    target = folder / "qemu" / "qemu-aarch64"
    if not target.exists():
        log(f"downloading QEMU 10 user mode (Debian bookworm-backports qemu-user, about {FETCH_MB['qemu']} MB)")
        try:
            with tempfile.TemporaryDirectory(dir=folder) as tmp:
                apt = PrivateApt(Path(tmp) / "apt", "amd64", "bookworm-backports")
                apt.update()
                (deb,) = apt.download(["qemu-user"], Path(tmp) / "debs")
                _run(["sh", "-c", f'dpkg-deb --fsys-tarfile "{deb}" | tar -x -C "{tmp}" ./usr/bin/qemu-aarch64'],
                     "unpacking qemu-aarch64")
                target.parent.mkdir(exist_ok=True)
                os.replace(Path(tmp) / "usr" / "bin" / "qemu-aarch64", target)
        except TargetError as e:
            host = shutil.which("qemu-aarch64-static")
            if not host:
                raise TargetError(f"{e}; and this machine has no qemu-aarch64-static either: "
                                  "install it (apt-get install -y qemu-user-static) or allow access to "
                                  f"{os.environ.get(MIRROR_ENV, DEFAULT_MIRROR)}") from None
            log(f"QEMU 10 is unavailable ({e}); using the host's {host} with the CPU pinned")
            target = Path(host)
    version = _run([str(target), "--version"], "starting QEMU").split("\n")[0].split("version ")[-1]
    return target, version.split(" ")[0]


def _rootfs(rootfs: Path, log):
    if (rootfs / "usr" / "bin" / "python3.11").exists():
        return
    log(f"downloading an arm64 Python 3.11 userland (Debian bookworm packages and their list, "
        f"about {FETCH_MB['python']} MB)")
    with tempfile.TemporaryDirectory(dir=rootfs.parent) as tmp:
        apt = PrivateApt(Path(tmp) / "apt", "arm64", "bookworm")
        apt.update()
        # libstdc++6: manylinux wheels (onnxruntime, litert) take it from the system.
        packages = apt.dependencies(["python3.11", "libstdc++6"])
        debs = apt.download(packages, Path(tmp) / "debs")
        log(f"unpacking {len(debs)} arm64 packages")
        partial = Path(tmp) / "rootfs"
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(partial)], f"unpacking {deb.name}")
        os.replace(partial, rootfs)


def _write_cpuinfo(rootfs: Path, cpu: str):
    # QEMU 10 answers /proc/cpuinfo itself; QEMU 7.2 serves this file through -L instead of the host's.
    (rootfs / "proc").mkdir(exist_ok=True)
    write_text_atomic(rootfs / "proc" / "cpuinfo", cpuinfo_text(CPUS[cpu], os.cpu_count() or 1))


def _wheels(site: Path, versions: dict, log):
    if (site / "onnxruntime").exists() and (site / "ai_edge_litert").exists():
        return
    pins = [f"{name}=={version}" for name, version in versions.items()]
    log("downloading aarch64 wheels: " + " ".join(pins) + f" and their dependencies (about {FETCH_MB['wheels']} MB)")
    partial = site.with_name("site.partial")
    shutil.rmtree(partial, ignore_errors=True)
    platforms = [arg for tag in PLATFORMS for arg in ("--platform", tag)]
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
          "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", *platforms,
          "--target", str(partial), *pins], "downloading the aarch64 wheels with pip", timeout=900)
    os.replace(partial, site)


def _verify(emulator: Emulator) -> dict:
    """Start the arm64 Python under QEMU, import every runtime, compile the standard library once."""
    script = (
        "import compileall, json, platform, sys\n"
        "from importlib import metadata\n"
        "import numpy, onnxruntime, ai_edge_litert.interpreter\n"
        # Debian compiles .pyc files in postinst, which never ran: compile once, not at every start.
        f"compileall.compile_dir({str(emulator.rootfs / 'usr/lib/python3.11')!r}, quiet=1)\n"
        "print(json.dumps({'machine': platform.machine(), 'python': platform.python_version(),\n"
        f"  'versions': {{n: metadata.version(n) for n in {RUNTIMES!r}}}}}))\n"
    )
    out = _run([*emulator.python_argv(), "-c", script], "the arm64 Python under QEMU", timeout=900,
               env=host_env())
    facts = json.loads(out.strip().splitlines()[-1])
    if facts["machine"] != "aarch64":
        raise TargetError(f"the emulated Python reports machine {facts['machine']!r}, not aarch64")
    return {"python": facts["python"], "versions": facts["versions"]}
