"""Progress of long steps, for people watching a terminal or reading a cluster job's log.

On an interactive terminal a tqdm bar; otherwise plain lines through the `transmod` logger (a job's
log file, or the CLI's stderr), at most one every `every` seconds plus a closing line with the total
and the throughput. Libraries that import transmod see nothing unless they configure logging.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("transmod")


def interactive() -> bool:
    return sys.stderr.isatty()


class Progress:
    """Counts units of work (tokens, layer pairs, steps) done on one long step."""

    def __init__(self, what: str, unit: str, total: int | None = None, every: float = 30.0) -> None:
        self.what, self.unit, self.total, self.every = what, unit, total, every
        self.done = 0
        self.started = self._last = time.perf_counter()
        self._bar = None
        if interactive():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=what, unit=f" {unit}", unit_scale=True, leave=False, file=sys.stderr)

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.perf_counter()
        if now - self._last >= self.every:
            self._last = now
            of = f"/{self.total:,}" if self.total else ""
            log.info("%s: %s%s %s, %s", self.what, f"{self.done:,}", of, self.unit, self._rate(now))

    def _rate(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        return f"{self.done / elapsed:,.0f} {self.unit}/s, {elapsed:.1f} s"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        log.info("%s: done, %s %s, %s", self.what, f"{self.done:,}", self.unit, self._rate(time.perf_counter()))

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            self.close()
        elif self._bar is not None:
            self._bar.close()


def log_lines(stream, level: int = logging.INFO, fmt: str = "%(asctime)s %(message)s") -> None:
    """Send transmod's progress lines to `stream`; other libraries keep only their warnings."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(fmt, "%Y-%m-%d %H:%M:%S"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
