"""The simulated utility: determinism, file layout, labels, the shape of routine, and parseability.

The raw files are read here with polars and json, not with detector.parsers, so that these tests
check the simulator on its own; ``test_every_line_parses`` is the one that meets the parsers.
"""

from __future__ import annotations

import gzip
import json
import re
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from detector.errors import ConfigError
from detector.simulate import INCIDENT_KINDS, build_world, generate_day, simulate
from detector.simulate.writers import AUDIT_HEADER, FILE_NAMES, FORMAT_OF, write_day

SAMPLE = Path(__file__).parent.parent / "sample_logs"
ARGS = {"days": 8, "seed": 11, "meters": 600, "operators": 6}
BENIGN = {"storm_day", "approved_campaign_outside_window"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    simulate(out, **ARGS)
    return out


@pytest.fixture(scope="module")
def labels(corpus: Path) -> dict:
    return json.loads((corpus / "labels.json").read_text())


def _lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        return fh.read().split("\n")[:-1]


def raw_lines(directory: Path) -> pl.DataFrame:
    """Every event line of every log file with its time, read without the project's parsers."""
    frames = []
    for path in sorted(directory.iterdir()):
        if path.name == "labels.json":
            continue
        lines = _lines(path)
        if path.name.startswith("hes_audit"):
            assert lines[0] == ",".join(AUDIT_HEADER)
            lines = lines[1:]
        frames.append(pl.DataFrame({"file": path.name, "line": lines}))
    raw = pl.concat(frames)
    iso = pl.col("line").str.extract(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)").str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.3fZ", time_zone="UTC", strict=False)
    rt_text = pl.col("line").str.extract(r"rt=([A-Z][a-z]{2} \d\d \d{4} \d\d:\d\d:\d\d) UTC").str.to_datetime(
        "%b %d %Y %H:%M:%S", strict=False).dt.replace_time_zone("UTC")
    rt_ms = (pl.col("line").str.extract(r"rt=(\d{13})").cast(pl.Int64).cast(pl.Datetime("ms"))
             .dt.replace_time_zone("UTC"))
    raw = raw.with_columns(time=pl.coalesce(iso, rt_text, rt_ms).cast(pl.Datetime("ms", "UTC")))
    assert raw.get_column("time").null_count() == 0
    return raw


@pytest.fixture(scope="module")
def lines(corpus: Path) -> pl.DataFrame:
    return raw_lines(corpus)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text)


# ---- determinism and layout ------------------------------------------------------------------------

def _contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_same_seed_gives_byte_identical_output(corpus: Path, tmp_path: Path) -> None:
    simulate(tmp_path / "again", **ARGS)
    assert _contents(tmp_path / "again") == _contents(corpus)


def test_another_seed_gives_other_output(corpus: Path, tmp_path: Path) -> None:
    simulate(tmp_path / "other", **{**ARGS, "seed": 12})
    other, ours = _contents(tmp_path / "other"), _contents(corpus)
    common = set(other) & set(ours)
    assert len(common) > 20 and all(other[name] != ours[name] for name in common)


def test_one_file_per_source_per_local_day(corpus: Path, labels: dict) -> None:
    start = date.fromisoformat(labels["generator"]["start"])
    names = {p.name for p in corpus.iterdir()} - {"labels.json"}
    for day in range(ARGS["days"]):
        when = (start + timedelta(days=day)).isoformat()
        for source in ("hes_audit", "hes_commands", "dms", "winsec"):  # these have events every day
            assert FILE_NAMES[source].format(date=when) in names
    pattern = re.compile(r"^(hes_audit|hes_commands|dms|winsec|vpn|jumphost)_\d{4}-\d\d-\d\d\.(csv|jsonl|log|cef)$")
    assert all(pattern.match(name) for name in names)


def test_files_hold_their_local_day_in_time_order(corpus: Path, lines: pl.DataFrame) -> None:
    world = build_world(**ARGS)
    for day in range(ARGS["days"]):
        clock = world.clock(day)
        stamp = clock.date.isoformat()
        mine = lines.filter(pl.col("file").str.contains(stamp, literal=True))
        times = mine.get_column("time").dt.epoch("us")
        assert times.min() >= clock.start_us and times.max() < clock.end_us
        for _, group in mine.group_by("file"):
            assert group.get_column("time").is_sorted()


def test_a_day_is_generated_without_the_days_before_it(corpus: Path, tmp_path: Path) -> None:
    """Memory cannot grow with --days: any day comes out the same when generated on its own."""
    world = build_world(**ARGS)
    day = ARGS["days"] - 2
    frames, _ = generate_day(world, day)
    for source, frame in frames.items():
        if frame.height:
            written = write_day(source, frame, tmp_path, world.clock(day), compress=False)
            assert written.read_bytes() == (corpus / written.name).read_bytes()


def test_gzip_output_is_deterministic_and_equal_to_plain(tmp_path: Path) -> None:
    args = {**ARGS, "days": 2, "meters": 300}
    plain, packed, again = tmp_path / "plain", tmp_path / "gz", tmp_path / "gz2"
    simulate(plain, **args)
    simulate(packed, **args, compress=True)
    simulate(again, **args, compress=True)
    assert _contents(packed) == _contents(again)
    for path in packed.glob("*.gz"):
        assert gzip.decompress(path.read_bytes()) == (plain / path.name.removesuffix(".gz")).read_bytes()


@pytest.mark.parametrize("bad", [{"days": 0}, {"meters": 10}, {"operators": 1}, {"tz": "Mars/Olympus"}])
def test_bad_arguments_are_refused(tmp_path: Path, bad: dict) -> None:
    with pytest.raises(ConfigError):
        simulate(tmp_path, **{**ARGS, **bad})


# ---- formats ----------------------------------------------------------------------------------------

def test_raw_formats_are_well_formed(corpus: Path, lines: pl.DataFrame) -> None:
    for path in sorted(corpus.glob("hes_audit_*.csv")):
        table = pl.read_csv(path, infer_schema=False)
        assert table.columns == list(AUDIT_HEADER) and table.height == len(_lines(path)) - 1
    for path in [*corpus.glob("hes_commands_*.jsonl"), *corpus.glob("winsec_*.jsonl")]:
        for line in _lines(path):
            record = json.loads(line)
            assert ("ts" in record) or ("TimeCreated" in record) or ("@timestamp" in record)
    sd_param = r'\w+="(?:[^"\\\]]|\\.)*"'
    syslog = re.compile(rf'^<\d+>1 \S+ \S+ \S+ \d+ (AUTH|SCADA_CTRL|ALARM|CONFIG|TAG|USER_ADMIN) '
                        rf'\[\w+@32473(?: {sd_param})+\] \S.*$')
    dms = lines.filter(pl.col("file").str.starts_with("dms_")).get_column("line")
    assert dms.str.contains(syslog.pattern).all()
    cef = lines.filter(pl.col("file").str.ends_with(".cef")).get_column("line")
    header = r"^(?:<\d+>\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ )?CEF:0(?:\|(?:[^|\\]|\\.)*){6}\|rt="
    assert cef.str.contains(header).all()
    # An extension value never holds an unescaped '=' or a bare backslash.
    extension = cef.str.replace(r"^.*?\|rt=", "rt=")
    assert not extension.str.contains(r"(?:^|[^\\])(?:\\\\)*\\[^\\=n]").any()


def test_both_windows_styles_are_written(corpus: Path) -> None:
    first = {path.name: _lines(path)[0] for path in corpus.glob("winsec_*.jsonl")}
    assert any('"@timestamp"' in line for line in first.values())
    assert any('"TimeCreated"' in line for line in first.values())


# ---- labels -----------------------------------------------------------------------------------------

def test_labels_describe_the_run_and_every_incident(labels: dict) -> None:
    generator = labels["generator"]
    for key in ("seed", "days", "start", "meters", "operators", "baseline_until", "tz"):
        assert key in generator
    assert (generator["seed"], generator["days"], generator["meters"]) == (ARGS["seed"], ARGS["days"], ARGS["meters"])
    incidents = labels["incidents"]
    assert sorted(i["kind"] for i in incidents) == sorted(INCIDENT_KINDS)
    assert len({i["id"] for i in incidents}) == len(incidents)
    baseline_until = _utc(generator["baseline_until"])
    for incident in incidents:
        assert set(incident) >= {"id", "kind", "description", "accounts", "devices", "start", "end", "benign"}
        assert incident["benign"] == (incident["kind"] in BENIGN)
        assert baseline_until <= _utc(incident["start"]) <= _utc(incident["end"])
        assert incident["accounts"] and all(a == a.lower() for a in incident["accounts"])


def _mentions(lines: pl.Series, name: str) -> bool:
    pattern = rf"(?i)(?:^|[^A-Za-z0-9_.]){re.escape(name)}(?:[^A-Za-z0-9_]|$)"
    return bool(lines.str.contains(pattern).any())


def test_labelled_entities_appear_inside_their_time_span(lines: pl.DataFrame, labels: dict) -> None:
    for incident in labels["incidents"]:
        inside = lines.filter(pl.col("time").is_between(_utc(incident["start"]), _utc(incident["end"])))
        text = inside.get_column("line")
        for field in ("accounts", "devices", "hosts", "src_ips", "objects"):
            for name in incident.get(field, []):
                assert _mentions(text, name), f"{incident['kind']}: {field} {name} not in its span"


def test_nothing_planted_shows_in_the_baseline(lines: pl.DataFrame, labels: dict) -> None:
    baseline = lines.filter(pl.col("time") < _utc(labels["generator"]["baseline_until"])).get_column("line")
    planted_only = {"svc_reporting", "192.0.2.61", "192.0.2.144", "ENG-WS-07", "WS-TRN-04", "WS-KIOSK-02",
                    "nic_7.2.1.bin", "AuditLogCleared", '"EventID":1102', '"event_id":"1102"',
                    "Security.DisconnectApprovalRequired"}
    for needle in planted_only:
        assert not baseline.str.contains(needle, literal=True).any(), needle
    for incident in labels["incidents"]:
        if incident["kind"] == "firmware_outside_window":
            assert not baseline.str.contains(incident["objects"][1], literal=True).any()


def test_firmware_and_keys_change_only_in_the_window_unless_planted(lines: pl.DataFrame, labels: dict) -> None:
    commands = lines.filter(pl.col("file").str.starts_with("hes_commands"))
    local = commands.with_columns(local=pl.col("time").dt.convert_time_zone(labels["generator"]["tz"]))
    planted = pl.lit(False)
    for incident in labels["incidents"]:
        planted = planted | pl.col("time").is_between(_utc(incident["start"]), _utc(incident["end"]))
    sensitive = local.filter(pl.col("line").str.contains('"command":"(?:Firmware|KeyRenewal)') & ~planted)
    assert sensitive.height > 0
    assert (sensitive.get_column("local").dt.weekday() == 3).all()  # Wednesday
    assert (sensitive.get_column("local").dt.hour() < 4).all()


# ---- the shape of routine -------------------------------------------------------------------------

def _hourly(lines: pl.DataFrame, tz: str, who: pl.Expr) -> pl.DataFrame:
    commands = lines.filter(pl.col("file").str.starts_with("hes_commands")).with_columns(
        user=pl.col("line").str.extract(r'"user":"([^"]+)"'),
        hour=pl.col("time").dt.convert_time_zone(tz).dt.hour())
    counts = commands.filter(who).group_by("hour").len()
    return pl.DataFrame({"hour": list(range(24))}, schema={"hour": pl.Int8}).join(
        counts, on="hour", how="left").fill_null(0).sort("hour")


def test_people_are_quiet_at_night(lines: pl.DataFrame, labels: dict) -> None:
    hourly = _hourly(lines, labels["generator"]["tz"], ~pl.col("user").str.starts_with("svc_"))
    per_hour = hourly.get_column("len").to_list()
    night = sum(per_hour[1:5]) / 4
    office = sum(per_hour[8:13]) / 5
    assert office > 50 and night < 0.2 * office


def test_service_accounts_spike_at_their_scheduled_hours(lines: pl.DataFrame, labels: dict) -> None:
    hourly = _hourly(lines, labels["generator"]["tz"], pl.col("user") == "svc_mdm")
    per_hour = hourly.get_column("len").to_list()
    quiet = sorted(per_hour)[12]  # median hour
    for scheduled in (2, 6, 10, 18):  # re-reads at 02, 10, 18; connectivity pings at 06
        assert per_hour[scheduled] > 5 * max(quiet, 1)


def test_weekends_are_quieter_for_people(lines: pl.DataFrame, labels: dict) -> None:
    tz = labels["generator"]["tz"]
    commands = lines.filter(pl.col("file").str.starts_with("hes_commands")
                            & ~pl.col("line").str.contains('"user":"svc_', literal=False))
    days = commands.group_by(pl.col("time").dt.convert_time_zone(tz).dt.date().alias("day")).len()
    weekend = days.filter(pl.col("day").dt.weekday() >= 6).get_column("len").mean()
    weekday = days.filter(pl.col("day").dt.weekday() < 6).get_column("len").mean()
    assert weekend < 0.6 * weekday


# ---- the parsers --------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", sorted(set(FORMAT_OF.values())))
def test_every_line_parses(corpus: Path, fmt: str) -> None:
    from detector.parsers import PARSERS, parse_file, sniff

    if fmt not in PARSERS:
        pytest.skip(f"no parser registered for {fmt} yet")
    paths = [corpus / p.name for p in sorted(corpus.iterdir())
             if any(p.name.startswith(FILE_NAMES[s].split("{")[0]) for s, f in FORMAT_OF.items() if f == fmt)]
    assert paths
    for path in paths:
        parser = sniff(path)
        assert parser.name == fmt, f"{path.name} sniffed as {parser.name}"
        events = rejects = 0
        for chunk in parse_file(path, parser):
            events += chunk.events.height
            rejects += chunk.rejects.height
            assert chunk.rejects.height == 0, chunk.rejects.head(3).to_dicts()
        assert events == len(_lines(path)) - (1 if fmt == "hes_audit_csv" else 0)


# ---- the committed sample ------------------------------------------------------------------------

# Written by hand beside the simulated month: the mapping-file example and the malformed file.
NOT_SIMULATED = {"README.md", "acme_hes_audit.mapping.toml", "acme_hes_audit_2026-03-16.csv",
                 "hes_commands_malformed_2026-03-20.jsonl"}


def test_sample_logs_are_what_their_readme_command_writes(tmp_path: Path) -> None:
    labels = json.loads((SAMPLE / "labels.json").read_text())
    g = labels["generator"]
    simulate(tmp_path, days=g["days"], seed=g["seed"], meters=g["meters"], operators=g["operators"],
             start=date.fromisoformat(g["start"]), tz=g["tz"], baseline_days=g["baseline_days"])
    committed = {p.name: p.read_bytes() for p in SAMPLE.iterdir() if p.name not in NOT_SIMULATED}
    assert _contents(tmp_path) == committed, "regenerate sample_logs with the command in sample_logs/README.md"
    command = f"--days {g['days']} --seed {g['seed']} --meters {g['meters']} --operators {g['operators']}"
    assert command in (SAMPLE / "README.md").read_text()
