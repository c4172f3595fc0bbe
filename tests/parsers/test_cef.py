from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from detector.errors import InputError
from detector.parsers import ParseOptions
from detector.parsers.base import finalize
from detector.parsers.cef import Cef, extension_fields
from tests.conftest import GOLDEN, assert_golden, parse_all

GOLDEN_OPTIONS = ParseOptions(tz="America/Chicago", reference_time=datetime(2026, 5, 1))
VPN = "CEF:0|Acme|SSLVPN|9.1"


def _parse(tmp_path: Path, *lines: str, options: ParseOptions | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    path = tmp_path / "c.log"
    path.write_text("\n".join(lines) + "\n")
    return parse_all(path, Cef, options or ParseOptions(reference_time=datetime(2026, 5, 1)))


def _one(tmp_path: Path, line: str, options: ParseOptions | None = None) -> dict:
    events, rejects = _parse(tmp_path, line, options=options)
    assert rejects.height == 0, rejects.get_column("reason").to_list()
    return events.row(0, named=True)


Batch = Callable[[Sequence[str], ParseOptions], tuple[dict[int, dict], dict[int, str]]]


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Batch:
    """Parse a parametrized table's lines in one file, once: a case then costs a lookup, not a parse."""
    cache: dict[tuple[tuple[str, ...], ParseOptions], tuple[dict[int, dict], dict[int, str]]] = {}

    def parse(lines: Sequence[str], options: ParseOptions) -> tuple[dict[int, dict], dict[int, str]]:
        key = (tuple(lines), options)
        if key not in cache:
            path = tmp_path_factory.mktemp("cef") / "batch.log"
            path.write_text("\n".join(lines) + "\n")
            events, rejects = parse_all(path, Cef, options)
            cache[key] = ({r["raw_line"]: r for r in events.iter_rows(named=True)},
                          dict(rejects.select("raw_line", "reason").rows()))
        return cache[key]

    return parse


def _row(batch: Batch, lines: Sequence[str], index: int, options: ParseOptions | None = None) -> dict:
    """The event of ``lines[index]``, parsed with the rest of its table."""
    events, rejects = batch(lines, options or ParseOptions(reference_time=datetime(2026, 5, 1)))
    assert index + 1 not in rejects, rejects[index + 1]
    return events[index + 1]


def _escape(value: str) -> str:
    """CEF extension escaping as a producer writes it (the spec's four escapes)."""
    return value.replace("\\", "\\\\").replace("=", "\\=").replace("\n", "\\n").replace("\r", "\\r")


# ---- golden ------------------------------------------------------------------------------------


def test_golden() -> None:
    assert_golden("cef.log", Cef, GOLDEN_OPTIONS)


def test_golden_covers_every_mapping_and_reject() -> None:
    events, rejects = parse_all(GOLDEN / "cef.log", Cef, GOLDEN_OPTIONS)
    actions = set(events.get_column("action").cast(pl.String))
    assert actions == {"vpn_connect", "vpn_disconnect", "login_success", "login_failure", "logout", "lockout",
                       "other"}
    assert set(events.get_column("source_system").cast(pl.String)) == {"vpn", "jumphost", "firewall", "other"}
    # Line 24 is blank: neither an event nor a reject.
    assert rejects.get_column("raw_line").to_list() == [22, 23, 25, 26, 27, 28, 29]
    assert events.height + rejects.height == 28


# ---- rejects -------------------------------------------------------------------------------------


def test_rejects_carry_line_numbers_and_reasons(tmp_path: Path) -> None:
    good = f"{VPN}|vpn-login|VPN session established|3|rt=1776132701000 suser=a"
    events, rejects = _parse(tmp_path, good, "CEF:0|Acme|SSLVPN|9.1|vpn-login|VPN session established", "",
                             "Apr 14 02:11:40 vpn01 sshd[22]: Accepted password for root", good,
                             "<134>Apr 14 02:11:40 vpn01 CEF:0|Acme|SSLVPN", good)
    assert events.get_column("raw_line").to_list() == [1, 5, 7]
    reasons = dict(rejects.select("raw_line", "reason").rows())
    assert list(reasons) == [2, 4, 6]
    assert "fewer than 7" in reasons[2] and "fewer than 7" in reasons[6]
    assert reasons[4].startswith("not a CEF record")


def test_header_without_extension_is_an_event(tmp_path: Path) -> None:
    row = _one(tmp_path, "<134>Apr 14 03:20:00 vpn01 CEF:0|Acme|SSLVPN|9.1|heartbeat|Heartbeat|Low",
               ParseOptions(tz="UTC", reference_time=datetime(2026, 5, 1)))
    assert (row["host"], row["native_code"], row["action"], row["category"]) == (
        "vpn01", "heartbeat", "other", "remote_access")


# ---- timestamps ----------------------------------------------------------------------------------


RT_CASES = [
    ("1776132701000", "2026-04-14 02:11:41+00:00"),
    ("1776132701", "2026-04-14 02:11:41+00:00"),
    ("Apr 14 2026 02:11:41 UTC", "2026-04-14 02:11:41+00:00"),
    ("Apr 14 2026 02:11:41.250 UTC", "2026-04-14 02:11:41.250000+00:00"),
    ("Apr 14 2026 02:11:41 GMT", "2026-04-14 02:11:41+00:00"),
    ("Apr 14 2026 02:11:41 GMT+01:00", "2026-04-14 01:11:41+00:00"),
    ("Apr 14 2026 02:11:41 +0100", "2026-04-14 01:11:41+00:00"),
    ("Apr 14 2026 02:11:41.5 -05:30", "2026-04-14 07:41:41.500000+00:00"),
    ("Apr 14 2026 02:11:41 Z", "2026-04-14 02:11:41+00:00"),
    ("Apr 14 2026 02:11:41 EST", "2026-04-14 07:11:41+00:00"),
    ("Apr 14 2026 02:11:41 PDT", "2026-04-14 09:11:41+00:00"),
    ("Apr 14 2026 02:11:41 America/Chicago", "2026-04-14 07:11:41+00:00"),  # CDT in April
    ("Jan 14 2026 02:11:41 America/Chicago", "2026-01-14 08:11:41+00:00"),  # CST in January
    ("Apr  4 2026 02:11:41 Europe/Berlin", "2026-04-04 00:11:41+00:00"),
    ("Apr 14 02:11:41 UTC", "2026-04-14 02:11:41+00:00"),
    ("Apr 14 02:11:41.125 UTC", "2026-04-14 02:11:41.125000+00:00"),
    ("2026-04-14T02:11:41.5+02:00", "2026-04-14 00:11:41.500000+00:00"),
]
RT_LINES = [f"{VPN}|vpn-login|VPN session established|3|rt={rt} suser=a" for rt, _ in RT_CASES]


@pytest.mark.parametrize("case", RT_CASES, ids=[rt for rt, _ in RT_CASES])
def test_rt_variants(batch: Batch, case: tuple[str, str]) -> None:
    row = _row(batch, RT_LINES, RT_CASES.index(case))
    assert str(row["time"]) == case[1]


@pytest.mark.parametrize(("rt", "tz", "expected"), [
    ("Apr 14 2026 02:11:41", "America/Chicago", "2026-04-14 07:11:41+00:00"),
    ("Apr 14 2026 02:11:41.750", "UTC", "2026-04-14 02:11:41.750000+00:00"),
    ("Apr 14 02:11:41", "America/New_York", "2026-04-14 06:11:41+00:00"),
])
def test_naive_rt_is_placed_in_the_given_zone(tmp_path: Path, rt: str, tz: str, expected: str) -> None:
    row = _one(tmp_path, f"{VPN}|vpn-login|VPN session established|3|rt={rt} suser=a",
               ParseOptions(tz=tz, reference_time=datetime(2026, 5, 1)))
    assert str(row["time"]) == expected


def test_yearless_rt_takes_the_reference_year(tmp_path: Path) -> None:
    line = f"{VPN}|vpn-login|VPN session established|3|rt=Apr 14 02:11:41 UTC suser=a"
    for year in (2024, 2031):
        row = _one(tmp_path, line, ParseOptions(reference_time=datetime(year, 6, 1)))
        assert str(row["time"]) == f"{year}-04-14 02:11:41+00:00"


def test_yearless_rt_after_the_reference_is_from_the_year_before(tmp_path: Path) -> None:
    # A December export read on January 2nd: Dec 31 is last year's, Jan 1 this year's.
    events, _ = _parse(tmp_path, f"{VPN}|vpn-login|VPN session established|3|rt=Dec 31 23:59:00 UTC suser=a",
                       f"{VPN}|vpn-login|VPN session established|3|rt=Jan 01 00:01:00 UTC suser=a",
                       options=ParseOptions(reference_time=datetime(2027, 1, 2, 8, 0)))
    assert [str(t) for t in events.get_column("time")] == ["2026-12-31 23:59:00+00:00", "2027-01-01 00:01:00+00:00"]


def test_naive_rt_without_tz_raises_with_the_line(tmp_path: Path) -> None:
    zoned = f"{VPN}|vpn-login|VPN session established|3|rt=Apr 14 2026 02:11:41 EST suser=a"
    naive = f"{VPN}|vpn-login|VPN session established|3|rt=Apr 14 2026 02:11:41 suser=a"
    with pytest.raises(InputError, match="--tz") as info:
        _parse(tmp_path, zoned, naive)
    assert info.value.source is not None and info.value.source[1] == 2
    # Stamps with a zone never need --tz.
    events, _ = _parse(tmp_path, zoned, zoned)
    assert events.height == 2


def test_naive_syslog_header_time_without_tz_raises(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--tz"):
        _parse(tmp_path, "<134>Apr 14 02:11:41 vpn01 CEF:0|Acme|SSLVPN|9.1|x|y|3|suser=a")


def test_time_falls_back_from_rt_to_end_to_start_to_syslog_header(tmp_path: Path) -> None:
    head = "<86>1 2026-04-14T05:00:00Z vpn01 app - - - " + VPN + "|x|y|3|"
    events, _ = _parse(tmp_path, head + "rt=1776132701000 end=1776132702000 start=1776132703000",
                       head + "end=1776132702000 start=1776132703000", head + "start=1776132703000", head + "suser=a")
    assert [str(t) for t in events.get_column("time")] == [
        "2026-04-14 02:11:41+00:00", "2026-04-14 02:11:42+00:00", "2026-04-14 02:11:43+00:00",
        "2026-04-14 05:00:00+00:00"]
    assert events.get_column("host").to_list() == ["vpn01"] * 4


BAD_RT_CASES = [
    ("Apr 14 2026 02:11:41 Mars/Olympus", "unknown time zone 'Mars/Olympus' in rt"),
    ("Apr 14 2026 02:11:41 XYZT", "unknown time zone 'XYZT'"),
    ("Apr 14 2026 02:11:41 +2500", "unknown time zone '+2500'"),
    ("Apr 31 2026 02:11:41 UTC", "unparseable timestamp in rt"),
    ("yesterday", "unparseable timestamp in rt 'yesterday'"),
]


@pytest.mark.parametrize("case", BAD_RT_CASES, ids=[rt for rt, _ in BAD_RT_CASES])
def test_bad_rt_is_a_reject_with_a_reason(batch: Batch, case: tuple[str, str]) -> None:
    lines = [f"{VPN}|vpn-login|VPN session established|3|rt={rt} suser=a" for rt, _ in BAD_RT_CASES]
    events, rejects = batch(lines, ParseOptions(tz="UTC"))
    line = BAD_RT_CASES.index(case) + 1
    assert line not in events
    assert case[1] in rejects[line]


# ---- escaping ------------------------------------------------------------------------------------


def test_extension_values_and_escapes() -> None:
    ext = (r"msg=two words\=x and C:\\dir\\new\n\r and a\\nb | pipe \| escaped "
           r"rt=Apr 14 2026 02:11:41 UTC suser=a\\   cs1Label=group cs1= "
           r"request=http://h/?a=1&b=2 act=first act=second")
    keys = ["msg", "rt", "suser", "cs1Label", "cs1", "request", "act", "dst"]
    row = extension_fields(pl.Series([ext]), keys).row(0, named=True)
    assert row == {
        "msg": "two words=x and C:\\dir\\new\n\r and a\\nb | pipe | escaped",
        "rt": "Apr 14 2026 02:11:41 UTC",
        "suser": "a\\",
        "cs1Label": "group",
        "cs1": "",
        "request": "http://h/?a=1&b=2",  # an unescaped '=' not after a space stays in the value
        "act": "second",  # a repeated key keeps its last value
        "dst": None,
    }


def test_extension_full_key_names_and_odd_input() -> None:
    frame = extension_fields(
        pl.Series(["sourceUserName=jdoe deviceCustomString2Label=Role deviceCustomString2=ops", "no keys at all",
                   "", None, "  leading junk suser=x  "]),
        ["suser", "cs2Label", "cs2"])
    assert frame.rows() == [("jdoe", "Role", "ops"), (None, None, None), (None, None, None), (None, None, None),
                            ("x", None, None)]


def test_header_escapes(tmp_path: Path) -> None:
    row = _one(tmp_path, r"CEF:0|Acme\\Labs|Secure\|Gate VPN|9.1|sig\|7|VPN \\ session\|established|3|"
                         r"rt=1776132701000 suser=a")
    assert row["native_code"] == "sig|7"
    assert row["message"] == "VPN \\ session|established"
    assert row["source_system"] == "vpn"  # from the unescaped product name


@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.text(min_size=1, max_size=40), min_size=3, max_size=3))
def test_escaping_then_parsing_round_trips(values: list[str]) -> None:
    # Whitespace at either end of a value cannot be told from the separator, so it is not kept.
    assume(all(v == v.strip() for v in values))
    keys = ["msg", "cs1", "suser"]
    ext = " ".join(f"{k}={_escape(v)}" for k, v in zip(keys, values, strict=True))
    assert extension_fields(pl.Series([ext]), keys).row(0) == tuple(values)


_SIG = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), min_size=1, max_size=30).filter(
    lambda s: s == s.strip() and s.lower() not in {"-", "n/a", "na", "null", "none", "(null)"})


@settings(max_examples=15, deadline=None)
@given(sigs=st.lists(_SIG, min_size=1, max_size=20))
def test_header_escaping_round_trips(sigs: list[str]) -> None:
    # One chunk per example: a parse has a fixed cost of some tens of milliseconds.
    escaped = [s.replace("\\", "\\\\").replace("|", "\\|") for s in sigs]
    staged = Cef("<test>", ParseOptions(tz="UTC")).parse_chunk(
        _lines([f"{VPN}|{e}|n|3|rt=1776132701000" for e in escaped]))
    events, rejects = finalize(staged, source_format="cef", raw_file="<test>", source_system="other")
    assert rejects.height == 0
    assert events.get_column("native_code").to_list() == sigs


# ---- mapping ---------------------------------------------------------------------------------------


SYSTEM_CASES = [
    ("Acme|SSLVPN|9.1|vpn-login", "vpn"),
    ("Cisco|ASA|9.16|722051|AnyConnect parent session started", "vpn"),
    ("Palo Alto Networks|PAN-OS|10.2|GLOBALPROTECT", "vpn"),
    ("Pulse Secure|Connect Secure|9.1|AUT24414", "vpn"),
    ("CyberArk|PSM|12.6|22", "jumphost"),
    ("Contoso|Bastion|2.0|ssh", "jumphost"),
    ("Microsoft|RD Gateway|10.0|303", "jumphost"),
    ("Acme|Jump Server|1|rdp", "jumphost"),
    ("Palo Alto Networks|PAN-OS|10.2|TRAFFIC", "firewall"),
    ("Cisco|ASA|9.16|106023", "firewall"),
    ("Fortinet|FortiGate-100F|7.2|0100032001", "firewall"),
    ("Acme|Edge Firewall|1|drop", "firewall"),
    ("Acme|HSM|3.1|key-export", "other"),
]
SYSTEM_LINES = [f"CEF:0|{h}|3|rt=1776132701000" if h.count("|") == 4 else f"CEF:0|{h}|event|3|rt=1776132701000"
                for h, _ in SYSTEM_CASES]


@pytest.mark.parametrize("case", SYSTEM_CASES, ids=[h for h, _ in SYSTEM_CASES])
def test_source_system(batch: Batch, case: tuple[str, str]) -> None:
    assert _row(batch, SYSTEM_LINES, SYSTEM_CASES.index(case))["source_system"] == case[1]


ACTION_CASES = [
    # VPN: sessions are vpn_connect / vpn_disconnect, failed logins are login_failure.
    (f"{VPN}|vpn-login|VPN session established", "outcome=success", ("vpn_connect", "remote_access", "success")),
    (f"{VPN}|vpn-connect|Tunnel up", "", ("vpn_connect", "remote_access", "success")),
    (f"{VPN}|vpn-logout|VPN session ended", "", ("vpn_disconnect", "remote_access", "success")),
    (f"{VPN}|101|User disconnected", "", ("vpn_disconnect", "remote_access", "success")),
    (f"{VPN}|vpn-auth-fail|VPN authentication failed", "", ("login_failure", "authentication", "failure")),
    (f"{VPN}|vpn-login|VPN login", "outcome=failure", ("login_failure", "authentication", "failure")),
    (f"{VPN}|vpn-login|VPN login", "act=blocked", ("login_failure", "authentication", "failure")),
    (f"{VPN}|vpn-login|VPN login", "cat=x outcome=/Failure", ("login_failure", "authentication", "failure")),
    (f"{VPN}|LOGIN_FAILED|Login", "outcome=success", ("vpn_connect", "remote_access", "success")),
    (f"{VPN}|vpn-policy-reload|Policy reloaded", "", ("other", "remote_access", "unknown")),
    # Jump host: a session to a target server is a logon / logoff of the person.
    ("CEF:0|CyberArk|PSM|12.6|22|Privileged session started", "", ("login_success", "authentication", "success")),
    ("CEF:0|CyberArk|PSM|12.6|23|Privileged session ended", "", ("logout", "authentication", "success")),
    ("CEF:0|Contoso|Bastion|2|x|SSH session opened", "", ("login_success", "authentication", "success")),
    ("CEF:0|Contoso|Bastion|2|x|Invalid user", "", ("login_failure", "authentication", "failure")),
    ("CEF:0|Contoso|Bastion|2|x|Account locked out", "", ("lockout", "authentication", "unknown")),
    ("CEF:0|Contoso|Bastion|2|x|Recording uploaded", "", ("other", "remote_access", "unknown")),
    # Firewall: traffic is other/system whatever it says about connections; admin logins are logins.
    ("CEF:0|Palo Alto Networks|PAN-OS|10.2|TRAFFIC|end", "act=allow", ("other", "system", "success")),
    ("CEF:0|Cisco|ASA|9.16|106023|Deny tcp", "act=Deny", ("other", "system", "failure")),
    ("CEF:0|Cisco|ASA|9.16|302013|Built inbound TCP connection", "", ("other", "system", "unknown")),
    ("CEF:0|Cisco|ASA|9.16|302014|Connected session started", "", ("other", "system", "success")),
    ("CEF:0|Fortinet|FortiGate|7.2|1|Admin login successful", "", ("login_success", "authentication", "success")),
    ("CEF:0|Fortinet|FortiGate|7.2|2|Admin logout", "", ("logout", "authentication", "success")),
    ("CEF:0|Fortinet|FortiGate|7.2|3|Admin login failed", "", ("login_failure", "authentication", "failure")),
    ("CEF:0|Acme|HSM|3.1|key-export|Key exported", "", ("other", "system", "unknown")),
]
ACTION_LINES = [f"{head}|3|rt=1776132701000 suser=a {ext}".rstrip() for head, ext, _ in ACTION_CASES]


@pytest.mark.parametrize("case", ACTION_CASES, ids=[f"{h.split('|', 4)[4]}-{e}" for h, e, _ in ACTION_CASES])
def test_action_mapping(batch: Batch, case: tuple[str, str, tuple[str, str, str]]) -> None:
    head, _, expected = case
    row = _row(batch, ACTION_LINES, ACTION_CASES.index(case))
    assert (row["action"], row["category"], row["outcome"]) == expected
    assert row["native_code"] == head.split("|")[4]


def test_account_source_host_and_target(tmp_path: Path) -> None:
    row = _one(tmp_path, "CEF:0|CyberArk|PSM|12.6|22|Privileged session started|5|rt=1776132701000 "
                         "suser=UTIL\\\\Itron_Support duser=administrator shost=JUMP01 src=10.40.8.21 "
                         "dhost=HES-APP01 dst=10.40.2.11 dvchost=psm01 cs3Label=Session Id cs3=S-1")
    assert (row["account"], row["account_domain"], row["src_ip"], row["src_host"], row["host"]) == (
        "itron_support", "UTIL", "10.40.8.21", "JUMP01", "psm01")
    assert (row["target_type"], row["target_id"], row["job_id"]) == ("server", "HES-APP01", "S-1")
    assert row["message"] == "Privileged session started [duser=administrator]"


def test_duser_is_the_account_only_for_auth_events(tmp_path: Path) -> None:
    events, _ = _parse(tmp_path,
                       f"{VPN}|vpn-auth-fail|Login failed|3|rt=1776132701000 duser=jdoe dntdom=UTIL",
                       "CEF:0|Cisco|ASA|9.16|106023|Deny tcp|5|rt=1776132701000 duser=jdoe dst=10.1.1.1")
    assert events.get_column("account").to_list() == ["jdoe", None]
    assert events.get_column("account_domain").to_list() == ["UTIL", None]
    assert events.get_column("target_type").to_list() == [None, None]


def test_custom_string_labels_are_looked_up(tmp_path: Path) -> None:
    row = _one(tmp_path, f"{VPN}|vpn-login|VPN session established|3|rt=1776132701000 suser=a "
                         "cs1Label=Rule cs1=r7 cs4Label=Group Policy cs4=vendor-access cs6Label=USER_ROLE cs6=admin "
                         "cs2Label=VPN Session ID cs2=S-9 msg=welcome")
    assert row["message"] == "VPN session established: welcome [group=vendor-access role=admin]"
    assert row["job_id"] == "S-9"


SRC_CASES = [
    ("src=203.0.113.77 c6a2=2001:db8::ab", "203.0.113.77"),
    ("src=garbage c6a2=2001:db8::ab c6a2Label=Source IPv6 Address", "2001:db8::ab"),
    ("c6a2=2001:db8::ab", "2001:db8::ab"),
    ("c6a2=2001:db8::ab c6a2Label=Destination IPv6", None),
    ("sourceTranslatedAddress=10.40.99.12", "10.40.99.12"),
]


@pytest.mark.parametrize("case", SRC_CASES, ids=[e for e, _ in SRC_CASES])
def test_source_address_fallbacks(batch: Batch, case: tuple[str, str | None]) -> None:
    lines = [f"{VPN}|vpn-login|VPN session established|3|rt=1776132701000 suser=a {ext}" for ext, _ in SRC_CASES]
    assert _row(batch, lines, SRC_CASES.index(case))["src_ip"] == case[1]


def test_ipv6_source_ending_in_digits(tmp_path: Path) -> None:
    row = _one(tmp_path, f"{VPN}|vpn-login|VPN session established|3|rt=1776132701000 suser=a c6a2=2001:db8::7")
    assert row["src_ip"] == "2001:db8::7"


def test_sniff() -> None:
    assert Cef.sniff(["<134>Apr 14 02:11:40 vpn01 CEF:0|Acme|SSLVPN|9.1|x|y|3|"])
    assert Cef.sniff(["# export", "CEF:1|a|b|c|d|e|f|"])
    assert not Cef.sniff(['{"ts":"2026-04-14T02:31:02Z","command":"RemoteDisconnect"}', "CEF: not a header"])


# ---- never crashes -----------------------------------------------------------------------------------

_FRAGMENTS = st.sampled_from([
    "CEF:0|", "CEF:1|", "CEF:9|", "|", "\\", "\\|", "\\=", "\\\\", "=", " ", "Acme|SSLVPN|9.1|vpn-login|",
    "VPN session established|3|", "rt=", " rt=", " suser=", " duser=", " end=", " start=", " src=", " c6a2=",
    "Apr 14 2026 02:11:40", "Apr 14 02:11:40", ".123", " UTC", " +0100", " -99:99", " America/Chicago", " Foo/Bar",
    " EST", " PM", "1776132701000", "99999999999999", "<134>", "Apr 14 02:11:40 host ",
    "<86>1 2026-04-14T02:11:40Z h a p m - ",
    " cs1Label=group cs1=", " cs2Label=session id cs2=", "login", " failed", "session ended", "2001:db8::1", "-",
])
_LINES = st.one_of(st.text(max_size=60), st.lists(st.one_of(_FRAGMENTS, st.text(max_size=4)), max_size=14).map("".join))


def _lines(raw: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"raw_line": list(range(1, len(raw) + 1)), "raw": raw},
                        schema={"raw_line": pl.Int64, "raw": pl.String})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.lists(_LINES, min_size=1, max_size=16))
def test_any_text_becomes_events_or_rejects(raw: list[str]) -> None:
    staged = Cef("<test>", ParseOptions(tz="UTC")).parse_chunk(_lines(raw))
    events, rejects = finalize(staged, source_format="cef", raw_file="<test>", source_system="other")
    accounted = sorted(events.get_column("raw_line").to_list() + rejects.get_column("raw_line").to_list())
    # "Blank" as the parsers define it: only Unicode White_Space (polars), not Python's wider isspace().
    non_blank = pl.Series(raw, dtype=pl.String).str.strip_chars() != ""
    assert accounted == [i for i, keep in enumerate(non_blank, 1) if keep]
