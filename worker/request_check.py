"""Validate a GenerateRequest before it reaches the model.

Every error names the field and its value, so the coordinator's log shows what to fix.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from quorum.v1 import inference_pb2

MIN_MAX_TOKENS = 16
MAX_TEMPERATURE = 2.0
MAX_WINDOW_MINUTES = 24 * 60
# Section names appear in the prompt's BEGIN and END lines, so they stay one plain word.
SECTION_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
SYMBOL_PATTERN = re.compile(r"[A-Za-z0-9_.:/\-]{1,32}")
REQUEST_ID_PATTERN = re.compile(r"[\x21-\x7e]{0,128}")


class InvalidRequest(ValueError):
    """A request field has an invalid value; the message names the field and the value."""


def check_generate_request(request: inference_pb2.GenerateRequest, n_ctx: int) -> None:
    """Raise InvalidRequest for the first invalid field of `request`."""
    if not REQUEST_ID_PATTERN.fullmatch(request.request_id):
        raise InvalidRequest(
            f"request_id {request.request_id!r} is invalid: use at most"
            f" 128 printable ASCII characters without spaces"
        )
    if not SYMBOL_PATTERN.fullmatch(request.symbol):
        raise InvalidRequest(
            f"symbol {request.symbol!r} is invalid: use 1 to 32 letters, digits or _.:/-"
        )
    window_end_utc(request)
    if not 1 <= request.window_minutes <= MAX_WINDOW_MINUTES:
        raise InvalidRequest(
            f"window_minutes {request.window_minutes} is out of range [1, {MAX_WINDOW_MINUTES}]"
        )
    if request.horizon_minutes < 1:
        raise InvalidRequest(f"horizon_minutes {request.horizon_minutes} must be at least 1")
    if request.context_size < 0:
        raise InvalidRequest(f"context_size {request.context_size} must not be negative")
    _check_sections(request)
    _check_max_tokens(request.max_tokens, n_ctx)
    if not math.isfinite(request.temperature) or not 0.0 <= request.temperature <= MAX_TEMPERATURE:
        raise InvalidRequest(
            f"temperature {request.temperature} is out of range [0, {MAX_TEMPERATURE:g}]"
        )


def loggable_request_id(request: inference_pb2.GenerateRequest) -> str:
    """Return the request id for log lines, or "-" when it is empty or invalid."""
    if request.request_id and REQUEST_ID_PATTERN.fullmatch(request.request_id):
        return request.request_id
    return "-"


def window_end_utc(request: inference_pb2.GenerateRequest) -> datetime:
    """Return window_end as an aware UTC datetime, raising InvalidRequest when unset or invalid."""
    if not request.HasField("window_end"):
        raise InvalidRequest("window_end is missing")
    try:
        return request.window_end.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidRequest(
            f"window_end {request.window_end.seconds}s {request.window_end.nanos}ns is not a"
            " valid time"
        ) from None


def _check_sections(request: inference_pb2.GenerateRequest) -> None:
    if not request.sections:
        raise InvalidRequest("sections is empty: send at least one context section")
    seen: set[str] = set()
    for index, section in enumerate(request.sections):
        where = f"sections[{index}]"
        if not SECTION_NAME_PATTERN.fullmatch(section.name):
            raise InvalidRequest(
                f"{where}.name {section.name!r} is invalid: use 1 to 64 letters, digits or _.-"
            )
        if section.name in seen:
            raise InvalidRequest(f"{where}.name {section.name!r} repeats an earlier section")
        seen.add(section.name)
        if section.priority < 1:
            raise InvalidRequest(f"{where}.priority {section.priority} must be at least 1")
        if section.token_budget < 0:
            raise InvalidRequest(
                f"{where}.token_budget {section.token_budget} must not be negative"
            )


def _check_max_tokens(max_tokens: int, n_ctx: int) -> None:
    # 0 selects the worker's default.
    if max_tokens == 0:
        return
    limit = n_ctx // 2
    if not MIN_MAX_TOKENS <= max_tokens <= limit:
        raise InvalidRequest(
            f"max_tokens {max_tokens} is out of range [{MIN_MAX_TOKENS}, {limit}]"
            f" (half of n_ctx {n_ctx})"
        )
