"""Read the scalar key-value metadata of a GGUF file without loading its tensors.

The worker needs the training context length before it creates a llama.cpp context, and
llama.cpp only reports it after loading the weights. Layout (GGUF v2 and v3, little-endian):
magic "GGUF", uint32 version, uint64 tensor count, uint64 key-value count, then each key as
a uint64-length string, a uint32 value type and the value. Arrays are skipped.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
# A key or string longer than this is a corrupt file, not metadata.
MAX_STRING_BYTES = 64 * 1024 * 1024

_STRING = 8
_ARRAY = 9
# GGUF value type -> struct format of one fixed-size value.
_SCALAR_FORMATS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}

Scalar = int | float | bool | str


class GgufError(ValueError):
    """The file is not a GGUF file this reader understands."""


def read_metadata(path: Path) -> dict[str, Scalar]:
    """Return the scalar metadata of a GGUF file, keyed by name; array values are left out."""
    with path.open("rb") as stream:
        magic = stream.read(4)
        if magic != GGUF_MAGIC:
            raise GgufError(f"{path} is not a GGUF file (magic {magic!r})")
        (version,) = _unpack(stream, "<I", path)
        if version not in SUPPORTED_VERSIONS:
            raise GgufError(f"{path}: GGUF version {version} is not supported")
        _tensor_count, kv_count = _unpack(stream, "<QQ", path)

        metadata: dict[str, Scalar] = {}
        for _ in range(kv_count):
            key = _read_string(stream, path)
            (value_type,) = _unpack(stream, "<I", path)
            if value_type == _ARRAY:
                _skip_array(stream, path)
            else:
                metadata[key] = _read_scalar(stream, value_type, path)
        return metadata


def context_length(metadata: dict[str, Scalar]) -> int:
    """Return `{architecture}.context_length`, the context the model was trained with."""
    architecture = metadata.get("general.architecture")
    value = metadata.get(f"{architecture}.context_length")
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise GgufError(f"GGUF metadata has no valid {architecture}.context_length: {value!r}")
    return value


def _unpack(stream: BinaryIO, fmt: str, path: Path) -> tuple:
    size = struct.calcsize(fmt)
    data = stream.read(size)
    if len(data) != size:
        raise GgufError(f"{path}: GGUF header ends early")
    return struct.unpack(fmt, data)


def _read_string(stream: BinaryIO, path: Path) -> str:
    (length,) = _unpack(stream, "<Q", path)
    if length > MAX_STRING_BYTES:
        raise GgufError(f"{path}: GGUF string of {length} bytes is too long")
    data = stream.read(length)
    if len(data) != length:
        raise GgufError(f"{path}: GGUF header ends early")
    return data.decode("utf-8", errors="replace")


def _read_scalar(stream: BinaryIO, value_type: int, path: Path) -> Scalar:
    if value_type == _STRING:
        return _read_string(stream, path)
    fmt = _SCALAR_FORMATS.get(value_type)
    if fmt is None:
        raise GgufError(f"{path}: unknown GGUF value type {value_type}")
    (value,) = _unpack(stream, fmt, path)
    return value


def _skip_array(stream: BinaryIO, path: Path) -> None:
    element_type, count = _unpack(stream, "<IQ", path)
    if element_type == _STRING:
        for _ in range(count):
            (length,) = _unpack(stream, "<Q", path)
            stream.seek(length, 1)
    elif element_type in _SCALAR_FORMATS:
        stream.seek(count * struct.calcsize(_SCALAR_FORMATS[element_type]), 1)
    else:
        raise GgufError(f"{path}: GGUF array of type {element_type} is not supported")
