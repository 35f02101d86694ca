"""A local mesh: every configured worker and the coordinator as processes on loopback.

Each process binds port 0 and writes the port it got to a file. The mesh waits for that file,
then for `grpc.health.v1` to report SERVING, before it starts the next process.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.config import Config
from server.parent_watch import PARENT_PID_ENV
from server.security import worker_channel_security

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
# Added to the servers' own drain (shutdown_grace_seconds), so a server is killed only when
# draining hangs.
STOP_MARGIN_S = 10.0


class MeshError(RuntimeError):
    """A process of the local mesh failed to start or to become healthy."""


@dataclass
class MeshProcess:
    name: str
    process: subprocess.Popen[bytes]
    port_file: Path
    log_file: Path
    port: int = 0
    metrics_port_file: Path | None = None
    metrics_port: int = 0

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.metrics_port}/metrics"


@dataclass
class LocalMesh:
    config: Config
    config_path: Path
    start_timeout_s: float = 300.0
    log_level: str = "INFO"
    # Models served by workers started elsewhere: name -> host:port addresses (a model's
    # replicas). No worker is spawned for them; the coordinator is given these addresses.
    external_workers: dict[str, list[str]] = field(default_factory=dict)
    log_format: str = "text"
    # The coordinator serves /metrics on this port and worker i on metrics_port + 1 + i;
    # 0 gives every process a free port; None serves no /metrics.
    metrics_port: int | None = None
    otlp_endpoint: str | None = None
    processes: list[MeshProcess] = field(default_factory=list)
    coordinator: MeshProcess | None = None
    _workdir: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> str:
        """Start the workers, then the coordinator; return the coordinator's address."""
        try:
            workers = self.start_workers()
            overrides = [f"{w.name}={w.address}" for w in workers]
            overrides += [
                f"{name}={address}"
                for name, addresses in self.external_workers.items()
                for address in addresses
            ]
            self.coordinator = self._spawn(
                "coordinator",
                ["serve", "--listen", f"{LOOPBACK}:0"]
                + [arg for pair in overrides for arg in ("--worker", pair)],
                self._metrics_port_of(0),
            )
            self._wait_ready(self.coordinator, "quorum.v1.Ensemble")
        except BaseException:
            self.stop()
            raise
        return self.coordinator.address

    def start_workers(self) -> list[MeshProcess]:
        """Start a worker for every model not served elsewhere; wait until each serves.

        A caller that runs cycles in its own process (a backtest) needs no coordinator.
        """
        self._workdir = tempfile.TemporaryDirectory(prefix="quorum-mesh-")
        try:
            workers = [
                self._spawn_worker(model.name, index)
                for index, model in enumerate(self.config.models)
                if model.name not in self.external_workers
            ]
            for worker in workers:
                self._wait_ready(worker, "quorum.v1.Inference")
        except BaseException:
            self.stop()
            raise
        return workers

    def worker_addresses(self) -> dict[str, str]:
        return {p.name: p.address for p in self.processes if p is not self.coordinator}

    def metrics_urls(self) -> dict[str, str]:
        """Return each process's /metrics URL, the coordinator first; empty when off."""
        ordered = sorted(self.processes, key=lambda p: p is not self.coordinator)
        return {p.name: p.metrics_url for p in ordered if p.metrics_port_file is not None}

    def _metrics_port_of(self, position: int) -> int | None:
        if self.metrics_port is None or self.metrics_port == 0:
            return self.metrics_port
        return self.metrics_port + position

    def _spawn_worker(self, model_name: str, index: int) -> MeshProcess:
        return self._spawn(
            model_name,
            ["worker", "--model", model_name, "--listen", f"{LOOPBACK}:0"],
            self._metrics_port_of(1 + index),
        )

    def _observability_arguments(
        self, metrics_port: int | None, metrics_port_file: Path
    ) -> list[str]:
        arguments = ["--log-format", self.log_format]
        if metrics_port is not None:
            arguments += [
                "--metrics-port",
                str(metrics_port),
                "--metrics-port-file",
                str(metrics_port_file),
            ]
        if self.otlp_endpoint:
            arguments += ["--otlp-endpoint", self.otlp_endpoint]
        return arguments

    def _spawn(self, name: str, arguments: list[str], metrics_port: int | None) -> MeshProcess:
        if self._workdir is None:
            raise MeshError("the mesh is not started")
        workdir = Path(self._workdir.name)
        port_file = workdir / f"{name}.port"
        metrics_port_file = workdir / f"{name}.metrics-port"
        log_file = workdir / f"{name}.log"
        command = [
            sys.executable,
            "-m",
            "server.cli",
            "--config",
            str(self.config_path),
            "--log-level",
            self.log_level,
            *arguments,
            *self._observability_arguments(metrics_port, metrics_port_file),
            "--port-file",
            str(port_file),
        ]
        log.info("Starting %s: %s", name, " ".join(command))
        with open(log_file, "wb") as output:
            process = subprocess.Popen(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # The child requests SIGTERM on this process's death itself (see
                # server.parent_watch): no preexec_fn, so no Python code runs between fork
                # and exec, which gRPC's threads in this process would make unsafe.
                env={**os.environ, PARENT_PID_ENV: str(os.getpid())},
            )
        entry = MeshProcess(
            name,
            process,
            port_file,
            log_file,
            metrics_port_file=metrics_port_file if metrics_port is not None else None,
        )
        self.processes.append(entry)
        return entry

    def _wait_ready(self, entry: MeshProcess, service: str) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while not entry.port_file.exists():
            self._check_alive(entry)
            if time.monotonic() > deadline:
                raise MeshError(f"{entry.name} did not start within {self.start_timeout_s:.0f} s")
            time.sleep(0.05)
        entry.port = int(entry.port_file.read_text().strip())
        if entry.metrics_port_file is not None:
            # Written before the gRPC port file, so it is there by now.
            entry.metrics_port = int(entry.metrics_port_file.read_text().strip())
        # The coordinator's worker credentials also pass the coordinator's TLS, and health
        # checks need no bearer token.
        security = worker_channel_security(self.config.security)
        with security.open(entry.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                self._check_alive(entry)
                try:
                    response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                    if response.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise MeshError(
                        f"{entry.name} is not SERVING after {self.start_timeout_s:.0f} s"
                    )
                time.sleep(0.1)
        log.info("%s is serving on %s", entry.name, entry.address)

    def exited(self) -> str | None:
        """Describe the first process of the mesh that has exited, or return None."""
        for entry in self.processes:
            code = entry.process.poll()
            if code is not None:
                return f"{entry.name} exited with status {code} (log: {entry.log_file})"
        return None

    def _check_alive(self, entry: MeshProcess) -> None:
        code = entry.process.poll()
        if code is not None:
            output = entry.log_file.read_text(errors="replace")[-4000:]
            raise MeshError(f"{entry.name} exited with status {code}:\n{output}")

    def stop(self) -> None:
        """Stop the coordinator first, so its cycles drain while the workers still serve,
        then the workers. Each gets SIGTERM and, when it has not exited after
        shutdown_grace_seconds + STOP_MARGIN_S, SIGKILL."""
        coordinators = [p for p in self.processes if p is self.coordinator]
        workers = [p for p in self.processes if p is not self.coordinator]
        for group in (coordinators, workers):
            self._terminate(group)
        self.processes.clear()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def _terminate(self, group: list[MeshProcess]) -> None:
        for entry in group:
            if entry.process.poll() is None:
                entry.process.send_signal(signal.SIGTERM)
        grace_s = self.config.shutdown_grace_seconds + STOP_MARGIN_S
        deadline = time.monotonic() + grace_s
        for entry in group:
            remaining = max(deadline - time.monotonic(), 0.1)
            try:
                entry.process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", entry.name, grace_s)
                os.killpg(entry.process.pid, signal.SIGKILL)
                entry.process.wait()

    def __enter__(self) -> LocalMesh:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
