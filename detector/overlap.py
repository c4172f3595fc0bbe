"""Overlapping work: the next item is made while this one is used, or two items are worked on at once."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

_END = object()
_T = TypeVar("_T")
_R = TypeVar("_R")


def ahead(items: Iterator[_T]) -> Iterator[_T]:
    """*items*, each next one made in a background thread while the caller works on this one.

    For a producer that runs mostly outside the GIL (polars parsing a chunk or building a slice's
    windows, on every core) and a consumer that runs mostly in Python and numpy on one: overlapped,
    both cores of a small machine stay busy. One item at most is made ahead, so memory holds two.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ami-detector-ahead") as pool:
        pending = pool.submit(next, items, _END)
        while (item := pending.result()) is not _END:
            pending = pool.submit(next, items, _END)
            yield item  # type: ignore[misc]


def two_at_a_time(items: Iterator[_T], work: Callable[[_T], _R]) -> Iterator[_R]:
    """``work`` of each item, in order, the next item being worked on while the one before it is.

    Much of polars' work on one small piece (a chunk of a file, one log file's cited lines) keeps
    only one core busy; two pieces at once keep both. Results and errors come in the order of the
    items, as when they are worked on one at a time; at most two results wait in memory.
    """
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="ami-detector-pair") as pool:
        pending: deque[Future[_R]] = deque()
        while True:
            try:
                item = next(items)
            except StopIteration:
                break
            except Exception:
                while pending:  # what working one at a time would have given before the error
                    yield pending.popleft().result()
                raise
            pending.append(pool.submit(work, item))
            if len(pending) == 2:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
