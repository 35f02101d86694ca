"""Token file parsing and checking: expiry, rotation, reload, and no token in any message."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import pytest

from server.bearer_token import (
    Rejection,
    TokenFileError,
    TokenVerifier,
    read_client_token,
    read_token_lines,
)

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
PAST = "2026-12-31T00:00Z"
FUTURE = "2027-02-01T00:00:00+00:00"


def _token() -> str:
    return secrets.token_urlsafe(32)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _verifier(path: Path) -> TokenVerifier:
    return TokenVerifier(path, clock=lambda: NOW)


def test_lines_with_expiry_and_comments(tmp_path):
    first, second = _token(), _token()
    path = _write(tmp_path / "tokens", f"# rotation\n\n{first}\n{second}\t{FUTURE}\n")
    lines = read_token_lines(path)
    assert [(number, token) for number, token, _ in lines] == [(3, first), (4, second)]
    assert lines[0][2] is None
    assert lines[1][2] == 1_801_440_000.0


def test_short_token_error_hides_token(tmp_path):
    path = _write(tmp_path / "tokens", "tooshort-secret\n")
    with pytest.raises(TokenFileError) as raised:
        read_token_lines(path)
    assert str(raised.value) == (
        f"auth_token_file {path} line 1: the token is shorter than 32 characters"
    )


def test_invalid_expiry_names_line(tmp_path):
    token = _token()
    path = _write(tmp_path / "tokens", f"{token} next-tuesday\n")
    with pytest.raises(TokenFileError) as raised:
        read_token_lines(path)
    assert "line 1: invalid expiry 'next-tuesday'" in str(raised.value)
    assert token not in str(raised.value)


def test_empty_file_rejected(tmp_path):
    path = _write(tmp_path / "tokens", "# nothing yet\n")
    with pytest.raises(TokenFileError) as raised:
        read_token_lines(path)
    assert str(raised.value) == f"auth_token_file {path} has no token"


def test_missing_file_named(tmp_path):
    with pytest.raises(TokenFileError) as raised:
        read_token_lines(tmp_path / "absent")
    assert str(raised.value) == f"auth_token_file {tmp_path / 'absent'} not found"


@pytest.mark.parametrize(
    ("header", "rejection"),
    [
        (None, Rejection.MISSING),
        ("Basic dXNlcjpwYXNz", Rejection.MALFORMED),
        ("Bearer " + "x" * 43, Rejection.INVALID),
        ("Bearer ", Rejection.INVALID),
    ],
)
def test_verifier_rejects(tmp_path, header, rejection):
    path = _write(tmp_path / "tokens", _token() + "\n")
    values = [] if header is None else [header]
    assert _verifier(path).check(values)[0] is rejection


def test_verifier_accepts_listed_token(tmp_path):
    token = _token()
    path = _write(tmp_path / "tokens", f"{_token()}\n{token} {FUTURE}\n")
    rejection, entry = _verifier(path).check([f"Bearer {token}"])
    assert rejection is None
    assert entry.line == 2


def test_bearer_scheme_case_insensitive(tmp_path):
    token = _token()
    path = _write(tmp_path / "tokens", token + "\n")
    assert _verifier(path).check([f"bearer {token}"])[0] is None


def test_verifier_rejects_expired_token(tmp_path):
    token = _token()
    path = _write(tmp_path / "tokens", f"{token} {PAST}\n")
    assert _verifier(path).check([f"Bearer {token}"])[0] is Rejection.EXPIRED


def test_two_authorization_values_malformed(tmp_path):
    token = _token()
    path = _write(tmp_path / "tokens", token + "\n")
    values = [f"Bearer {token}", f"Bearer {token}"]
    assert _verifier(path).check(values)[0] is Rejection.MALFORMED


def _touch_later(path: Path) -> None:
    """Move the file's mtime forward, so a rewrite within one clock tick is still seen."""
    status = path.stat()
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))


def test_verifier_reloads_changed_file(tmp_path):
    old, new = _token(), _token()
    path = _write(tmp_path / "tokens", old + "\n")
    verifier = _verifier(path)
    _write(path, new + "\n")
    _touch_later(path)
    assert verifier.check([f"Bearer {new}"])[0] is None
    assert verifier.check([f"Bearer {old}"])[0] is Rejection.INVALID


def test_invalid_reload_keeps_tokens(tmp_path, caplog):
    token = _token()
    path = _write(tmp_path / "tokens", token + "\n")
    verifier = _verifier(path)
    _write(path, "short\n")
    _touch_later(path)
    with caplog.at_level(logging.ERROR):
        rejection, _ = verifier.check([f"Bearer {token}"])
    assert rejection is None
    assert "Keeping the previous bearer tokens" in caplog.text


def test_client_sends_first_current_token(tmp_path):
    expired, current = _token(), _token()
    path = _write(tmp_path / "tokens", f"{expired} {PAST}\n{current}\n")
    assert read_client_token(path, clock=lambda: NOW).value == current


def test_client_sends_expired_when_no_other(tmp_path):
    expired = _token()
    path = _write(tmp_path / "tokens", f"{expired} {PAST}\n")
    assert read_client_token(path, clock=lambda: NOW).value == expired


def test_client_token_repr_hides_value(tmp_path):
    token = _token()
    path = _write(tmp_path / "tokens", token + "\n")
    assert token not in repr(read_client_token(path))
