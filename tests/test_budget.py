"""Token budgets: allocate() and lines_within()."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpath.budget import allocate, lines_within
from server.config import DEFAULT_SECTION_BUDGETS

SECTIONS = list(DEFAULT_SECTION_BUDGETS)
PRIORITIES = [DEFAULT_SECTION_BUDGETS[name][0] for name in SECTIONS]
CAPS = [DEFAULT_SECTION_BUDGETS[name][1] for name in SECTIONS]


def budgets(requested: dict[str, int], total: int = 25_000) -> dict[str, int]:
    granted = allocate([requested.get(name, 0) for name in SECTIONS], PRIORITIES, CAPS, total)
    return dict(zip(SECTIONS, granted.tolist(), strict=True))


def test_allocate_full_sections_get_caps():
    granted = budgets({name: 10_000 for name in SECTIONS})
    assert granted == dict(zip(SECTIONS, CAPS, strict=True))


def test_allocate_returns_int64():
    granted = allocate([1, 2], [1, 1], [5, 5], 10)
    assert granted.dtype == np.int64


def test_allocate_short_sections_get_requests():
    requested = {"current_ohlcv": 1200, "indicators": 800, "recent_news": 0}
    granted = budgets(requested)
    assert granted["current_ohlcv"] == 1200
    assert granted["indicators"] == 800
    assert granted["recent_news"] == 0


def test_allocate_missing_section_frees_budget_by_priority():
    # No order book: its 4000 tokens go first to priority 1 (current_ohlcv wants 2000 more),
    # then to priority 2 (recent_news wants 1000 more), then priority 3 in the given order.
    requested = dict(zip(SECTIONS, CAPS, strict=True))
    requested["order_book"] = 0
    requested["current_ohlcv"] = 5000
    requested["recent_news"] = 7000
    requested["indicators"] = 2500
    requested["volatility_metrics"] = 2500
    granted = budgets(requested)
    assert granted["order_book"] == 0
    assert granted["current_ohlcv"] == 5000
    assert granted["recent_news"] == 7000
    assert granted["indicators"] == 2500
    assert granted["volatility_metrics"] == 2500


def test_allocate_leftover_ties_follow_given_order():
    requested = dict(zip(SECTIONS, CAPS, strict=True))
    requested["order_book"] = 0
    requested["indicators"] = 5000
    requested["volatility_metrics"] = 5000
    granted = budgets(requested)
    # 4000 freed: indicators (given first) takes its 3000 extra, volatility_metrics the rest.
    assert granted["indicators"] == 5000
    assert granted["volatility_metrics"] == 3000


def test_allocate_leftover_beyond_requests_stays_unused():
    granted = allocate([100, 200], [1, 2], [1000, 1000], 5000)
    assert granted.tolist() == [100, 200]


def test_allocate_over_total_cuts_least_important_first():
    requested = dict(zip(SECTIONS, CAPS, strict=True))
    granted = budgets(requested, total=20_000)
    # 25,000 capped against 20,000: priority 4 loses 5000, correlation_data (given last)
    # first.
    assert granted["correlation_data"] == 0
    assert granted["pattern_matching"] == 3000
    assert granted["indicators"] == 2000


def test_allocate_over_total_cuts_into_higher_priorities():
    granted = budgets(dict(zip(SECTIONS, CAPS, strict=True)), total=8000)
    assert granted == {
        "current_ohlcv": 3000,
        "order_book": 4000,
        "recent_news": 1000,
        "indicators": 0,
        "volatility_metrics": 0,
        "pattern_matching": 0,
        "correlation_data": 0,
    }


def test_allocate_total_zero_grants_nothing():
    granted = allocate([10, 20, 30], [1, 2, 3], [10, 20, 30], 0)
    assert granted.tolist() == [0, 0, 0]


def test_allocate_no_sections():
    granted = allocate([], [], [], 100)
    assert granted.shape == (0,)


def test_allocate_unordered_priorities():
    # Priorities need not be given sorted: the priority-1 section is filled first.
    granted = allocate([500, 500], [2, 1], [100, 100], 700)
    assert granted.tolist() == [200, 500]


@pytest.mark.parametrize(
    ("arguments", "name"),
    [
        (([-1, 2], [1, 1], [5, 5], 10), "requested"),
        (([1, 2], [0, 1], [5, 5], 10), "priorities"),
        (([1, 2], [1, 1], [5, -5], 10), "caps"),
        (([1, 2], [1, 1], [5, 5], -1), "total"),
        (([1.5, 2], [1, 1], [5, 5], 10), "requested"),
        (([1, 2], [1, 1], [5, 5], 10.0), "total"),
        (([1, 2], [1], [5, 5], 10), "priorities"),
        (([[1, 2]], [1], [5], 10), "requested"),
    ],
)
def test_allocate_rejects_invalid(arguments, name):
    with pytest.raises(ValueError, match=name):
        allocate(*arguments)


@st.composite
def sections(draw):
    count = draw(st.integers(0, 9))
    requested = draw(st.lists(st.integers(0, 12_000), min_size=count, max_size=count))
    priorities = draw(st.lists(st.integers(1, 4), min_size=count, max_size=count))
    caps = draw(st.lists(st.integers(0, 8000), min_size=count, max_size=count))
    total = draw(st.integers(0, 60_000))
    return np.array(requested), np.array(priorities), np.array(caps), total


def importance_order(priorities: np.ndarray) -> list[int]:
    return sorted(range(len(priorities)), key=lambda i: (priorities[i], i))


@settings(max_examples=300, deadline=None)
@given(sections())
def test_allocate_properties(case):
    requested, priorities, caps, total = case
    granted = allocate(requested, priorities, caps, total)
    capped = np.minimum(requested, caps)

    assert (granted >= 0).all()
    assert (granted <= requested).all()
    assert granted.sum() <= total
    if capped.sum() <= total:
        assert (granted >= capped).all()
        assert granted.sum() == min(total, requested.sum())
    else:
        assert (granted <= capped).all()
        assert granted.sum() == total

    order = importance_order(priorities)
    for rank, index in enumerate(order):
        less_important = order[rank + 1 :]
        if granted[index] < capped[index]:
            # A section is cut only after every less important one is cut to 0.
            assert all(granted[other] == 0 for other in less_important)
        if granted[index] > capped[index]:
            # Extra tokens reach a section only after every more important one is full.
            assert all(granted[other] == requested[other] for other in order[:rank])


def test_lines_within_exact_fit():
    assert lines_within([3, 4, 5], 7) == 2


def test_lines_within_one_token_short():
    assert lines_within([3, 4, 5], 6) == 1


def test_lines_within_all_fit():
    assert lines_within([3, 4, 5], 100) == 3


def test_lines_within_first_line_too_long():
    assert lines_within([30, 1, 1], 10) == 0


def test_lines_within_zero_budget_keeps_empty_lines():
    assert lines_within([0, 0, 1], 0) == 2


def test_lines_within_no_lines():
    assert lines_within([], 10) == 0


def test_lines_within_stops_at_first_overflow():
    # A later short line that would still fit is not taken: the cut keeps a prefix.
    assert lines_within([5, 10, 1], 8) == 1


@pytest.mark.parametrize(
    ("arguments", "name"),
    [(([1, -2], 5), "line_tokens"), (([1, 2], -1), "budget"), (([1.0, 2.0], 5), "line_tokens")],
)
def test_lines_within_rejects_invalid(arguments, name):
    with pytest.raises(ValueError, match=name):
        lines_within(*arguments)
