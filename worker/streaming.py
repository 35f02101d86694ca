"""Incremental UTF-8 assembly of streamed token bytes.

A token's bytes can end inside a multi-byte character (byte-fallback tokens carry one byte
each), so text is released only when every character in it is whole.
"""

from __future__ import annotations

import codecs


class Utf8Assembler:
    """Turn token bytes into complete text; the joined output equals bytes.decode() of all.

    Decoding is strict: invalid bytes raise UnicodeDecodeError from `feed`, and a stream
    that ends inside a character raises UnicodeDecodeError from `finish`.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")

    def feed(self, data: bytes) -> str:
        """Add one token's bytes and return the text completed by them, possibly empty."""
        return self._decoder.decode(data, final=False)

    @property
    def pending_bytes(self) -> int:
        """Bytes of a character that is not yet complete."""
        pending, _ = self._decoder.getstate()
        return len(pending)

    def finish(self) -> str:
        """End the stream, raising UnicodeDecodeError if it stopped inside a character."""
        return self._decoder.decode(b"", final=True)
