"""Fit the coordinator's sections to this model's context window with exact token counts.

The coordinator sized the sections with its own tokenizer at its own context size. Here the
prompt must satisfy prompt_tokens + max_tokens <= n_ctx with this model's tokenizer:

1. available = n_ctx - max_tokens - (tokens of the prompt with every section empty).
2. When the sections' budgets add up to more than `available`, each is scaled down in
   proportion.
3. fastpath.budget.allocate grants each section min(its tokens, its budget) and hands unused
   tokens to sections that want more, most important first. Each section keeps the leading
   lines that fit its grant (fastpath.budget.lines_within).
4. Tokens can merge across line and section boundaries, so the rendered prompt is counted
   again. While it is still too long, the least important section with lines left drops
   lines from its end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fastpath import budget
from worker.model import LoadedModel
from worker.prompt import Question, system_text, user_text


class FitError(ValueError):
    """The prompt cannot fit the context window, whatever is cut."""


@dataclass(frozen=True)
class Section:
    """One named part of the prompt; a lower priority number is more important."""

    name: str
    priority: int
    token_budget: int
    text: str


@dataclass(frozen=True)
class SectionFit:
    """The cut of one section: its grant, its tokens before and after, and its lines."""

    name: str
    budget_tokens: int
    original_tokens: int
    used_tokens: int
    lines_kept: int
    lines_total: int


@dataclass(frozen=True)
class FittedPrompt:
    tokens: list[int]
    section_fits: tuple[SectionFit, ...]


def split_lines(text: str) -> list[str]:
    """Split on "\\n" only. A final newline does not start another line."""
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def scale_budgets(budgets: np.ndarray, available: int) -> np.ndarray:
    """Scale budgets down in proportion when they add up to more than `available`."""
    total = int(budgets.sum())
    if total <= available:
        return budgets.copy()
    return (budgets * available) // total


def fit_prompt(
    model: LoadedModel, sections: Sequence[Section], question: Question, max_tokens: int
) -> FittedPrompt:
    """Cut the sections at line boundaries so the prompt plus max_tokens fits n_ctx."""
    n_ctx = model.info.n_ctx
    system = system_text(question.horizon_minutes)
    empty = [(section.name, "") for section in sections]
    overhead = len(model.render_prompt(system, user_text(empty, question)))
    available = n_ctx - max_tokens - overhead
    if available < 0:
        raise FitError(
            f"max_tokens {max_tokens} leaves no room: the prompt without section text takes"
            f" {overhead} of n_ctx {n_ctx} tokens"
        )

    lines = [split_lines(section.text) for section in sections]
    # Each line is counted with its newline, the way it appears in the prompt.
    line_tokens = [
        np.array([model.count_tokens(line + "\n") for line in section_lines], dtype=np.int64)
        for section_lines in lines
    ]
    requested = np.array([int(tokens.sum()) for tokens in line_tokens], dtype=np.int64)
    priorities = np.array([section.priority for section in sections], dtype=np.int64)
    caps = scale_budgets(
        np.array([section.token_budget for section in sections], dtype=np.int64), available
    )
    granted = budget.allocate(requested, priorities, caps, available)
    lines_kept = [
        budget.lines_within(tokens, int(grant))
        for tokens, grant in zip(line_tokens, granted, strict=True)
    ]

    tokens = _render(model, system, sections, lines, lines_kept, question)
    while len(tokens) + max_tokens > n_ctx:
        excess = len(tokens) + max_tokens - n_ctx
        _drop_lines(sections, line_tokens, lines_kept, excess)
        tokens = _render(model, system, sections, lines, lines_kept, question)

    fits = tuple(
        SectionFit(
            name=section.name,
            budget_tokens=int(grant),
            original_tokens=model.count_tokens(section.text),
            used_tokens=model.count_tokens("\n".join(section_lines[:count])),
            lines_kept=count,
            lines_total=len(section_lines),
        )
        for section, grant, section_lines, count in zip(
            sections, granted, lines, lines_kept, strict=True
        )
    )
    return FittedPrompt(tokens=tokens, section_fits=fits)


def _render(
    model: LoadedModel,
    system: str,
    sections: Sequence[Section],
    lines: Sequence[list[str]],
    lines_kept: Sequence[int],
    question: Question,
) -> list[int]:
    cut = [
        (section.name, "\n".join(section_lines[:count]))
        for section, section_lines, count in zip(sections, lines, lines_kept, strict=True)
    ]
    return model.render_prompt(system, user_text(cut, question))


def _drop_lines(
    sections: Sequence[Section],
    line_tokens: Sequence[np.ndarray],
    lines_kept: list[int],
    excess: int,
) -> None:
    """Drop at least one line, and lines worth `excess` tokens if it has them, from the end of
    the least important section that has lines left (among equal priorities, the last)."""
    candidates = [index for index, count in enumerate(lines_kept) if count > 0]
    if not candidates:
        raise FitError("the prompt exceeds n_ctx with every section empty")
    index = max(candidates, key=lambda i: (sections[i].priority, i))
    dropped = 0
    while lines_kept[index] > 0 and dropped < excess:
        lines_kept[index] -= 1
        dropped += int(line_tokens[index][lines_kept[index]])
