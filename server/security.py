"""gRPC credentials for every listener and channel, built from the configuration's TLS keys.

The rule, checked before anything binds or connects:

- `insecure: false` (the default): TLS everywhere. Servers need `tls_cert_file` and
  `tls_key_file`; channels verify the server against `tls_ca_file` (gRPC's bundled public
  roots when it is unset). The coordinator also needs `auth_token_file`.
- `insecure: true`: plaintext, on loopback addresses only (127.0.0.0/8, ::1, localhost).
  gRPC's local credentials carry it: grpcio documents that they check each connection is
  local (an experimental API in grpcio 1.85), and they allow call credentials, so clients
  can still send a bearer token.
- `tls_client_auth: true`: workers require a client certificate signed by `tls_ca_file`, and
  the coordinator presents `tls_cert_file` as its client certificate. That certificate then
  needs both the serverAuth and clientAuth extended key usages (or no such extension).

Errors name the key and the file path, never a file's content.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from server.auth_interceptor import BearerTokenInterceptor
from server.bearer_token import TokenFileError, TokenVerifier, read_client_token
from server.config import ConfigError, SecuritySettings

ChannelOptions = Sequence[tuple[str, object]]

_LOOPBACK_NAMES = ("localhost",)


class SecurityError(ConfigError):
    """A TLS or token setting is missing or invalid, or an address needs TLS."""


def address_host(address: str) -> str:
    """Return the host part of `host:port`, `[v6]:port` or `dns:///host:port`."""
    target = address.removeprefix("dns:///").removeprefix("ipv4:").removeprefix("ipv6:")
    if target.startswith("["):
        return target[1:].partition("]")[0]
    return target.rpartition(":")[0] if ":" in target else target


def is_loopback(address: str) -> bool:
    """Return whether the address is a loopback address or localhost.

    Any other host name counts as remote, because its DNS answer can change after the check.
    """
    host = address_host(address)
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_loopback(address: str, address_kind: str) -> None:
    """Raise SecurityError unless plaintext to `address` stays on this machine."""
    if not is_loopback(address):
        raise SecurityError(
            f"{address_kind} {address} is not a loopback address, and insecure: true allows"
            " plaintext gRPC on loopback only: remove insecure: true and set tls_cert_file,"
            " tls_key_file and tls_ca_file"
        )


def _read_file(key: str, path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise SecurityError(f"{key} {path} not found") from None
    except OSError as error:
        raise SecurityError(f"{key} {path} cannot be read: {error.strerror}") from None
    if b"-----BEGIN " not in data:
        raise SecurityError(f"{key} {path} is not a PEM file")
    return data


def _check_key_pair(settings: SecuritySettings) -> None:
    """Fail at start-up, not at the first handshake, when the key does not match the cert."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    except ssl.SSLError as error:
        raise SecurityError(
            f"tls_key_file {settings.tls_key_file} does not match tls_cert_file"
            f" {settings.tls_cert_file}, or one is invalid ({error.reason})"
        ) from None


@dataclass(frozen=True)
class ServerSecurity:
    """Server credentials: TLS, or gRPC local credentials for plaintext on loopback."""

    credentials: grpc.ServerCredentials
    plaintext: bool

    @classmethod
    def loopback_plaintext(cls) -> ServerSecurity:
        return cls(grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP), True)

    def check_listen(self, listen: str) -> None:
        if self.plaintext:
            require_loopback(listen, "listen address")

    def bind(self, server: grpc.aio.Server, listen: str) -> int:
        """Add a port to `server`; return the bound port, 0 when binding failed."""
        self.check_listen(listen)
        return server.add_secure_port(listen, self.credentials)


@dataclass(frozen=True)
class ChannelSecurity:
    """Channel credentials: TLS (with an optional client certificate and bearer token), or gRPC
    local credentials for plaintext on loopback."""

    credentials: grpc.ChannelCredentials
    plaintext: bool

    @classmethod
    def loopback_plaintext(cls) -> ChannelSecurity:
        return cls(grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP), True)

    def check_address(self, address: str) -> None:
        if self.plaintext:
            require_loopback(address, "address")

    def open(self, address: str, options: ChannelOptions = ()) -> grpc.Channel:
        self.check_address(address)
        return grpc.secure_channel(address, self.credentials, options=options)

    def open_aio(self, address: str, options: ChannelOptions = ()) -> grpc.aio.Channel:
        self.check_address(address)
        return grpc.aio.secure_channel(address, self.credentials, options=options)


def server_security(settings: SecuritySettings, require_client_auth: bool) -> ServerSecurity:
    """Return the credentials of a server; `require_client_auth` is for workers under mTLS."""
    if settings.insecure:
        return ServerSecurity.loopback_plaintext()
    missing = [key for key in ("tls_cert_file", "tls_key_file") if not getattr(settings, key)]
    if missing:
        raise SecurityError(
            f"{' and '.join(missing)} not set: a server needs a TLS certificate and key"
            " (or insecure: true, for plaintext on loopback only)"
        )
    certificate = _read_file("tls_cert_file", settings.tls_cert_file)
    private_key = _read_file("tls_key_file", settings.tls_key_file)
    _check_key_pair(settings)
    root_certificates = None
    if require_client_auth:
        root_certificates = _read_file("tls_ca_file", settings.tls_ca_file)
    credentials = grpc.ssl_server_credentials(
        [(private_key, certificate)],
        root_certificates=root_certificates,
        require_client_auth=require_client_auth,
    )
    return ServerSecurity(credentials, False)


def worker_server_security(settings: SecuritySettings) -> ServerSecurity:
    return server_security(settings, require_client_auth=settings.tls_client_auth)


def coordinator_server_security(settings: SecuritySettings) -> ServerSecurity:
    return server_security(settings, require_client_auth=False)


def _ssl_channel_credentials(
    settings: SecuritySettings, client_certificate: bool
) -> grpc.ChannelCredentials:
    root_certificates = None
    if settings.tls_ca_file:
        root_certificates = _read_file("tls_ca_file", settings.tls_ca_file)
    if not client_certificate:
        return grpc.ssl_channel_credentials(root_certificates=root_certificates)
    return grpc.ssl_channel_credentials(
        root_certificates=root_certificates,
        private_key=_read_file("tls_key_file", settings.tls_key_file),
        certificate_chain=_read_file("tls_cert_file", settings.tls_cert_file),
    )


def worker_channel_security(settings: SecuritySettings) -> ChannelSecurity:
    """Return the credentials of the coordinator's channels to its workers (and of the local
    mesh's health probes): the coordinator's certificate is presented when tls_client_auth."""
    if settings.insecure:
        return ChannelSecurity.loopback_plaintext()
    if settings.tls_client_auth:
        _check_key_pair(settings)
    return ChannelSecurity(
        _ssl_channel_credentials(settings, client_certificate=settings.tls_client_auth), False
    )


def client_channel_security(settings: SecuritySettings, token_file: str = "") -> ChannelSecurity:
    """Return the credentials of `quorum analyze` and `quorum models`: the CA, and the bearer
    token of `token_file` (default: auth_token_file) as call credentials when there is one."""
    if settings.insecure:
        credentials = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    else:
        credentials = _ssl_channel_credentials(settings, client_certificate=False)
    path = token_file or settings.auth_token_file
    if path:
        try:
            token = read_client_token(Path(path))
        except TokenFileError as error:
            raise SecurityError(str(error)) from None
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token.value)
        )
    return ChannelSecurity(credentials, settings.insecure)


def coordinator_interceptors(settings: SecuritySettings) -> list[grpc.aio.ServerInterceptor]:
    """Return the bearer-token interceptor; auth_token_file is required unless insecure."""
    if not settings.auth_token_file:
        if settings.insecure:
            return []
        raise SecurityError(
            "auth_token_file not set: the coordinator's API needs a bearer token file when TLS"
            " is on (or insecure: true, for plaintext on loopback only)"
        )
    try:
        verifier = TokenVerifier(Path(settings.auth_token_file))
    except TokenFileError as error:
        raise SecurityError(str(error)) from None
    return [BearerTokenInterceptor(verifier)]
