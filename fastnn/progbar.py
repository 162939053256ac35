"""The progress display of fit(): Keras's Progbar, in short.

verbose=1: a bar with ETA and the running loss, redrawn in place on a terminal; when the
output is a file or a pipe only the finished line of each epoch is written.
verbose=2: one line per epoch. verbose=0: nothing.
"""
from __future__ import annotations

import sys
import time


def _fmt_logs(logs: dict) -> str:
    return "".join(f" - {k}: {v:.4f}" for k, v in logs.items())


def _fmt_time(seconds: float) -> str:
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"


class Progbar:
    """One epoch's progress over `steps` batches."""

    def __init__(self, steps: int, verbose: int = 1, stream=None, width: int = 30, interval: float = 0.1):
        self.steps, self.verbose, self.width, self.interval = steps, verbose, width, interval
        self.stream = stream if stream is not None else sys.stdout
        isatty = getattr(self.stream, "isatty", None)
        self.dynamic = bool(isatty and isatty())
        self.start = time.perf_counter()
        self._last_draw = 0.0

    def _bar(self, step: int) -> str:
        n = len(str(self.steps))
        done = int(self.width * step / self.steps) if self.steps else self.width
        arrow = ">" if step < self.steps else "="
        body = "=" * max(done - 1, 0) + (arrow if done else "") + "." * (self.width - done)
        return f"{step:>{n}}/{self.steps} [{body}]"

    def update(self, step: int, logs: dict) -> None:
        if self.verbose != 1 or not self.dynamic:
            return
        now = time.perf_counter()
        if now - self._last_draw < self.interval and step < self.steps:
            return
        self._last_draw = now
        elapsed = now - self.start
        eta = elapsed / step * (self.steps - step) if step else 0.0
        self.stream.write(f"\r{self._bar(step)} - ETA: {_fmt_time(eta)}{_fmt_logs(logs)}\033[K")
        self.stream.flush()

    def finish(self, logs: dict, prefix: str = "") -> None:
        if self.verbose == 0:
            return
        elapsed = time.perf_counter() - self.start
        per_step = elapsed / max(self.steps, 1)
        step_time = f"{per_step * 1e3:.0f}ms" if per_step >= 1e-3 else f"{per_step * 1e6:.0f}us"
        timing = f"{_fmt_time(elapsed)} {step_time}/step"
        if self.verbose == 1:
            line = f"{self._bar(self.steps)} - {timing}{_fmt_logs(logs)}"
            self.stream.write(("\r" + line + "\033[K\n") if self.dynamic else line + "\n")
        else:
            self.stream.write(f"{prefix} - {timing}{_fmt_logs(logs)}\n")
        self.stream.flush()
