"""A model's ids as integers: lookups are exact (hash collisions included), keys sort as the strings,
and a device's rows in the profile tables are found by index."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.features import Profiles, build_profiles
from detector.features import dictionary as dictionary_module
from detector.features.common import entity_of
from detector.features.dictionary import DeviceIndex, Dictionary, Grouped
from tests.features.test_lean_device import BASELINE, CONFIG, SCAN

words = st.text(alphabet=st.sampled_from("ab\u00e9\U0001f600 Z0"), max_size=4)


def expected(ids: list[str | None], values: list[str | None]) -> list[int]:
    known = sorted({v for v in ids if v is not None}, key=lambda v: v.encode())
    return [known.index(v) if v in known else -1 for v in values]


@pytest.fixture(params=["bucket", "small", "colliding"])
def lookup(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each way a value is found: the bucket table, polars' own for a few ids, every id of one hash."""
    if request.param != "small":
        monkeypatch.setattr(dictionary_module, "_SMALL", 0)
    if request.param == "colliding":
        monkeypatch.setattr(dictionary_module, "_hashes", lambda values: np.full(len(values), 7, dtype=np.uint64))
    return str(request.param)


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.none() | words, max_size=30), values=st.lists(st.none() | words, max_size=30))
def test_find_is_exact(ids: list[str | None], values: list[str | None]) -> None:
    for name in ("bucket", "colliding"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(dictionary_module, "_SMALL", 0)
            if name == "colliding":
                patch.setattr(dictionary_module, "_hashes", lambda v: np.full(len(v), 7, dtype=np.uint64))
            dictionary = Dictionary(pl.Series(ids, dtype=pl.String))
            assert dictionary.find(pl.Series(values, dtype=pl.String)).tolist() == expected(ids, values)
    small = Dictionary(pl.Series(ids, dtype=pl.String))
    assert small.find(pl.Series(values, dtype=pl.String)).tolist() == expected(ids, values)


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(words, max_size=20), values=st.lists(st.none() | words, max_size=30))
def test_order_keys_sort_as_the_strings(ids: list[str], values: list[str | None]) -> None:
    dictionary = Dictionary(pl.Series(ids, dtype=pl.String))
    series = pl.Series(values, dtype=pl.String)
    keys = dictionary.order_keys(series, dictionary.find(series))
    # Equal keys exactly for equal values; ordered as the values' bytes (polars' string order), nulls first.
    rank = {v: i for i, v in enumerate(sorted({v for v in values if v is not None}, key=lambda v: v.encode()))}
    ranks = [-1 if v is None else rank[v] for v in values]
    for i in range(len(values)):
        for j in range(len(values)):
            assert (keys[i] < keys[j]) == (ranks[i] < ranks[j])
            assert (keys[i] == keys[j]) == (ranks[i] == ranks[j])


def test_the_ids_are_sorted_and_distinct_and_an_empty_dictionary_finds_nothing(lookup: str) -> None:
    dictionary = Dictionary(pl.Series(["m2", None, "m1", "m2", "g"]))
    assert dictionary.ids.to_list() == ["g", "m1", "m2"]
    assert not dictionary.as_given
    assert Dictionary(pl.Series(["a", "b"])).as_given
    assert not any(Dictionary(pl.Series(v)).as_given for v in (["b", "a"], ["a", "a"], [None, "a"], ["a", None]))
    assert dictionary.find(pl.Series(["m2", "x", None, "g"])).tolist() == [2, -1, -1, 0]
    assert Dictionary(pl.Series([], dtype=pl.String)).find(pl.Series(["a", None])).tolist() == [-1, -1]
    assert Dictionary(pl.Series(["a"])).find(pl.Series([], dtype=pl.String)).tolist() == []
    runs = pl.Series(["g", "g", "m1", "x", "x", "m2"])
    assert dictionary.find_in(runs).tolist() == dictionary.find(runs).tolist() == [0, 0, 1, -1, -1, 2]


def test_grouped_rows_in_table_order() -> None:
    grouped = Grouped(np.array([2, -1, 0, 2, 1, 0]), 4)
    assert grouped.rows(np.array([0, 2])).tolist() == [0, 2, 3, 5]
    assert grouped.rows(np.array([3])).tolist() == []
    assert grouped.first_of(np.array([2, 3, -1, 0])).tolist() == [0, -1, -1, 2]


@pytest.fixture(scope="module")
def profiles() -> Profiles:
    return build_profiles(BASELINE, CONFIG)


def test_device_index_is_aligned_with_the_device_tables(profiles: Profiles) -> None:
    index = profiles.device_index()
    assert index is profiles.device_index() is profiles.restricted(SCAN).device_index()  # once per model
    assert index.devices.ids.to_list() == profiles.device_activity["device_id"].to_list()
    rows = index.activity.first_of(np.arange(len(index.devices)))
    assert profiles.device_activity["device_id"].gather(rows).equals(index.devices.ids, check_names=False)
    assert index.typical.first_of(np.arange(len(index.devices))).tolist() == rows.tolist()
    # Known pairs are the baseline's (device, account) with a use; ids the model lacks are never known.
    device = index.devices.find(pl.Series(["M1", "M1", "M3", "M99", "G1", None]))
    account = index.accounts.find(pl.Series(["alice", "bob", "bob", "alice", "bob", "bob"]))
    assert index.known_pairs(device, account).tolist() == [True, False, True, False, True, False]


def test_an_index_of_tables_that_name_devices_device_activity_lacks() -> None:
    activity = pl.DataFrame({"device_id": ["b", "a"]})
    typical = pl.DataFrame({"device_id": ["a", "c"]})
    issuers = pl.DataFrame({"device_id": ["c", "b", None], "account": ["x", "y", "x"], "events": [1, 0, 1]})
    index = DeviceIndex(activity, typical, issuers)
    assert index.devices.ids.to_list() == ["a", "b", "c"]
    everything = np.arange(3)
    assert index.activity.first_of(everything).tolist() == [1, 0, -1]
    assert index.typical.first_of(everything).tolist() == [0, -1, 1]
    assert index.issuers.rows(everything).tolist() == [0, 1]
    assert index.issuers.rows(np.array([0])).tolist() == []
    x = index.accounts.find(pl.Series(["x"]))[0]
    assert index.known_pairs(np.array([2, 1, 0]), np.array([x, x, x])).tolist() == [True, False, False]
    empty = DeviceIndex(activity.clear(), typical.clear(), issuers.clear())
    assert not empty.known_pairs(np.array([0, -1]), np.array([0, 0])).any()


def cut_by_strings(profiles: Profiles, events: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The tables as restricted() cut them before it had an index: a string is_in per table."""
    devices = events.select(entity_of("device")).drop_nulls().unique().to_series().implode()
    return {name: getattr(profiles, name).filter(pl.col(key).is_in(devices)) for name, key in (
        ("device_activity", "device_id"), ("device_typical", "device_id"), ("device_issuers", "device_id"),
        ("account_targets", "target_id"))}


@pytest.mark.parametrize("events", [SCAN, BASELINE, SCAN.clear(), SCAN.filter(pl.col("target_id") == "M99")],
                         ids=["scan", "baseline", "empty", "unknown device"])
def test_restricted_takes_the_rows_of_the_events_devices(profiles: Profiles, events: pl.DataFrame) -> None:
    cut = profiles.restricted(events)
    for name, table in cut_by_strings(profiles, events).items():
        assert getattr(cut, name).equals(table), name
    assert cut.whole is profiles and cut.account_activity is profiles.account_activity


def test_restricted_again_stays_within_the_first_cut(profiles: Profiles) -> None:
    first = profiles.restricted(SCAN.filter(pl.col("target_id") == "M1"))
    again = first.restricted(SCAN)
    assert again.device_activity["device_id"].to_list() == ["M1"]
    assert again.account_targets["target_id"].unique().to_list() == ["M1"]
    assert again.whole is profiles
