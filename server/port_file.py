"""Port files: a process bound to port 0 writes the port it got for its parent to read."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_port_file(path: Path, port: int) -> None:
    """Write `port` to `path` by writing a temporary file beside it and renaming it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w") as stream:
            stream.write(f"{port}\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
