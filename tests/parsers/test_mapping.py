from __future__ import annotations

import json

import polars as pl
import pytest

from detector.errors import ConfigError, InputError
from detector.parsers import ParseOptions
from detector.parsers.mapping import load_mapping
from detector.parsers.reader import read_head
from tests.conftest import DATA, parse_all

MAPPING = DATA / "mapping" / "acme.mapping.toml"
EXPORT = DATA / "mapping" / "acme_audit.csv"


def test_csv_mapping_end_to_end() -> None:
    parser = load_mapping(MAPPING)
    assert parser.name == "acme_hes_audit"
    assert parser.sniff(read_head(EXPORT))
    events, rejects = parse_all(EXPORT, parser)
    assert events.get_column("action").cast(pl.String).to_list() == ["login_success", "setting_changed", "other"]
    first = events.row(0, named=True)
    # 04:13:07 in Europe/Berlin (CEST, UTC+2) is 02:13:07 UTC.
    assert str(first["time"]) == "2026-04-14 02:13:07+00:00"
    assert (first["account"], first["src_ip"], first["src_host"], first["host"]) == (
        "jdoe", "10.20.1.55", "WS1", "acme-hes01")
    # An export column named like a schema column ("host") is ignored unless mapped.
    assert set(events.get_column("host")) == {"acme-hes01"}
    assert events.row(1, named=True)["new_value"] == "2;3"
    assert events.row(2, named=True)["native_code"] == "Export"
    assert rejects.get_column("raw_line").to_list() == [5]


def test_tz_option_overrides_the_mapping_zone() -> None:
    events, _ = parse_all(EXPORT, load_mapping(MAPPING), ParseOptions(tz="UTC"))
    assert str(events.item(0, "time")) == "2026-04-14 04:13:07+00:00"


def test_jsonl_mapping_with_nested_paths(tmp_path) -> None:
    mapping = tmp_path / "m.mapping.toml"
    mapping.write_text("""
[format]
name = "gridco_cmds"
kind = "jsonl"
source_system = "hes"
sniff = ["when", "who"]
[time]
field = "when"
[fields]
account = "who.name"
src_ip = "who.addr"
target_id = "what.device"
target_count = "what.count"
message = "note"
[constants]
target_type = "meter"
[action]
field = "what.op"
[action.values]
disconnect = "remote_disconnect"
[outcome]
field = "ok"
[outcome.values]
true = "success"
false = "failure"
""")
    export = tmp_path / "cmds.jsonl"
    rows = [
        {"when": "2026-04-14T02:00:00Z", "who": {"name": "Ops1", "addr": "10.0.0.5"},
         "what": {"op": "Disconnect", "device": "M1", "count": 1}, "ok": True, "note": "x", "host": "evil"},
        {"when": "2026-04-14T02:00:01Z", "who": {"name": "Ops1"}, "what": {"op": "Reboot", "device": "M2"}, "ok": False},
    ]
    export.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    parser = load_mapping(mapping)
    assert parser.sniff(read_head(export))
    events, rejects = parse_all(export, parser)
    assert events.select("account", "src_ip", "target_id", "action", "outcome", "host").rows() == [
        ("ops1", "10.0.0.5", "M1", "remote_disconnect", "success", None),
        ("ops1", None, "M2", "other", "failure", None),
    ]
    assert rejects.get_column("raw_line").to_list() == [3]


def test_explicit_time_format_without_zone_needs_tz(tmp_path) -> None:
    text = MAPPING.read_text().replace('timezone = "Europe/Berlin"\n', "")
    mapping = tmp_path / "m.mapping.toml"
    mapping.write_text(text)
    with pytest.raises(InputError, match="--tz"):
        parse_all(EXPORT, load_mapping(mapping))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('kind = "csv"', 'kind = "xml"'), "kind"),
        (('"Anmeldung" = "login_success"', '"Anmeldung" = "logged_in"'), "logged_in"),
        (('account = "Benutzer"', 'acount = "Benutzer"'), "acount"),
        (('timezone = "Europe/Berlin"', 'timezone = "Mars/Olympus"'), "time zone"),
        (('field = "Zeitstempel"', 'feld = "Zeitstempel"'), r"\[time\] field"),
        (("[format]", "[format"), "TOML"),
    ],
)
def test_bad_mappings_say_what_is_wrong(tmp_path, change: tuple[str, str], message: str) -> None:
    mapping = tmp_path / "bad.mapping.toml"
    text = MAPPING.read_text()
    assert change[0] in text
    mapping.write_text(text.replace(change[0], change[1], 1))
    with pytest.raises(ConfigError, match=message):
        load_mapping(mapping)
