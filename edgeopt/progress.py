"""Progress for long work: a tqdm bar on a terminal, plain lines anywhere else (a file, a pipe, a CI log).

A bar redrawn with carriage returns turns into one endless line, cut mid-word, once stderr is not a
terminal; there the same progress is printed as a whole line every few seconds, and once at the end.
Everything goes to `console.user_stderr()`, which stays the user's stderr while TensorFlow's own
output is captured into a log file.

Example:
    >>> bar = Progress(48, "benchmark on local", unit="run")  # doctest: +SKIP
    >>> bar.update(1, "fp32.tflite threads=1 round 1: p50 0.014 ms")  # doctest: +SKIP
    >>> bar.close()  # doctest: +SKIP
"""

from __future__ import annotations

import time

from .console import user_stderr

PLAIN_INTERVAL_S = 5.0  # a line at most this often when stderr is a file or a pipe


class Progress:
    """`update(done, text)` sets the count (or adds one when `done` is None); `close()` ends the display."""

    def __init__(self, total, description, unit="step", enabled=True, stream=None, interval=PLAIN_INTERVAL_S):
        self.total, self.description, self.unit = total, description, unit
        self.stream = stream or user_stderr()
        self.enabled, self.interval = enabled, interval
        self.done, self.text = 0, ""
        self.started = self.last_line = time.monotonic()
        self.bar = None
        if enabled and _is_terminal(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=description, unit=unit, file=self.stream, leave=False,
                            dynamic_ncols=True)

    def update(self, done=None, text=None):
        self.done = self.done + 1 if done is None else done
        self.text = text if text is not None else self.text
        if self.bar is not None:
            if text is not None:
                self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(self.done - self.bar.n)  # redraws at most every 0.1 s
        elif self.enabled and self.done < self.total and time.monotonic() - self.last_line >= self.interval:
            self._line(f"{self.done}/{self.total} {self.unit}s ({self._percent()})" + (f": {self.text}" if self.text else ""))

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.done:
            self._line(f"{self.done}/{self.total} {self.unit}s in {time.monotonic() - self.started:.0f}s"
                       + (f": {self.text}" if self.text else ""))
        self.enabled = False  # closing twice prints nothing more

    def _percent(self):
        return f"{100 * self.done / self.total:.0f}%" if self.total else "?"

    def _line(self, what):
        print(f"{self.description}: {what}", file=self.stream, flush=True)
        self.last_line = time.monotonic()


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream: plain lines are always safe
        return False
