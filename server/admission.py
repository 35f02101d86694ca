"""Admission of cycles: at most max_concurrent_symbols run at once, the others wait in order.

With queue_strategy "priority" the waiting cycle with the highest AnalyzeRequest.priority
goes next, equal priorities in arrival order; with "fifo" arrival order alone counts. A
waiting client that cancels leaves the queue at once and takes no slot.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager


class Admission:
    """`on_waiting` receives the number of waiting cycles whenever it changes."""

    def __init__(
        self, slots: int, strategy: str, on_waiting: Callable[[int], None] | None = None
    ) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        if strategy not in ("priority", "fifo"):
            raise ValueError(f"strategy must be priority or fifo, got {strategy!r}")
        self.slots = slots
        self.strategy = strategy
        self.running = 0
        self._arrivals = itertools.count()
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._on_waiting = on_waiting

    @property
    def waiting(self) -> int:
        """Cycles queued for a slot (cancelled ones excluded)."""
        return sum(1 for _, _, future in self._waiting if not future.done())

    @asynccontextmanager
    async def slot(self, priority: int = 0) -> AsyncIterator[None]:
        """Hold one of the slots for the body of the `async with`."""
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: int) -> None:
        if self.running < self.slots and not self.waiting:
            self.running += 1
            return
        rank = -priority if self.strategy == "priority" else 0
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (rank, next(self._arrivals), future))
        self._report()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # The slot was handed over just as the client went away: pass it on.
                self._release()
            raise
        finally:
            self._report()

    def _report(self) -> None:
        if self._on_waiting is not None:
            self._on_waiting(self.waiting)

    def _release(self) -> None:
        self.running -= 1
        while self._waiting:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():
                self.running += 1
                future.set_result(None)
                return
