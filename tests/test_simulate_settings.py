"""Varied utilities: the settings draw, and labels that stay exact whatever the settings."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from detector.errors import ConfigError
from detector.simulate import ALL_KINDS, BENIGN_KINDS, Settings, build_world, simulate
from detector.simulate.catalogue import CLASSIC_KINDS, EXTENDED_KINDS
from detector.simulate.incidents import HOUR_RANGES
from detector.simulate.scenarios import ROUTINE_EXTRAS
from tests.test_simulate import _mentions, raw_lines

# Small: a 300-meter utility of 10 + 7 days that differs from today's in every way it can.
VARIED = Settings.random(3, meters=300, operators=8, baseline_days=10, days=17, account_names="uid",
                         host_names="fqdn", domain_prefix=True, shifts="office", weekend_work=False, benign=True,
                         burst_size=12, settings_changed=3, vendors=2, scenarios=ALL_KINDS,
                         services_off=("svc_cis",), extra_services=2)
SEED = 5


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("varied")
    simulate(out, seed=SEED, settings=VARIED)
    return out


@pytest.fixture(scope="module")
def labels(corpus: Path) -> dict:
    return json.loads((corpus / "labels.json").read_text())


@pytest.fixture(scope="module")
def lines(corpus: Path) -> pl.DataFrame:
    return raw_lines(corpus)


# ---- the draw ------------------------------------------------------------------------------------------

def test_the_draw_is_deterministic_per_seed_and_varies_between_seeds() -> None:
    assert Settings.random(11) == Settings.random(11)
    drawn = [Settings.random(seed) for seed in range(12)]
    for field in ("meters", "baseline_days", "tz", "shifts", "account_names", "host_names", "burst_size"):
        assert len({getattr(s, field) for s in drawn}) > 1, field
    for s in drawn:
        assert 10 <= s.baseline_days <= 35 and s.days == s.baseline_days + 7
        assert 1000 <= s.meters <= 3000 and 8 <= s.operators <= 20
        assert s.scenarios is not None and s.timing_seed is not None
        assert set(s.scenarios) >= BENIGN_KINDS and set(s.scenarios) <= set(ALL_KINDS)
        assert 10 <= len(set(s.scenarios) - BENIGN_KINDS) <= 14
        ZoneInfo(s.tz)


def test_overrides_fix_fields_instead_of_drawing_them() -> None:
    assert Settings.random(4, meters=1234).meters == 1234
    assert replace(Settings.random(4, meters=1234), meters=Settings.random(4).meters) == Settings.random(4)


def test_default_settings_are_todays_utility() -> None:
    assert Settings().is_classic and not VARIED.is_classic
    classic = build_world(days=12, seed=2, meters=500, operators=6)
    same = build_world(seed=2, settings=Settings(days=12, meters=500, operators=6))
    assert classic.incidents == same.incidents and classic.pop.people == same.pop.people
    assert classic.dialect.is_identity


@pytest.mark.parametrize("bad", [{"shifts": "flexi"}, {"services_off": ("svc_oms",)}, {"settings_changed": 9},
                                 {"scenarios": ("no_such_kind",)}, {"extra_services": 6}])
def test_unusable_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ConfigError):
        build_world(seed=1, settings=replace(Settings(days=3, meters=200, operators=3), **bad))


def test_drawn_timing_keeps_each_kind_in_its_hours() -> None:
    world = build_world(seed=SEED, settings=replace(Settings.random(8), meters=300, scenarios=ALL_KINDS))
    assert {i.kind for i in world.incidents} >= set(EXTENDED_KINDS)
    for incident in world.incidents:
        lo, hi = HOUR_RANGES[incident.kind]
        assert lo <= incident.hour <= hi, incident
        assert world.baseline_days <= incident.day < world.days


def test_benign_scenarios_can_be_left_out() -> None:
    world = build_world(seed=SEED, settings=replace(VARIED, benign=False))
    kinds = {i.kind for i in world.incidents}
    assert kinds == set(ALL_KINDS) - BENIGN_KINDS


# ---- the written utility -------------------------------------------------------------------------------

def test_every_kind_is_planted_and_labelled_after_the_baseline(labels: dict) -> None:
    incidents = labels["incidents"]
    planted = {i["kind"] for i in incidents if not i["id"].startswith("RTN-")}
    assert planted == set(ALL_KINDS)
    until = _utc(labels["generator"]["baseline_until"])
    assert labels["generator"]["settings"]["account_names"] == "uid"
    for incident in incidents:
        assert until <= _utc(incident["start"]) <= _utc(incident["end"])
        assert incident["benign"] == (incident["kind"] in BENIGN_KINDS or incident["id"].startswith("RTN-"))
    routine = {i["kind"] for i in incidents if i["id"].startswith("RTN-")}
    assert {"scheduled_job_new_meters", "admin_server_rounds", "new_hire_onboarding"} <= routine
    assert routine <= {k for k, _ in ROUTINE_EXTRAS}
    assert sum(i["kind"] == "new_hire_onboarding" for i in incidents) == 1


def test_labelled_entities_appear_inside_their_span(lines: pl.DataFrame, labels: dict) -> None:
    for incident in labels["incidents"]:
        inside = lines.filter(pl.col("time").is_between(_utc(incident["start"]), _utc(incident["end"])))
        text = inside.get_column("line")
        for field in ("accounts", "devices", "hosts", "src_ips", "objects"):
            for name in incident.get(field, []):
                as_written = name.replace("\\", "\\\\")  # JSON lines escape the backslashes of a task path
                assert _mentions(text, name) or text.str.contains(as_written, literal=True).any(), \
                    f"{incident['kind']}: {field} {name} not in its span"


def test_names_follow_the_utilitys_scheme(lines: pl.DataFrame, labels: dict) -> None:
    text = lines.get_column("line")
    world = build_world(seed=SEED, settings=VARIED)
    people = [p.account for p in world.pop.people]
    # No canonical person name survives (the uid scheme: u12345), nor a short server name.
    for name in people[:10]:
        assert not _mentions(text, name), name
    for host in ("HES-APP01", "JUMP01", "DC01.util.local"):
        assert not text.str.contains(host, literal=True).any(), host
    assert text.str.contains("hesprd-app-1.corp.example", literal=True).any()
    audit = lines.filter(pl.col("file").str.starts_with("hes_audit")).get_column("line")
    assert audit.str.contains(r",UTIL\\u\d{5},").any()  # the HES audit's domain prefix
    humans = {i["kind"]: i["accounts"] for i in labels["incidents"]}
    assert all(re.fullmatch(r"[usa]\d{5}|svc_reporting|administrator|sqlmaint", a)
               for accounts in humans.values() for a in accounts), humans


def test_office_hours_desk_is_quiet_at_night_and_on_weekends(lines: pl.DataFrame, labels: dict) -> None:
    tz = labels["generator"]["tz"]
    baseline = lines.filter((pl.col("time") < _utc(labels["generator"]["baseline_until"]))
                            & pl.col("file").str.starts_with("hes_audit"))
    world = build_world(seed=SEED, settings=VARIED)
    operators = [world.dialect.accounts[p.account] for p in world.pop.people if p.kind == "operator"]
    logins = baseline.filter(pl.col("line").str.contains("UserLogin,")
                             & pl.col("line").str.contains("|".join(re.escape(o) for o in operators)))
    local = logins.get_column("time").dt.convert_time_zone(tz)
    assert logins.height > 20
    start = VARIED.shift_start
    assert (local.dt.hour() >= int(start) - 1).all() and (local.dt.hour() <= int(start + 9) + 1).all()
    assert (local.dt.weekday() <= 5).all()


def test_sizes_of_incidents_follow_the_settings(labels: dict) -> None:
    by_kind = {i["kind"]: i for i in labels["incidents"]}
    assert len(by_kind["disconnect_burst"]["devices"]) <= VARIED.burst_size
    assert len(by_kind["config_change"]["objects"]) == VARIED.settings_changed
    assert len(by_kind["rdp_new_account_disconnect"]["devices"]) == max(5, VARIED.burst_size // 3)


def test_windows_fields_of_the_new_events(lines: pl.DataFrame, labels: dict) -> None:
    win = lines.filter(pl.col("file").str.starts_with("winsec")).get_column("line")
    events = [json.loads(x) for x in win.filter(win.str.contains(r'"(?:EventID|event_id)":"?(?:4697|7045|4698)'))]
    data = [{**e.get("winlog", {}).get("event_data", {}), **e,
             "id": str(e.get("EventID") or e["winlog"]["event_id"])} for e in events]
    planted = [d for d in data if d.get("ServiceName") == "PSEXESVC" or "WinSvcHealth" in d.get("TaskName", "")]
    assert sorted(d["id"] for d in planted) == ["4697", "4698", "7045"]
    by_id = {d["id"]: d for d in planted}
    assert by_id["4697"]["ServiceFileName"].endswith("PSEXESVC.exe") and by_id["4697"]["SubjectLogonId"]
    assert by_id["7045"]["ImagePath"].endswith("PSEXESVC.exe") and "SubjectUserName" not in by_id["7045"]
    assert by_id["4698"]["TaskContent"].startswith("<?xml") and by_id["4698"]["SubjectUserName"]
    # Patch night, when it falls in the run, installs a driver and a task on every server it visits.
    patch = [d for d in data if d not in planted]
    assert len(patch) % 3 == 0
    assert all(d.get("ServiceName") in ("MpKslDrv", "WinDefend", "Sense") or "UpdateOrchestrator" in d["TaskName"]
               for d in patch)


def test_nothing_of_the_new_scenarios_shows_in_the_baseline(lines: pl.DataFrame, labels: dict) -> None:
    baseline = lines.filter(pl.col("time") < _utc(labels["generator"]["baseline_until"])).get_column("line")
    for needle in ("PSEXESVC", "Network.AdminAllowedCidr", "Audit.RetentionDays", "sqlmaint", "WS-LAB-03",
                   "Security.TlsMinVersion", "WS-OPS-219"):
        assert not baseline.str.contains(needle, literal=True).any(), needle
    planted = {i["kind"]: i for i in labels["incidents"]}
    for kind in ("rdp_new_account_disconnect", "admin_account_weakens_tls"):
        for account in planted[kind]["accounts"]:
            assert not _mentions(baseline, account), (kind, account)


def test_every_line_of_a_varied_utility_parses(corpus: Path) -> None:
    from detector.pipeline import read_logs

    events, rejects = read_logs(corpus)
    assert rejects.height == 0, rejects.head(3).to_dicts()
    assert events.height > 1000


def test_the_meter_qa_job_reaches_meters_it_never_read(lines: pl.DataFrame, labels: dict) -> None:
    until = _utc(labels["generator"]["baseline_until"])
    qa = lines.filter(pl.col("file").str.starts_with("hes_commands")
                      & pl.col("line").str.contains('"command":"OnDemandRead"')
                      & pl.col("line").str.contains(r'"user":"s\d{5}"')).with_columns(
        meter=pl.col("line").str.extract(r'"targetId":"([0-9A-F]{8})"'))
    scored = [i for i in labels["incidents"] if i["kind"] == "scheduled_job_new_meters"]
    assert scored
    qa_account = scored[0]["accounts"][0]
    mine = qa.filter(pl.col("line").str.contains(f'"user":"{qa_account}"', literal=True))
    before = set(mine.filter(pl.col("time") < until).get_column("meter"))
    assert before
    for incident in scored:
        assert not before & set(incident["devices"])
        start = _utc(incident["start"]).astimezone(ZoneInfo(labels["generator"]["tz"]))
        assert start.weekday() in (1, 3) and start.hour == 10


def test_classic_kinds_unchanged() -> None:
    assert CLASSIC_KINDS[:3] == ("admin_login_offhours", "password_spray", "vendor_login_unusual")
    world = build_world(days=28, seed=7, meters=300, operators=6, start=date(2026, 3, 2))
    assert sorted(i.kind for i in world.incidents) == sorted(CLASSIC_KINDS)
    assert world.start + timedelta(days=world.baseline_days) <= world.start + timedelta(days=21)


def test_integrations_come_and_go_with_the_settings(lines: pl.DataFrame) -> None:
    world = build_world(seed=SEED, settings=VARIED)
    commands = lines.filter(pl.col("file").str.starts_with("hes_commands")).get_column("line")
    user = commands.str.extract(r'"user":"([^"]+)"')
    users = set(user.drop_nulls())
    assert world.dialect.accounts["svc_cis"] not in users
    assert world.dialect.accounts["svc_billing"] in users
    extra = [world.dialect.accounts[name] for name in ("svc_analytics", "svc_gis")]
    assert set(extra) <= users
    assert "svc_prepay" not in world.dialect.accounts
