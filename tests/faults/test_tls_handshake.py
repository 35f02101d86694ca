"""TLS handshake faults against a real gRPC server on 127.0.0.1 (health service only).

Each case uses the credentials that server.security builds from a configuration, so these
are the handshakes the coordinator and the workers make.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from server.config import SecuritySettings
from server.security import (
    ChannelSecurity,
    SecurityError,
    server_security,
    worker_channel_security,
    worker_server_security,
)
from tests.faults.pki import CertificateAuthority, Issued

TIMEOUT_S = 5.0


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("pki"), "quorum-test")


@pytest.fixture(scope="module")
def rogue(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("rogue"), "rogue")


@pytest.fixture(scope="module")
def node(authority: CertificateAuthority) -> Issued:
    return authority.issue("node")


def _settings(authority: CertificateAuthority, issued: Issued, **extra: object) -> SecuritySettings:
    values: dict = {
        "tls_cert_file": str(issued.cert_file),
        "tls_key_file": str(issued.key_file),
        "tls_ca_file": str(authority.ca_file),
    }
    values.update(extra)
    return SecuritySettings(**values)


@contextmanager
def _health_server(security) -> Iterator[str]:
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = security.bind(server, "127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0)


def _check(security: ChannelSecurity, address: str) -> int:
    with security.open(address) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S
        )
    return response.status


def _check_code(security: ChannelSecurity, address: str) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        _check(security, address)
    return raised.value.code()


def test_tls_handshake_succeeds(authority, node):
    settings = _settings(authority, node)
    with _health_server(server_security(settings, require_client_auth=False)) as address:
        status = _check(worker_channel_security(settings), address)
    assert status == health_pb2.HealthCheckResponse.SERVING


def test_plaintext_client_rejected_by_tls_server(authority, node):
    settings = _settings(authority, node)
    with _health_server(server_security(settings, require_client_auth=False)) as address:
        code = _check_code(ChannelSecurity.loopback_plaintext(), address)
    assert code == grpc.StatusCode.UNAVAILABLE


def test_client_of_other_ca_rejects_server(authority, rogue, node):
    settings = _settings(authority, node)
    other = SecuritySettings(tls_ca_file=str(rogue.ca_file))
    with _health_server(server_security(settings, require_client_auth=False)) as address:
        code = _check_code(worker_channel_security(other), address)
    assert code == grpc.StatusCode.UNAVAILABLE


def test_expired_server_certificate_rejected(authority):
    now = datetime.datetime.now(datetime.UTC)
    expired = authority.issue(
        "expired",
        valid_from=now - datetime.timedelta(days=10),
        valid_until=now - datetime.timedelta(days=1),
    )
    settings = _settings(authority, expired)
    with _health_server(server_security(settings, require_client_auth=False)) as address:
        code = _check_code(worker_channel_security(settings), address)
    assert code == grpc.StatusCode.UNAVAILABLE


def test_certificate_for_other_host_rejected(authority):
    elsewhere = authority.issue("elsewhere", hosts=("worker.example.internal",))
    settings = _settings(authority, elsewhere)
    with _health_server(server_security(settings, require_client_auth=False)) as address:
        code = _check_code(worker_channel_security(settings), address)
    assert code == grpc.StatusCode.UNAVAILABLE


def test_mtls_worker_accepts_coordinator_certificate(authority, node):
    settings = _settings(authority, node, tls_client_auth=True)
    with _health_server(worker_server_security(settings)) as address:
        status = _check(worker_channel_security(settings), address)
    assert status == health_pb2.HealthCheckResponse.SERVING


def test_mtls_worker_rejects_client_without_certificate(authority, node):
    settings = _settings(authority, node, tls_client_auth=True)
    without_certificate = SecuritySettings(tls_ca_file=str(authority.ca_file))
    with _health_server(worker_server_security(settings)) as address:
        code = _check_code(worker_channel_security(without_certificate), address)
    assert code == grpc.StatusCode.UNAVAILABLE


def test_mtls_worker_rejects_certificate_of_other_ca(authority, rogue, node):
    settings = _settings(authority, node, tls_client_auth=True)
    intruder = rogue.issue("intruder")
    # The intruder trusts the real CA, so only its own certificate can fail the handshake.
    intruder_settings = SecuritySettings(
        tls_cert_file=str(intruder.cert_file),
        tls_key_file=str(intruder.key_file),
        tls_ca_file=str(authority.ca_file),
        tls_client_auth=True,
    )
    with _health_server(worker_server_security(settings)) as address:
        code = _check_code(worker_channel_security(intruder_settings), address)
    assert code == grpc.StatusCode.UNAVAILABLE


def test_mismatched_key_rejected_at_start(authority, node):
    other = authority.issue("other")
    settings = SecuritySettings(tls_cert_file=str(node.cert_file), tls_key_file=str(other.key_file))
    with pytest.raises(SecurityError) as raised:
        server_security(settings, require_client_auth=False)
    assert "does not match tls_cert_file" in str(raised.value)


def test_missing_certificate_file_named(tmp_path, node):
    absent = tmp_path / "absent.crt"
    settings = SecuritySettings(tls_cert_file=str(absent), tls_key_file=str(node.key_file))
    with pytest.raises(SecurityError) as raised:
        server_security(settings, require_client_auth=False)
    assert str(raised.value) == f"tls_cert_file {absent} not found"


def test_key_file_content_not_in_error(tmp_path, node):
    not_pem = tmp_path / "key.txt"
    not_pem.write_text("s3cret-key-material-that-must-not-leak")
    settings = SecuritySettings(tls_cert_file=str(node.cert_file), tls_key_file=str(not_pem))
    with pytest.raises(SecurityError) as raised:
        server_security(settings, require_client_auth=False)
    assert "s3cret" not in str(raised.value)
    assert str(not_pem) in str(raised.value)


def test_tls_server_without_files_rejected():
    with pytest.raises(SecurityError) as raised:
        server_security(SecuritySettings(), require_client_auth=False)
    assert "tls_cert_file and tls_key_file not set" in str(raised.value)


def test_plaintext_loopback_server_serves():
    plaintext = SecuritySettings(insecure=True)
    with _health_server(server_security(plaintext, require_client_auth=False)) as address:
        status = _check(worker_channel_security(plaintext), address)
    assert status == health_pb2.HealthCheckResponse.SERVING


def test_ca_file_path_is_read(tmp_path: Path, node):
    settings = SecuritySettings(tls_ca_file=str(tmp_path / "none.crt"))
    with pytest.raises(SecurityError) as raised:
        worker_channel_security(settings)
    assert "tls_ca_file" in str(raised.value)
