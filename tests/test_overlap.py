from __future__ import annotations

import pytest

from detector.overlap import ahead, two_at_a_time


def test_items_made_ahead_come_in_order_and_their_errors_reach_the_caller() -> None:
    made = []

    def items():
        for i in range(4):
            made.append(i)
            yield i
        raise ValueError("item 4 is unreadable")

    seen = []
    with pytest.raises(ValueError, match="item 4 is unreadable"):
        for item in ahead(items()):
            # The next item is made while this one is worked on, never further ahead.
            assert made[-1] <= item + 1
            seen.append(item)
    assert seen == [0, 1, 2, 3]


def test_work_two_at_a_time_comes_in_order_with_errors_where_they_happened() -> None:
    started = []

    def items():
        yield from range(5)
        raise ValueError("item 5 is unreadable")

    def work(item: int) -> int:
        started.append(item)
        if item == 3:
            raise KeyError(item)
        return item * 10

    results = two_at_a_time(items(), work)
    assert [next(results) for _ in range(3)] == [0, 10, 20]
    # Never more than one item beyond the result handed out is being worked on.
    assert max(started) <= 3
    with pytest.raises(KeyError):
        next(results)
    assert list(two_at_a_time(iter(range(7)), lambda i: -i)) == [0, -1, -2, -3, -4, -5, -6]
    reached = []
    with pytest.raises(ValueError, match="item 5 is unreadable"):
        for value in two_at_a_time(items(), lambda i: i):
            reached.append(value)  # noqa: PERF402 -- the values yielded before the error are the point
    assert reached == [0, 1, 2, 3, 4]
