"""Bearer tokens for the coordinator's API: the token file, and checking a presented token.

The token file contains one token per line, optionally followed by its expiry:

    # comments and blank lines are skipped
    Zk3q9mU2yQd1L8vXJb0cT7aW4eR6sN5hP2oK8iG1fD3   2027-01-31T00:00Z
    c8Vw2Lq0pJ5nX7rT1yB4mK9dF6hS3gA8zE2uQ5oW1iR

A token is at least MIN_TOKEN_LENGTH printable ASCII characters without spaces, as
`secrets.token_urlsafe(32)` or `openssl rand -base64 32` make. The expiry is ISO 8601, UTC
when it has no offset. The coordinator accepts every listed token until its expiry, so a
token is rotated by adding the new line, moving clients to it, then removing the old line.
The file is read again when it changes, so no restart is needed. The verifier keeps only
SHA-256 digests of the tokens, and no message here ever contains a token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path

from server.utc_time import parse_utc

log = logging.getLogger(__name__)

MIN_TOKEN_LENGTH = 32
BEARER_PREFIX = "bearer "


class TokenFileError(ValueError):
    """The token file is missing, unreadable or has a line that is not a valid token."""


class Rejection(Enum):
    """Reason a call is rejected; the value is its UNAUTHENTICATED status message."""

    MISSING = (
        "missing bearer token: send `authorization: Bearer TOKEN` metadata"
        " (`quorum --token-file FILE` or the auth_token_file key)"
    )
    MALFORMED = "invalid authorization metadata: expected exactly one `Bearer TOKEN` value"
    INVALID = "invalid bearer token: it is not one of the coordinator's tokens"
    EXPIRED = "bearer token expired"


@dataclass(frozen=True)
class TokenEntry:
    """One line of the token file: the token's SHA-256 digest and its expiry (Unix seconds)."""

    digest: bytes
    expires_at: float | None
    line: int

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass(frozen=True)
class ClientToken:
    """The token a client sends. The token text is left out of repr so it never reaches a log."""

    value: str
    expires_at: float | None

    def __repr__(self) -> str:
        return f"ClientToken(expires_at={self.expires_at!r})"


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def read_token_lines(path: Path) -> list[tuple[int, str, float | None]]:
    """Return (line number, token, expiry) for every token in the file, validating each line."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise TokenFileError(f"auth_token_file {path} not found") from None
    except UnicodeDecodeError:
        raise TokenFileError(f"auth_token_file {path} is not ASCII text") from None
    except OSError as error:
        raise TokenFileError(f"auth_token_file {path} cannot be read: {error.strerror}") from None

    tokens = []
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        token, *rest = line.split(maxsplit=1)
        where = f"auth_token_file {path} line {number}"
        if len(token) < MIN_TOKEN_LENGTH:
            raise TokenFileError(
                f"{where}: the token is shorter than {MIN_TOKEN_LENGTH} characters"
            )
        if not token.isprintable():
            raise TokenFileError(f"{where}: the token contains a control character")
        tokens.append((number, token, _parse_expiry(where, rest[0] if rest else "")))
    if not tokens:
        raise TokenFileError(f"auth_token_file {path} has no token")
    return tokens


def _parse_expiry(where: str, text: str) -> float | None:
    if not text:
        return None
    try:
        return parse_utc(text).timestamp()
    except ValueError:
        raise TokenFileError(
            f"{where}: invalid expiry {text!r}: use ISO 8601 such as 2027-01-31T00:00Z"
        ) from None


def read_client_token(path: Path, clock: Callable[[], float] = time.time) -> ClientToken:
    """Return the first token that has not expired, else the first token.

    An expired token is still sent so that the coordinator names the problem.
    """
    lines = read_token_lines(path)
    now = clock()
    for _, token, expires_at in lines:
        if expires_at is None or now < expires_at:
            return ClientToken(token, expires_at)
    _, token, expires_at = lines[0]
    return ClientToken(token, expires_at)


class TokenVerifier:
    """Checks `authorization` metadata against the token file, re-reading it when it changes.

    A change that leaves the file invalid is logged and the tokens read before stay in force.
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._stamp = self._file_stamp()
        self._entries = self._read_entries()

    def _file_stamp(self) -> tuple[int, int]:
        try:
            status = os.stat(self.path)
        except OSError:
            return (0, 0)
        return (status.st_mtime_ns, status.st_size)

    def _read_entries(self) -> tuple[TokenEntry, ...]:
        return tuple(
            TokenEntry(digest(token), expires_at, number)
            for number, token, expires_at in read_token_lines(self.path)
        )

    def _reload_if_changed(self) -> None:
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._entries = self._read_entries()
        except TokenFileError as error:
            log.error("Keeping the previous bearer tokens: %s", error)
            return
        log.info("Read %d bearer tokens from %s", len(self._entries), self.path)

    def check(self, authorization: list[str]) -> tuple[Rejection | None, TokenEntry | None]:
        """Check the `authorization` metadata values of one call.

        Return (None, entry) when a listed token that has not expired matches, else the
        rejection. The presented token is compared by digest against every entry with
        hmac.compare_digest, so the time taken does not depend on how much of it matches.
        """
        if not authorization:
            return Rejection.MISSING, None
        scheme_length = len(BEARER_PREFIX)
        if len(authorization) > 1 or authorization[0][:scheme_length].lower() != BEARER_PREFIX:
            return Rejection.MALFORMED, None
        presented = digest(authorization[0][scheme_length:].strip())
        self._reload_if_changed()
        matched = None
        for entry in self._entries:
            if hmac.compare_digest(entry.digest, presented):
                matched = entry
        if matched is None:
            return Rejection.INVALID, None
        if matched.expired(self._clock()):
            return Rejection.EXPIRED, matched
        return None, matched


def expiry_text(entry: TokenEntry) -> str:
    if entry.expires_at is None:
        return "never"
    return datetime.fromtimestamp(entry.expires_at, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
