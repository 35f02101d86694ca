"""Core budgets per host: which models may generate at the same time.

Models that share a machine's cores finish later when run at once than one after another
with all cores each (two cores, 4,000-token prompts: 48.6 s at once against 32.8 s in turn).
So each host has a core budget, and its models queue within it. The smallest model goes first,
so the first verdicts arrive sooner.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from server.config import ModelConfig

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMBT]?)\s*$", re.IGNORECASE)
_SCALE = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


def parameter_count(model: ModelConfig) -> float:
    """Return the model's parameter count from its `parameters` setting ("7.3B", "135M").

    A model without a readable size sorts by weight, after every model with one.
    """
    match = _SIZE.match(model.parameters or "")
    if match is None:
        return 1e15 * model.weight
    return float(match.group(1)) * _SCALE[match.group(2).upper()]


def host_of(address: str) -> str:
    host, _, _ = address.rpartition(":")
    return host.strip("[]")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class CoreBudget:
    """A host's cores, granted to waiters strictly in the order they were queued."""

    def __init__(self, cores: int) -> None:
        self.cores = cores
        self._free = cores
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    async def acquire(self, cores: int) -> None:
        need = min(cores, self.cores)
        if not self._waiters and self._free >= need:
            self._free -= need
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (need, future)
        self._waiters.append(entry)
        try:
            await future
        except asyncio.CancelledError:
            if entry in self._waiters:
                self._waiters.remove(entry)
            elif future.done() and not future.cancelled():
                # Granted and cancelled in the same step: hand the cores back.
                self.release(need)
            raise

    def release(self, cores: int) -> None:
        self._free += min(cores, self.cores)
        while self._waiters and self._waiters[0][0] <= self._free:
            need, future = self._waiters.pop(0)
            if future.cancelled():
                continue
            self._free -= need
            future.set_result(None)


@dataclass(frozen=True)
class Slot:
    """One model's place in the dispatch plan."""

    model: ModelConfig
    host: str
    cores: int
    position: int


class DispatchPlan:
    """Models in dispatch order (smallest first) and one CoreBudget per host."""

    def __init__(
        self,
        models: Sequence[ModelConfig],
        addresses: Mapping[str, str],
        host_core_budget: Mapping[str, int],
        parallel: bool = True,
        budgets: dict[str, CoreBudget] | None = None,
    ) -> None:
        """Order the models; `budgets` shares hosts' core budgets between plans, so that
        concurrent cycles queue on the same cores instead of overloading them."""
        ordered = sorted(models, key=parameter_count)
        self.budgets = budgets if budgets is not None else {}
        self.slots: list[Slot] = []
        for position, model in enumerate(ordered):
            host = host_of(addresses[model.name])
            budget = self._budget_for(host, host_core_budget, parallel, ordered, addresses)
            if not parallel:
                cores = budget.cores
            elif model.threads > 0:
                cores = model.threads
            else:
                cores = budget.cores
            self.slots.append(Slot(model, host, min(cores, budget.cores), position))

    def _budget_for(
        self,
        host: str,
        configured: Mapping[str, int],
        parallel: bool,
        models: Sequence[ModelConfig],
        addresses: Mapping[str, str],
    ) -> CoreBudget:
        if host in self.budgets:
            return self.budgets[host]
        if not parallel:
            cores = 1
        elif host in configured:
            cores = configured[host]
        elif is_loopback(host):
            cores = os.cpu_count() or 1
        else:
            # Each model on this host has cores of its own: room for all at once.
            on_host = [m for m in models if host_of(addresses[m.name]) == host]
            cores = sum(max(m.threads, 1) for m in on_host)
        self.budgets[host] = CoreBudget(cores)
        return self.budgets[host]
