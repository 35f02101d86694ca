"""Load one GGUF model with llama-cpp-python and describe it.

The loaded model owns its tokenizer and chat template, so token counts are exact for the
tokens the worker actually feeds it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import llama_cpp

from server.config import Config
from worker import gguf_header
from worker.chat_template import ChatTemplate, ChatTemplateError, PromptPiece, load_chat_template

log = logging.getLogger(__name__)

DEFAULT_N_BATCH = 512
# llama.cpp's file type enum (LLAMA_FTYPE_MOSTLY_Q4_1 = 3, ...) -> "Q4_1".
FILE_TYPE_NAMES = {
    getattr(llama_cpp, name): name.removeprefix("LLAMA_FTYPE_MOSTLY_").removeprefix(
        "LLAMA_FTYPE_ALL_"
    )
    for name in dir(llama_cpp)
    if name.startswith("LLAMA_FTYPE_") and name != "LLAMA_FTYPE_GUESSED"
}


class ModelLoadError(RuntimeError):
    """A model could not be loaded with its settings; the message names the file."""


class GenerationCancelled(Exception):
    """Raised inside the token loop when the request was cancelled during prompt evaluation."""


@dataclass(frozen=True)
class ModelSettings:
    """How to load one model."""

    name: str
    path: Path
    # 0 runs with the model's training context, capped at max_context_size.
    n_ctx: int = 0
    max_context_size: int = 50000
    # 0 uses os.cpu_count() threads.
    threads: int = 0
    n_batch: int = DEFAULT_N_BATCH
    default_max_tokens: int = 256
    # Empty reads the quantization from the GGUF file type.
    quantization: str = ""
    seed: int = 42

    @classmethod
    def from_config(cls, config: Config, model_name: str) -> ModelSettings:
        """Build settings for a configured model, resolving its GGUF file.

        Raises ConfigError for an unknown model and ModelFileError (naming the file) when the
        GGUF file is missing.
        """
        model = config.model(model_name)
        return cls(
            name=model.name,
            path=model.resolve_path(Path(config.models_dir)),
            n_ctx=model.n_ctx,
            max_context_size=config.max_context_size,
            threads=model.threads,
            default_max_tokens=model.max_tokens,
            quantization=model.quantization,
            seed=config.seed,
        )


@dataclass(frozen=True)
class ModelInfo:
    """Facts about a loaded model, as Describe reports them."""

    name: str
    family: str
    parameter_count: int
    quantization: str
    n_ctx_train: int
    n_ctx: int
    threads: int
    default_max_tokens: int
    path: str
    file_bytes: int
    load_seconds: float


class CancellableLlama(llama_cpp.Llama):
    """A Llama whose prompt evaluation counts the tokens it decodes and checks a cancel flag
    between batches, so a cancelled request does not sit through a long prompt."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.evaluated_tokens = 0
        self.cancel_event: threading.Event | None = None

    def eval(self, tokens: Sequence[int]) -> None:
        for start in range(0, len(tokens), self.n_batch):
            if self.cancel_event is not None and self.cancel_event.is_set():
                raise GenerationCancelled()
            batch = tokens[start : start + self.n_batch]
            super().eval(batch)
            self.evaluated_tokens += len(batch)


class LoadedModel:
    """A llama.cpp model with its context, tokenizer and chat template."""

    def __init__(self, llama: CancellableLlama, template: ChatTemplate, info: ModelInfo) -> None:
        self.llama = llama
        self.template = template
        self.info = info
        self._vocab = llama._model.vocab
        self._bos_token = llama.token_bos()
        self._bos_text = (
            llama._model.token_get_text(self._bos_token) if self._bos_token >= 0 else ""
        )
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))

    @property
    def vocab(self) -> llama_cpp.llama_vocab_p:
        return self._vocab

    def tokenize_text(self, text: str) -> list[int]:
        """Tokenize plain text: no BOS, and special-token strings stay plain text."""
        return self._tokenize(text.encode("utf-8"), special=False)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenize_text(text))

    def tokenize_prompt(self, pieces: Sequence[PromptPiece]) -> list[int]:
        """Tokenize rendered prompt pieces: template text with special tokens, content as plain
        text, and BOS first when the vocabulary requires it and the template did not add it."""
        tokens: list[int] = []
        starts_with_bos = (
            bool(pieces)
            and bool(self._bos_text)
            and (not pieces[0].is_content and pieces[0].text.startswith(self._bos_text))
        )
        if self._add_bos and self._bos_token >= 0 and not starts_with_bos:
            tokens.append(self._bos_token)
        for piece in pieces:
            tokens += self._tokenize(piece.text.encode("utf-8"), special=not piece.is_content)
        return tokens

    def _tokenize(self, data: bytes, special: bool) -> list[int]:
        # Llama.tokenize allocates n_ctx_train slots on every call. A text has at most about one
        # token per byte, and llama.cpp returns the size it needs when the buffer is short.
        if not data:
            return []
        capacity = len(data) + 8
        while True:
            buffer = (llama_cpp.llama_token * capacity)()
            count = llama_cpp.llama_tokenize(
                self._vocab, data, len(data), buffer, capacity, False, special
            )
            if count >= 0:
                return list(buffer[:count])
            capacity = -count

    def render_prompt(self, system: str, user: str) -> list[int]:
        return self.tokenize_prompt(self.template.render(system, user))

    def token_bytes(self, token: int) -> bytes:
        """Return the bytes of one token's piece, control tokens included as their text.

        llama.cpp's grammar sampler matches control tokens by their text too, so the streamed
        text is exactly what the grammar admitted.
        """
        size = 64
        while True:
            buffer = ctypes.create_string_buffer(size)
            written = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, size, 0, True)
            if written >= 0:
                return buffer.raw[:written]
            size = -written

    def is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def close(self) -> None:
        self.llama.close()


def resolve_n_ctx(configured: int, n_ctx_train: int, max_context_size: int) -> int:
    """Return the context size to run with: the configured one, else the training context
    capped at max_context_size."""
    if configured > 0:
        return configured
    return min(n_ctx_train, max_context_size)


def load_model(settings: ModelSettings) -> LoadedModel:
    """Load the GGUF file of `settings` and return it ready for generation."""
    if not settings.path.is_file():
        raise ModelLoadError(f"{settings.name}: GGUF file {settings.path} not found")
    started = time.perf_counter()
    try:
        metadata = gguf_header.read_metadata(settings.path)
        n_ctx_train = gguf_header.context_length(metadata)
    except gguf_header.GgufError as error:
        raise ModelLoadError(f"{settings.name}: {error}") from None

    n_ctx = resolve_n_ctx(settings.n_ctx, n_ctx_train, settings.max_context_size)
    if n_ctx > n_ctx_train:
        log.warning(
            "model %s: n_ctx %d is beyond its training context %d; quality may degrade",
            settings.name,
            n_ctx,
            n_ctx_train,
        )
    if settings.default_max_tokens > n_ctx // 2:
        raise ModelLoadError(
            f"{settings.name}: max_tokens {settings.default_max_tokens} exceeds half of"
            f" n_ctx {n_ctx}"
        )
    threads = settings.threads or os.cpu_count() or 1

    log.info(
        "Loading model %s from %s (n_ctx %d, threads %d)",
        settings.name,
        settings.path,
        n_ctx,
        threads,
    )
    try:
        llama = CancellableLlama(
            str(settings.path),
            n_ctx=n_ctx,
            n_batch=settings.n_batch,
            n_threads=threads,
            n_threads_batch=threads,
            seed=settings.seed,
            verbose=False,
        )
    except ValueError as error:
        raise ModelLoadError(
            f"{settings.name}: llama.cpp failed to load {settings.path}: {error}"
        ) from None

    architecture = str(llama.metadata.get("general.architecture", ""))
    try:
        template = load_chat_template(
            llama.metadata,
            architecture,
            _token_text(llama, llama.token_bos()),
            _token_text(llama, llama.token_eos()),
        )
    except ChatTemplateError as error:
        llama.close()
        raise ModelLoadError(f"{settings.name}: {error}") from None
    info = ModelInfo(
        name=settings.name,
        family=architecture,
        parameter_count=int(llama_cpp.llama_model_n_params(llama.model)),
        quantization=settings.quantization or _file_type_name(llama.metadata),
        n_ctx_train=n_ctx_train,
        n_ctx=llama.n_ctx(),
        threads=threads,
        default_max_tokens=settings.default_max_tokens,
        path=str(settings.path),
        file_bytes=settings.path.stat().st_size,
        load_seconds=time.perf_counter() - started,
    )
    log.info(
        "Loaded model %s: %s, %d parameters, %s, chat template %s, %.2f s",
        info.name,
        info.family,
        info.parameter_count,
        info.quantization,
        template.source,
        info.load_seconds,
    )
    return LoadedModel(llama, template, info)


def _token_text(llama: llama_cpp.Llama, token: int) -> str:
    return llama._model.token_get_text(token) if token >= 0 else ""


def _file_type_name(metadata: dict[str, str]) -> str:
    raw = metadata.get("general.file_type", "")
    try:
        return FILE_TYPE_NAMES.get(int(raw), f"file type {raw}")
    except ValueError:
        return "unknown"
