"""A model's ids as integers: string ids (device ids, accounts) looked up once per slice, and the
profile tables' rows of each device found by index rather than by joins on strings.

A scan compares every day's events with profile tables of hundreds of thousands of devices. Joining
or ``is_in`` on string ids builds a hash table of the strings every time; here the model's ids are
sorted and hashed once (:class:`Dictionary`), an event's id is found by its 64-bit hash in a bucket
table and then checked against the id itself (so a hash collision can never match the wrong id),
and what follows works on integers: sorting by device, a device's profile rows
(:class:`DeviceIndex`), whether a (device, account) pair is known.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import polars as pl

_SEED: Final = 0x5EED
# Up to this many ids (a model's issuing accounts, say), a lookup builds a hash table of them each time.
_SMALL: Final = 1 << 14


def _hashes(values: pl.Series) -> np.ndarray:
    return values.hash(_SEED).to_numpy()


class Dictionary:
    """Distinct strings in sorted order, each known by its index (``ids``), found by hash then checked."""

    def __init__(self, values: pl.Series) -> None:
        values = values.cast(pl.String)
        complete = values.null_count() == 0
        values = values.drop_nulls()
        # Most tables come sorted by their key: a sorted column needs only its repeats dropped.
        in_order = values.is_sorted()
        ids = values if in_order else values.unique().sort()
        ids = ids.filter(ids.ne_missing(ids.shift(1)))  # each id once
        self.ids: pl.Series = ids.rename("id")
        # Whether the ids are *values* as given (sorted, distinct, no null): their indices are their rows.
        self.as_given = complete and in_order and len(ids) == len(values)
        hashes = _hashes(self.ids)
        order = np.argsort(hashes, kind="stable")
        self._hashes, self._index = hashes[order], order.astype(np.int64)
        # A bucket per value of the top bits, about two per id: a lookup reads a bucket's few hashes.
        bits = max(len(ids).bit_length() + 1, 1)
        self._shift = np.uint64(64 - bits)
        self._buckets = _starts((self._hashes >> self._shift).astype(np.intp), 1 << bits)
        self._collisions = bool((np.diff(self._hashes) == 0).any())

    def __len__(self) -> int:
        return len(self.ids)

    def find(self, values: pl.Series) -> np.ndarray:
        """Each value's index in ``ids`` (int64), -1 if it is not there or null."""
        values = values.cast(pl.String)
        found = np.full(len(values), -1, dtype=np.int64)
        if not len(self.ids) or not len(values):
            return found
        if len(self.ids) <= _SMALL:  # polars' own hash table of a few ids costs less than checking each value
            return (values.replace_strict(self.ids, range(len(self.ids)), default=-1, return_dtype=pl.Int64)
                    .fill_null(-1).to_numpy())
        hashes = _hashes(values)
        bucket = (hashes >> self._shift).astype(np.intp)
        pending = np.flatnonzero(self._buckets[bucket] < self._buckets[bucket + 1])
        position, end = self._buckets[bucket[pending]], self._buckets[bucket[pending] + 1]
        while pending.size:  # the first id of the bucket with the value's hash, if any (buckets hold a few)
            hit = self._hashes[position] == hashes[pending]
            found[pending[hit]] = self._index[position[hit]]
            pending, position, end = pending[~hit], position[~hit] + 1, end[~hit]
            inside = position < end
            pending, position, end = pending[inside], position[inside], end[inside]
        # The hash matched: the id must be the value itself.
        same = (self.ids.gather(np.maximum(found, 0)) == values).fill_null(False).to_numpy()
        wrong = np.flatnonzero((found >= 0) & ~same)
        found[wrong] = self._search(values.gather(wrong)) if self._collisions else -1
        return found

    def find_in(self, values: pl.Series) -> np.ndarray:
        """:meth:`find` of a column, each run of equal values looked up once (tables sorted by it)."""
        values = values.cast(pl.String)
        heads = values.ne_missing(values.shift(1)).to_numpy()
        if heads.sum() > len(values) // 2:  # few runs to gain from
            return self.find(values)
        return self.find(values.filter(pl.Series(heads)))[np.cumsum(heads) - 1]

    def _search(self, values: pl.Series) -> np.ndarray:
        """:meth:`find` by binary search on the sorted ids (for ids sharing a hash)."""
        if not len(values):
            return np.zeros(0, dtype=np.int64)
        at = np.minimum(self.ids.search_sorted(values).to_numpy().astype(np.int64), len(self.ids) - 1)
        same = (self.ids.gather(at) == values).fill_null(False).to_numpy()
        return np.where(same, at, -1)

    def order_keys(self, values: pl.Series, found: np.ndarray) -> np.ndarray:
        """Integer keys (int64) that sort as *values* do, equal exactly for equal values, nulls first;
        *found* is :meth:`find` of *values*.

        An id at index i has key ``(2i + 1) m``; a value not among the ids falls between two of them
        (its insertion point p): ``2p m + r + 1``, with r its rank among those values and m one more
        than their number.
        """
        values = values.cast(pl.String)
        absent = (found < 0) & values.is_not_null().to_numpy()
        strangers = values.filter(pl.Series(absent))
        others = strangers.unique().sort()
        m = len(others) + 1
        keys = (2 * found + 1) * m  # nulls (found -1): -m, below every other key
        if len(others):
            rank = others.search_sorted(strangers).to_numpy().astype(np.int64)
            point = self.ids.search_sorted(others).to_numpy().astype(np.int64)
            keys[absent] = 2 * point[rank] * m + rank + 1
        return keys


def _starts(groups: np.ndarray, size: int) -> np.ndarray:
    """Where each of groups 0..size-1 starts in *groups* (sorted), and its end last."""
    return np.concatenate([[0], np.cumsum(np.bincount(groups, minlength=size))])


class Grouped:
    """The rows of a table grouped by the dictionary index of its id column (rows of ids not in the
    dictionary, or null, belong to no group)."""

    def __init__(self, index: np.ndarray, size: int) -> None:
        inside = np.flatnonzero(index >= 0)
        grouped = index[inside]
        if (np.diff(grouped) < 0).any():  # tables sorted by their id need no sort
            order = np.argsort(grouped, kind="stable")
            inside, grouped = inside[order], grouped[order]
        self._rows = inside
        self._starts = _starts(grouped, size)
        has = self._starts[:-1] < self._starts[1:]
        # Each id's first row, and a last -1 for ids not in the dictionary (-1).
        self._first = np.full(size + 1, -1, dtype=np.int64)
        self._first[:-1][has] = self._rows[self._starts[:-1][has]]

    @classmethod
    def one_each(cls, size: int) -> Grouped:
        """Rows 0..size-1, row i of id i (a table the dictionary was made of, as given)."""
        grouped = cls.__new__(cls)
        grouped._rows, grouped._starts = np.arange(size, dtype=np.int64), np.arange(size + 1, dtype=np.int64)
        grouped._first = np.append(grouped._rows, -1)
        return grouped

    def first_of(self, ids: np.ndarray) -> np.ndarray:
        """The first row of each id at dictionary indices *ids* (-1 for an id without rows, or -1)."""
        return self._first[ids]

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """The rows of the ids at dictionary indices *ids* (distinct), in table order."""
        starts, ends = self._starts[ids], self._starts[ids + 1]
        lengths = ends - starts
        total = int(lengths.sum())
        if not total:
            return np.zeros(0, dtype=np.int64)
        # Each range start..end laid end to end: a row's offset in its range plus its range's start.
        offsets = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return np.sort(self._rows[np.repeat(starts, lengths) + offsets])


class DeviceIndex:
    """A model's devices as integers: a :class:`Dictionary` of every device id its per-device tables
    name, each table's rows by device, and the baseline's known (device, issuing account) pairs.

    Built once per model (:meth:`~detector.features.profiles.Profiles.device_index`).
    """

    def __init__(self, activity: pl.DataFrame, typical: pl.DataFrame, issuers: pl.DataFrame) -> None:
        columns = (activity["device_id"], typical["device_id"], issuers["device_id"])
        devices = Dictionary(columns[0])
        found = [None if devices.as_given else devices.find(columns[0]),
                 None if columns[1].equals(columns[0]) else devices.find(columns[1]),
                 devices.find_in(columns[2])]
        if any(f is not None and ((f < 0) & column.is_not_null().to_numpy()).any()
               for f, column in zip(found, columns, strict=True)):
            devices = Dictionary(pl.concat([c.cast(pl.String) for c in columns]))  # ids beyond device_activity's
            found = [devices.find_in(column) for column in columns]
        self.devices = devices
        n = len(devices)
        # None: device_activity itself, as given (sorted, distinct), or device_typical aligned with it.
        self.activity = Grouped.one_each(n) if found[0] is None else Grouped(found[0], n)
        self.typical = self.activity if found[1] is None else Grouped(found[1], n)
        issuer_devices = found[2]
        assert issuer_devices is not None
        self.issuers = Grouped(issuer_devices, n)
        # Known pairs: a use in the baseline (flag_new's `_known > 0`), keyed device * width + account.
        used = (issuers["events"] > 0).fill_null(False).to_numpy()
        self.accounts = Dictionary(issuers["account"].filter(pl.Series(used)))
        device, account = issuer_devices[used], self.accounts.find(issuers["account"].filter(pl.Series(used)))
        both = (device >= 0) & (account >= 0)
        self._width = max(len(self.accounts), 1)
        pairs = device[both] * self._width + account[both]
        if (np.diff(pairs) <= 0).any():  # sorted already when the table is (by device, then account)
            pairs = np.sort(pairs)
            pairs = pairs[np.append(True, pairs[1:] != pairs[:-1])]
        self._pairs = pairs

    def known_pairs(self, device: np.ndarray, account: np.ndarray) -> np.ndarray:
        """Whether each (device index, index in :attr:`accounts`) is a pair of the baseline (-1: neither
        knows it). Fastest with *device* in order (events sorted by device)."""
        if not len(self._pairs):
            return np.zeros(len(device), dtype=bool)
        key = device * self._width + account
        at = np.minimum(np.searchsorted(self._pairs, key), len(self._pairs) - 1)
        return (device >= 0) & (account >= 0) & (self._pairs[at] == key)
