"""Wait for a server's stop request: an event set in-process, SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal


async def wait_for_stop(stop: asyncio.Event) -> None:
    """Wait until `stop` is set, or until SIGTERM or SIGINT arrives (which sets it).

    The signal handlers exist only while this waits, and only in the main thread, because
    loop.add_signal_handler raises elsewhere (tests run servers in other threads).
    """
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
        except (RuntimeError, ValueError):
            break
    try:
        await stop.wait()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
