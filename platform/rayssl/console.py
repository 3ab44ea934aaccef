"""What a person sees on the console: RaySSL's own lines and one live progress display per job.

Quiet by default: Ray's machinery (worker and actor output forwarded to the driver, Tune's status
tables, Ray Train's per-report lines, deprecation warnings raised inside Ray) stays in Ray's log
files, through Ray's own switches (`log_to_driver`, Tune `verbose`, `ray.train.LoggingConfig`,
the `ray` logger's level), not by filtering text. `rayssl --verbose` turns all of it back on.
Errors are never hidden: a failed run raises on the driver with its cause.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from typing import Any, TextIO

from tqdm import tqdm

_verbose = False
_progress_every_s = 60.0


def set_verbose(on: bool) -> None:
    """`--verbose`: Ray's own output back on the console (read by rayssl.train.launch and rayssl.tune.sweep)."""
    global _verbose
    _verbose = on
    if not on:
        # Deprecation notices Ray raises about its own internals are not the user's to act on.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\.|$)")
        # Tune's new output engine prints its experiment header whatever `verbose` says; its
        # documented switch back to the classic engine makes Tune's verbose=0 silent.
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"


def set_progress_every(seconds: float) -> None:
    """`--progress-every`: seconds between two plain progress lines where there is no terminal."""
    global _progress_every_s
    if seconds <= 0:
        raise ValueError(f"--progress-every must be > 0 seconds, got {seconds}")
    _progress_every_s = seconds


def verbose() -> bool:
    return _verbose


def quiet_console_handlers(logger_name: str) -> None:
    """Unless --verbose: a library logger's console handlers say only warnings and errors; its
    file handlers (Ray Data's ray-data.log in the session logs) keep everything."""
    if _verbose:
        return
    for handler in logging.getLogger(logger_name).handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class ProgressDisplay:
    """A live progress display: a tqdm bar on an interactive terminal; elsewhere (CI, files,
    `ray job logs`) one plain line every `every_s` seconds (default: --progress-every) and one when it closes.

    update(done, **fields): `done` units of `total` finished; fields (loss, epoch, ...) are shown beside it.
    """

    def __init__(self, desc: str, total: int, unit: str, every_s: float | None = None, stream: TextIO | None = None) -> None:
        self.desc, self.total, self.unit = desc, max(total, 1), unit
        self.every_s = _progress_every_s if every_s is None else every_s
        self.stream = stream or sys.stderr
        self.bar = tqdm(total=self.total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True) if self.stream.isatty() else None
        self.started = self.last_line = time.monotonic()
        self.done = 0
        self.fields: dict[str, Any] = {}
        self.printed: tuple | None = None  # (done, fields) of the last plain line

    def update(self, done: int, **fields: Any) -> None:
        self.done, self.fields = min(done, self.total), {**self.fields, **fields}
        if self.bar is not None:
            self.bar.update(self.done - self.bar.n)
            self.bar.set_postfix({k: _format(v) for k, v in self.fields.items()}, refresh=True)
        elif time.monotonic() - self.last_line >= self.every_s:
            self._line()

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        eta = f", ETA {_duration(elapsed * (self.total - self.done) / self.done)}" if 0 < self.done < self.total else ""
        fields = "".join(f", {k} {_format(v)}" for k, v in self.fields.items())
        return f"{self.desc}: {self.done}/{self.total} {self.unit}s ({100 * self.done / self.total:.0f}%){fields}, {_duration(elapsed)} elapsed{eta}"

    def _line(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self.last_line = time.monotonic()
        self.printed = (self.done, dict(self.fields))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.printed != (self.done, self.fields):  # the last line already said it all
            self._line()


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
