from __future__ import annotations

import polars as pl
import pytest

from detector.errors import ConfigError
from detector.findings import FINDINGS_SCHEMA
from detector.hunts import HUNTS, get_hunt, run_hunt
from detector.hunts.common import COMMON_TAIL
from detector.schema import empty_events
from tests.features.events import make_events

OPTIONS = {
    "firmware": {"windows": ["Wed 00:00-04:00"]},
    "vendor-access": {"accounts": ["svc_vendor*"]},
    "accounts": {},
    "log-tamper": {},
    "ioc": {"indicators": pl.DataFrame({"kind": ["account"], "value": ["svc_vendor_support"]})},
}


def events() -> pl.DataFrame:
    return make_events([
        {"time": "2026-03-04 04:00", "account": "svc_vendor_support", "action": "vpn_connect", "source_system": "vpn",
         "src_ip": "192.0.2.61"},
        {"time": "2026-03-05 04:00", "account": "dlee", "action": "fw_download", "image_sha256": "c" * 64,
         "target_type": "group", "target_id": "ALL_NORTH", "target_count": 10},
        {"time": "2026-03-05 05:00", "account": "eprice", "action": "log_cleared", "source_system": "windows"},
        {"time": "2026-03-05 06:00", "account": "eprice", "action": "account_created", "target_type": "account",
         "target_id": "ops_tmp7"},
    ])


def test_registry_names_every_hunt() -> None:
    assert list(HUNTS) == ["firmware", "vendor-access", "accounts", "log-tamper", "ioc"]
    assert get_hunt("Vendor_Access") is HUNTS["vendor-access"]
    with pytest.raises(ConfigError, match="unknown hunt 'beacons'; known: firmware, vendor-access"):
        get_hunt("beacons")


@pytest.mark.parametrize("name", list(HUNTS))
def test_every_hunt_ends_in_the_common_columns_and_converts_to_findings(name: str) -> None:
    table = run_hunt(name, events().lazy(), **OPTIONS[name])
    assert table.columns[-len(COMMON_TAIL):] == list(COMMON_TAIL)
    assert table.schema["evidence"] == pl.List(pl.String) and table.schema["reasons"] == pl.List(pl.String)
    assert table.height >= 1
    findings = HUNTS[name].to_findings(table, "low", called_out_only=False)
    assert findings.schema == FINDINGS_SCHEMA
    assert set(findings["detector"]) == {name} and findings["finding_id"].n_unique() == findings.height
    assert all(line.startswith("test.log:") for line in findings["evidence"].explode().drop_nulls())
    assert HUNTS[name].summary(table)[0].startswith(f"{name}: ")


def test_unknown_option_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="hunt firmware: .*windws.*its options: since, until, manifest, windows"):
        run_hunt("firmware", events(), windws=["Wed 00:00-04:00"])


def test_missing_columns_are_named() -> None:
    with pytest.raises(ConfigError, match="lack column"):
        run_hunt("accounts", events().drop("raw_line"))


@pytest.mark.parametrize("name", list(HUNTS))
def test_every_hunt_copes_with_no_events(name: str) -> None:
    table = run_hunt(name, empty_events(), **OPTIONS[name])
    assert not table["called_out"].any()
    assert HUNTS[name].to_findings(table, called_out_only=False).height == 0
    assert HUNTS[name].summary(table)[0].endswith(" 0 called out")
