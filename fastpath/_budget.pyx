"""Token budget kernels: arithmetic only. The checked entry points are in fastpath/budget.py."""

from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc


cdef void _order_by_priority(const int64_t[::1] priorities, Py_ssize_t* order) noexcept nogil:
    """Fill `order` with section indices by ascending priority, ties in the given order."""
    cdef Py_ssize_t n = priorities.shape[0]
    cdef Py_ssize_t i, j, index
    # Insertion sort: stable, and a context has only a handful of sections.
    for i in range(n):
        index = i
        j = i
        while j > 0 and priorities[order[j - 1]] > priorities[index]:
            order[j] = order[j - 1]
            j -= 1
        order[j] = index


def allocate(
    const int64_t[::1] requested,
    const int64_t[::1] priorities,
    const int64_t[::1] caps,
    int64_t total,
    int64_t[::1] granted,
):
    """Fill `granted` with each section's token budget (see fastpath.budget.allocate)."""
    cdef Py_ssize_t n = requested.shape[0]
    cdef Py_ssize_t i, k
    cdef int64_t used = 0
    cdef int64_t excess, left, cut, extra
    cdef Py_ssize_t* order = <Py_ssize_t*>malloc(max(n, 1) * sizeof(Py_ssize_t))
    if order == NULL:
        raise MemoryError()
    with nogil:
        _order_by_priority(priorities, order)
        for i in range(n):
            granted[i] = min(requested[i], caps[i])
            used += granted[i]

        if used > total:
            # Cut the least important sections first: highest priority number, and among
            # equal priorities the one given last.
            excess = used - total
            for k in range(n - 1, -1, -1):
                if excess == 0:
                    break
                i = order[k]
                cut = min(granted[i], excess)
                granted[i] -= cut
                excess -= cut
        else:
            # Hand the unused budget to sections that want more, most important first.
            left = total - used
            for k in range(n):
                if left == 0:
                    break
                i = order[k]
                extra = min(requested[i] - granted[i], left)
                granted[i] += extra
                left -= extra
    free(order)


def lines_within(const int64_t[::1] line_tokens, int64_t budget):
    """Return how many leading lines fit in `budget` tokens together."""
    cdef Py_ssize_t n = line_tokens.shape[0]
    cdef Py_ssize_t count = 0
    cdef int64_t used = 0
    with nogil:
        while count < n and used + line_tokens[count] <= budget:
            used += line_tokens[count]
            count += 1
    return count
