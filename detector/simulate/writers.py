"""Rendering one day's events as the raw lines of each reference format (ARCHITECTURE.md), vectorised.

Lines are built with polars string expressions, never per event in Python, and follow each
format's escaping rules: CSV quoting, JSON string escapes, RFC 5424 SD-PARAM escapes (``"``,
``\\``, ``]``), and CEF header (``|``, ``\\``) and extension (``=``, ``\\``, newline) escapes.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import IO, Final, cast

import polars as pl

from detector.simulate.clock import DayClock
from detector.simulate.records import SCHEMAS, Source

FILE_NAMES: Final[dict[Source, str]] = {
    "hes_audit": "hes_audit_{date}.csv",
    "hes_commands": "hes_commands_{date}.jsonl",
    "dms": "dms_{date}.log",
    "winsec": "winsec_{date}.jsonl",
    "vpn": "vpn_{date}.cef",
    "jumphost": "jumphost_{date}.cef",
}
FORMAT_OF: Final[dict[Source, str]] = {
    "hes_audit": "hes_audit_csv", "hes_commands": "hes_commands_jsonl", "dms": "dms_syslog",
    "winsec": "winsec_jsonl", "vpn": "cef", "jumphost": "cef",
}
AUDIT_HEADER: Final = ("EventTimeUTC", "AuditId", "UserName", "Role", "ClientIP", "Workstation", "Category",
                       "Action", "ObjectType", "ObjectId", "OldValue", "NewValue", "Result")
SD_IDS: Final = {"AUTH": "auth@32473", "SCADA_CTRL": "ctrl@32473", "ALARM": "alm@32473", "CONFIG": "cfg@32473",
                 "TAG": "tag@32473", "USER_ADMIN": "usr@32473"}
_SD_PARAMS: Final = [c for c in SCHEMAS["dms"] if c not in ("t", "pri", "host", "app", "procid", "msgid", "msg")]
_WIN_FIELDS: Final = [c for c in SCHEMAS["winsec"] if c not in ("t", "EventID", "Computer")]
_CEF_EXT: Final = [c for c in SCHEMAS["vpn"] if c not in ("t", "sig", "name", "sev")]
CEF_PRODUCTS: Final[dict[Source, str]] = {"vpn": "CEF:0|Acme|SSLVPN|9.1|",
                                          "jumphost": "CEF:0|Northgate|PAM Jump|4.2.1|"}


def _ts(fmt: str) -> pl.Expr:
    return pl.col("t").cast(pl.Datetime("us", "UTC")).dt.strftime(fmt)


ISO_MS = _ts("%Y-%m-%dT%H:%M:%S%.3fZ")


def _replace(expr: pl.Expr, pairs: tuple[tuple[str, str], ...]) -> pl.Expr:
    """Escape in one pass, so that an escape's own backslash is never escaped again."""
    return expr.str.replace_many([old for old, _ in pairs], [new for _, new in pairs])


_JSON_ESCAPES: Final = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))


def json_str(expr: pl.Expr) -> pl.Expr:
    return pl.lit('"') + _replace(expr, _JSON_ESCAPES) + pl.lit('"')


def json_object(fields: list[tuple[str, pl.Expr]]) -> pl.Expr:
    """``{"k":v,...}`` leaving out null members; each expression is already JSON text."""
    members = [pl.lit(f'"{key}":') + value + pl.lit(",") for key, value in fields]
    return pl.lit("{") + pl.concat_str(members, ignore_nulls=True).str.strip_suffix(",") + pl.lit("}")


def json_lines(frame: pl.DataFrame, fields: list[tuple[str, str, bool]]) -> pl.Expr:
    """One flat JSON object per row from ``(key, column, is_text)``, leaving out null members.

    The fast path of the bulk formats: one ``concat_str`` over the pieces, escaping only columns
    that hold a character JSON must escape. The first field must never be null.
    """
    pieces: list[pl.Expr] = []
    for key, column, text in fields:
        values = frame.get_column(column)
        nulls = values.null_count()
        if nulls == frame.height:
            continue
        value = pl.col(column).cast(pl.String)
        if text and values.str.contains_any([old for old, _ in _JSON_ESCAPES]).any():
            value = _replace(value, _JSON_ESCAPES)
        quote = '"' if text else ""
        around = [pl.lit(("," if pieces else "{") + f'"{key}":{quote}'), pl.lit(quote)]
        if nulls:
            present = pl.col(column).is_not_null()
            around = [pl.when(present).then(piece) for piece in around]
        pieces += [around[0], value, around[1]]
    return pl.concat_str([*pieces, pl.lit("}")], ignore_nulls=True)


def render_commands(frame: pl.DataFrame) -> pl.Expr:
    numbers = {"targetCount", "success", "failure"}
    fields = [("ts", "_ts", True), ("jobId", "jobId", True)] + [
        (c, c, c not in numbers) for c in SCHEMAS["hes_commands"] if c != "t"]
    return json_lines(frame, fields)


def render_dms() -> pl.Expr:
    def sd_value(column: str) -> pl.Expr:
        return _replace(pl.col(column), (("\\", "\\\\"), ('"', '\\"'), ("]", "\\]")))

    params = [pl.lit(f' {c}="') + sd_value(c) + pl.lit('"') for c in _SD_PARAMS]
    sd = pl.lit("[") + pl.col("msgid").replace_strict(SD_IDS) + pl.concat_str(params, ignore_nulls=True) + pl.lit("]")
    return pl.concat_str([
        pl.lit("<") + pl.col("pri").cast(pl.String) + pl.lit(">1 ") + ISO_MS, pl.col("host"), pl.col("app"),
        pl.col("procid"), pl.col("msgid"), sd, pl.col("msg")], separator=" ")


def render_winsec(frame: pl.DataFrame, *, ecs: bool) -> pl.Expr:
    if not ecs:
        return json_lines(frame, [("TimeCreated", "_ts", True), ("EventID", "EventID", False),
                                  ("Computer", "Computer", True)]
                          + [(c, c, c != "LogonType") for c in _WIN_FIELDS])
    # Winlogbeat / ECS: nested, with every event_data value a string.
    data = json_object([(c, json_str(pl.col(c).cast(pl.String))) for c in _WIN_FIELDS])
    code = json_str(pl.col("EventID").cast(pl.String))
    return json_object([
        ("@timestamp", json_str(ISO_MS)),
        ("event", json_object([("code", code), ("provider", pl.lit('"Microsoft-Windows-Security-Auditing"')),
                               ("kind", pl.lit('"event"'))])),
        ("host", json_object([("name", json_str(pl.col("Computer").str.to_lowercase()))])),
        ("winlog", json_object([("channel", pl.lit('"Security"')), ("computer_name", json_str(pl.col("Computer"))),
                                ("event_id", code), ("event_data", data)])),
    ])


def render_cef(source: Source) -> pl.Expr:
    def header(expr: pl.Expr) -> pl.Expr:
        return _replace(expr, (("\\", "\\\\"), ("|", "\\|")))

    def ext(column: str) -> pl.Expr:
        value = _replace(pl.col(column).cast(pl.String), (("\\", "\\\\"), ("=", "\\="), ("\n", "\\n")))
        return pl.lit(f" {column}=") + value

    if source == "vpn":  # the VPN writes a readable rt; the secondary gateway arrives via a syslog relay
        rt = _ts("%b %d %Y %H:%M:%S UTC")
        relayed = pl.col("dhost") == "vpn02"
        relay = pl.lit("<134>") + _ts("%b %e %H:%M:%S") + pl.lit(" vpn02 ")
        prefix = pl.when(relayed).then(relay).otherwise(pl.lit(""))
    else:  # the jump host sends epoch milliseconds, always through syslog
        rt = (pl.col("t") // 1000).cast(pl.String)
        prefix = pl.lit("<134>") + _ts("%b %e %H:%M:%S") + pl.lit(" jump01 ")
    extension = pl.lit("rt=") + rt + pl.concat_str([ext(c) for c in _CEF_EXT], ignore_nulls=True)
    return pl.concat_str([
        prefix, pl.lit(CEF_PRODUCTS[source]), header(pl.col("sig")), pl.lit("|"), header(pl.col("name")),
        pl.lit("|"), pl.col("sev").cast(pl.String), pl.lit("|"), extension])


def is_ecs_day(clock: DayClock) -> bool:
    """The Windows export of one weekday a week comes from Winlogbeat (ECS), the rest flat."""
    return clock.index % 7 == 3


def write_day(source: Source, frame: pl.DataFrame, out_dir: Path, clock: DayClock, *, compress: bool) -> Path:
    """Render and write one source's file for one day; returns its path."""
    name = FILE_NAMES[source].format(date=clock.date.isoformat()) + (".gz" if compress else "")
    path = out_dir / name
    if source == "hes_audit":
        rendered = frame.select(ISO_MS.alias("EventTimeUTC"), pl.col("AuditId"), *AUDIT_HEADER[2:])
        header = True
    else:
        frame = frame.with_columns(_ts=ISO_MS)
        if source == "hes_commands":
            line = render_commands(frame)
        elif source == "dms":
            line = render_dms()
        elif source == "winsec":
            line = render_winsec(frame, ecs=is_ecs_day(clock))
        else:
            line = render_cef(source)
        rendered = frame.select(line.alias("line"))
        header = False
    with path.open("wb") as raw:
        if compress:
            # mtime=0 and no file name in the header keep compressed output byte-identical across runs.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
                # A GzipFile is a binary file, but typeshed does not derive it from IO[bytes].
                rendered.write_csv(cast(IO[bytes], packed), line_terminator="\n", include_header=header,
                                   quote_style="necessary" if header else "never")
        else:
            rendered.write_csv(raw, line_terminator="\n", include_header=header,
                               quote_style="necessary" if header else "never")
    return path
