"""EVTX records become the flat NXLog shape and go through the winsec mapping (no sample files needed)."""

from __future__ import annotations

import json

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.parsers import ParseOptions
from detector.parsers.winevtx import Evtx, flatten


def _record(event: dict) -> dict:
    return {"event_record_id": 7, "timestamp": "2026-04-14T02:00:00.000000Z UTC", "data": json.dumps({"Event": event})}


SERVICE_7045 = {
    "System": {"Provider": {"#attributes": {"Name": "Service Control Manager"}},
               "EventID": {"#attributes": {"Qualifiers": 16384}, "#text": 7045},
               "TimeCreated": {"#attributes": {"SystemTime": "2026-04-14T02:31:00.123456Z"}},
               "EventRecordID": 912, "Channel": "System", "Computer": "HES-APP01.util.local",
               "Security": {"#attributes": {"UserID": "S-1-5-21-1-2-3-1104"}}},
    "EventData": {"ServiceName": "PSEXESVC", "ImagePath": "%SystemRoot%\\PSEXESVC.exe",
                  "ServiceType": "user mode service", "StartType": "demand start", "AccountName": "LocalSystem"},
}
CLEARED_1102 = {
    "System": {"Provider": {"#attributes": {"Name": "Microsoft-Windows-Eventlog"}}, "EventID": 1102,
               "TimeCreated": {"#attributes": {"SystemTime": "2026-04-14T02:40:00Z"}}, "Channel": "Security",
               "Computer": "HES-APP01"},
    "UserData": {"LogFileCleared": {"SubjectUserSid": "S-1-5-21-1-2-3-500", "SubjectUserName": "HES-APP01$",
                                    "SubjectDomainName": "UTIL", "SubjectLogonId": "0xC61D9"}},
}


def _normalize(*events: dict) -> pl.DataFrame:
    from detector.parsers.base import finalize

    lines = pl.DataFrame({"raw_line": list(range(1, len(events) + 1)),
                          "raw": [json.dumps(flatten(_record(e))) for e in events]},
                         schema={"raw_line": pl.Int64, "raw": pl.String})
    staged = Evtx("x.evtx", ParseOptions()).parse_chunk(lines)
    out, rejects = finalize(staged, source_format="evtx", raw_file="x.evtx", source_system="windows")
    assert rejects.height == 0, rejects.get_column("reason").to_list()
    return out


def test_service_install_and_log_clear_map_like_nxlog() -> None:
    installed, cleared = _normalize(SERVICE_7045, CLEARED_1102).iter_rows(named=True)
    details = {d["key"]: d["value"] for d in installed["details"]}
    assert (installed["action"], installed["target_type"], installed["target_id"]) == (
        "service_installed", "service", "PSEXESVC")
    assert details["service_account"] == "LocalSystem"  # EventData AccountName, not the installer
    assert installed["account"] == "s-1-5-21-1-2-3-1104"  # EVTX names the installer by SID only
    assert str(installed["time"]) == "2026-04-14 02:31:00.123456+00:00"
    assert details["record_id"] == "912"
    assert (cleared["action"], cleared["account"], cleared["account_domain"]) == ("log_cleared", "hes-app01$", "UTIL")


_VALUE = st.recursive(st.one_of(st.none(), st.integers(), st.text(max_size=12), st.booleans()),
                      lambda inner: st.one_of(st.lists(inner, max_size=3),
                                              st.dictionaries(st.sampled_from(["#text", "#attributes", "Data", "Name", "x"]),
                                                              inner, max_size=3)), max_leaves=10)


@settings(max_examples=80, deadline=None)
@given(system=st.dictionaries(st.sampled_from(["EventID", "TimeCreated", "Computer", "Channel", "Provider",
                                               "Security", "Keywords", "EventRecordID"]), _VALUE, max_size=8),
       data=_VALUE, user_data=_VALUE)
def test_flatten_never_crashes(system: dict, data: object, user_data: object) -> None:
    flat = flatten(_record({"System": system, "EventData": data, "UserData": user_data}))
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in flat.items())
