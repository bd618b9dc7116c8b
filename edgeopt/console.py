"""What reaches the user's console: edgeopt's own messages, not TensorFlow's.

TensorFlow and its tools write to file descriptors 1 and 2 from C++ (the oneDNN banner, CUDA probes
on machines without a GPU, `fully_quantize: 0, ...` from the MLIR quantizer, LiteRT's INFO lines),
and absl and Python warnings write to sys.stderr. Setting TF_CPP_MIN_LOG_LEVEL leaves most of them,
and Python-level redirection (contextlib.redirect_stderr) cannot reach a C++ write, so the file
descriptors themselves are pointed at a log file for the duration of the work; child processes
inherit that. edgeopt's own output goes to duplicates of the original descriptors: `print` (sys.stdout
is swapped for the duplicate) and `user_stderr()` (progress, notes).

Example:
    >>> with native_output_captured("out/edgeopt.log"):  # doctest: +SKIP
    ...     edgeopt.convert("model.h5", out="out")
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

LOG_NAME = "edgeopt.log"

_user_stderr = None  # the user's stderr while native output is captured


def user_stderr():
    """The stream for edgeopt's own progress and notes: the user's stderr, even while capturing."""
    return _user_stderr or sys.stderr


@contextlib.contextmanager
def native_output_captured(log_path, verbose=False):
    """Send everything written to fd 1 and fd 2 during the block to `log_path` (appended); `verbose`: also
    show it live on the user's stderr. edgeopt's own prints and progress still reach the user.

    Gotchas: a Python library that prints to sys.stdout (rather than stderr or a logger) still reaches
    the user; descriptors are process-wide, so the block must not overlap another thread's console work.
    """
    global _user_stderr
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    log = open(log_path, "ab", buffering=0)
    tee = _Tee(log, saved[2]) if verbose else None
    target = tee.write_fd if tee else log.fileno()
    user_out = _text_stream(saved[1], sys.stdout)
    user_err = _text_stream(saved[2], sys.stderr)
    previous_stdout, previous_user = sys.stdout, _user_stderr
    try:
        for fd in (1, 2):
            os.dup2(target, fd)
        sys.stdout, _user_stderr = user_out, user_err
        yield log_path
    finally:
        for stream in (user_out, user_err, sys.stderr, previous_stdout):
            with contextlib.suppress(Exception):
                stream.flush()
        for fd in (1, 2):
            os.dup2(saved[fd], fd)
        if tee:
            tee.finish()  # before the user's stderr descriptor it copies to is closed
        for fd in (1, 2):
            os.close(saved[fd])
        sys.stdout, _user_stderr = previous_stdout, previous_user
        for f in (user_out, user_err, log):
            f.close()


def _text_stream(fd, like):
    return open(os.dup(fd), "w", buffering=1, encoding=getattr(like, "encoding", None) or "utf-8", errors="replace")


class _Tee:
    """A pipe whose reader copies every byte to the log file and to the user's stderr (--verbose)."""

    def __init__(self, log, user_fd):
        self.read_fd, self.write_fd = os.pipe()
        self.log, self.user_fd = log, user_fd
        self.thread = threading.Thread(target=self._copy, name="edgeopt-log-tee", daemon=True)
        self.thread.start()

    def _copy(self):
        while chunk := os.read(self.read_fd, 65536):
            self.log.write(chunk)
            os.write(self.user_fd, chunk)

    def finish(self):
        os.close(self.write_fd)  # fds 1 and 2 are restored already: the reader now sees the end
        self.thread.join(timeout=10)
        os.close(self.read_fd)
