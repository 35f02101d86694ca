"""The token loop of one generation, run on the model's own thread.

llama-cpp-python's Llama.generate evaluates the prompt (reusing the KV cache of the longest
prefix shared with the previous request's tokens) and then samples one token per step. The
loop checks the cancel flag after every token, so a cancelled request stops within one token.
During prompt evaluation, CancellableLlama.eval checks the flag between batches.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import llama_cpp

from worker.model import GenerationCancelled, LoadedModel
from worker.streaming import Utf8Assembler
from worker.verdict_grammar import Verdict, VerdictError, is_complete_object, parse_verdict

log = logging.getLogger(__name__)

# Receives each piece of complete text and the completion tokens generated so far.
ChunkSink = Callable[[str, int], None]


class FinishReason(enum.Enum):
    STOP = "stop"
    LENGTH = "length"
    CANCELLED = "cancelled"
    ERROR = "error"


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    # 0 samples greedily.
    temperature: float
    seed: int


@dataclass(frozen=True)
class GenerationOutcome:
    finish_reason: FinishReason
    # The whole completion, equal to the concatenated chunks passed to the sink.
    text: str
    verdict: Verdict | None
    # Reason there is no verdict, empty when there is one.
    failure: str
    completion_tokens: int
    # Prompt tokens whose KV cache was reused instead of evaluated.
    cached_prompt_tokens: int
    # time.perf_counter() when `run` started.
    started_at: float
    # From the start of `run` (prompt evaluation included) to the first completion token.
    time_to_first_token_s: float | None
    # From the start of `run` to the end of the token loop.
    generation_s: float


class GenerationRun:
    """One generation of a verdict. `run` blocks, and `cancel` may be called from any thread."""

    def __init__(
        self,
        model: LoadedModel,
        prompt_tokens: Sequence[int],
        params: SamplingParams,
        grammar: llama_cpp.LlamaGrammar,
        on_chunk: ChunkSink,
        cancel_event: threading.Event | None = None,
        request_id: str = "-",
    ) -> None:
        self._model = model
        self._prompt = list(prompt_tokens)
        self._params = params
        self._grammar = grammar
        self._on_chunk = on_chunk
        self._cancel = cancel_event or threading.Event()
        self._assembler = Utf8Assembler()
        self._parts: list[str] = []
        self._completion_tokens = 0
        self._cached_prompt_tokens = 0
        self._first_token_s: float | None = None
        self._failure = ""
        self._request_id = request_id

    def cancel(self) -> None:
        self._cancel.set()

    def run(self) -> GenerationOutcome:
        """Generate until end of generation, a complete verdict, max_tokens or cancel."""
        llama = self._model.llama
        llama.set_seed(self._params.seed)
        llama.evaluated_tokens = 0
        llama.cancel_event = self._cancel
        started = time.perf_counter()
        try:
            finish = self._token_loop(started)
        except GenerationCancelled:
            finish = FinishReason.CANCELLED
        except (RuntimeError, ValueError) as error:
            # llama-cpp-python raises RuntimeError or ValueError when llama_decode fails.
            log.exception(
                "Generation failed for request %s on model %s",
                self._request_id,
                self._model.info.name,
            )
            finish = FinishReason.ERROR
            self._failure = f"generation failed: {error}"
        finally:
            llama.cancel_event = None
        return self._outcome(finish, started)

    def _token_loop(self, started: float) -> FinishReason:
        llama = self._model.llama
        tokens = llama.generate(
            self._prompt,
            temp=self._params.temperature,
            repeat_penalty=1.0,
            reset=True,
            grammar=self._grammar,
        )
        try:
            for token in tokens:
                if self._first_token_s is None:
                    self._first_token_s = time.perf_counter() - started
                    self._cached_prompt_tokens = len(self._prompt) - llama.evaluated_tokens
                finish = self._accept(token)
                if finish is not None:
                    return finish
        finally:
            tokens.close()
        # Llama.generate only ends on a stopping criterion, and none is given.
        return FinishReason.STOP

    def _accept(self, token: int) -> FinishReason | None:
        """Take one sampled token; return the finish reason when generation should stop."""
        if self._model.is_end_of_generation(token):
            return FinishReason.STOP
        self._completion_tokens += 1
        try:
            text = self._assembler.feed(self._model.token_bytes(token))
        except UnicodeDecodeError as error:
            self._failure = f"completion is not valid UTF-8: {error.reason}"
            return FinishReason.ERROR
        if text:
            self._parts.append(text)
            self._on_chunk(text, self._completion_tokens)
            # The grammar admits one object, so a complete object ends the verdict. Stopping
            # here saves sampling the end-of-generation token.
            if text.rstrip().endswith("}") and is_complete_object("".join(self._parts)):
                return FinishReason.STOP
        if self._completion_tokens >= self._params.max_tokens:
            return FinishReason.LENGTH
        if self._cancel.is_set():
            return FinishReason.CANCELLED
        return None

    def _outcome(self, finish: FinishReason, started: float) -> GenerationOutcome:
        generation_s = time.perf_counter() - started
        failure = self._failure
        pending_bytes = self._assembler.pending_bytes
        try:
            tail = self._assembler.finish()
        except UnicodeDecodeError:
            tail = ""
            failure = failure or (
                f"completion ends inside a UTF-8 character ({pending_bytes} bytes pending)"
            )
        if tail:
            self._parts.append(tail)
            self._on_chunk(tail, self._completion_tokens)
        text = "".join(self._parts)

        verdict = None
        if finish is FinishReason.STOP and not failure:
            try:
                verdict = parse_verdict(text)
            except VerdictError as error:
                failure = f"invalid verdict: {error}"
        elif finish is FinishReason.LENGTH:
            failure = (
                f"max_tokens {self._params.max_tokens} reached before the verdict was complete"
            )
        elif finish is FinishReason.CANCELLED:
            failure = "generation cancelled"

        return GenerationOutcome(
            finish_reason=finish,
            text=text,
            verdict=verdict,
            failure=failure,
            completion_tokens=self._completion_tokens,
            cached_prompt_tokens=self._cached_prompt_tokens,
            started_at=started,
            time_to_first_token_s=self._first_token_s,
            generation_s=generation_s,
        )
