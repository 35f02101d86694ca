"""Log lines as text or JSON, each carrying the symbol, window_end, model and request id.

Those four fields come from `extra=` of a log call or, when absent there, from context
variables that `bind_fields` sets for the current task or thread. asyncio tasks and
`asyncio.to_thread` copy context variables, so a cycle's fan-out tasks and worker threads
log with the fields of the request that started them.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TextIO

LOG_FORMATS = ("text", "json")
FIELDS = ("symbol", "window_end", "model", "request_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_FIELD_VARS = {
    name: contextvars.ContextVar[str | None](f"quorum_log_{name}", default=None) for name in FIELDS
}


@contextlib.contextmanager
def bound_fields(**fields: str) -> Iterator[None]:
    """Set log fields for the code inside the block; nested blocks add to the outer ones."""
    tokens = bind_fields(**fields)
    try:
        yield
    finally:
        unbind_fields(tokens)


def bind_fields(**fields: str) -> list[contextvars.Token[str | None]]:
    """Set log fields in the current context; return tokens for `unbind_fields`."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown log fields {unknown}; known fields are {list(FIELDS)}")
    return [_FIELD_VARS[name].set(value) for name, value in fields.items() if value]


def unbind_fields(tokens: list[contextvars.Token[str | None]]) -> None:
    for token in reversed(tokens):
        # An async generator closed by the garbage collector runs its `finally` in another
        # context, where the token does not apply. That context ends with the generator.
        with contextlib.suppress(ValueError):
            token.var.reset(token)


def current_fields() -> dict[str, str]:
    """Return the log fields set in the current context."""
    values = {name: var.get() for name, var in _FIELD_VARS.items()}
    return {name: value for name, value in values.items() if value}


class ContextFieldsFilter(logging.Filter):
    """Copy the bound log fields onto each record that does not already carry them."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current_fields().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on one line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # default=str keeps a line valid when an `extra` value is not JSON-serializable.
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Format a record as text, with the known log fields as key=value pairs at the end."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pairs = [
            f"{name}={getattr(record, name)}"
            for name in FIELDS
            if getattr(record, name, None) is not None
        ]
        if not pairs:
            return line
        # Keep a traceback on the lines after the message, with the fields on the first.
        first, newline, rest = line.partition("\n")
        return f"{first} [{' '.join(pairs)}]{newline}{rest}"


def make_handler(log_format: str, stream: TextIO | None = None) -> logging.Handler:
    """Return a stream handler (standard error by default) in `log_format`, text or json."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"invalid log format {log_format!r}; use one of {list(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(ContextFieldsFilter())
    return handler


def configure(level: str, log_format: str, stream: TextIO | None = None) -> None:
    """Send every log record at `level` and above to one handler on the root logger."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(make_handler(log_format, stream))
    root.setLevel(getattr(logging, level))
