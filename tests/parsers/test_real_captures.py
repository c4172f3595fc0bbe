"""Real third-party Windows captures (``../shared/data`` beside the repository): nothing is lost.

The OTRF captures are NXLog-flattened JSON lines from an attacked lab domain; the EVTX samples are
binary event logs, one with a damaged chunk. Both are read without ``--tz``.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import polars as pl
import pytest

from detector.parsers import parse_file, sniff
from detector.parsers.winevtx import Evtx
from detector.parsers.winsec_jsonl import WinsecJsonl
from detector.schema import validate_events, validate_rejects
from tests.conftest import GOLDEN, UPDATE

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
OTRF = SHARED / "otrf"
EVTX = SHARED / "evtx"
needs_otrf = pytest.mark.skipif(not OTRF.is_dir(), reason=f"shared captures not found at {OTRF}")
needs_evtx = pytest.mark.skipif(not EVTX.is_dir(), reason=f"shared EVTX samples not found at {EVTX}")


def _parse(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    chunks = list(parse_file(path, sniff(path)))
    return (validate_events(pl.concat([c.events for c in chunks])),
            validate_rejects(pl.concat([c.rejects for c in chunks])))


def _captures(tmp_path: Path) -> list[Path]:
    out = []
    for archive in sorted(OTRF.glob("*.zip")):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if name.endswith(".json") and "__MACOSX" not in name:
                    target = tmp_path / Path(name).name
                    target.write_bytes(z.read(name))
                    out.append(target)
    return out


@pytest.fixture(scope="module")
def otrf(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, pl.DataFrame, pl.DataFrame]]:
    """Each capture, parsed once for the tests below."""
    return [(path, *_parse(path)) for path in _captures(tmp_path_factory.mktemp("otrf"))]


@needs_otrf
def test_every_line_of_every_otrf_capture_is_kept_and_on_time(otrf: list) -> None:
    assert len(otrf) >= 12
    for path, events, rejects in otrf:
        assert sniff(path) is WinsecJsonl, path.name
        lines = pl.read_lines(path.read_bytes(), name="raw").with_row_index("raw_line", offset=1)
        nonblank = lines.filter(pl.col("raw").str.strip_chars() != "")
        assert events.height + rejects.height == nonblank.height, path.name
        got = set(events.get_column("raw_line")) | set(rejects.get_column("raw_line"))
        assert got == set(nonblank.get_column("raw_line").cast(pl.Int64)), path.name
        # The time agrees with the collector's UTC @timestamp, wherever the line has one.
        stamps = nonblank.select(
            pl.col("raw_line").cast(pl.Int64),
            at=pl.col("raw").str.json_path_match("$['@timestamp']").str.to_datetime(time_zone="UTC", strict=False))
        joined = events.join(stamps, on="raw_line").filter(pl.col("at").is_not_null())
        if joined.height:
            skew = joined.select(((pl.col("time") - pl.col("at")).abs() > pl.duration(minutes=2)).sum()).item()
            assert skew == 0, path.name


@needs_otrf
def test_otrf_attack_events_have_actions_and_actors(otrf: list) -> None:
    events = pl.concat([events for _, events, _ in otrf])
    actions = set(events.get_column("action").cast(pl.String))
    assert {"process_created", "service_installed", "task_created", "task_modified", "audit_policy_changed",
            "service_config_changed", "explicit_credential_logon", "kerberos_ticket", "ntlm_auth",
            "network_connection", "file_created", "registry_set", "log_cleared"} <= actions
    # 1102 arrives flat with its actor only in Message (and a naive TimeCreated whose zone the file's
    # Sysmon records give away): it is read without --tz, with its actor.
    cleared = events.filter((pl.col("action") == "log_cleared") & (pl.col("native_code") == "1102"))
    assert "wardog" in set(cleared.get_column("account"))
    installed = events.filter(pl.col("action") == "service_installed")
    assert installed.get_column("account").null_count() == 0
    assert set(installed.get_column("target_type")) == {"service"}
    # One spelling per machine; the name as written kept.
    hosts = events.filter(pl.col("host_as_written").str.to_lowercase().str.starts_with("workstation5"))
    assert set(hosts.get_column("host")) == {"workstation5"}
    assert {"WORKSTATION5", "WORKSTATION5.theshire.local"} <= set(hosts.get_column("host_as_written"))


@needs_evtx
@pytest.mark.parametrize("name", ["Security_short_selected.evtx", "post-Security.evtx", "system.evtx",
                                  "sample_with_a_bad_chunk_magic.evtx"])
def test_evtx_samples_parse_without_tz(name: str) -> None:
    path = EVTX / name
    assert sniff(path) is Evtx
    events, rejects = _parse(path)
    assert events.height > 0
    import evtx  # the records the Rust parser can read at all: every one is an event or a reject

    readable = 0
    records = evtx.PyEvtxParser(str(path)).records_json()
    while True:
        try:
            next(records)
            readable += 1
        except StopIteration:
            break
        except RuntimeError:
            continue
    assert events.height + rejects.filter(pl.col("raw_line").is_not_null()).height == readable


@needs_evtx
def test_evtx_damaged_chunk_is_a_reject_naming_file_and_chunk() -> None:
    path = EVTX / "sample_with_a_bad_chunk_magic.evtx"
    events, rejects = _parse(path)
    damaged = rejects.filter(pl.col("reason").str.contains("chunk"))
    assert damaged.height >= 1
    assert damaged.get_column("raw_file").to_list()[0] == str(path)
    assert damaged.get_column("reason").str.contains(r"chunk number \d+").all()
    assert events.height >= 260  # the readable records around the damage


@needs_evtx
def test_evtx_golden() -> None:
    """EVTX records go through the winsec mapping: compare the short Security sample with its golden."""
    events, rejects = _parse(EVTX / "Security_short_selected.evtx")
    got = {"events": json.loads(events.with_columns(pl.col("raw_file").str.replace(r"^.*[/\\]", "")).write_json()),
           "rejects": []}
    expected_path = GOLDEN / "Security_short_selected.evtx.expected.json"
    if UPDATE or not expected_path.exists():
        expected_path.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n")
    assert rejects.height == 0
    assert got == json.loads(expected_path.read_text())
