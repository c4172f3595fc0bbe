from __future__ import annotations

import polars as pl
import pytest

from detector.errors import InputError
from detector.parsers import ParseOptions
from detector.parsers.base import parse_times
from detector.parsers.hes_commands_jsonl import COMMAND_ACTIONS, HesCommandsJsonl
from detector.schema import UTC_US
from tests.conftest import GOLDEN, assert_golden, parse_all


def test_golden() -> None:
    assert_golden("hes_commands.jsonl", HesCommandsJsonl)


def test_every_command_maps_to_its_action() -> None:
    events, rejects = parse_all(GOLDEN / "hes_commands.jsonl", HesCommandsJsonl)
    assert rejects.height == 0
    assert set(COMMAND_ACTIONS.values()) <= set(events.get_column("action").cast(pl.String))


def test_group_command_counts_devices(tmp_path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"ts":"2026-04-14T02:33:47Z","jobId":"J1","user":"OPS1","command":"KeyRenewal",'
                    '"targetGroup":"ROUTE_17","targetCount":"412","status":"PartialSuccess"}\n')
    events, _ = parse_all(path, HesCommandsJsonl)
    row = events.row(0, named=True)
    assert (row["target_type"], row["target_id"], row["target_count"]) == ("group", "ROUTE_17", 412)
    assert (row["account"], row["action"], row["outcome"], row["category"]) == (
        "ops1", "key_renewal", "partial", "key_mgmt")


def test_unknown_command_is_kept_as_other(tmp_path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"ts":"2026-04-14T02:33:47Z","jobId":"J1","user":"a","command":"BrandNewThing","status":"Succeeded"}\n')
    events, rejects = parse_all(path, HesCommandsJsonl)
    assert rejects.height == 0
    assert events.row(0, named=True)["action"] == "other"
    assert events.row(0, named=True)["native_code"] == "BrandNewThing"
    assert events.row(0, named=True)["category"] == "device_command"


def test_bad_lines_become_rejects_with_line_numbers(tmp_path) -> None:
    good = '{"ts":"2026-04-14T02:33:47Z","jobId":"J1","user":"a","command":"TimeSync","status":"Succeeded"}'
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join([good, "not json", "", good, '{"ts":"2026-04-14T02:33:47Z"', '["list"]',
                               '{"ts":"yesterday","command":"TimeSync"}', good]) + "\n")
    events, rejects = parse_all(path, HesCommandsJsonl)
    assert events.get_column("raw_line").to_list() == [1, 4, 8]
    assert rejects.get_column("raw_line").to_list() == [2, 5, 6, 7]
    assert "timestamp" in rejects.filter(pl.col("raw_line") == 7).item(0, "reason")


def test_naive_time_needs_tz(tmp_path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"ts":"2026-04-14 02:33:47","jobId":"J1","user":"a","command":"TimeSync"}\n')
    with pytest.raises(InputError, match="--tz"):
        parse_all(path, HesCommandsJsonl)
    events, _ = parse_all(path, HesCommandsJsonl, ParseOptions(tz="America/Chicago"))
    assert str(events.item(0, "time")) == "2026-04-14 07:33:47+00:00"


def test_stamps_all_of_the_common_form_read_as_they_do_among_others() -> None:
    """parse_times returns a column of stamps all of the common UTC form at once: the values must be
    those it places one by one when other forms (or no stamp) are among them."""
    common = ["2026-03-30T05:04:52.643Z", " 2026-03-30T23:59:59Z", "2026-03-31T00:00:00.1234567Z"]
    others = [None, "2026-02-29T00:00:00Z", "2026-03-30 05:04:52"]  # no stamp, not a date, naive
    alone_aware, alone_naive = parse_times(pl.Series(common), year=2026)
    mixed_aware, mixed_naive = parse_times(pl.Series([*common, *others]), year=2026)
    assert alone_aware.dtype == UTC_US and alone_aware.null_count() == 0 and alone_naive.null_count() == 3
    assert alone_aware.equals(mixed_aware.head(3)) and alone_naive.equals(mixed_naive.head(3))
    assert mixed_aware.tail(3).null_count() == 3 and mixed_naive.tail(3).null_count() == 2
