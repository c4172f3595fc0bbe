from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.errors import ConfigError
from detector.findings import FINDINGS_SCHEMA
from detector.hunts.ioc import hunt_ioc, load_indicators, to_findings
from detector.hunts.stix import Comparison, parse_pattern
from tests.features.events import make_events

H = "591f6199ea3a8281268aae39c628af59a9f3a160d7f464e463f2ab01859ac387"


def events() -> pl.DataFrame:
    return make_events([
        {"time": "2026-03-25 06:13", "source_system": "vpn", "account": "svc_vendor_support", "action": "vpn_connect",
         "src_ip": "192.0.2.61", "target_type": "server", "target_id": "vpn01"},
        {"time": "2026-03-25 06:14", "source_system": "windows", "host": "JUMP01.util.local",
         "account": "svc_vendor_support", "action": "login_success", "src_ip": "10.40.9.155"},
        {"time": "2026-03-26 00:35", "source_system": "windows", "host": "DC01.util.local", "account": "eprice",
         "action": "account_created", "target_type": "account", "target_id": "UTIL\\SVC_Reporting"},
        {"time": "2026-03-26 00:47", "account": "svc_reporting", "action": "login_success", "src_ip": "2001:db8:cb4::e8a"},
        {"time": "2026-03-27 07:35", "account": "dlee", "action": "fw_download", "target_type": "group",
         "target_id": "ALL_NORTH", "image_sha256": H.upper(), "new_value": "nic_7.2.1.bin"},
        {"time": "2026-03-27 07:40", "account": "dlee", "action": "other",
         "message": f"staged image {H} from update.evil.example.com"},
        {"time": "2026-03-27 08:00", "account": "jdoe", "action": "ping", "target_type": "meter", "target_id": "192.0.2.77"},
    ])


def indicators(*rows: tuple[str, str]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"kind": pl.String, "value": pl.String}, orient="row")


def test_each_kind_matches_its_columns() -> None:
    table = hunt_ioc(events(), indicators(("ip", "192.0.2.0/24"), ("ip", "2001:db8::/32"), ("account", "svc_reporting"),
                                          ("hash", H), ("hostname", "jump01"), ("hostname", "evil.example.com"),
                                          ("ip", "203.0.113.9")))
    assert table.select("kind", "indicator", "field", "matched", "event_count").rows() == [
        ("ip", "192.0.2.0/24", "src_ip", ["192.0.2.61"], 1),
        ("hostname", "jump01", "host", ["jump01"], 1),
        ("account", "svc_reporting", "target_id", ["svc_reporting"], 1),
        ("account", "svc_reporting", "account", ["svc_reporting"], 1),
        ("ip", "2001:db8::/32", "src_ip", ["2001:db8:cb4::e8a"], 1),
        ("hash", H, "image_sha256", [H], 1),
        ("hash", H, "message", [H], 1),
        ("hostname", "evil.example.com", "message", ["evil.example.com"], 1),
        ("ip", "192.0.2.0/24", "target_id", ["192.0.2.77"], 1),
        ("ip", "203.0.113.9", None, [], 0),
    ]
    assert table["called_out"].to_list() == [True] * 9 + [False]
    first = table.row(0, named=True)
    assert first["evidence"] == ["test.log:1"] and first["accounts"] == ["svc_vendor_support"]
    assert first["first_seen"] == datetime(2026, 3, 25, 6, 13, tzinfo=UTC) and first["systems"] == ["vpn"]
    assert first["reasons"] == [("indicator 192.0.2.0/24 matches src_ip in 1 event from "
                                 "2026-03-25 06:13:00 to 2026-03-25 06:13:00 UTC")]
    assert table.row(-1, named=True)["description"] == "ip 203.0.113.9: no match"


def test_period_limits_the_events() -> None:
    table = hunt_ioc(events(), indicators(("ip", "192.0.2.61")), since="2026-03-26")
    assert table.select("called_out", "event_count").rows() == [(False, 0)]


def test_findings_only_for_hits() -> None:
    findings = to_findings(hunt_ioc(events(), indicators(("ip", "192.0.2.61"), ("ip", "198.51.100.1"))), "critical")
    assert findings.schema == FINDINGS_SCHEMA
    assert findings.select("entity_kind", "entity_id", "severity", "detector").rows() == [
        ("account", "svc_vendor_support", "critical", "ioc")]


def test_merged_findings_name_one_account_each() -> None:
    # 192.0.2.0/24 reaches two accounts (the VPN login and a command aimed at 192.0.2.77).
    table = hunt_ioc(events(), indicators(("ip", "192.0.2.0/24")))
    findings = to_findings(table.with_columns(accounts=pl.lit(["mcarter", "ops_tmp7"])), "high")
    assert set(findings.get_column("entity_id")) == {"mcarter"}
    assert all(", " not in entity for entity in findings.get_column("entity_id"))
    assert all("other accounts involved: ops_tmp7" in reasons for reasons in findings.get_column("reasons"))


# ---- indicator files ----------------------------------------------------------------------------

def test_csv_indicators_with_aliases_guesses_and_defanging(tmp_path: Path) -> None:
    path = tmp_path / "advisory.csv"
    path.write_text("# from the vendor's advisory\nType,Indicator,Description\nip-dst,192.0.2[.]61,C2 server\n"
                    f"SHA-256,{H.upper()},implant\n,198.51.100.0/24,\n,UTIL\\svc_Reporting,created by the actor\n"
                    ",update.evil[.]example.com,\nfqdn,JUMP01,\n")
    table, notes = load_indicators(path)
    assert notes == []
    assert table.rows() == [
        ("ip", "192.0.2.61", "C2 server", "advisory.csv:3"),
        ("hash", H, "implant", "advisory.csv:4"),
        ("ip", "198.51.100.0/24", "198.51.100.0/24", "advisory.csv:5"),
        ("account", "svc_reporting", "created by the actor", "advisory.csv:6"),
        ("hostname", "update.evil.example.com", "update.evil.example.com", "advisory.csv:7"),
        ("hostname", "jump01", "JUMP01", "advisory.csv:8"),
    ]


@pytest.mark.parametrize("text, words, line", [
    ("type,value\nip,192.0.2.300\n", "'192.0.2.300' is not an IPv4/IPv6 address or CIDR", 2),
    ("type,value\ncidr,10.0.0.0/40\n", "is not an IPv4/IPv6 address or CIDR", 2),
    ("type,value\nsha256,abc123\n", "is not an MD5, SHA-1, SHA-256 or SHA-512 hash", 2),
    ("type,value\nregistry-key,HKLM\\x\n", "unknown indicator type 'registry-key'", 2),
    ("type,value\nip,\n", "empty", 2),
    ("kind,what\nip,192.0.2.1\n", "no value column", 1),
    ("type,value\n", "no indicators", None),
    ("", "empty", None),
])
def test_malformed_csv_is_a_clear_error(tmp_path: Path, text: str, words: str, line: int | None) -> None:
    path = tmp_path / "iocs.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words) as info:
        load_indicators(path)
    assert info.value.source == (str(path), line)


def bundle(*objects: dict) -> dict:
    return {"type": "bundle", "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d", "objects": list(objects)}


def indicator(ident: str, pattern: str, **extra: object) -> dict:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{ident}", "created": "2026-04-01T00:00:00Z",
            "modified": "2026-04-01T00:00:00Z", "pattern": pattern, "pattern_type": "stix",
            "valid_from": "2026-04-01T00:00:00Z", **extra}


def test_stix_bundle_indicators(tmp_path: Path) -> None:
    path = tmp_path / "advisory.json"
    path.write_text(json.dumps(bundle(
        indicator("a", "[ipv4-addr:value = '192.0.2.61' OR ipv6-addr:value = '2001:DB8::1']", name="C2"),
        indicator("b", f"[file:hashes.'SHA-256' = '{H}'] AND [network-traffic:dst_port = 443]"),
        indicator("c", "[user-account:user_id IN ('svc_reporting', 'UTIL\\\\ops_tmp7')]"),
        indicator("d", "[domain-name:value = 'evil.example.com'] WITHIN 600 SECONDS"),
        indicator("e", "[ipv4-addr:value ISSUBSET '198.51.100.0/24']"),
        indicator("f", "alert tcp any any -> any 443", pattern_type="snort"),
        indicator("g", "[ipv4-addr:value = '203.0.113.1']", revoked=True),
        {"type": "ipv4-addr", "id": "ipv4-addr--h", "value": "203.0.113.7"},
        {"type": "file", "id": "file--i", "hashes": {"MD5": "D41D8CD98F00B204E9800998ECF8427E", "TLSH": "x"}},
        {"type": "malware", "id": "malware--j", "name": "implant", "is_family": False},
    )))
    table, notes = load_indicators(path)
    assert table.select("kind", "value", "origin").rows() == [
        ("ip", "192.0.2.61", "indicator--a"), ("ip", "2001:db8::1", "indicator--a"),
        ("hash", H, "indicator--b"), ("account", "svc_reporting", "indicator--c"), ("account", "ops_tmp7", "indicator--c"),
        ("hostname", "evil.example.com", "indicator--d"), ("ip", "198.51.100.0/24", "indicator--e"),
        ("ip", "203.0.113.7", "ipv4-addr--h"), ("hash", "d41d8cd98f00b204e9800998ecf8427e", "file--i"),
    ]
    assert table.row(0, named=True)["label"] == "C2"
    assert notes == [
        ("indicator indicator--b: network-traffic:dst_port = ... is not matched (only addresses, accounts, file hashes "
         "and host names)"),
        "indicator indicator--f: pattern_type 'snort' is not matched (only stix)",
        "indicator indicator--g is revoked and was not used",
        "file--i: hash algorithm TLSH is not matched (only SHA-256, SHA-1, MD5, SHA-512)",
    ]


@pytest.mark.parametrize("content, words", [
    ("{\"type\": \"bundle\", ", "not valid JSON"),
    ("[1, 2]", "not a STIX 2.1 bundle"),
    (json.dumps({"type": "report", "objects": []}), "not a STIX 2.1 bundle"),
    (json.dumps({"type": "bundle", "objects": {"a": 1}}), '"objects" must be a list'),
    (json.dumps(bundle({"id": "x"})), 'objects\\[0\\] is not a STIX object'),
    (json.dumps(bundle({"type": "indicator", "id": "indicator--n", "pattern_type": "stix"})), "has no \"pattern\""),
    (json.dumps(bundle(indicator("p", "[ipv4-addr:value = 192.0.2.1]"))),
     "indicator indicator--p: invalid STIX pattern .*position 24"),
    (json.dumps(bundle(indicator("q", "[ipv4-addr:value = '192.0.2.1'"))), "indicator indicator--q: .*ends early"),
    (json.dumps(bundle(indicator("r", "[ipv4-addr:value = '192.0.2.999']"))), "indicator--r: '192.0.2.999' is not"),
    (json.dumps(bundle(indicator("s", "[file:hashes.MD5 = 'xyz']"))), "'xyz' is not an MD5"),
    (json.dumps(bundle({"type": "ipv4-addr", "id": "ipv4-addr--t"})), 'ipv4-addr--t: "value" must be non-empty'),
    (json.dumps(bundle(indicator("u", "[network-traffic:dst_port = 443]"))), "no indicators of a kind"),
    (json.dumps(bundle()), "no indicators"),
])
def test_malformed_stix_is_a_clear_error(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=words) as info:
        load_indicators(path)
    assert info.value.source == (str(path), None)


@pytest.mark.parametrize("pattern, found", [
    ("[ipv4-addr:value = '10.0.0.1']", [Comparison("ipv4-addr:value", "=", ("10.0.0.1",))]),
    ("([a:b = 'x'] OR [c:d != 'y']) FOLLOWEDBY [e:f IN (1, 2)] START t'2026-01-01T00:00:00Z' STOP t'2026-02-01T00:00:00Z'",
     [Comparison("a:b", "=", ("x",)), Comparison("c:d", "!=", ("y",)), Comparison("e:f", "IN", ("1", "2"))]),
    ("[user-account:user_id = 'a\\'b\\\\c' AND NOT_A:x NOT LIKE 'y%']",
     None),
    ("[file:hashes.'SHA-256' = 'ab' AND (EXISTS x:y OR user-account:account_login MATCHES '^a')] REPEATS 5 TIMES",
     [Comparison("file:hashes.'SHA-256'", "=", ("ab",)), Comparison("user-account:account_login", "MATCHES", ("^a",))]),
    ("[user-account:user_id = 'a\\'b\\\\c']", [Comparison("user-account:user_id", "=", ("a'b\\c",))]),
    ("[x-vendor:value NOT = true]", [Comparison("x-vendor:value", "=", ("true",), negated=True)]),
])
def test_pattern_parser(pattern: str, found: list[Comparison] | None) -> None:
    if found is None:
        with pytest.raises(ValueError):
            parse_pattern(pattern)
    else:
        assert parse_pattern(pattern) == found


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("[]()',=<>!:.-_ aAbB019tTxORANDINSUBET\\")), max_size=60))
def test_pattern_parser_never_crashes_otherwise(text: str) -> None:
    try:
        parse_pattern(text)
    except ValueError:
        pass


def test_sample_logs_indicator_hits(sample_events: pl.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "advisory.csv"
    path.write_text(f"type,value,description\nip,192.0.2.61,C2\nhash,{H},implant\nip,203.0.113.250,unused\n")
    table = hunt_ioc(sample_events, path)
    hit = table.filter(pl.col("indicator") == "192.0.2.61").row(0, named=True)
    assert (hit["field"], hit["event_count"], hit["accounts"], hit["called_out"]) == (
        "src_ip", 2, ["svc_vendor_support"], True)
    assert [e.rsplit("/", 1)[-1] for e in hit["evidence"]] == ["vpn_2026-03-25.cef:1", "vpn_2026-03-25.cef:2"]
    assert table.filter(pl.col("indicator") == H)["accounts"].to_list() == [["dlee"]]
    assert hit["reasons"][0].startswith("indicator 192.0.2.61 (C2, advisory.csv:2) matches src_ip in 2 events")
    assert table.filter(~pl.col("called_out"))["indicator"].to_list() == ["203.0.113.250"]
