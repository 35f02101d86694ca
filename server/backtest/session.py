"""The backtest session: the coordinator's cycle in this process, workers started on need."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from server.config import Config, check_model_files
from server.cycle import Cycle, CycleDependencies, WorkerStarter
from server.fanout import WorkerClients
from server.market_store import MarketStore
from server.mesh import LocalMesh
from server.security import worker_channel_security
from server.tokenizer import ReferenceTokenizer
from server.verdict_cache import VerdictCache

log = logging.getLogger(__name__)


class LocalWorkers:
    """Starts a worker process per model on loopback when the first model must generate.

    Models in `external` are served by running workers at those addresses. A backtest whose
    verdicts are all cached starts nothing.
    """

    def __init__(self, config: Config, external: Mapping[str, Sequence[str]] | None = None) -> None:
        self.config = config
        self.external = {name: list(addresses) for name, addresses in (external or {}).items()}
        self.mesh = LocalMesh(
            config, Path(config.source_path), external_workers=self.external, log_level="WARNING"
        )
        self._clients: WorkerClients | None = None
        self._lock: asyncio.Lock | None = None

    async def __call__(self) -> WorkerClients:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._clients is None:
                self._clients = await self._start()
            return self._clients

    async def _start(self) -> WorkerClients:
        spawned = [m.name for m in self.config.models if m.name not in self.external]
        if spawned:
            # Told on stderr: loading the models takes seconds to minutes before any progress.
            print(f"Starting workers for {', '.join(spawned)}...", file=sys.stderr, flush=True)
        workers = await asyncio.to_thread(self.mesh.start_workers)
        addresses: dict[str, Sequence[str]] = {w.name: (w.address,) for w in workers}
        addresses.update(self.external)
        return WorkerClients(
            addresses, worker_channel_security(self.config.security), self.config.max_message_bytes
        )

    @property
    def started(self) -> bool:
        return self._clients is not None

    async def close(self) -> None:
        if self._clients is not None:
            await self._clients.close()
        await asyncio.to_thread(self.mesh.stop)


def build_cycle(
    config: Config, workers: WorkerClients | WorkerStarter
) -> tuple[Cycle, MarketStore]:
    """Build the cycle a backtest runs: verdict cache on, no result store."""
    files = check_model_files(config)
    tokenizer_name = config.context_tokenizer_model or config.models[0].name
    tokenizer = ReferenceTokenizer(tokenizer_name, files[tokenizer_name])
    lake = Path(config.data_lake)
    market = MarketStore(lake)
    deps = CycleDependencies(
        config=config,
        market=market,
        results=None,
        workers=workers,
        tokenizer=tokenizer,
        verdict_cache=VerdictCache(lake, files, config.max_context_size),
    )
    return Cycle(deps), market
