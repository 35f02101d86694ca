"""ISO 8601 times as the command line and the token file write them, read as UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_utc(text: str) -> datetime:
    """Return the aware UTC datetime of an ISO 8601 date or time; a time without a zone is UTC.

    A trailing `Z` means UTC. Raises ValueError when the text is not ISO 8601.
    """
    value = text[:-1] + "+00:00" if text.endswith("Z") else text
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
