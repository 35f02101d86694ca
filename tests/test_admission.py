"""Admission of cycles: slots, priority order, arrival order and cancelled waiters."""

from __future__ import annotations

import asyncio

import pytest

from server.admission import Admission


async def _run_in_order(admission: Admission, priorities: list[int]) -> list[int]:
    """Queue one holder of every slot, then waiters with `priorities`; return start order."""
    started: list[int] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with admission.slot():
            await release.wait()

    async def waiter(index: int, priority: int) -> None:
        async with admission.slot(priority):
            started.append(index)

    holders = [asyncio.create_task(holder()) for _ in range(admission.slots)]
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(waiter(i, p)) for i, p in enumerate(priorities)]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*holders, *waiters)
    return started


def test_priority_higher_first_then_arrival():
    admission = Admission(1, "priority")
    order = asyncio.run(_run_in_order(admission, [0, 2, 1, 2]))
    assert order == [1, 3, 2, 0]


def test_fifo_ignores_priority():
    admission = Admission(1, "fifo")
    order = asyncio.run(_run_in_order(admission, [0, 2, 1, 2]))
    assert order == [0, 1, 2, 3]


def test_never_more_than_slots_running():
    async def scenario() -> int:
        admission = Admission(2, "priority")
        max_running = 0

        async def cycle() -> None:
            nonlocal max_running
            async with admission.slot():
                max_running = max(max_running, admission.running)
                await asyncio.sleep(0.001)

        await asyncio.gather(*(cycle() for _ in range(50)))
        return max_running

    assert asyncio.run(scenario()) == 2


async def _hold(admission: Admission, release: asyncio.Event) -> None:
    async with admission.slot():
        await release.wait()


async def _pass_through(admission: Admission) -> None:
    async with admission.slot():
        pass


def test_cancelled_waiter_takes_no_slot():
    async def scenario() -> tuple[int, int]:
        admission = Admission(1, "priority")
        release = asyncio.Event()
        holder = asyncio.create_task(_hold(admission, release))
        await asyncio.sleep(0)
        cancelled = asyncio.create_task(_pass_through(admission))
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        waiting = admission.waiting
        release.set()
        await holder
        return waiting, admission.running

    assert asyncio.run(scenario()) == (0, 0)


@pytest.mark.parametrize(
    ("slots", "strategy", "message"),
    [(0, "priority", "slots must be at least 1, got 0"), (1, "lifo", "'lifo'")],
)
def test_bad_settings_rejected(slots, strategy, message):
    with pytest.raises(ValueError, match=message):
        Admission(slots, strategy)


def test_waiting_count_reported_on_change():
    async def scenario() -> list[int]:
        reports: list[int] = []
        admission = Admission(1, "priority", reports.append)
        release = asyncio.Event()
        holder = asyncio.create_task(_hold(admission, release))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(_pass_through(admission))
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(holder, waiter)
        return reports

    assert asyncio.run(scenario()) == [1, 0]
