"""ArcSight Common Event Format from VPN concentrators, jump hosts and firewalls (ARCHITECTURE.md format 5).

A record is ``CEF:Version|Vendor|Product|DeviceVersion|SignatureID|Name|Severity|Extension``, optionally
behind an RFC 3164 or RFC 5424 syslog header a SIEM or relay put in front of it. Escaping follows
"Implementing ArcSight CEF": in the header ``\\|`` and ``\\\\``; in the extension ``\\=``, ``\\\\``,
``\\n`` and ``\\r``, and a value runs (spaces included) up to the next unescaped `` key=``.

Everything is done with polars expressions over the whole chunk. The Rust regex engine has no
look-around, so the extension is cut with the *same* boundary regex twice — ``extract_all`` for the
keys and a regex ``split`` for the values — which yields aligned lists without inventing a separator
character that a hostile line could contain. Escapes are undone with ``replace_many``, whose
leftmost, non-overlapping Aho-Corasick scan tokenises ``\\\\n`` as an escaped backslash followed by
``n``, exactly as the spec reads it.

Accepted: CEF versions 0 and 1; a header-only record (no extension, even without the last pipe);
keys by short or full dictionary name (``suser`` / ``sourceUserName``); ``rt`` (else ``end``, else
``start``, else the syslog header time) as epoch seconds or milliseconds, ISO 8601, or ``MMM dd [yyyy]
HH:mm:ss[.SSS] [zone]`` where the zone is UTC/GMT/Z, an offset (``+0100``, ``-05:00``, ``GMT+01:00``),
an IANA id (``America/Chicago``) or a common North American / European abbreviation (``EST``, ``CET``).
Stamps without a zone need ``--tz``; yearless ones take the reference year (the year before when that
would put them over two days after the reference). Rejected, with the reason: lines without
``CEF:<digits>|``, headers with fewer than 7 fields, other CEF versions, a severity running into the
extension (missing pipe), unknown zones and unparseable or missing timestamps. Blank lines are skipped.

Mapping decisions (see also ``_action``):

* ``source_system`` comes from vendor, product and signature id: jump host / bastion / PAM before
  VPN before firewall (a firewall's own VPN events, named so, are ``vpn``), else ``other``.
* A jump-host (bastion, PAM, RD gateway) session start is ``login_success`` and its end ``logout``:
  the vendor logs on interactively to a target server, like a Windows logon type 10, so per-account
  logon features see it beside the servers' own logons; ``source_system = jumphost`` keeps the
  remote-access context. ``vpn_connect``/``vpn_disconnect`` are kept for network tunnels.
* Firewall traffic (allow/deny) is ``other``/``system`` with the outcome from ``act``; a firewall's
  administrative login is ``login_success``/``login_failure`` like any other.
* Anything unrecognised is ``other`` with ``native_code`` = signature id, never dropped; its category
  is ``remote_access`` for VPN and jump-host devices, ``system`` otherwise.
* The CEF severity has no column in the schema and is not kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Final

import polars as pl

from detector.exprs import formatted
from detector.parsers.base import (
    Parser,
    clean,
    collect,
    ip_expr,
    late_yearless,
    parse_any_time,
    per_distinct,
    spread,
)

# ---- record and header -----------------------------------------------------------------------

_FIELD = r"((?:[^|\\]|\\.)*)"  # a header field: anything but an unescaped pipe
# Lazy prefix: the syslog header (if any) is whatever precedes the first ``CEF:<digits>|``. The pipe
# after Severity is optional so that a record with no extension at all still parses.
_RECORD: Final = r"^(.*?)CEF:(\d+)\|" + r"\|".join([_FIELD] * 6) + r"(?:\|(.*))?$"
_RECORD_FIELDS: Final = ("_prefix", "_version", "_vendor", "_product", "_devver", "_sig", "_name",
                         "_severity", "_ext")
_CEF_MARK: Final = r"CEF:\d+\|"
SUPPORTED_VERSIONS: Final = ("0", "1")

_HEADER_ESCAPES: Final = ([r"\\", r"\|"], ["\\", "|"])
_HEADER_TEXT: Final = ("_vendor", "_product", "_sig", "_name")
_KIND: Final = [*_HEADER_TEXT, "_x_outcome", "_x_act"]  # what the kind of event depends on
# ``\|`` is not required in the extension, but over-escaping exporters write it; since a literal
# backslash must itself be escaped, reading it as a pipe is unambiguous.
_EXTENSION_ESCAPES: Final = ([r"\\", r"\=", r"\n", r"\r", r"\|"], ["\\", "=", "\n", "\r", "|"])

# ---- syslog header in front of the record --------------------------------------------------------

_RFC5424: Final = r"^\s*<\d{1,3}>\d{1,2}\s+(\S+)\s+(\S+)"
_RFC3164: Final = (r"^\s*(?:<\d{1,3}>)?\s*([A-Za-z]{3}\s+\d{1,2}(?:\s+\d{4})?\s+\d{1,2}:\d{2}:\d{2}(?:\.\d+)?)"
                   r"(?:\s+(\S+))?")
_ISO_HEADER: Final = r"^\s*(?:<\d{1,3}>)?\s*(\d{4}-\d{2}-\d{2}T\S+)(?:\s+(\S+))?"

# ---- extension -------------------------------------------------------------------------------------

# A key boundary: whitespace, a key, an unescaped ``=``. Keys never contain a backslash, so ``\=``
# can never end a key; the extension is prefixed with a space so the first key matches too.
_BOUNDARY: Final = r"\s+([A-Za-z0-9_.\[\]]+)="

# Producers may spell keys by their full dictionary names; both read the same.
KEY_ALIASES: Final[dict[str, str]] = {
    "deviceReceiptTime": "rt",
    "startTime": "start",
    "endTime": "end",
    "sourceUserName": "suser",
    "destinationUserName": "duser",
    "sourceNtDomain": "sntdom",
    "destinationNtDomain": "dntdom",
    "sourceAddress": "src",
    "sourceHostName": "shost",
    "destinationAddress": "dst",
    "destinationHostName": "dhost",
    "deviceHostName": "dvchost",
    "deviceAddress": "dvc",
    "deviceAction": "act",
    "eventOutcome": "outcome",
    "message": "msg",
    "deviceCustomIPv6Address2": "c6a2",
    "deviceCustomIPv6Address2Label": "c6a2Label",
    **{f"deviceCustomString{i}": f"cs{i}" for i in range(1, 7)},
    **{f"deviceCustomString{i}Label": f"cs{i}Label" for i in range(1, 7)},
}
KEYS: Final = (
    "rt", "start", "end", "suser", "duser", "sntdom", "dntdom", "src", "c6a2", "c6a2Label",
    "sourceTranslatedAddress", "shost", "dst", "dhost", "dvchost", "dvc", "act", "outcome", "msg",
    *(f"cs{i}" for i in range(1, 7)), *(f"cs{i}Label" for i in range(1, 7)),
)

# cs1..cs6 carry whatever the device chose; the csNLabel says what. Labels are compared lower-cased
# with everything but letters and digits removed.
GROUP_LABELS: Final = frozenset({"group", "groupname", "usergroup", "vpngroup", "grouppolicy", "tunnelgroup",
                                 "connectionprofile", "authgroup", "realm"})
ROLE_LABELS: Final = frozenset({"role", "rolename", "userrole", "roles", "privilegelevel"})
SESSION_LABELS: Final = frozenset({"session", "sessionid", "vpnsessionid", "sessionidentifier"})


def _split_records(lines: pl.DataFrame) -> pl.DataFrame:
    """*lines* with the :data:`_RECORD_FIELDS` of each record (all null when it is none).

    Most records have no backslash in the header: cut at the first ``CEF:`` and the pipes after
    it, they give exactly what :data:`_RECORD` captures, at a fraction of the cost. The others
    (escapes, a bad first mark, a line break, too few fields) go through :data:`_RECORD` itself.
    Records come back in no particular order.
    """
    raw = pl.col("raw")
    after = pl.col("_after")
    version = pl.col("_version")
    query = (
        lines.lazy()
        .with_columns(raw.str.splitn("CEF:", 2).struct.rename_fields(["_prefix", "_after"]).alias("_s")).unnest("_s")
        .with_columns(_version=after.str.extract(r"^\d+", 0))
        .with_columns(
            after.str.slice(version.str.len_chars() + 1).str.splitn("|", 7)
            .struct.rename_fields(list(_RECORD_FIELDS[2:])).alias("_h"),
            _mark_ok=after.str.slice(version.str.len_chars(), 1) == "|",
        )
        .unnest("_h")
        .with_columns(_fast=pl.col("_mark_ok").fill_null(False) & pl.col("_severity").is_not_null()
                      & ~raw.str.contains("\n", literal=True)
                      & ~pl.any_horizontal([pl.col(c).str.contains("\\", literal=True)
                                            for c in _RECORD_FIELDS[2:8]]))
    )
    cut = collect(query)
    by_path = cut.partition_by("_fast", as_dict=True, include_key=False)
    fast = by_path.get((True,), cut.clear().drop("_fast")).select(*lines.columns, *_RECORD_FIELDS)
    slow = by_path.get((False,), cut.clear().drop("_fast")).select(lines.columns)
    slow = slow.with_columns(raw.str.extract_groups(_RECORD).alias("_m")).unnest("_m")
    slow = slow.rename(dict(zip([str(i) for i in range(1, 10)], _RECORD_FIELDS, strict=True)))
    return pl.concat([fast, slow])


def unescape_extension(value: pl.Expr) -> pl.Expr:
    """Undo CEF extension escaping in one left-to-right pass."""
    return value.str.replace_many(*_EXTENSION_ESCAPES)


def extension_fields(ext: pl.Series, keys: Sequence[str] = KEYS) -> pl.DataFrame:
    """The values of *keys* in each CEF extension of *ext*, unescaped; one row per input row.

    Leading and trailing whitespace of a value is not kept (it cannot be told from the separator);
    a key given twice keeps its last value; full key names (``sourceUserName``) count as their short
    names (``suser``); an empty value is the empty string.
    """
    padded = pl.lit(" ") + pl.col("_ext")
    long = (
        pl.DataFrame({"_ext": ext}).with_row_index("_row").select(
            "_row",
            _k=padded.str.extract_all(_BOUNDARY),
            _v=padded.str.split(_BOUNDARY, literal=False).list.slice(1),
        )
        .explode("_k", "_v")
        .with_columns(_name=per_distinct(pl.col("_k"), lambda boundaries: boundaries.select(
            # A boundary is whitespace, the key and "=".
            pl.col("v").str.strip_chars_start().str.strip_suffix("=").replace(KEY_ALIASES))))
        .filter(pl.col("_name").is_in(list(keys)))
        .select("_row", "_name", _value=unescape_extension(pl.col("_v").str.strip_chars()))
    )
    return pl.DataFrame(spread(long, ext.len(), list(keys), keep="last"))


# ---- timestamps ------------------------------------------------------------------------------------

# rt/start/end may end in a zone after the time of day: UTC/GMT, an offset, an IANA id, or one of the
# abbreviations below. Abbreviations are ambiguous in general; these are the usual readings in the
# North American utilities this tool is written for, fixed offsets as Java's parser uses them.
_STAMP_ZONE: Final = r"^(.*\d:\d{2}:\d{2}(?:\.\d+)?)\s+(\S+)$"
_OFFSET: Final = r"^(?i:utc|gmt|ut)?([+-])(\d{1,2})(?::?(\d{2}))?$"
_YEARLESS: Final = r"^\s*[A-Za-z]{3}\s+\d{1,2}\s+\d{1,2}:\d{2}:\d{2}"
_IANA: Final = r"^[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)+$"
ZONE_ABBREVIATIONS: Final[dict[str, int]] = {  # minutes east of UTC
    "UTC": 0, "GMT": 0, "UT": 0, "Z": 0, "ZULU": 0,
    "EST": -300, "EDT": -240, "CST": -360, "CDT": -300, "MST": -420, "MDT": -360,
    "PST": -480, "PDT": -420, "AKST": -540, "AKDT": -480, "HST": -600,
    "WET": 0, "WEST": 60, "CET": 60, "CEST": 120, "EET": 120, "EEST": 180,
}


def _zone_known(zone: str) -> bool:
    try:
        pl.Series([datetime(2000, 1, 1)]).dt.replace_time_zone(zone)
    except pl.exceptions.PolarsError:
        return False
    return True


# ---- classification --------------------------------------------------------------------------------

_JUMPHOST: Final = (r"jump|bastion|\bpam\b|\bpsmp?\b|privileged (?:access|session|remote)|\brd ?gateway|"
                    r"\brdp ?gateway|remote desktop gateway|cyberark|beyondtrust|wallix|teleport")
_VPN: Final = r"vpn|anyconnect|globalprotect|pulse ?secure|connect ?secure"
_FIREWALL: Final = (r"firewall|\bfw\b|\basa\b|pan-?os|fortigate|fortios|check ?point|sonicwall|firepower|"
                    r"\bftd\b|\bsrx\b|traffic")

_LOCKOUT: Final = r"lock(?:ed)?\s*out|account\s*locked|locked\s*account"
_LOGIN: Final = (r"\blog(?:ged)?\s*(?:in|on)s?\b|\blog(?:in|on)\w*|\bsign(?:ed)?\s*(?:in|on)\b|\bsign(?:in|on)\w*|"
                 r"\bauthenticat\w*|\bauth\b")
_SESSION_START: Final = (r"session\s*(?:establish|start|open|creat|connect|begin|initiat)\w*|"
                         r"\bconnect(?:ed)?\b|tunnel\s*(?:up|establish\w*)")
_END: Final = (r"\blog(?:ged)?\s*(?:out|off)\b|\blog(?:out|off)\w*|\bsign(?:ed)?\s*(?:out|off)\b|\bsign(?:out|off)\w*|"
               r"disconnect|session\s*(?:end|clos|terminat|timeout|timed\s*out|expir|stop|finish)\w*|"
               r"tunnel\s*(?:down|clos|terminat)\w*|idle\s*timeout")
_AUTH_FAIL: Final = (r"(?:\blog(?:in|on)|\bsign\s*in|\bauth\w*)\s*(?:fail|denied|reject|error|invalid)|"
                     r"(?:fail\w*|invalid|bad|wrong|unsuccessful|rejected|denied)\s*"
                     r"(?:log(?:in|on)|password|credential|auth\w*|user|sign\s*in)")
_FAIL_WORDS: Final = r"fail|denied|\bdeny|reject|invalid|unsuccessful|refused|\bblock|\bdrop"
_SUCCESS_WORDS: Final = r"success|succeed|established|accepted|granted|allowed|permitted|\bopened|\bstarted"

OUTCOME_WORDS: Final[dict[str, str]] = {
    **dict.fromkeys(["success", "succeeded", "successful", "ok", "true", "accept", "accepted", "allow",
                     "allowed", "permit", "permitted", "pass", "passed", "granted", "established"], "success"),
    **dict.fromkeys(["failure", "failed", "fail", "false", "deny", "denied", "drop", "dropped", "block",
                     "blocked", "reject", "rejected", "reset", "refused", "quarantine", "quarantined"],
                    "failure"),
}
_AUTH_ACTIONS: Final = ("login_success", "login_failure", "logout", "lockout", "vpn_connect", "vpn_disconnect")
_SESSION_ACTIONS: Final = ("login_success", "logout", "vpn_connect", "vpn_disconnect")


def _word(expr: pl.Expr) -> pl.Expr:
    """``/Success``, ``Accepted``, ``FAILED`` ... → success / failure / null."""
    key = clean(expr).str.to_lowercase().str.replace_all(r"[^a-z]", "")
    return key.replace_strict(OUTCOME_WORDS, default=None, return_dtype=pl.String)


def _x(key: str) -> pl.Expr:
    """The (cleaned, unescaped) extension field *key* of the staged frame."""
    return pl.col(f"_x_{key}")


def _label(col: str) -> pl.Expr:
    return per_distinct(pl.col(col), lambda labels: labels.select(
        pl.col("v").str.to_lowercase().str.replace_all(r"[^a-z0-9]", "")))


def _custom_string(labels: frozenset[str]) -> pl.Expr:
    """The first csN whose (normalized) csNLabel names one of *labels*."""
    return pl.coalesce([pl.when(pl.col(f"_label{i}").is_in(list(labels))).then(pl.col(f"_x_cs{i}"))
                        for i in range(1, 7)])


class Cef(Parser):
    name = "cef"
    description = "ArcSight CEF from VPN concentrators, jump hosts and firewalls (with or without syslog header)"
    source_system = "other"
    independent_chunks = True
    together = True

    @classmethod
    def sniff(cls, head: list[str]) -> bool:
        return any(re.search(_CEF_MARK, line) for line in head)

    def parse_chunk(self, lines: pl.DataFrame, text: bytes | None = None) -> pl.DataFrame:
        staged = _split_records(lines.filter(pl.col("raw").str.strip_chars() != ""))
        staged = staged.with_columns(_error=self._record_error()).with_columns(
            # Nothing of a rejected record is read further, so it cannot raise a --tz error either.
            [pl.when(pl.col("_error").is_null()).then(pl.col(c)).alias(c) for c in _RECORD_FIELDS])
        fields = extension_fields(staged.get_column("_ext"), KEYS)
        fields = fields.select([clean(pl.col(k)).alias(f"_x_{k}") for k in KEYS])
        staged = pl.concat([staged, fields], how="horizontal")
        staged = self._with_when(staged)
        return self._normalize(staged)

    # -- steps -------------------------------------------------------------------------------------

    @staticmethod
    def _record_error() -> pl.Expr:
        return (
            pl.when(~pl.col("raw").str.contains(_CEF_MARK))
            .then(pl.lit("not a CEF record (no 'CEF:<version>|' header)"))
            .when(pl.col("_version").is_null())
            .then(pl.lit("CEF header has fewer than 7 '|'-separated fields "
                         "(Version|Vendor|Product|Version|SignatureID|Name|Severity)"))
            .when(~pl.col("_version").is_in(SUPPORTED_VERSIONS))
            .then(formatted("unsupported CEF version {}", pl.col("_version")))
            .when(pl.col("_ext").is_null() & pl.col("_severity").str.contains("="))
            # ``...|Severity key=value`` — the pipe that ends the header is missing.
            .then(pl.lit("CEF header is not terminated by '|' before the extension"))
        )

    def _with_when(self, staged: pl.DataFrame) -> pl.DataFrame:
        """Add ``time`` from rt, else end, else start, else the syslog header's timestamp."""
        # Intermediate results are materialized as columns: an expression used twice in one
        # ``with_columns`` is evaluated twice, and these are regex and strptime chains.
        prefix = pl.col("_prefix")
        headers = [prefix.str.extract_groups(rx).alias(f"_h{i}")
                   for i, rx in enumerate((_RFC5424, _RFC3164, _ISO_HEADER))]
        staged = staged.with_columns(headers).with_columns(
            _header_ts=clean(pl.coalesce([pl.col(f"_h{i}").struct["1"] for i in range(3)])),
            _header_host=clean(pl.coalesce([pl.col(f"_h{i}").struct["2"] for i in range(3)])),
        ).drop("_h0", "_h1", "_h2")
        sources = [("rt", pl.col("_x_rt")), ("end", pl.col("_x_end")), ("start", pl.col("_x_start")),
                   ("syslog header", pl.col("_header_ts"))]
        staged = staged.with_columns(
            _when=pl.coalesce([v for _, v in sources]),
            _when_src=pl.coalesce([pl.when(v.is_not_null()).then(pl.lit(k)) for k, v in sources]),
        ).with_columns(pl.col("_when").str.extract_groups(_STAMP_ZONE).alias("_sz")).with_columns(
            # "... 02:11:40 PM" is a 12-hour clock, not a zone.
            _zone=pl.when(~pl.col("_sz").struct["2"].str.contains(r"^(?i:[ap]\.?m\.?)$"))
            .then(pl.col("_sz").struct["2"]),
        ).with_columns(
            _plain=pl.when(pl.col("_zone").is_null()).then(pl.col("_when")),
            _stamp=pl.when(pl.col("_zone").is_not_null()).then(pl.col("_sz").struct["1"]),
        ).drop("_sz")

        # Zoned stamps: a fixed offset in minutes, or an IANA zone handled one distinct zone at a time.
        z = pl.col("_zone")
        off = pl.col("_off")
        sign = pl.when(off.struct["1"] == "-").then(-1).otherwise(1)
        hours = off.struct["2"].cast(pl.Int32)
        minutes = pl.coalesce(off.struct["3"].cast(pl.Int32), pl.lit(0, pl.Int32))
        fixed = pl.coalesce(
            z.str.to_uppercase().replace_strict(ZONE_ABBREVIATIONS, default=None, return_dtype=pl.Int32),
            pl.when((hours <= 14) & (minutes < 60)).then(sign * (hours * 60 + minutes)),
        )
        _, naive_times = parse_any_time(staged.get_column("_stamp").str.strip_chars(), year=self._year())
        staged = staged.with_columns(_off=z.str.extract_groups(_OFFSET), _naive_zoned=naive_times).with_columns(
            _offset=fixed).with_columns(
            _zone_id=pl.when(pl.col("_offset").is_null() & z.str.contains(_IANA)).then(z)).drop("_off")
        zone_ids = [zid for zid in staged.get_column("_zone_id").drop_nulls().unique().sort().to_list()
                    if _zone_known(zid)]
        naive = pl.col("_naive_zoned")
        zoned = pl.coalesce(
            [(naive - pl.duration(minutes=pl.col("_offset"))).dt.replace_time_zone("UTC")]
            + [pl.when(pl.col("_zone_id") == zid).then(
                naive.dt.replace_time_zone(zid, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC"))
               for zid in zone_ids])
        staged = self.with_time(staged, "_plain").with_columns(time=pl.coalesce(pl.col("time"), zoned))
        late = late_yearless(staged, self, pl.col("_when").str.contains(_YEARLESS))
        staged = staged.with_columns(time=pl.when(late).then(pl.col("time").dt.offset_by("-1y")).otherwise("time"))

        unknown_zone = (pl.col("_zone").is_not_null() & pl.col("_offset").is_null()
                        & ~pl.col("_zone_id").is_in(zone_ids).fill_null(False))
        return staged.with_columns(_error=pl.coalesce(
            pl.col("_error"),
            pl.when(unknown_zone).then(formatted("unknown time zone '{}' in {} '{}'", pl.col("_zone"),
                                                 pl.col("_when_src"), pl.col("_when"))),
            pl.when(pl.col("_when").is_null()).then(pl.lit("no timestamp: no rt, end or start field and no "
                                                            "syslog header time")),
            pl.when(pl.col("time").is_null()).then(formatted("unparseable timestamp in {} '{}'",
                                                             pl.col("_when_src"), pl.col("_when"))),
        ))

    def _normalize(self, staged: pl.DataFrame) -> pl.DataFrame:
        # A device sends few kinds of event: name them once per distinct (vendor, product, signature,
        # name, outcome, act), then join the results back, instead of running the word lists' regexes
        # on every line.
        kinds = self._classify(staged.select(_KIND).unique())
        staged = staged.join(kinds, on=_KIND, how="left", nulls_equal=True, maintain_order="left")
        staged = staged.drop(_HEADER_TEXT).rename({f"{c}_clean": c for c in _HEADER_TEXT})
        return self._fields(staged)

    def _classify(self, kinds: pl.DataFrame) -> pl.DataFrame:
        """source_system, action and the outcome the words give, for each distinct kind of event."""
        kinds = kinds.with_columns(clean(pl.col(c).str.replace_many(*_HEADER_ESCAPES)).alias(f"{c}_clean")
                                   for c in _HEADER_TEXT)
        staged = kinds.rename({c: f"{c}_raw" for c in _HEADER_TEXT}).rename(
            {f"{c}_clean": c for c in _HEADER_TEXT})
        staged = staged.with_columns(
            _ident=pl.concat_str([pl.col("_vendor"), pl.col("_product"), pl.col("_sig")], separator=" ",
                                 ignore_nulls=True).str.to_lowercase(),
            # Words of the event: name and signature id, with ``_``/``-`` as spaces (``vpn-login``).
            _text=pl.concat_str([pl.col("_name"), pl.col("_sig")], separator=" ", ignore_nulls=True)
            .str.to_lowercase().str.replace_all(r"[_\-]+", " "),
            _explicit=pl.coalesce(_word(_x("outcome")), _word(_x("act"))),
        )
        ident, text, name = pl.col("_ident"), pl.col("_text"), pl.col("_name").fill_null("").str.to_lowercase()
        staged = staged.with_columns(
            source_system=pl.when(ident.str.contains(_JUMPHOST)).then(pl.lit("jumphost"))
            .when(ident.str.contains(_VPN) | name.str.contains(_VPN)).then(pl.lit("vpn"))
            .when(ident.str.contains(_FIREWALL)).then(pl.lit("firewall"))
            .otherwise(pl.lit("other")),
            _outcome=pl.coalesce(
                pl.col("_explicit"),
                pl.when(text.str.contains(_FAIL_WORDS)).then(pl.lit("failure"))
                .when(text.str.contains(_SUCCESS_WORDS)).then(pl.lit("success")),
            ),
        )
        staged = staged.with_columns(action=self._action(text))
        return staged.select(
            *[pl.col(f"{c}_raw").alias(c) for c in _HEADER_TEXT], "_x_outcome", "_x_act",
            *[pl.col(c).alias(f"{c}_clean") for c in _HEADER_TEXT], "_explicit", "source_system", "_outcome", "action")

    def _fields(self, staged: pl.DataFrame) -> pl.DataFrame:
        action, src_sys = pl.col("action"), pl.col("source_system")
        auth = action.is_in(_AUTH_ACTIONS)
        duser_extra = pl.when(_x("suser").is_not_null() & (_x("duser") != _x("suser"))).then(_x("duser"))
        c6a2_is_source = _x("c6a2Label").is_null() | _label("_x_c6a2Label").str.contains("source|src")
        query = staged.lazy().with_columns(
            _label(f"_x_cs{i}Label").alias(f"_label{i}") for i in range(1, 7)
        ).with_columns(
            _auth=auth,
            _target=pl.coalesce(_x("dhost"), _x("dst")),
            _message=pl.concat_str([pl.col("_name"), _x("msg")], separator=": ", ignore_nulls=True),
            _extras=pl.concat_str(
                [formatted("group={}", _custom_string(GROUP_LABELS)), formatted("role={}", _custom_string(ROLE_LABELS)),
                 formatted("duser={}", duser_extra)], separator=" ", ignore_nulls=True),
        )
        target, message, extras = pl.col("_target"), pl.col("_message"), pl.col("_extras")
        return collect(query.with_columns(
            host=pl.coalesce(_x("dvchost"), pl.col("_header_host"), _x("dvc")),
            account=pl.coalesce(_x("suser"), pl.when(pl.col("_auth")).then(_x("duser"))),
            account_domain=pl.when(_x("suser").is_not_null()).then(_x("sntdom")).otherwise(_x("dntdom")),
            src_ip=pl.coalesce(ip_expr(_x("src")), pl.when(c6a2_is_source).then(ip_expr(_x("c6a2"))),
                               ip_expr(_x("sourceTranslatedAddress"))),
            src_host=_x("shost"),
            category=pl.when(action == "other").then(
                pl.when(src_sys.is_in(["vpn", "jumphost"])).then(pl.lit("remote_access")).otherwise(pl.lit("system"))),
            outcome=pl.when(action == "login_failure").then(pl.lit("failure"))
            .when(action.is_in(_SESSION_ACTIONS)).then(pl.coalesce(pl.col("_outcome"), pl.lit("success")))
            .otherwise(pl.coalesce(pl.col("_outcome"), pl.lit("unknown"))),
            target_type=pl.when(target.is_not_null() & (pl.col("_auth") | src_sys.is_in(["vpn", "jumphost"])))
            .then(pl.lit("server")),
            target_id=target,
            job_id=_custom_string(SESSION_LABELS),
            native_code=pl.col("_sig"),
            message=pl.when(extras != "").then(formatted("{} [{}]", message, extras)).otherwise(message),
        ))

    @staticmethod
    def _action(text: pl.Expr) -> pl.Expr:
        """The normalized action from the event's words, its outcome and its device kind."""
        remote = pl.col("source_system").is_in(["vpn", "jumphost"])
        vpn = pl.col("source_system") == "vpn"
        failed = pl.col("_outcome") == "failure"
        # A bare "connect"/"session started" means a logon only on remote-access devices; on a
        # firewall it is a traffic flow.
        login_like = text.str.contains(_LOGIN) | (remote & text.str.contains(_SESSION_START))
        # The words say "failed login" but the device says it succeeded: believe the field.
        auth_fail = text.str.contains(_AUTH_FAIL) & (pl.col("_explicit").fill_null("") != "success")
        return (
            pl.when(text.str.contains(_LOCKOUT)).then(pl.lit("lockout"))
            .when(auth_fail | (login_like & failed)).then(pl.lit("login_failure"))
            .when(text.str.contains(_END)).then(pl.when(vpn).then(pl.lit("vpn_disconnect")).otherwise(pl.lit("logout")))
            .when(login_like).then(pl.when(vpn).then(pl.lit("vpn_connect")).otherwise(pl.lit("login_success")))
            .otherwise(pl.lit("other"))
        )
