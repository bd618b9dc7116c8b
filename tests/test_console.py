"""What reaches the console: edgeopt's own lines; native and library output goes to the log file."""

import io
import subprocess
import sys

import pytest

from edgeopt.progress import Progress

# Writes as TensorFlow does (C++ on fd 1 and 2, a child process, a Python warning) and as edgeopt does.
SCRIPT = """
import os, subprocess, sys, warnings
from edgeopt.console import native_output_captured, user_stderr
with native_output_captured(sys.argv[1], verbose=sys.argv[2] == "verbose"):
    os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on\\n")
    os.write(1, b"fully_quantize: 0, inference_type: 6\\n")
    subprocess.run([sys.executable, "-c", "import os; os.write(2, b'child: failed call to cuInit\\\\n')"])
    warnings.warn("saving as HDF5 is legacy")
    print("edgeopt: converted")
    print("training: 40/600 steps", file=user_stderr())
print("edgeopt: done")
"""
NATIVE = ["oneDNN custom operations", "fully_quantize: 0", "child: failed call to cuInit", "saving as HDF5 is legacy"]


@pytest.mark.parametrize("mode,native_on_stderr", [("quiet", False), ("verbose", True)])
def test_native_output_goes_to_the_log_and_edgeopts_own_to_the_user(tmp_path, mode, native_on_stderr):
    log = tmp_path / "edgeopt.log"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(log), mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["edgeopt: converted", "edgeopt: done"]
    assert "training: 40/600 steps" in done.stderr
    kept = log.read_text()
    for line in NATIVE:
        assert line in kept, line
        assert (line in done.stderr) == native_on_stderr, line
        assert line not in done.stdout, line


class _Pipe(io.StringIO):
    def isatty(self):
        return False


def test_without_a_terminal_progress_is_whole_lines_and_a_last_line():
    stream = _Pipe()
    bar = Progress(3, "benchmark on local", unit="run", stream=stream, interval=0.0)
    for done in (1, 2, 3):
        bar.update(done, f"model.tflite round {done}: p50 0.014 ms over 9310 runs")
    bar.close()
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) == 3  # the last step is told by the closing line
    assert lines[0] == "benchmark on local: 1/3 runs (33%): model.tflite round 1: p50 0.014 ms over 9310 runs"
    assert lines[-1].startswith("benchmark on local: 3/3 runs in 0s: model.tflite round 3")


def test_without_a_terminal_lines_come_at_most_every_interval():
    stream = _Pipe()
    bar = Progress(600, "training", stream=stream, interval=3600)
    for _ in range(600):
        bar.update()
    bar.close()
    assert stream.getvalue() == "training: 600/600 steps in 0s\n"


def test_disabled_progress_prints_nothing():
    stream = _Pipe()
    bar = Progress(5, "training", stream=stream, enabled=False, interval=0.0)
    bar.update(5)
    bar.close()
    assert stream.getvalue() == ""


def test_on_a_terminal_progress_is_a_bar_redrawn_in_place():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    bar = Progress(2, "training", stream=stream, interval=0.0)
    bar.update(2, "loss 0.1")
    bar.close()
    assert "\r" in stream.getvalue() and "training" in stream.getvalue() and "\n" not in stream.getvalue().strip("\n")
