from __future__ import annotations

import pytest

from detector.overlap import ahead


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
