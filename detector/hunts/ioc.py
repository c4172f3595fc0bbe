"""IOC hunt: published indicators of compromise matched against every event.

The advisory's question: *do any of these indicators show up in our logs?* Indicators come from a
CSV (``type,value[,description]``) or a STIX 2.1 bundle (see :mod:`detector.hunts.stix`):

- ``ip`` — IPv4/IPv6 addresses and CIDR blocks, matched against ``src_ip``, ``host`` and
  ``target_id`` (membership tested with :mod:`ipaddress` on the distinct values of each column);
- ``account`` — matched against the actor (``account``) and accounts acted upon (``target_id`` of
  account targets), case-insensitively and without the domain;
- ``hash`` — matched against ``image_sha256`` and as text in ``message``;
- ``hostname`` — matched against ``host``, ``src_host`` and ``target_id`` (a name without a dot
  also matches the first label of a fully qualified one), and, with a dot, as text in ``message``.

One row per indicator and column it matched (called out), and one row per indicator that matched
nothing (not called out), so the answer covers every indicator.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Final

import polars as pl

from detector.errors import ConfigError
from detector.hunts.common import (
    EVIDENCE_CAP,
    TimeWindow,
    as_lazy,
    counted,
    distinct,
    evidence_agg,
    evidence_line,
    finish_table,
    hunt_findings,
    match_networks,
    normalized_account,
    parse_networks,
    sentences,
    short_host,
    summary_lines,
    utc_text,
)
from detector.hunts.stix import HASH_ALGORITHMS, read_bundle
from detector.parsers.csvlines import read_option_csv

NAME: Final = "ioc"
KINDS: Final = ("ip", "account", "hash", "hostname")
INDICATOR_SCHEMA: Final = pl.Schema({"kind": pl.String, "value": pl.String, "label": pl.String, "origin": pl.String})

_TYPE_ALIASES: Final = {
    **dict.fromkeys(("ip", "ipv4", "ipv6", "ip-src", "ip-dst", "ipv4-addr", "ipv6-addr", "ip_address", "address",
                     "cidr", "network", "subnet", "ip-range"), "ip"),
    **dict.fromkeys(("account", "user", "username", "user-account", "user_id", "login", "account_login"), "account"),
    **dict.fromkeys(("hash", "sha256", "sha-256", "sha1", "sha-1", "md5", "sha512", "sha-512", "file-hash",
                     "filehash", "file", "hash-sha256"), "hash"),
    **dict.fromkeys(("host", "hostname", "domain", "domain-name", "fqdn", "host-name"), "hostname"),
}
_VALUE_COLUMNS: Final = ("value", "indicator", "ioc", "observable")
_TYPE_COLUMNS: Final = ("type", "kind", "indicator_type", "ioc_type")
_LABEL_COLUMNS: Final = ("description", "label", "name", "comment", "source")
# An indicator as read: (kind, value, label, origin, (file, line) for errors).
_Row = tuple[str, str, str, str, tuple[str, int | None]]
_HEX = re.compile(r"^[0-9a-f]+$")
_HOSTNAME = re.compile(r"^[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?$")

COLUMNS: Final = ("kind", "indicator", "label", "origin", "field", "matched", "first_seen", "last_seen", "accounts",
                  "hosts", "src_ips", "systems")


# ---- loading indicators -------------------------------------------------------------------------

def load_indicators(path: str | Path) -> tuple[pl.DataFrame, list[str]]:
    """Read indicators from a CSV file or a STIX 2.1 bundle (JSON), validated and normalized.

    A file ending in ``.json`` or starting with ``{`` is a STIX bundle; anything else is a CSV with a
    header naming a ``value`` column (or ``indicator``, ``ioc``) and optionally ``type`` (ip, cidr,
    account, hash, hostname and common aliases; empty or missing: guessed from the value) and
    ``description``. Defanged values (``192.0.2[.]61``) are refanged.

    Returns
    -------
    indicators, notes
        The indicators (``kind``, ``value``, ``label``, ``origin``) and notes on what was skipped.

    Raises
    ------
    ConfigError
        For an unreadable or malformed file or an invalid value, naming the file and the line or
        object; and when the file holds no indicator the hunt can match.
    """
    path = Path(path)
    try:
        head = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the indicators: {exc}", source=(str(path), None)) from None
    if path.suffix.lower() == ".json" or head.lstrip().startswith("{"):
        raw, notes = read_bundle(path)
        rows: list[_Row] = [(kind, value, label, origin, (str(path), None)) for kind, value, label, origin in raw]
    else:
        rows, notes = _read_csv(path, head), []
    table = _validated(rows)
    if table.height == 0:
        raise ConfigError("no indicators of a kind the hunt can match (addresses, CIDRs, accounts, file hashes, "
                          "host names)" + (f"; skipped: {notes[0]}" if notes else ""), source=(str(path), None))
    return table, notes


def _read_csv(path: Path, text: str) -> list[_Row]:
    header_line, header, rows = read_option_csv(path, text, "indicator file")

    def find(names: Sequence[str]) -> int | None:
        return next((header.index(n) for n in names if n in header), None)

    at_value, at_type, at_label = find(_VALUE_COLUMNS), find(_TYPE_COLUMNS), find(_LABEL_COLUMNS)
    if at_value is None:
        raise ConfigError(f"the indicator CSV has no value column (header {header}; expected one of "
                          f"{', '.join(_VALUE_COLUMNS)})", source=(str(path), header_line))
    def cell(row: Sequence[str], at: int | None) -> str:
        return row[at] if at is not None and at < len(row) else ""

    out: list[_Row] = []
    for number, row in rows:
        value = _refang(cell(row, at_value))
        where = (str(path), number)
        if not value:
            raise ConfigError("the indicator value is empty", source=where)
        given = cell(row, at_type).lower()
        if given and given not in _TYPE_ALIASES:
            raise ConfigError(f"unknown indicator type {given!r}; use ip, cidr, account, hash or hostname",
                              source=where)
        kind = _TYPE_ALIASES[given] if given else _guess(value)
        out.append((kind, value, cell(row, at_label) or value, f"{path.name}:{number}", where))
    return out


def _refang(value: str) -> str:
    return value.replace("[.]", ".").replace("(.)", ".").replace("[:]", ":").replace("[dot]", ".")


def _guess(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
        return "ip"
    except ValueError:
        pass
    lowered = value.lower()
    if _HEX.match(lowered) and len(lowered) in HASH_ALGORITHMS.values():
        return "hash"
    if "." in lowered and _HOSTNAME.match(lowered) and re.search(r"[a-z]", lowered):
        return "hostname"
    return "account"


def _validated(rows: list[_Row]) -> pl.DataFrame:
    """Check each value against its kind and normalize it (a few hundred indicators, not events)."""
    out = []
    for kind, value, label, origin, where in rows:
        value = value.strip()
        if kind == "ip":
            try:
                net = ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ConfigError(f"{origin}: {value!r} is not an IPv4/IPv6 address or CIDR block",
                                  source=where) from None
            value = str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
        elif kind == "hash":
            value = value.lower()
            if not _HEX.match(value) or len(value) not in HASH_ALGORITHMS.values():
                raise ConfigError(f"{origin}: {value!r} is not an MD5, SHA-1, SHA-256 or SHA-512 hash", source=where)
        elif kind == "hostname":
            value = value.lower().rstrip(".")
            if not _HOSTNAME.match(value):
                raise ConfigError(f"{origin}: {value!r} is not a host name", source=where)
        else:
            value = value.lower().split("\\")[-1].split("@")[0].strip()
            if not value:
                raise ConfigError(f"{origin}: empty account name", source=where)
        out.append((kind, value, label, origin))
    table = pl.DataFrame(out, schema=INDICATOR_SCHEMA, orient="row")
    return table.unique(["kind", "value"], keep="first", maintain_order=True)


# ---- the hunt -----------------------------------------------------------------------------------

def hunt_ioc(events: pl.DataFrame | pl.LazyFrame, indicators: pl.DataFrame | str | Path, *,
             since: datetime | date | str | None = None, until: datetime | date | str | None = None,
             evidence_cap: int = EVIDENCE_CAP) -> pl.DataFrame:
    """Match indicators against every event in [since, until).

    Parameters
    ----------
    events
        Normalized events.
    indicators
        A table with ``kind`` (ip, account, hash, hostname) and ``value`` (and optionally ``label``,
        ``origin``), or a path for :func:`load_indicators`.
    since, until
        Only events in this period (UTC; ``until`` exclusive).
    evidence_cap
        Most ``raw_file:raw_line`` entries kept per row (0 for all).

    Returns
    -------
    polars.DataFrame
        ``kind``, ``indicator``, ``label``, ``origin``, ``field`` (the event column it matched; null
        when nothing matched), ``matched`` (the values that matched), ``first_seen``,
        ``last_seen``, ``accounts``, ``hosts``, ``src_ips``, ``systems``, then the common columns.

    Raises
    ------
    ConfigError
        For an indicator table without ``kind`` / ``value``, an unknown kind or an invalid address.
    """
    if not isinstance(indicators, pl.DataFrame):
        indicators, _ = load_indicators(indicators)
    missing = [c for c in ("kind", "value") if c not in indicators.columns]
    if missing:
        raise ConfigError(f"the indicator table lacks column(s) {missing}")
    unknown = sorted(set(indicators.get_column("kind").to_list()) - set(KINDS))
    if unknown:
        raise ConfigError(f"unknown indicator kind(s) {unknown}; known: {', '.join(KINDS)}")
    ind = indicators.select(
        pl.col("kind"), pl.col("value"),
        (pl.col("label") if "label" in indicators.columns else pl.col("value")).cast(pl.String).alias("label"),
        (pl.col("origin") if "origin" in indicators.columns else pl.lit("")).cast(pl.String).alias("origin"))
    period = TimeWindow.of(since, until)

    lf = (as_lazy(events).filter(period.contains("time")).with_row_index("_row")
          .with_columns(_evidence=evidence_line()))
    hits = pl.concat([*_ip_hits(lf, ind), *_account_hits(lf, ind), *_hash_hits(lf, ind), *_host_hits(lf, ind)],
                     how="vertical")
    grouped = (
        hits.sort("time", "raw_file", "raw_line")
        .group_by("kind", "value", "field", maintain_order=True)
        .agg(matched=distinct("_matched"), first_seen=pl.col("time").min(), last_seen=pl.col("time").max(),
             accounts=distinct("account"), hosts=distinct(short_host("host")), src_ips=distinct("src_ip"),
             systems=distinct(pl.col("source_system").cast(pl.String)),
             event_count=pl.col("_row").n_unique().cast(pl.Int64), evidence=evidence_agg(cap=evidence_cap))
        .collect()
    )
    matched = ind.join(grouped, on=["kind", "value"], how="inner")
    unmatched = ind.join(grouped.select("kind", "value").unique(), on=["kind", "value"], how="anti")
    table = pl.concat([matched, unmatched], how="diagonal_relaxed").rename({"value": "indicator"}).with_columns(
        event_count=pl.col("event_count").fill_null(0),
        matched=pl.col("matched").fill_null([]), accounts=pl.col("accounts").fill_null([]),
        hosts=pl.col("hosts").fill_null([]), src_ips=pl.col("src_ips").fill_null([]),
        systems=pl.col("systems").fill_null([]), evidence=pl.col("evidence").fill_null([]),
    )
    hit = pl.col("event_count") > 0
    who = pl.when(pl.col("accounts").list.len() > 0).then(pl.concat_str([
        pl.lit("; accounts "), pl.col("accounts").list.head(5).list.join(", ")])).otherwise(pl.lit(""))
    where = pl.when(pl.col("hosts").list.len() > 0).then(pl.concat_str([
        pl.lit("; hosts "), pl.col("hosts").list.head(5).list.join(", ")])).otherwise(pl.lit(""))
    said = pl.concat_list([
        pl.when((pl.col("label") != pl.col("indicator")) & (pl.col("label") != pl.col("origin"))).then(pl.col("label")),
        pl.when(pl.col("origin") != "").then(pl.col("origin"))]).list.drop_nulls().list.join(", ")
    source = pl.when(said != "").then(pl.concat_str([pl.lit(" ("), said, pl.lit(")")])).otherwise(pl.lit(""))
    table = table.with_columns(
        called_out=hit,
        reasons=sentences(pl.when(hit).then(pl.concat_str([
            pl.lit("indicator "), pl.col("indicator"), source, pl.lit(" matches "), pl.col("field"), pl.lit(" in "),
            counted("event_count", "event"),
            pl.lit(" from "), utc_text("first_seen"), pl.lit(" to "), utc_text("last_seen"), pl.lit(" UTC")]))),
        description=pl.when(hit).then(pl.concat_str([
            pl.col("kind"), pl.lit(" "), pl.col("indicator"), pl.lit(" in "), pl.col("field"), pl.lit(": "),
            counted("event_count", "event"), pl.lit(", "), utc_text("first_seen", "%Y-%m-%d %H:%M"), pl.lit(" to "),
            utc_text("last_seen", "%Y-%m-%d %H:%M"), pl.lit(" UTC"), who, where]))
        .otherwise(pl.concat_str([pl.col("kind"), pl.lit(" "), pl.col("indicator"), pl.lit(": no match")])),
    )
    return finish_table(table, COLUMNS, ["first_seen", "kind", "indicator", "field"])


_HIT_COLUMNS: Final = ("kind", "value", "field", "_matched", "_row", "time", "account", "host", "src_ip",
                       "source_system", "raw_file", "raw_line", "_evidence")


def _hits(lf: pl.LazyFrame, field: str, values: pl.Expr, matches: pl.LazyFrame, on: str) -> pl.LazyFrame:
    """Events whose *values* (an expression over *field*) equal ``matches[on]``."""
    return (lf.with_columns(_matched=values).filter(pl.col("_matched").is_not_null())
            .join(matches, left_on="_matched", right_on=on, how="inner")
            .with_columns(field=pl.lit(field)).select(_HIT_COLUMNS))


def _ip_hits(lf: pl.LazyFrame, ind: pl.DataFrame) -> list[pl.LazyFrame]:
    ips = ind.filter(pl.col("kind") == "ip")
    if ips.height == 0:
        return []
    networks = parse_networks(ips.get_column("value").to_list(), what="indicator")
    by_net = ips.select("kind", "value").with_columns(_net=pl.Series([str(n) for n in networks], dtype=pl.String))
    out = []
    for field in ("src_ip", "host", "target_id"):
        distinct_values = lf.select(pl.col(field).unique()).collect().to_series()
        pairs = match_networks(distinct_values, networks).join(by_net, left_on="network", right_on="_net")
        out.append(_hits(lf, field, pl.col(field), pairs.select("address", "kind", "value").lazy(), "address"))
    return out


def _account_hits(lf: pl.LazyFrame, ind: pl.DataFrame) -> list[pl.LazyFrame]:
    accounts = ind.filter(pl.col("kind") == "account").select("kind", "value", _key=pl.col("value"))
    if accounts.height == 0:
        return []
    targets = pl.when(pl.col("target_type") == "account").then(normalized_account("target_id"))
    return [_hits(lf, "account", normalized_account("account"), accounts.lazy(), "_key"),
            _hits(lf, "target_id", targets, accounts.lazy(), "_key")]


def _hash_hits(lf: pl.LazyFrame, ind: pl.DataFrame) -> list[pl.LazyFrame]:
    hashes = ind.filter(pl.col("kind") == "hash").select("kind", "value", _key=pl.col("value"))
    if hashes.height == 0:
        return []
    image = pl.col("image_sha256").str.strip_chars().str.to_lowercase()
    return [_hits(lf, "image_sha256", image, hashes.lazy(), "_key"), _in_message(lf, hashes)]


def _host_hits(lf: pl.LazyFrame, ind: pl.DataFrame) -> list[pl.LazyFrame]:
    names = ind.filter(pl.col("kind") == "hostname").select("kind", "value", _key=pl.col("value"))
    if names.height == 0:
        return []
    short = names.filter(~pl.col("value").str.contains(".", literal=True))
    out = []
    for field in ("host", "src_host", "target_id"):
        lowered = pl.col(field).str.strip_chars().str.to_lowercase()
        out.append(_hits(lf, field, lowered, names.lazy(), "_key"))
        if short.height:
            # A bare name also matches the first label of a qualified one (jump01 ~ JUMP01.util.local).
            out.append(_hits(lf, field, pl.when(lowered.str.contains(".", literal=True))
                             .then(lowered.str.extract(r"^([^.]+)")), short.lazy(), "_key"))
    dotted = names.filter(pl.col("value").str.contains(".", literal=True))
    if dotted.height:
        out.append(_in_message(lf, dotted))
    return out


def _in_message(lf: pl.LazyFrame, patterns: pl.DataFrame) -> pl.LazyFrame:
    """Events whose message contains an indicator as text (Aho-Corasick over the lower-cased message)."""
    keys = patterns.get_column("_key").to_list()
    found = (lf.with_columns(_found=pl.col("message").str.to_lowercase().str.extract_many(keys))
             .filter(pl.col("_found").list.len() > 0).explode("_found"))
    return (found.join(patterns.lazy(), left_on="_found", right_on="_key", how="inner")
            .unique(["_row", "kind", "value"])
            .with_columns(field=pl.lit("message"), _matched=pl.col("_found")).select(_HIT_COLUMNS))


def to_findings(table: pl.DataFrame, severity: str = "high", *, called_out_only: bool = True) -> pl.DataFrame:
    """Indicator hits as findings: the lead account involved (the others named in the reasons), else the
    host or matched value. One account per ``entity_id``, so findings group and link by account."""
    has_account = pl.col("accounts").list.len() > 0
    entity = pl.when(has_account).then(pl.col("accounts").list.first()).otherwise(
        pl.coalesce(pl.col("hosts").list.first(), pl.col("matched").list.first(), pl.col("indicator")))
    key = pl.concat_str([pl.col("kind"), pl.col("indicator"), pl.col("field").fill_null("")], separator="|")
    rows = table if called_out_only else table.filter(pl.col("event_count") > 0)
    others = pl.col("accounts").list.slice(1)
    rows = rows.with_columns(reasons=pl.when(others.list.len() > 0).then(pl.concat_list(
        "reasons", pl.concat_str([pl.lit("other accounts involved: "), others.list.join(", ")])))
        .otherwise(pl.col("reasons")))
    return hunt_findings(rows, detector=NAME, severity=severity,
                         entity_kind=pl.when(has_account).then(pl.lit("account")).otherwise(pl.lit("device")),
                         entity_id=entity, key=key, called_out_only=called_out_only)


def summary(table: pl.DataFrame) -> list[str]:
    """The indicator rows for the terminal."""
    return summary_lines(NAME, table, noun="indicator rows")
