from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.errors import InputError
from detector.parsers import ParseOptions, parse_file
from detector.parsers.base import finalize
from detector.parsers.hes_commands_jsonl import HesCommandsJsonl
from detector.parsers.winsec_jsonl import OTHER_CATEGORIES, WINDOWS_EVENTS, WinsecJsonl
from detector.schema import validate_events, validate_rejects
from tests.conftest import GOLDEN, assert_golden, parse_all

CHICAGO = ParseOptions(tz="America/Chicago")  # NXLog writes the agent's local time
GOLDENS = [("winsec_flat.jsonl", None), ("winsec_ecs.jsonl", None), ("winsec_nxlog.jsonl", CHICAGO)]
MAPPED_IDS = set(WINDOWS_EVENTS)

FLAT_4624 = ('{"TimeCreated":"2026-04-14T02:12:58.903Z","EventID":4624,"Computer":"HES-APP01.util.local",'
             '"TargetUserName":"svc_vendor_support","TargetDomainName":"UTIL","LogonType":10,'
             '"IpAddress":"10.40.8.21","WorkstationName":"JUMP01"}')
FLAT_4720 = ('{"TimeCreated":"2026-04-14T02:15:54.611Z","EventID":4720,"Computer":"HES-APP01.util.local",'
             '"SubjectUserName":"svc_vendor_support","SubjectDomainName":"UTIL","TargetUserName":"hes_admin2"}')


def _parse(tmp_path: Path, *lines: str, options: ParseOptions | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    path = tmp_path / "w.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return parse_all(path, WinsecJsonl, options)


def _row(tmp_path: Path, record: dict, options: ParseOptions | None = None) -> dict:
    events, rejects = _parse(tmp_path, json.dumps(record), options=options)
    assert rejects.height == 0, rejects.get_column("reason").to_list()
    return events.row(0, named=True)


def _comparable(events: pl.DataFrame) -> list[dict]:
    return events.drop("raw_file", "raw_line").to_dicts()


# ---- golden files -------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "options"), GOLDENS)
def test_golden(name: str, options: ParseOptions | None) -> None:
    assert_golden(name, WinsecJsonl, options)


@pytest.mark.parametrize(("name", "options"), GOLDENS)
def test_every_event_id_maps_as_the_table_says(name: str, options: ParseOptions | None) -> None:
    events, rejects = parse_all(GOLDEN / name, WinsecJsonl, options)
    assert rejects.height == 0
    codes = events.select("native_code", pl.col("action").cast(pl.String), "message").unique()
    for code, action, message in codes.iter_rows():
        # Sysmon's ids are looked up with the provider in front (its ids repeat other providers').
        key = code if code in WINDOWS_EVENTS else f"sysmon:{code}"
        assert action == (WINDOWS_EVENTS[key].action if key in WINDOWS_EVENTS else "other"), (code, message)


def test_every_mapped_event_id_is_covered() -> None:
    keys: set[str] = set()
    for name, options in GOLDENS:
        events, _ = parse_all(GOLDEN / name, WinsecJsonl, options)
        sysmon = pl.col("message").str.contains(r"^(?:Process Create|Network connection|File created|Registry value)")
        keys |= set(events.select(pl.when(sysmon).then(pl.lit("sysmon:") + pl.col("native_code"))
                                  .otherwise(pl.col("native_code"))).to_series())
    assert MAPPED_IDS <= keys


def test_every_claimed_action_is_reachable() -> None:
    seen: set[str] = set()
    for name, options in GOLDENS:
        events, _ = parse_all(GOLDEN / name, WinsecJsonl, options)
        seen |= set(events.get_column("action").cast(pl.String))
    assert seen == {e.action for e in WINDOWS_EVENTS.values()} | {"other"}


def test_the_three_shapes_tell_the_same_story() -> None:
    """The golden inputs replay one story per shape; actors, targets and groups must agree."""
    keys = ["native_code", "account", "target_id", "new_value", "old_value", "action", "category"]
    stories = []
    for name, options in GOLDENS:
        events, _ = parse_all(GOLDEN / name, WinsecJsonl, options)
        stories.append(events.head(21).select(keys).with_columns(pl.col("action", "category").cast(pl.String)))
    assert stories[0].to_dicts() == stories[1].to_dicts() == stories[2].to_dicts()


# ---- mapping decisions --------------------------------------------------------------------------

def test_logon_actor_is_the_target_and_logon_type_is_kept(tmp_path: Path) -> None:
    row = _row(tmp_path, json.loads(FLAT_4624))
    assert (row["account"], row["account_domain"], row["src_ip"], row["src_host"], row["host"]) == (
        "svc_vendor_support", "UTIL", "10.40.8.21", "JUMP01", "hes-app01")
    assert row["host_as_written"] == "HES-APP01.util.local"
    assert (row["action"], row["category"], row["outcome"], row["native_code"]) == (
        "login_success", "authentication", "success", "4624")
    assert row["message"] == "An account was successfully logged on (LogonType 10, RemoteInteractive)"
    assert row["target_id"] is None


def test_account_management_actor_is_the_subject(tmp_path: Path) -> None:
    row = _row(tmp_path, json.loads(FLAT_4720))
    assert (row["account"], row["target_type"], row["target_id"], row["action"]) == (
        "svc_vendor_support", "account", "hes_admin2", "account_created")


def test_group_add_takes_member_cn_and_group(tmp_path: Path) -> None:
    row = _row(tmp_path, {"TimeCreated": "2026-04-14T02:20:00Z", "EventID": 4728, "Computer": "DC01",
                          "SubjectUserName": "svc_vendor_support", "SubjectDomainName": "UTIL",
                          "MemberName": "CN=Doe\\, Jane,OU=Vendors,DC=util,DC=local", "MemberSid": "S-1-5-21-1-2-3-1311",
                          "TargetUserName": "Domain Admins", "TargetDomainName": "UTIL"})
    assert (row["action"], row["category"], row["target_id"], row["new_value"], row["old_value"]) == (
        "group_member_added", "privilege", "doe, jane", "Domain Admins", None)


def test_group_removal_is_role_revoked_with_the_group_as_old_value(tmp_path: Path) -> None:
    row = _row(tmp_path, {"TimeCreated": "2026-04-14T02:20:00Z", "EventID": 4733, "Computer": "HES-APP01",
                          "SubjectUserName": "svc_vendor_support", "MemberName": "-", "MemberSid": "S-1-5-21-1-2-3-1205",
                          "TargetUserName": "Remote Desktop Users", "TargetDomainName": "Builtin"})
    assert (row["action"], row["target_id"], row["old_value"], row["new_value"]) == (
        "role_revoked", "s-1-5-21-1-2-3-1205", "Remote Desktop Users", None)


def test_lockout_names_the_locked_account_and_caller_computer(tmp_path: Path) -> None:
    row = _row(tmp_path, {"TimeCreated": "2026-04-14T02:20:00Z", "EventID": 4740, "Computer": "DC01",
                          "SubjectUserName": "DC01$", "SubjectDomainName": "UTIL", "TargetUserName": "JDoe",
                          "TargetDomainName": "OPS-WS-14"})
    assert (row["account"], row["account_domain"], row["src_host"], row["target_id"], row["action"],
            row["outcome"]) == ("jdoe", "UTIL", "OPS-WS-14", "jdoe", "lockout", "success")


def test_log_cleared_is_log_tamper_by_the_subject(tmp_path: Path) -> None:
    row = _row(tmp_path, {"@timestamp": "2026-04-14T02:20:00Z",
                          "winlog": {"event_id": 1102, "computer_name": "HES-APP01",
                                     "user_data": {"SubjectUserName": "svc_vendor_support",
                                                   "SubjectDomainName": "UTIL", "xml_name": "LogFileCleared"}}})
    assert (row["account"], row["action"], row["category"], row["native_code"]) == (
        "svc_vendor_support", "log_cleared", "log_tamper", "1102")


def test_unmapped_event_is_kept_as_other(tmp_path: Path) -> None:
    row = _row(tmp_path, {"TimeCreated": "2026-04-14T02:20:00Z", "EventID": 4771, "Computer": "DC01",
                          "TargetUserName": "jdoe@UTIL.LOCAL", "IpAddress": "::ffff:10.40.8.21"})
    assert (row["action"], row["native_code"], row["category"], row["outcome"], row["account"], row["src_ip"]) == (
        "other", "4771", OTHER_CATEGORIES["4771"], "unknown", "jdoe", "10.40.8.21")
    row = _row(tmp_path, {"TimeCreated": "2026-04-14T02:20:00Z", "EventID": 5156, "Computer": "DC01"})
    assert (row["action"], row["native_code"], row["category"]) == ("other", "5156", "system")


def test_logon_failure_reason_in_message(tmp_path: Path) -> None:
    row = _row(tmp_path, {"TimeCreated": "2026-04-14T02:20:00Z", "EventID": 4625, "Computer": "HES-APP01",
                          "TargetUserName": "Administrator", "TargetUserSid": "S-1-0-0", "LogonType": 3,
                          "Status": "0xC000006D", "SubStatus": "0xC0000064", "IpAddress": "-", "WorkstationName": "-"})
    assert (row["action"], row["outcome"], row["account"], row["src_ip"], row["src_host"]) == (
        "login_failure", "failure", "administrator", None, None)
    assert row["message"] == "An account failed to log on (LogonType 3, Network; 0xc0000064 unknown user name)"


def test_record_message_title_is_used(tmp_path: Path) -> None:
    row = _row(tmp_path, {"TimeCreated": "2026-04-14T02:20:00Z", "EventID": 4624, "Computer": "HES-APP01",
                          "TargetUserName": "jdoe", "LogonType": "2",
                          "Message": "Un compte a été ouvert avec succès.\r\n\r\nSujet :\r\n\tID de sécurité : S-1-5-18"})
    assert row["message"] == "Un compte a été ouvert avec succès (LogonType 2, Interactive)"


# ---- quirks ---------------------------------------------------------------------------------------

def test_numbers_as_strings_read_the_same(tmp_path: Path) -> None:
    as_numbers = {"@timestamp": "2026-04-14T02:12:58.903Z",
                  "winlog": {"event_id": 4624, "computer_name": "HES-APP01", "record_id": 1,
                             "event_data": {"TargetUserName": "jdoe", "LogonType": 10, "IpAddress": "10.1.1.1"}}}
    as_strings = json.loads(json.dumps(as_numbers).replace("4624", '"4624"').replace(": 10,", ': "10",'))
    assert as_strings["winlog"]["event_id"] == "4624" and as_strings["winlog"]["event_data"]["LogonType"] == "10"
    flat_strings = FLAT_4624.replace('"EventID":4624', '"EventID":"4624"').replace('"LogonType":10', '"LogonType":"10"')
    flat_float = FLAT_4624.replace('"EventID":4624', '"EventID":4624.0')
    events, rejects = _parse(tmp_path, json.dumps(as_numbers), json.dumps(as_strings), FLAT_4624, flat_strings,
                             flat_float)
    assert rejects.height == 0
    rows = _comparable(events)
    assert rows[0] == rows[1] and rows[2] == rows[3] == rows[4]
    assert rows[0]["native_code"] == "4624" and "LogonType 10" in rows[0]["message"]


def test_sid_dash_and_machine_accounts(tmp_path: Path) -> None:
    base = {"TimeCreated": "2026-04-14T02:20:00Z", "EventID": 4624, "Computer": "HES-APP01", "LogonType": 3}
    lines = [
        {**base, "TargetUserName": "HES-APP02$", "TargetDomainName": "UTIL"},
        {**base, "TargetUserName": "-", "TargetDomainName": "-", "TargetUserSid": "S-1-5-21-1-2-3-1333"},
        {**base, "TargetUserName": "-", "TargetUserSid": "S-1-0-0", "IpAddress": "-", "WorkstationName": "-"},
        {**base, "TargetUserName": "UTIL\\JDoe", "IpAddress": "::1", "WorkstationName": "\\\\OPS-WS-14"},
        {**base, "TargetUserName": "jdoe", "IpAddress": "127.0.0.1"},
    ]
    events, rejects = _parse(tmp_path, *map(json.dumps, lines))
    assert rejects.height == 0
    got = events.select("account", "account_domain", "src_ip", "src_host").rows()
    assert got == [
        ("hes-app02$", "UTIL", None, None),
        ("s-1-5-21-1-2-3-1333", None, None, None),
        (None, None, None, None),  # nobody named: no account rather than the null SID
        ("jdoe", "UTIL", "::1", "OPS-WS-14"),
        ("jdoe", None, "127.0.0.1", None),
    ]


@pytest.mark.parametrize("signal", [
    {"KeywordsDisplayNames": ["Audit Failure"]},
    {"EventType": "AUDIT_FAILURE"},
    {"Keywords": -9218868437227405312},
    {"Keywords": "0x8010000000000000"},
    {"keywords": ["Audit Failure"]},
    {"event": {"outcome": "failure"}},
])
def test_record_says_failure(tmp_path: Path, signal: dict) -> None:
    record = {"TimeCreated": "2026-04-14T02:20:00Z", "EventID": 4724, "Computer": "DC01",
              "SubjectUserName": "svc_vendor_support", "TargetUserName": "jdoe", **signal}
    assert _row(tmp_path, record)["outcome"] == "failure"


def test_record_says_success_and_default_outcomes(tmp_path: Path) -> None:
    base = {"TimeCreated": "2026-04-14T02:20:00Z", "Computer": "DC01", "TargetUserName": "jdoe"}
    assert _row(tmp_path, {**base, "EventID": 4771, "Keywords": 9232379236109516800})["outcome"] == "success"
    assert _row(tmp_path, {**base, "EventID": 4625})["outcome"] == "failure"
    assert _row(tmp_path, {**base, "EventID": 4740})["outcome"] == "success"
    assert _row(tmp_path, {**base, "EventID": 4771})["outcome"] == "unknown"


def test_time_variants(tmp_path: Path) -> None:
    base = {"EventID": 4624, "Computer": "HES-APP01", "TargetUserName": "jdoe"}
    times = ["/Date(1776132778903)/", "2026-04-14T04:12:58.9030000+02:00", "2026-04-14T02:12:58.9030000Z"]
    events, rejects = _parse(tmp_path, *[json.dumps({**base, "TimeCreated": t}) for t in times])
    assert rejects.height == 0
    assert {str(t) for t in events.get_column("time")} == {"2026-04-14 02:12:58.903000+00:00"}


def test_an_offset_bearing_field_wins_over_a_naive_one(tmp_path: Path) -> None:
    # NXLog: EventTime in the agent's local time, @timestamp in UTC. The offset decides, --tz or not.
    record = {"EventTime": "2026-04-14 02:12:58", "@timestamp": "2026-04-14T07:13:00Z", "EventID": 4624,
              "Hostname": "HES-APP01", "TargetUserName": "jdoe"}
    assert str(_row(tmp_path, record)["time"]) == "2026-04-14 07:13:00+00:00"
    assert str(_row(tmp_path, record, CHICAGO)["time"]) == "2026-04-14 07:13:00+00:00"
    # An EventTime that carries its offset is the event's own clock and beats the relay's.
    aware = {**record, "EventTime": "2026-04-14 02:12:58-05:00"}
    assert str(_row(tmp_path, aware)["time"]) == "2026-04-14 07:12:58+00:00"
    assert str(_row(tmp_path, {**record, "@timestamp": None, "EventReceivedTime": "2026-04-14T07:13:01Z"})["time"]) \
        == "2026-04-14 07:13:01+00:00"


def test_time_field_is_reported_per_file(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    path.write_text(json.dumps({"EventTime": "2026-04-14 02:12:58", "@timestamp": "2026-04-14T07:13:00Z",
                                "EventID": 4624, "Hostname": "H"}) + "\n"
                    + json.dumps({"EventTime": "2026-04-14 02:12:59", "EventID": 4624, "Hostname": "H"}) + "\n")
    chunks = list(parse_file(path, WinsecJsonl, CHICAGO))
    assert chunks[0].time_fields == {"@timestamp": 1, "EventTime (--tz America/Chicago)": 1}


def test_naive_event_time_needs_tz(tmp_path: Path) -> None:
    line = ('{"EventTime":"2026-04-14 02:12:58","Hostname":"HES-APP01","EventID":4624,'
            '"TargetUserName":"jdoe","LogonType":"10"}')
    # Among lines with offsets, a naive one is one reject; the lines around it parse.
    events, rejects = _parse(tmp_path, FLAT_4624, line, FLAT_4624)
    assert events.get_column("raw_line").to_list() == [1, 3]
    assert rejects.get_column("raw_line").to_list() == [2]
    assert "--tz" in rejects.item(0, "reason") and "UTC" not in rejects.item(0, "reason").replace("UTC offset", "")
    # A file with no offset anywhere asks the zone question, without suggesting UTC.
    with pytest.raises(InputError, match="--tz") as caught:
        _parse(tmp_path, line, line)
    assert "--tz UTC" not in caught.value.message
    events, _ = _parse(tmp_path, line, options=CHICAGO)
    assert str(events.item(0, "time")) == "2026-04-14 07:12:58+00:00"


def test_host_from_ecs_object_or_relay_string(tmp_path: Path) -> None:
    base = {"@timestamp": "2026-04-14T02:20:00Z", "winlog": {"event_id": "4624"}}
    events, rejects = _parse(tmp_path, json.dumps({**base, "host": {"name": "hes-app01", "ip": ["10.0.0.1"]}}),
                             json.dumps({**base, "host": "relay01"}))
    assert rejects.height == 0
    assert events.get_column("host").to_list() == ["hes-app01", "relay01"]


def test_mixed_shapes_in_one_file(tmp_path: Path) -> None:
    together: list[str] = []
    alone: list[dict] = []
    for name, _ in GOLDENS:
        lines = (GOLDEN / name).read_text().splitlines()
        together += lines
        alone += _comparable(parse_all(GOLDEN / name, WinsecJsonl, CHICAGO)[0])
    events, rejects = _parse(tmp_path, *together, options=CHICAGO)
    assert rejects.height == 0
    assert events.get_column("raw_line").to_list() == list(range(1, len(together) + 1))
    assert _comparable(events) == alone


def test_bad_and_foreign_lines_become_rejects_with_line_numbers(tmp_path: Path) -> None:
    hes = ('{"ts":"2026-04-14T02:31:02.118Z","jobId":"J-0414-000231","user":"ops_tmp7","command":"RemoteDisconnect",'
           '"targetId":"4A1B22C3","status":"Succeeded"}')
    events, rejects = _parse(
        tmp_path, FLAT_4624, "not json", "", hes, FLAT_4720, '{"EventID":4624,"Computer":"X"',
        '["list"]', '{"TimeCreated":"yesterday","EventID":4624}', '{"ts":"2026-04-14T02:31:02Z","level":"info"}',
        '{"TimeCreated":"2026-04-14T02:31:02Z","EventID":4624,"winlog":"flat text"}', FLAT_4624)
    assert events.get_column("raw_line").to_list() == [1, 5, 11]
    reasons = dict(rejects.select("raw_line", "reason").iter_rows())
    assert sorted(reasons) == [2, 4, 6, 7, 8, 9, 10]
    assert "not a JSON object" in reasons[2]
    assert "unexpected type" in reasons[4]  # the HES command log's "user" is text, not ECS's object
    assert "timestamp" in reasons[8]
    assert "no event id" in reasons[9]
    assert "unexpected type" in reasons[10]


# ---- sniffing -------------------------------------------------------------------------------------

def test_sniff_recognises_all_shapes_and_not_the_hes_command_log() -> None:
    for name, _ in GOLDENS:
        lines = (GOLDEN / name).read_text().splitlines()
        assert all(WinsecJsonl.sniff([line]) for line in lines), name
    get_winevent = '{"Id":4624,"ProviderName":"Microsoft-Windows-Security-Auditing","TimeCreated":"/Date(1)/"}'
    assert WinsecJsonl.sniff([get_winevent])
    hes_lines = (GOLDEN / "hes_commands.jsonl").read_text().splitlines()
    assert not WinsecJsonl.sniff(hes_lines)
    assert not WinsecJsonl.sniff(['{"EventID":12,"command":"x","jobId":"J1","Computer":"c"}'])
    assert not WinsecJsonl.sniff(['{"EventID":1,"level":"info"}', "EventID,Computer", ""])
    assert not HesCommandsJsonl.sniff((GOLDEN / "winsec_ecs.jsonl").read_text().splitlines())


# ---- never crashes, never loses a line ------------------------------------------------------------

_JSONISH = st.one_of(
    st.text(max_size=80),
    st.sampled_from([FLAT_4624, FLAT_4720, "", "  ", "{}", "[]", "null", '{"EventID":', '{"winlog":{"event_data":[]}}',
                     '{"EventID":4624,"TimeCreated":"2026-04-14 02:12:58"}', '{"EventID":{"a":1}}',
                     '{"EventID":4624,"TimeCreated":1e400}', '{"Keywords":"0xZZ","EventID":1,"TimeCreated":"1"}']),
    st.builds(lambda d: json.dumps(d), st.dictionaries(
        st.sampled_from(["EventID", "TimeCreated", "EventTime", "@timestamp", "TargetUserName", "MemberName",
                         "Keywords", "winlog", "host", "user", "event", "LogonType", "IpAddress", "Message"]),
        st.one_of(st.none(), st.integers(), st.text(max_size=20), st.booleans(),
                  st.dictionaries(st.sampled_from(["event_id", "name", "event_data", "outcome"]),
                                  st.one_of(st.integers(), st.text(max_size=10)), max_size=3)),
        max_size=6)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_JSONISH, min_size=1, max_size=12))
def test_never_raises_and_accounts_for_every_line(raws: list[str]) -> None:
    lines = pl.DataFrame({"raw_line": list(range(1, len(raws) + 1)), "raw": raws},
                         schema={"raw_line": pl.Int64, "raw": pl.String})
    parser = WinsecJsonl("fuzz.jsonl", ParseOptions(tz="UTC"))
    events, rejects = finalize(parser.parse_chunk(lines), source_format=WinsecJsonl.name, raw_file="fuzz.jsonl",
                               source_system=WinsecJsonl.source_system)
    validate_events(events)
    validate_rejects(rejects)
    non_blank = lines.filter(pl.col("raw").str.strip_chars() != "").get_column("raw_line").to_list()
    seen = sorted(events.get_column("raw_line").to_list() + rejects.get_column("raw_line").to_list())
    assert seen == non_blank


def test_group_named_none_is_kept(tmp_path: Path) -> None:
    row = _row(tmp_path, {"TimeCreated": "2026-04-14T02:15:00Z", "EventID": 4728, "Computer": "DC01",
                          "SubjectUserName": "admin", "TargetUserName": "None", "MemberName": "CN=Eve,OU=x"})
    assert (row["action"], row["new_value"], row["target_id"]) == ("group_member_added", "None", "eve")


# ---- the events attackers leave (golden: winsec_attacker.jsonl) --------------------------------------

def test_golden_attacker_events() -> None:
    assert_golden("winsec_attacker.jsonl", WinsecJsonl)


def _attacker() -> tuple[dict[str, dict], pl.DataFrame]:
    events, rejects = parse_all(GOLDEN / "winsec_attacker.jsonl", WinsecJsonl)
    by_code = {}
    for row in events.iter_rows(named=True):
        by_code.setdefault(row["native_code"], row | {"d": {d["key"]: d["value"] for d in row["details"] or []}})
    return by_code, rejects


def test_attacker_events_map_to_actions_with_actors_and_details() -> None:
    rows, rejects = _attacker()
    # Line 21 has only a naive EventTime among lines with offsets: one reject, nothing else lost.
    assert rejects.get_column("raw_line").to_list() == [21]
    expected = {
        "4688": "process_created", "4697": "service_installed", "7045": "service_installed",
        "4698": "task_created", "4702": "task_modified", "4719": "audit_policy_changed",
        "7040": "service_config_changed", "4648": "explicit_credential_logon", "4768": "kerberos_ticket",
        "4769": "kerberos_ticket", "4776": "ntlm_auth", "6416": "removable_media", "1": "process_created",
        "3": "network_connection", "11": "file_created", "13": "registry_set", "1102": "log_cleared",
        "104": "log_cleared",
    }
    assert {code: rows[code]["action"] for code in expected} == expected
    assert all(rows[c]["account"] == "svc_vendor_support" for c in expected if c not in ("1102", "13", "4776"))
    assert rows["4776"]["account"] == "hes_admin"  # the account whose credentials were checked
    # Times from the UTC @timestamp beside the local EventTime, without --tz.
    assert str(rows["4688"]["time"]) == "2026-04-14 02:02:00+00:00"
    # 1102 flat: the actor only in Message; a machine account keeps its $.
    assert (rows["1102"]["account"], rows["1102"]["account_domain"]) == ("hes-app01$", "UTIL")
    assert rows["1102"]["d"]["logon_id"] == "0xc61d9"
    assert rows["13"]["account"] == "system"
    assert rows["4624"]["d"]["logon_id"] == rows["4624"]["d"]["target_logon_id"] == "0x2b78cd"
    assert rows["4688"]["d"].items() >= {"image": "C:\\Windows\\System32\\cmd.exe", "command_line": "cmd.exe /c whoami",
                                     "parent_image": "C:\\Windows\\explorer.exe", "logon_id": "0x2b78cd"}.items()
    assert (rows["4697"]["target_type"], rows["4697"]["target_id"]) == ("service", "PSEXESVC")
    assert rows["4697"]["d"]["start_type"] == "demand start"
    assert rows["7045"]["d"]["service_account"] == "LocalSystem"  # from Message: NXLog reuses AccountName
    assert rows["4698"]["d"]["task_command"] == "powershell.exe -enc SQBFAFgA"
    assert rows["4702"]["d"]["task_command"] == "C:\\tmp\\a.exe"
    assert (rows["4719"]["d"]["audit_category"], rows["4719"]["d"]["audit_subcategory"],
            rows["4719"]["new_value"]) == ("Object Access", "Registry", "Success removed, Failure removed")
    assert (rows["7040"]["target_id"], rows["7040"]["old_value"], rows["7040"]["new_value"]) == (
        "EventLog", "auto start", "disabled")
    assert (rows["4648"]["target_id"], rows["4648"]["d"]["target_server"]) == ("hes_admin", "HES-DB01")
    assert (rows["4769"]["target_type"], rows["4769"]["target_id"]) == ("kerberos_service", "HES-DB01$")
    assert rows["4776"]["outcome"] == "failure" and rows["4776"]["src_host"] == "JUMP01"
    assert rows["6416"]["d"]["device_class"] == "DiskDrive"
    assert (rows["3"]["d"]["destination_ip"], rows["3"]["d"]["destination_port"]) == ("203.0.113.9", "443")
    assert rows["11"]["target_id"] == "C:\\Windows\\Temp\\x.ps1"
    assert rows["13"]["new_value"] == "DWORD (0x00000004)"
    assert rows["4728"]["new_value"] == "None"
    assert {r["host"] for r in rows.values()} == {"hes-app01"}
    assert rows["1102"]["d"]["channel"] == "Security"  # written "security"


_FIELD_VALUES = st.one_of(st.none(), st.text(max_size=30), st.sampled_from(
    ["-", "None", "0x3e7", "%%8448", "%%14336, %%8451", "&lt;Command&gt;x&lt;/Command&gt;", "S-1-0-0",
     "2026-04-14 02:00:00", "2026-04-14T02:00:00Z", "Account Name:\tbob\r\n", "HOST$"]))
_FIELDS = ["SubjectUserName", "TargetUserName", "User", "AccountName", "Domain", "UserID", "Message",
           "NewProcessName", "CommandLine", "ServiceName", "ServiceStartType", "TaskContent", "CategoryId",
           "SubcategoryId", "AuditPolicyChanges", "param1", "param2", "param3", "param4", "DestinationPort",
           "TargetObject", "Details", "EventTime", "@timestamp", "UtcTime", "Channel", "SubjectLogonId"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(code=st.sampled_from([*WINDOWS_EVENTS, "9999"]), values=st.lists(_FIELD_VALUES, min_size=len(_FIELDS),
                                                                          max_size=len(_FIELDS)))
def test_new_mappings_never_crash(tmp_path: Path, code: str, values: list) -> None:
    record = {"EventID": code.removeprefix("sysmon:"), "TimeCreated": "2026-04-14T02:00:00Z",
              **{k: v for k, v in zip(_FIELDS, values) if v is not None}}
    if code.startswith("sysmon:"):
        record["Channel"] = "Microsoft-Windows-Sysmon/Operational"
    events, rejects = _parse(tmp_path, json.dumps(record))
    assert events.height + rejects.height == 1


def test_sysmon_utc_time_gives_away_the_zone_of_naive_time_created(tmp_path: Path) -> None:
    sysmon = {"TimeCreated": "2020-10-21 12:19:02.230", "UtcTime": "2020-10-21 04:19:02.229", "EventID": 1,
              "Channel": "Microsoft-Windows-Sysmon/Operational", "Hostname": "WS5", "User": "DOM\\bob"}
    cleared = {"TimeCreated": "2020-10-21 12:19:01.088", "EventID": 1102, "Channel": "Security", "Hostname": "WS5",
               "Message": "The audit log was cleared.\r\nSubject:\r\n\tAccount Name:\twardog\r\n"}
    events, rejects = _parse(tmp_path, json.dumps(sysmon), json.dumps(cleared))
    assert rejects.height == 0
    assert [str(t) for t in events.get_column("time")] == ["2020-10-21 04:19:02.229000+00:00",
                                                          "2020-10-21 04:19:01.088000+00:00"]
    assert events.item(1, "account") == "wardog"
    # A difference no zone has (the host's clock was off) teaches nothing: the naive line is a reject.
    events, rejects = _parse(tmp_path, json.dumps({**sysmon, "UtcTime": "2020-10-22 04:19:02.229"}), json.dumps(cleared))
    assert rejects.get_column("raw_line").to_list() == [2]
