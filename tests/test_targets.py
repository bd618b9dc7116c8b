"""Target specs, preflight verdicts and ssh failure messages: each bad input and the message it must produce.

No network and no emulator here; the real sshd and the emulator are exercised in test_arm64.py.
"""

import re

import pytest

from edgeopt.bench.emulated import EmulatedTarget
from edgeopt.bench.emulator import CPUS, Emulator, cpuinfo_text
from edgeopt.bench.preflight import assess, install_command, runtime_pins
from edgeopt.bench.ssh import SshTarget
from edgeopt.bench.targets import LocalTarget, parse_target
from edgeopt.errors import TargetError


def test_specs_make_the_right_targets():
    assert isinstance(parse_target("local"), LocalTarget)
    assert isinstance(parse_target("aarch64-emulated"), EmulatedTarget)
    board = parse_target("ssh://pi@raspberrypi.local:2222?python=~/venv/bin/python&workdir=/data/tmp")
    assert isinstance(board, SshTarget)
    assert (board.user, board.host, board.port, board.workdir) == ("pi", "raspberrypi.local", 2222, "/data/tmp")
    assert board.name == "ssh://pi@raspberrypi.local:2222"
    assert board.remote_python() == "~/venv/bin/python"  # left for the remote shell to expand
    argv = board.ssh_argv("true")
    assert argv[:5] == ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    assert argv[-3:] == ["2222", "pi@raspberrypi.local", "true"]


@pytest.mark.parametrize("spec,pattern", [
    ("raspberrypi", "unknown target 'raspberrypi'"),
    ("ssh://", "bad SSH target"),
    ("ssh://pi@host:notaport", "bad SSH target 'ssh://pi@host:notaport': the port 'notaport' is not a number; "
                               "give one from 1 to 65535"),
    ("ssh://pi@host:70000", "port 70000 is outside the range 1-65535"),
    ("ssh://pi@host:0", "port 0 is outside the range 1-65535"),
    ("ssh://pi@host:", "the port '' is not a number"),
    ("ssh://pi@[::1]:99999", "port 99999 is outside the range 1-65535"),
    ("ssh://pi@host/some/path", "bad SSH target"),
    ("ssh://pi@host?pyhton=python3", "unknown option.*pyhton.*valid ones are python, workdir"),
    ("ssh://pi@host?connect_timeout=soon", "connect_timeout must be a whole number"),
])
def test_bad_specs_say_what_to_write(spec, pattern):
    with pytest.raises(TargetError, match=pattern):
        parse_target(spec)


@pytest.mark.parametrize("stderr,pattern", [
    ("ssh: Could not resolve hostname pi5.local: Name or service not known", "cannot resolve the host name pi5"),
    ("ssh: connect to host 10.0.0.9 port 22: Connection refused", "refused the connection on port 22.*start sshd"),
    ("ssh: connect to host 10.0.0.9 port 22: Connection timed out", "did not answer within 10 s"),
    ("ssh: connect to host 10.0.0.9 port 22: No route to host", "no route to pi5"),
    ("pi@10.0.0.9: Permission denied (publickey).", "refused the key.*ssh-copy-id -p 22 pi@pi5"),
    ("Host key verification failed.", "host key of pi5 is not known.*ssh-keyscan -p 22 pi5"),
    ("kex_exchange_identification: read: Connection reset by peer", "ssh to pi@pi5 failed: kex_exchange"),
])
def test_ssh_failures_are_told_apart_with_the_fix(stderr, pattern):
    error = SshTarget("pi5", "pi").ssh_failure(stderr)
    assert isinstance(error, TargetError)
    assert re.search(pattern, str(error)), str(error)


def _facts(arch="aarch64", python="3.11.2", missing=(), free=10**10):
    return {
        "cpu": {"arch": arch, "model": "Cortex-A76", "cores": 4, "features": {"asimd": True}},
        "python": python, "executable": "/usr/bin/python3", "libc": "glibc-2.36",
        "imports": {name: ({"ok": False, "error": "ModuleNotFoundError"} if name in missing else
                           {"ok": True, "version": "1"}) for name in ("numpy", "ai-edge-litert", "onnxruntime")},
        "disk_free_bytes": free,
    }


@pytest.mark.parametrize("facts,pattern,fix", [
    (_facts(arch="armv7l"), "armv7l \\(32-bit\\).*no wheels", "64-bit OS"),
    ({"cpu": {"arch": "armv7l"}}, "armv7l \\(32-bit\\)", "64-bit OS"),
    (_facts(python="3.9.2"), "Python 3.9.2 is too old", "Python 3.11 or newer"),
    (_facts(missing=("onnxruntime",)), "onnxruntime cannot be imported", "python3 -m venv ~/edgeopt-venv"),
    (_facts(missing=("numpy", "ai-edge-litert")), "numpy, ai-edge-litert cannot be imported", "'ai-edge-litert==2.3"),
    (_facts(free=10_000_000), "only 10 MB free", "\\?workdir="),
])
def test_preflight_finds_what_stops_a_board(facts, pattern, fix):
    report = assess(facts, python="python3")
    assert not report.ok
    (what, how), = report.problems
    assert re.search(pattern, what), what
    assert re.search(fix, how), how


def test_a_ready_board_has_no_problems_and_every_fact_printed():
    report = assess(_facts(), python="python3")
    assert report.ok
    labels = [label for label, _ in report.rows]
    for label in ("architecture", "CPU", "Python", "glibc", "ai-edge-litert", "onnxruntime", "CPU governor",
                  "temperature"):
        assert label in labels


def test_install_command_pins_what_pyproject_pins():
    pins = runtime_pins()
    assert any(p.startswith("onnxruntime==") for p in pins) and any(p.startswith("ai-edge-litert==") for p in pins)
    assert install_command("/opt/py/bin/python") == "/opt/py/bin/python -m pip install " + " ".join(f"'{p}'" for p in pins)


def test_emulated_cpuinfo_describes_the_pinned_cpu():
    text = cpuinfo_text(CPUS["neoverse-n1"], 2)
    assert text.count("processor\t:") == 2
    assert "CPU part\t: 0xd0c" in text and "asimddp" in text
    assert "asimddp" not in cpuinfo_text(CPUS["cortex-a72"], 1)


def test_an_emulator_not_set_up_names_the_setup_command(tmp_path):
    with pytest.raises(TargetError, match="run `edgeopt target setup aarch64-emulated`"):
        Emulator.load(tmp_path)
    with pytest.raises(TargetError, match="not set up"):
        EmulatedTarget(tmp_path).prepare()


def test_targets_and_parity_never_import_tensorflow():
    import subprocess
    import sys

    code = ("import sys, edgeopt.bench.ssh, edgeopt.bench.emulated, edgeopt.bench.emulator_setup, "
            "edgeopt.bench.parity, edgeopt.cli.target\n"
            "from edgeopt.bench.parity import output_scales\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("case,pattern", [
    ("unknown cpu", "unknown emulated CPU 'cortex-m4': use one of neoverse-n1, cortex-a76, cortex-a72"),
    ("no apt", "needs apt-get, apt-cache, dpkg-deb \\(Debian or Ubuntu\\)"),
    ("no network", "reading the package list of http://127.0.0.1:9/debian .*failed.*no network\\? set "
                   "EDGEOPT_DEBIAN_MIRROR"),
])
def test_emulator_setup_problems_say_what_to_do(case, pattern, tmp_path, monkeypatch):
    import shutil

    from edgeopt.bench import emulator_setup

    monkeypatch.setenv("EDGEOPT_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")  # nothing listens there
    if case == "no apt":
        monkeypatch.setattr(shutil, "which", lambda tool: None)
    with pytest.raises(TargetError, match=pattern):
        emulator_setup.setup(tmp_path / "cache", cpu="cortex-m4" if case == "unknown cpu" else "neoverse-n1",
                             log=lambda line: None)
    assert not (tmp_path / "cache" / "emulator.json").exists()
