"""Non-normative: the progress of one long decode on a terminal (refdec decode, refdec check)."""

from __future__ import annotations

import time

UNITS = {"latent": "wavefronts", "synthesis": "output rows"}


class TerminalProgress:
    """A Recorder's on_progress callback (refdec.stages): one line on `stream`, redrawn at most five
    times a second (no cost to the decode beyond a clock read per wavefront or band), and cleared
    before anything else is written."""

    def __init__(self, stream, prefix: str = ""):
        self.stream, self.prefix = stream, prefix
        self.last = 0.0
        self.shown = False

    def __call__(self, step: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.2 and done < total:
            return
        self.last = now
        self.stream.write(f"\r{self.prefix}{step} {done}/{total} {UNITS.get(step, '')}\033[K")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False
