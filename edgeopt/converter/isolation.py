"""Native converters in a child process: a crash costs the step that was running, never the run.

TFLiteConverter (MLIR passes, and an int8 calibrator that runs the model in the TFLite interpreter),
tf2onnx, onnxruntime's quantizer and the runtimes that check each file are native code: a SIGSEGV or
an abort there kills its process, which no `except` can catch. They run in one child process per
conversion run (TensorFlow is imported there once, while the parent loads data and traces the model);
when the child dies, the step it was running fails with the signal named, and the next step starts a
fresh child. A child that outlives one step is the point: a child per step would import TensorFlow
once per file (seconds each).

Jobs are module-level functions named 'package.module:function', with picklable arguments and results.
The child talks over two pipes of its own, so whatever native code prints cannot corrupt a reply.
"""

from __future__ import annotations

import importlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path

from ..errors import ConversionError
from ..fileio import release_memory

JOB_TIMEOUT_S = 900  # a MobileNet-size conversion takes seconds; this only stops a hung converter
_WARM_UP = "edgeopt.converter.isolation:warm_up"


class ConverterCrash(ConversionError):
    """The converter process died (a signal or an exit) while running one step."""

    def __init__(self, message, signal_name=None):
        super().__init__(message)
        self.signal_name = signal_name

    def __reduce__(self):
        return type(self), (str(self), self.signal_name)


class ConverterProcess:
    """The child process that runs native conversion steps. Use `with`, or call `close()`.

    Example:
        >>> with ConverterProcess() as converters:  # doctest: +SKIP
        ...     blob = converters.call("edgeopt.converter.tflite:convert_saved_model", path, "fp32", {}, None, 1,
        ...                            what="TFLite fp32 conversion")
    """

    def __init__(self, timeout_s: float = JOB_TIMEOUT_S):
        self.timeout_s = timeout_s
        self.scratch = Path(tempfile.mkdtemp(prefix="edgeopt-convert-"))  # kept across restarts, removed by close()
        self.starts = 0
        self._proc = self._jobs = self._replies = None
        self._warming = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self):
        """Start the child now (it imports the converters while the caller goes on); no-op if it runs."""
        if self._proc is not None and self._proc.poll() is None:
            return
        job_read, job_write = os.pipe()
        reply_read, reply_write = os.pipe()
        self._proc = subprocess.Popen([sys.executable, "-m", __name__, str(job_read), str(reply_write)],
                                      pass_fds=(job_read, reply_write), stdin=subprocess.DEVNULL)
        os.close(job_read)
        os.close(reply_write)
        self._jobs, self._replies = Connection(job_write, readable=False), Connection(reply_read, writable=False)
        self.starts += 1
        self._jobs.send((_WARM_UP, ()))
        self._warming = True

    def call(self, job: str, *args, what: str, crash_hint: str = ""):
        """Run `job(*args)` in the child and return its result; its exceptions are raised here.

        A crash of the child raises ConverterCrash naming `what` (the step) and the signal, plus
        `crash_hint` (what the user can do); a step past the timeout is killed and fails the same way.
        """
        self.start()
        if self._warming:
            self._warming = False
            self._wait(what, crash_hint)
        try:
            self._jobs.send((job, args))
        except OSError:  # it died since the last step (killed from outside, out of memory)
            raise self._crashed(what, crash_hint) from None
        return self._wait(what, crash_hint)

    def close(self):
        """Stop the child: it holds no state worth a clean exit (TensorFlow's teardown takes seconds)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._forget()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _wait(self, what, crash_hint):
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            reply = self._reply(timeout=0.5)
            if reply is not None:
                kind, payload = reply
                if kind == "raised":
                    raise payload
                return payload
            if self._proc.poll() is not None:
                raise self._crashed(what, crash_hint)
        self._proc.kill()
        self._proc.wait()
        self._forget()
        raise ConverterCrash(f"{what} did not finish in {self.timeout_s:.0f}s and was stopped; the other exports "
                             "are unaffected")

    def _reply(self, timeout):
        try:
            return self._replies.recv() if self._replies.poll(timeout) else None
        except (EOFError, OSError):
            return None  # the child closed its end: it is exiting, and its exit status says why

    def _crashed(self, what, crash_hint) -> ConverterCrash:
        code = self._proc.wait()
        self._forget()
        if code < 0:
            name = signal.Signals(-code).name
            cause = f"crashed the converter process ({name}: {signal.strsignal(-code) or name}"
            cause += ", which is what the kernel's out-of-memory killer sends)" if name == "SIGKILL" else ")"
        else:
            name, cause = None, f"ended its converter process unexpectedly (exit status {code})"
        return ConverterCrash(f"{what} {cause}{'. ' + crash_hint if crash_hint else ''}. The other exports are "
                              "unaffected: native converters run in a process of their own, restarted after a crash",
                              name)

    def _forget(self):
        for conn in (self._jobs, self._replies):
            if conn is not None:
                conn.close()
        self._proc = self._jobs = self._replies = None
        self._warming = False


def warm_up():
    """Import what the jobs need, so that the first conversion does not pay for it."""
    import ai_edge_litert.interpreter  # noqa: F401
    import onnxruntime.quantization  # noqa: F401
    import tensorflow  # noqa: F401
    import tf2onnx  # noqa: F401


def _serve(jobs: Connection, replies: Connection):
    while True:
        try:
            message = jobs.recv()
        except EOFError:
            return  # the parent is gone
        if message is None:
            return
        job, args = message
        module, _, function = job.partition(":")
        try:
            result = getattr(importlib.import_module(module), function)(*args)
        except Exception as e:  # sent back to be raised in the parent, with this process's traceback
            replies.send(("raised", _portable(e, traceback.format_exc())))
            continue
        finally:
            release_memory()  # this process lives on between steps: its peak should not
        replies.send(("ok", result))


def _portable(e: Exception, child_traceback: str) -> Exception:
    """`e` if it survives pickling, else a RuntimeError saying what it was; the child's traceback as a note."""
    try:
        e = pickle.loads(pickle.dumps(e))
    except Exception:
        e = RuntimeError(f"{type(e).__name__}: {e}")
    e.add_note(f"in the converter process:\n{child_traceback}")
    return e


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes this process
    _serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False))
