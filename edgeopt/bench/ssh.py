"""The 'ssh://user@host[:port]' target: a board reached with the system ssh (its config, keys, agent, ProxyJump).

The bundle goes over with `tar | ssh host tar -x` (no sftp: minimal boards and emulated roots have no
sftp-server), the runner runs there under `timeout`, results.json and outputs/ come back the same way,
and the remote folder is removed whatever happened. Every ssh call is non-interactive (BatchMode),
with a connect timeout and a time limit of its own, and its failures are told apart (name, refused
connection, silence, refused key, unknown host key, disk full) with the fix.

Options ride in the target string: `ssh://pi@pi5.local:22?python=~/venv/bin/python&workdir=/data/tmp`
(python: the command line that starts Python 3 there; workdir: where the bundle goes, default /tmp;
config: an ssh_config file; identity: a key file; connect_timeout: seconds).
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import TargetError
from ..fileio import tree_size
from .preflight import Preflight, assess
from .targets import DEVICE_DIR, Target, run_streaming

OPTIONS = ("python", "workdir", "config", "identity", "connect_timeout")
COMMAND_TIMEOUT = 60    # seconds for a small remote command (mkdir, probe, rm)
TRANSFER_TIMEOUT = 600  # seconds for pushing or pulling a bundle
REMOTE_TIMEOUT_EXIT = 124  # what coreutils `timeout` exits with when it stopped the command

# ssh's own messages (exit code 255) -> what happened and how to fix it.
SSH_FAILURES = [
    ("Could not resolve hostname", "cannot resolve the host name {host}",
     "check the name, or give the board's IP address"),
    ("Connection refused", "{host} refused the connection on port {port}",
     "start sshd on the board, or give the right port (ssh://user@host:PORT)"),
    ("timed out", "{host} did not answer within {connect_timeout} s",
     "check that the board is on and reachable from here (ping {host})"),
    ("No route to host", "no route to {host}", "check that the board is on and on this network"),
    ("Network is unreachable", "the network of {host} is unreachable", "check this machine's network"),
    ("Permission denied", "{user}@{host} refused the key (key authentication failed)",
     "install your key there (ssh-copy-id -p {port} {user}@{host}), or load it into ssh-agent, or name it "
     "with ?identity=PATH or IdentityFile in ~/.ssh/config"),
    ("Host key verification failed", "the host key of {host} is not known here (or has changed)",
     "connect once with `ssh -p {port} {user}@{host}` to accept it, or run "
     "`ssh-keyscan -p {port} {host} >> ~/.ssh/known_hosts`"),
]


class SshTarget(Target):
    """A board over SSH. Construct with `SshTarget.from_spec('ssh://user@host:port?python=...')`."""

    kind = "ssh"
    emulated = False

    def __init__(self, host, user=None, port=None, python="python3", workdir="/tmp", config=None, identity=None,
                 connect_timeout=10):
        self.host, self.user, self.port = host, user, port
        self.python_argv = shlex.split(python)
        self.python = python
        self.workdir = workdir
        self.config, self.identity = config, identity
        self.connect_timeout = int(connect_timeout)
        self.name = f"ssh://{user + '@' if user else ''}{host}{':' + str(port) if port else ''}"
        self.facts = None  # what check() learned about the board

    @classmethod
    def from_spec(cls, spec: str) -> "SshTarget":
        parts = urlsplit(spec)
        port = _port(parts.netloc, spec)
        if not parts.hostname or parts.path not in ("", "/"):
            raise TargetError(f"bad SSH target {spec!r}: write ssh://user@host or ssh://user@host:port "
                              f"(options as ?{'=...&'.join(OPTIONS[:2])}=...)")
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(query) - set(OPTIONS))
        if unknown:
            raise TargetError(f"unknown option(s) {', '.join(unknown)} in {spec!r}: valid ones are {', '.join(OPTIONS)}")
        options = {key: values[-1] for key, values in query.items()}
        if not str(options.get("connect_timeout", "10")).isdigit():
            raise TargetError(f"connect_timeout must be a whole number of seconds, got {options['connect_timeout']!r}")
        return cls(parts.hostname, unquote(parts.username) if parts.username else None, port, **options)

    # --- talking to the board ---------------------------------------------------------------

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def ssh_argv(self, remote_command: str) -> list[str]:
        if not shutil.which("ssh"):
            raise TargetError("no ssh client on this machine: install it (apt-get install -y openssh-client)")
        argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
        argv += ["-F", self.config] if self.config else []
        argv += ["-i", self.identity] if self.identity else []
        argv += ["-p", str(self.port)] if self.port else []
        return argv + [self.destination, remote_command]

    def ssh(self, remote_command, what, timeout=COMMAND_TIMEOUT, input=None, check=True):
        """Run one remote command; TargetError saying what went wrong and the fix when ssh itself fails."""
        try:
            proc = subprocess.run(self.ssh_argv(remote_command), input=input, capture_output=True,
                                  timeout=timeout + self.connect_timeout)
        except subprocess.TimeoutExpired:
            raise TargetError(f"{what} on {self.host} did not finish within {timeout} s") from None
        if proc.returncode == 255:
            raise self.ssh_failure(proc.stderr.decode(errors="replace"))
        if check and proc.returncode != 0:
            raise TargetError(f"{what} on {self.host} failed: {_tail(proc.stderr)}")
        return proc

    def ssh_failure(self, stderr: str) -> TargetError:
        for needle, what, fix in SSH_FAILURES:
            if needle in stderr:
                facts = {"host": self.host, "port": self.port or 22, "user": self.user or "$USER",
                         "connect_timeout": self.connect_timeout}
                return TargetError(f"{what.format(**facts)} (fix: {fix.format(**facts)})")
        return TargetError(f"ssh to {self.destination} failed: {_tail(stderr.encode())}")

    def remote_python(self) -> str:
        """The python command line as the remote shell must see it (~ left unquoted, so the shell expands it)."""
        return " ".join(_shell_word(a) for a in self.python_argv)

    # --- Target -------------------------------------------------------------------------------

    def describe(self) -> dict:
        record = {**super().describe(), "host": self.host, "user": self.user, "port": self.port or 22}
        if self.facts and "cpu" in self.facts:
            cpu = self.facts["cpu"]
            record.update(arch=cpu.get("arch"), cpu=cpu.get("model"), python=self.facts.get("python"),
                          libc=self.facts.get("libc"), versions=self.facts.get("versions"))
        return record

    def check(self) -> Preflight:
        # One round trip: `uname -m` answers even where Python is missing; the probe comes in on stdin.
        command = f"uname -m; {self.remote_python()} - {shlex.quote(self.workdir)}"
        proc = self.ssh(command, "the probe", input=_probe_script(), check=False)
        lines = proc.stdout.decode(errors="replace").strip().splitlines()
        arch = lines[0].strip() if lines else "unknown"
        try:
            self.facts = json.loads(lines[-1])
        except (ValueError, IndexError):
            self.facts = {"cpu": {"arch": arch}}
        report = assess(self.facts, self.python, needed_bytes=self._needed_bytes())
        report.rows.insert(0, ("host", f"{self.destination} port {self.port or 22}"))
        if "python" not in self.facts and report.ok:
            report.problems.append(self._python_problem(proc))
        return report

    def _python_problem(self, proc) -> tuple:
        err = proc.stderr.decode(errors="replace")
        if proc.returncode == 127 or "not found" in err or "No such file" in err:
            return (f"no Python 3 at {self.python!r} on {self.host}",
                    "install it (sudo apt-get install -y python3 python3-venv), or give its path with ?python=PATH")
        return (f"the Python at {self.python!r} on {self.host} could not run the probe: {_tail(proc.stderr)}",
                "give a Python 3.11+ with ?python=PATH")

    def _needed_bytes(self, bundle=None) -> int:
        return 50_000_000 + (3 * tree_size(bundle) if bundle else 0)  # the bundle, its outputs, headroom

    def prepare(self):
        report = self.check()
        if not report.ok:
            raise TargetError(f"{self.name} cannot run the benchmark: {report.message()}")

    def run(self, bundle, on_progress=None, timeout=None) -> Path:
        bundle = Path(bundle)
        if self.facts is None or "python" not in self.facts:
            self.prepare()
        free, needed = self.facts.get("disk_free_bytes"), self._needed_bytes(bundle)
        if free is not None and free < needed:
            raise TargetError(f"disk full on {self.host}: {free / 1e6:.0f} MB free in {self.workdir}, the benchmark "
                              f"needs {needed / 1e6:.0f} MB (fix: free space there, or choose another folder with "
                              "?workdir=PATH)")
        home = self.facts.get("home", "~")
        worker = [home + a[1:] if a.startswith("~") else a for a in self.python_argv]
        made = self.ssh(f"mkdir -p {_shell_word(self.workdir)} && mktemp -d {_shell_word(self.workdir)}/edgeopt-bench.XXXXXX",
                        "creating the working folder")
        remote = made.stdout.decode().strip()
        try:
            self._push(bundle, remote)
            self._run_runner(remote, worker, on_progress, timeout)
            self._pull(remote, bundle)
        finally:
            try:
                self.ssh(f"rm -rf {shlex.quote(remote)}", "removing the working folder", check=False)
            except TargetError:
                pass  # the board went away: nothing more to clean from here
        return bundle / "results.json"

    def _push(self, bundle, remote):
        local = ["tar", "-C", str(bundle), "-czf", "-", "--exclude=./outputs", "--exclude=./jobs",
                 "--exclude=./results.json", "--exclude=__pycache__", "."]
        packed = subprocess.run(local, capture_output=True, check=True).stdout
        proc = self.ssh(f"tar -xzf - -C {shlex.quote(remote)}", "copying the bundle", TRANSFER_TIMEOUT,
                        input=packed, check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace")
            if "No space left" in err:
                raise TargetError(f"disk full on {self.host}: {self.workdir} has no room for the "
                                  f"{tree_size(bundle) / 1e6:.1f} MB bundle (fix: free space there, or choose "
                                  "another folder with ?workdir=PATH)")
            raise TargetError(f"copying the bundle to {self.host} failed: {_tail(proc.stderr)}")

    def _run_runner(self, remote, worker, on_progress, timeout):
        runner = f"{self.remote_python()} device/runner.py plan.json --worker-command {shlex.quote(json.dumps(worker))}"
        if timeout:
            # Stopped there too (with its workers: timeout signals its whole process group), not just here.
            runner = f"timeout -k 10 {int(timeout)} {runner}"
        argv = self.ssh_argv(f"cd {shlex.quote(remote)} && {runner}")
        try:
            run_streaming(argv, on_progress, timeout + 30 if timeout else None, what=f"the runner on {self.host}")
        except TargetError as e:
            if f"exited with code {REMOTE_TIMEOUT_EXIT}:" in str(e) or "time limit" in str(e):
                raise TargetError(f"the run on {self.host} did not finish within {timeout} s: it was stopped "
                                  "and its files removed (fix: give it more time, or fewer or smaller jobs)") from None
            if "exited with code 255:" in str(e):
                raise self.ssh_failure(str(e)) from None
            raise

    def _pull(self, remote, bundle):
        proc = self.ssh(f"tar -C {shlex.quote(remote)} -czf - results.json outputs", "copying the results back",
                        TRANSFER_TIMEOUT, check=False)
        if proc.returncode != 0:
            raise TargetError(f"the runner on {self.host} left no results: {_tail(proc.stderr)}")
        subprocess.run(["tar", "-xzf", "-", "-C", str(bundle)], input=proc.stdout, check=True, capture_output=True)


def _port(netloc: str, spec: str) -> int | None:
    """The port written in the target, checked here: urlsplit calls 0 valid and says 'out of range 0-65535'."""
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):  # [IPv6]:port
        hostport = hostport.partition("]")[2]
    if ":" not in hostport:
        return None
    text = hostport.rpartition(":")[2]
    how = "give one from 1 to 65535 (ssh://user@host:2222), or none for 22"
    if not text.isdigit():
        raise TargetError(f"bad SSH target {spec!r}: the port {text!r} is not a number; {how}")
    if not 1 <= int(text) <= 65535:
        raise TargetError(f"bad SSH target {spec!r}: port {int(text)} is outside the range 1-65535; {how}")
    return int(text)


def _probe_script() -> bytes:
    """probe.py with its sibling sysinfo.py inlined: one file on stdin, nothing written on the board."""
    sysinfo = (DEVICE_DIR / "sysinfo.py").read_text()
    probe = (DEVICE_DIR / "probe.py").read_text()
    loader = ("import sys, types\n_m = types.ModuleType('sysinfo')\n"
              f"exec(compile({sysinfo!r}, 'sysinfo.py', 'exec'), _m.__dict__)\nsys.modules['sysinfo'] = _m\n")
    return (loader + probe).encode()


def _shell_word(arg: str) -> str:
    if arg.startswith("~/"):
        return "~/" + shlex.quote(arg[2:])
    return shlex.quote(arg)


def _tail(stderr: bytes) -> str:
    lines = [ln for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
    return " | ".join(lines[-3:]) or "no message"
