"""Firmware hunt: every firmware download and activation in a period, by image, checked.

The advisory's question: *which firmware was pushed between these dates, and was it genuine?* One
row per image (hash, name, version) with the devices it reached, who pushed it, from where and
when. Called out: a hash not in the manifest of known-good hashes (without a manifest: a hash
never seen before), pushes outside the maintenance windows, and pushes by accounts that had never
pushed firmware before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Final

import polars as pl

from detector.errors import ConfigError
from detector.hunts.common import (
    EVIDENCE_CAP,
    TimeWindow,
    WeeklyWindow,
    as_lazy,
    check_zone,
    counted,
    describe_windows,
    distinct,
    evidence_agg,
    evidence_line,
    finish_table,
    hunt_findings,
    in_weekly_windows,
    local_text,
    parse_windows,
    sentences,
    summary_lines,
    utc_text,
)
from detector.parsers.csvlines import read_option_csv

NAME: Final = "firmware"
FW_ACTIONS: Final = ("fw_download", "fw_activate")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HASH_COLUMNS: Final = ("sha256", "sha-256", "image_sha256", "hash")
_IMAGE_COLUMNS: Final = ("image", "file", "filename", "name")
_VERSION_COLUMNS: Final = ("version",)

COLUMNS: Final = ("image_sha256", "image", "version", "first_seen", "last_seen", "downloads", "activations", "failed",
                  "devices_reached", "targets", "accounts", "src_ips", "in_manifest", "new_hash", "hash_first_seen",
                  "outside_window", "new_pushers", "timeline", "no_history")


def load_manifest(path: str | Path) -> pl.DataFrame:
    """Read a manifest of known-good firmware: a CSV with a header and a ``sha256`` column.

    The hash column may also be called ``sha-256``, ``image_sha256`` or ``hash``; optional
    ``image`` (or ``file``, ``filename``, ``name``) and ``version`` columns are kept. Blank lines
    and lines starting with ``#`` are skipped.

    Returns
    -------
    polars.DataFrame
        ``sha256`` (lower case), ``image``, ``version``.

    Raises
    ------
    ConfigError
        For an unreadable file, a missing hash column, a value that is not 64 hex digits, or a
        manifest without hashes, naming the file and line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the firmware manifest: {exc}", source=(str(path), None)) from None
    header_line, header, rows = read_option_csv(path, text, "firmware manifest")

    def find(names: Sequence[str]) -> int | None:
        return next((header.index(n) for n in names if n in header), None)

    def cell(row: list[str], at: int | None) -> str | None:
        return row[at] if at is not None and at < len(row) else None

    at_hash = find(_HASH_COLUMNS)
    if at_hash is None:
        raise ConfigError(f"the firmware manifest has no hash column (header {header}; expected one of "
                          f"{', '.join(_HASH_COLUMNS)})", source=(str(path), header_line))
    at_image, at_version = find(_IMAGE_COLUMNS), find(_VERSION_COLUMNS)
    records = []
    for number, row in rows:
        value = (cell(row, at_hash) or "").lower()
        if not _SHA256.match(value):
            raise ConfigError(f"{value!r} is not a SHA-256 hash (64 hex digits)", source=(str(path), number))
        records.append((value, cell(row, at_image), cell(row, at_version)))
    if not records:
        raise ConfigError("the firmware manifest lists no hashes", source=(str(path), None))
    return pl.DataFrame(records, schema={"sha256": pl.String, "image": pl.String, "version": pl.String}, orient="row")


def _manifest_hashes(manifest: pl.DataFrame | str | Path | Iterable[str] | None) -> list[str] | None:
    if manifest is None:
        return None
    if isinstance(manifest, (str, Path)):
        manifest = load_manifest(manifest)
    if isinstance(manifest, pl.DataFrame):
        if "sha256" not in manifest.columns:
            raise ConfigError("the manifest table needs a sha256 column")
        values = manifest.get_column("sha256").cast(pl.String).drop_nulls().to_list()
    else:
        values = list(manifest)
    hashes = sorted({v.strip().lower() for v in values})
    bad = [v for v in hashes if not _SHA256.match(v)]
    if bad:
        raise ConfigError(f"manifest: {bad[0]!r} is not a SHA-256 hash (64 hex digits)")
    return hashes


def hunt_firmware(events: pl.DataFrame | pl.LazyFrame, *, since: datetime | date | str | None = None,
                  until: datetime | date | str | None = None,
                  manifest: pl.DataFrame | str | Path | Iterable[str] | None = None,
                  windows: Sequence[str | WeeklyWindow] = (), tz: str = "UTC",
                  evidence_cap: int = EVIDENCE_CAP) -> pl.DataFrame:
    """Every firmware download or activation in [since, until), one row per image, checked.

    Parameters
    ----------
    events
        Normalized events (all of them: what happened before *since* is the history that "never
        seen before" and "never pushed before" are judged against).
    since, until
        The period (UTC; ``until`` exclusive, a date ``until`` includes that day).
    manifest
        Known-good image hashes: a table with a ``sha256`` column (see :func:`load_manifest`), a
        path to such a CSV, or the hashes themselves. Without it, an image is called out when its
        hash was never seen before its first push in the period.
    windows
        Weekly maintenance windows in local time, e.g. ``["Wed 00:00-04:00"]``; without any, pushes
        are not checked against a window.
    tz
        IANA zone the windows are written in.
    evidence_cap
        Most ``raw_file:raw_line`` entries kept per row (0 for all); ``event_count`` counts all.

    Returns
    -------
    polars.DataFrame
        One row per (``image_sha256``, ``image``, ``version``): ``first_seen``, ``last_seen``,
        ``downloads``, ``activations``, ``failed``, ``devices_reached``, ``targets``, ``accounts``,
        ``src_ips``, ``in_manifest`` (null without a manifest), ``new_hash``, ``hash_first_seen``,
        ``outside_window`` (pushes outside the windows; null without windows), ``new_pushers``,
        ``timeline``, then ``called_out``, ``reasons``, ``description``, ``event_count``,
        ``evidence``. Called-out rows first.

    Raises
    ------
    ConfigError
        For a bad window, zone, manifest or period.
    """
    period = TimeWindow.of(since, until)
    parsed = parse_windows(windows)
    check_zone(tz)
    hashes = _manifest_hashes(manifest)
    keys = ["image_sha256", "image", "version"]

    pushes = (
        as_lazy(events)
        .filter(pl.col("action").cast(pl.String).is_in(FW_ACTIONS))
        .sort("time", "raw_file", "raw_line")
        .with_columns(
            image_sha256=pl.col("image_sha256").str.strip_chars().str.to_lowercase().replace("", None),
            image=pl.col("new_value"),
            action=pl.col("action").cast(pl.String),
            _evidence=evidence_line(),
            _devices=pl.col("target_count").cast(pl.Int64).fill_null(1).clip(lower_bound=0),
            _in_window=in_weekly_windows("time", parsed, tz) if parsed else pl.lit(None, dtype=pl.Boolean),
        )
        .with_columns(
            version=pl.col("image").str.extract(r"(\d+(?:\.\d+)+)"),
            # History is every firmware event before this one, whatever the period.
            _hash_first=pl.col("time").min().over("image_sha256"),
            _global_first=pl.col("time").min(),
            _account_first=pl.col("time").min().over("account"),
        )
        .with_columns(
            _new_pusher=pl.col("account").is_not_null() & (pl.col("time") == pl.col("_account_first"))
            & (pl.col("time") > pl.col("_global_first")),
        )
        .filter(period.contains("time"))
    )
    timeline = pl.concat_str([
        utc_text("time"), pl.lit(" "), pl.col("action"), pl.lit(" "), pl.col("target_id").fill_null("?"),
        pl.lit(" ("), pl.col("_devices").cast(pl.String), pl.lit(" devices) by "), pl.col("account").fill_null("?"),
        pl.lit(" from "), pl.col("src_ip").fill_null("?"), pl.lit(" ["), pl.col("outcome").cast(pl.String),
        pl.lit("]")])
    grouped = pushes.group_by(keys, maintain_order=True).agg(
        first_seen=pl.col("time").min(),
        last_seen=pl.col("time").max(),
        downloads=(pl.col("action") == "fw_download").sum().cast(pl.Int64),
        activations=(pl.col("action") == "fw_activate").sum().cast(pl.Int64),
        failed=(pl.col("outcome") == "failure").sum().cast(pl.Int64),
        targets=distinct("target_id"),
        accounts=distinct("account"),
        src_ips=distinct("src_ip"),
        hash_first_seen=pl.col("_hash_first").first(),
        _global_first=pl.col("_global_first").first(),
        outside_window=(~pl.col("_in_window")).sum().cast(pl.Int64) if parsed else pl.lit(None, dtype=pl.Int64),
        _first_outside=pl.col("time").filter(~pl.col("_in_window")).min() if parsed
        else pl.lit(None, dtype=pl.Datetime("us", "UTC")),
        new_pushers=distinct(pl.col("account").filter(pl.col("_new_pusher"))),
        timeline=timeline,
        event_count=pl.len().cast(pl.Int64),
        evidence=evidence_agg(cap=evidence_cap),
    )
    # A group command and its activation reach the same devices: count each target once.
    reached = (pushes.group_by([*keys, "target_id"]).agg(pl.col("_devices").max())
               .group_by(keys).agg(devices_reached=pl.col("_devices").sum().cast(pl.Int64)))
    table = grouped.join(reached, on=keys, how="left", nulls_equal=True).collect()

    has_hash = pl.col("image_sha256").is_not_null()
    in_manifest = ((has_hash & pl.col("image_sha256").is_in(hashes)) if hashes is not None
                   else pl.lit(None, dtype=pl.Boolean))
    # No firmware push before the period's first one: there is no history to tell a known image
    # from a new one, so every image is new (and the summary says so once).
    no_history = bool(table.height) and bool(
        table.select(pl.col("first_seen").min() <= pl.col("_global_first").min()).item())
    table = table.with_columns(
        in_manifest=in_manifest,
        new_hash=has_hash & (pl.col("hash_first_seen") >= pl.col("first_seen")),
        no_history=pl.lit(no_history),
    )
    image = pl.col("image").fill_null("(no image name)")
    window_text = describe_windows(parsed, tz) if parsed else ""
    reasons = sentences(
        pl.when(pl.col("in_manifest").not_() & has_hash).then(pl.concat_str([
            pl.lit("image hash "), pl.col("image_sha256"), pl.lit(" of "), image,
            pl.lit(" is not in the manifest of known-good hashes")])),
        pl.when(pl.col("in_manifest").not_() & ~has_hash).then(pl.concat_str([
            pl.lit("no image hash was logged for "), image, pl.lit(", so it cannot be checked against the manifest")])),
        pl.when(pl.col("in_manifest").is_null() & pl.col("new_hash")).then(pl.concat_str([
            pl.lit("image hash "), pl.col("image_sha256"), pl.lit(" of "), image, pl.lit(" was never seen before "),
            utc_text("first_seen"), pl.lit(" UTC")])),
        pl.when(pl.col("outside_window") > 0).then(pl.concat_str([
            pl.col("outside_window").cast(pl.String), pl.lit(" of "), pl.col("event_count").cast(pl.String),
            pl.lit(" pushes were outside the maintenance windows "), pl.lit(window_text), pl.lit(", the first on "),
            local_text("_first_outside", tz)])),
        pl.when(pl.col("new_pushers").list.len() > 0).then(pl.concat_str([
            pl.lit("pushed by "), pl.col("new_pushers").list.join(", "),
            pl.lit(", who had never pushed firmware before")])),
    )
    description = pl.concat_str([
        image, pl.lit(" (version "), pl.col("version").fill_null("?"), pl.lit(", sha256 "),
        pl.col("image_sha256").str.slice(0, 16).fill_null("not logged"), pl.lit("): "),
        counted("downloads", "download"), pl.lit(" and "), counted("activations", "activation"),
        pl.lit(" to "), counted("devices_reached", "device"), pl.lit(" ("),
        pl.col("targets").list.head(5).list.join(", "),
        pl.when(pl.col("targets").list.len() > 5).then(pl.lit(", ...")).otherwise(pl.lit("")),
        pl.lit(") by "), pl.col("accounts").list.join(", "), pl.lit(", "), utc_text("first_seen", "%Y-%m-%d %H:%M"),
        pl.lit(" to "), utc_text("last_seen", "%Y-%m-%d %H:%M"), pl.lit(" UTC")])
    table = table.with_columns(reasons=reasons).with_columns(
        called_out=pl.col("reasons").list.len() > 0,
        description=description,
    )
    return finish_table(table, COLUMNS, ["first_seen", "image_sha256"])


def to_findings(table: pl.DataFrame, severity: str = "high", *, called_out_only: bool = True) -> pl.DataFrame:
    """Firmware rows as findings: the first device (group) pushed to is the entity — one id, so that
    the finding joins that device's incident — and the row's description names the others."""
    entity = pl.col("targets").list.first()
    key = pl.concat_str([pl.col("image_sha256").fill_null(""), pl.col("image").fill_null(""),
                         pl.col("version").fill_null("")], separator="|")
    return hunt_findings(table, detector=NAME, severity=severity, entity_kind=pl.lit("device"),
                         entity_id=entity, key=key, called_out_only=called_out_only)


def summary(table: pl.DataFrame) -> list[str]:
    """The firmware table for the terminal; without a manifest or any earlier push, a note saying so once."""
    lines = summary_lines(NAME, table, noun="images")
    if table.height and "no_history" in table.columns and table.get_column("no_history").any() \
            and table.get_column("in_manifest").is_null().all():
        lines.insert(1, "  no history: every image is new (no firmware push before the period in these logs, "
                        "and no --manifest of known-good hashes)")
    return lines
