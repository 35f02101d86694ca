"""A progress line for long runs: windows done, verdicts read or generated, time left.

On a terminal the line is redrawn in place. Elsewhere (a log file, CI) a line is written at
most every LOG_EVERY_S seconds, and once at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 24
LOG_EVERY_S = 30.0


class Progress:
    def __init__(
        self,
        total: int,
        stream: TextIO,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.done = 0
        self.skipped = 0
        self.cached = 0
        self.generated = 0
        self._stream = stream
        self._clock = clock
        self._started = clock()
        self._last_time = float("-inf")
        self._last_text = ""
        self._live = stream.isatty()

    def advance(self, cached: int = 0, generated: int = 0, skipped: bool = False) -> None:
        """Count one window done (or skipped) and the verdicts it read and generated."""
        self.done += 1
        self.skipped += int(skipped)
        self.cached += cached
        self.generated += generated
        self._draw(final=False)

    def finish(self) -> None:
        self._draw(final=True)
        if self._live:
            self._stream.write("\n")
            self._stream.flush()

    def line(self) -> str:
        elapsed = self._clock() - self._started
        filled = BAR_WIDTH * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        text = (
            f"[{bar}] {self.done}/{self.total} windows"
            f" | verdicts {self.cached} cached, {self.generated} generated"
            f" | {_clock_text(elapsed)} elapsed"
        )
        if 0 < self.done < self.total:
            left = elapsed / self.done * (self.total - self.done)
            text += f", about {_clock_text(left)} left"
        if self.skipped:
            text += f" | {self.skipped} skipped"
        return text

    def _draw(self, final: bool) -> None:
        now = self._clock()
        if self._live:
            self._stream.write("\r" + self.line() + "\033[K")
        elif final or now - self._last_time >= LOG_EVERY_S:
            text = self.line()
            # The last window's line and the final one are often the same.
            if text != self._last_text:
                self._stream.write(text + "\n")
            self._last_time, self._last_text = now, text
        self._stream.flush()


def _clock_text(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"
