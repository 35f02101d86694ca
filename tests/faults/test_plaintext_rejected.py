"""Plaintext gRPC is rejected off loopback, and TLS settings are checked before anything binds.

Start-up rejections run the real `quorum` processes. A rejected address is never bound or
dialled: the check runs before the server binds and before any channel opens.
"""

from __future__ import annotations

import pytest

from server.config import SecuritySettings
from server.fanout import WorkerClients
from server.security import (
    ChannelSecurity,
    SecurityError,
    client_channel_security,
    coordinator_interceptors,
    is_loopback,
)
from tests.conftest import smollm2_entry, write_config
from tests.quorum_process import run_quorum

# A documentation address (RFC 5737): never dialled, because the check comes first.
REMOTE_WORKER = "192.0.2.10:50061"
# A closed loopback port: the coordinator is rejected before it would call its worker.
LOCAL_WORKER = "smollm2-135m=127.0.0.1:1"


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.8.9.10:1", True),
        ("[::1]:50051", True),
        ("localhost:50051", True),
        ("dns:///localhost:50051", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        (":50051", False),
        ("10.0.0.5:50051", False),
        ("worker-host:50061", False),
        ("localhost.example.com:1", False),
    ],
)
def test_is_loopback(address, loopback):
    assert is_loopback(address) is loopback


def test_serve_plaintext_on_all_interfaces_rejected(tmp_path, smollm2_path):
    config = write_config(tmp_path, tmp_path / "lake", [smollm2_entry(smollm2_path)])
    completed = run_quorum(
        "--config", str(config), "serve", "--listen", "0.0.0.0:0", "--worker", LOCAL_WORKER
    )
    assert completed.returncode == 2
    assert "listen address 0.0.0.0:0 is not a loopback address" in completed.stderr
    assert "set tls_cert_file, tls_key_file and tls_ca_file" in completed.stderr


def test_worker_plaintext_on_all_interfaces_rejected(tmp_path, smollm2_path):
    config = write_config(tmp_path, tmp_path / "lake", [smollm2_entry(smollm2_path)])
    completed = run_quorum(
        "--config", str(config), "worker", "--model", "smollm2-135m", "--listen", "0.0.0.0:0"
    )
    assert completed.returncode == 2
    assert "listen address 0.0.0.0:0 is not a loopback address" in completed.stderr


def test_serve_without_tls_settings_rejected(tmp_path, smollm2_path):
    config = write_config(
        tmp_path, tmp_path / "lake", [smollm2_entry(smollm2_path)], insecure=False
    )
    completed = run_quorum(
        "--config", str(config), "serve", "--listen", "127.0.0.1:0", "--worker", LOCAL_WORKER
    )
    assert completed.returncode == 2
    assert "tls_cert_file and tls_key_file not set" in completed.stderr


def test_serve_remote_plaintext_worker_rejected(tmp_path, smollm2_path):
    config = write_config(tmp_path, tmp_path / "lake", [smollm2_entry(smollm2_path)])
    completed = run_quorum(
        "--config",
        str(config),
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--worker",
        f"smollm2-135m={REMOTE_WORKER}",
    )
    assert completed.returncode == 2
    assert f"address {REMOTE_WORKER} is not a loopback address" in completed.stderr


def test_worker_clients_reject_remote_plaintext():
    with pytest.raises(SecurityError) as raised:
        WorkerClients({"smollm2-135m": REMOTE_WORKER}, ChannelSecurity.loopback_plaintext())
    assert REMOTE_WORKER in str(raised.value)


def test_client_rejects_remote_plaintext():
    security = client_channel_security(SecuritySettings(insecure=True))
    with pytest.raises(SecurityError) as raised:
        security.open(REMOTE_WORKER)
    assert "insecure: true allows plaintext gRPC on loopback only" in str(raised.value)


def test_tls_coordinator_needs_token_file():
    with pytest.raises(SecurityError) as raised:
        coordinator_interceptors(SecuritySettings(tls_cert_file="c.pem", tls_key_file="k.pem"))
    assert "auth_token_file not set" in str(raised.value)


def test_plaintext_coordinator_token_optional():
    assert coordinator_interceptors(SecuritySettings(insecure=True)) == []
