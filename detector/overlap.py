"""Overlapping a producer with its consumer: the next item is made while this one is used."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

_END = object()
_T = TypeVar("_T")


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
