"""Baseline profiles: what each account and device did during the training period.

Profiles are small tables (one row per account and source IP, per device and issuing account...)
that a model stores as Parquet next to its forests. Features compare new windows with them.

Roles
-----
The normalized schema has no role column (the HES audit log's ``Role`` field is not carried), so a
role is *inferred from behaviour*: the category of most of the account's baseline events, leaving
out ``authentication`` (everyone logs in; an account that does nothing else gets the role
``authentication``). Service accounts that poll meters end up ``device_command``, administrators
``privilege`` or ``account_mgmt`` (Windows logs a privileged logon, 4672, with each admin logon),
VPN users ``remote_access``. ``role_source`` says ``"inferred"`` so a later version that reads a
real role can say ``"log"`` instead. An account without a baseline of its own has its volumes
compared with the median account of its role (devices: of their device type).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Final, Self

import numpy as np
import polars as pl

from detector.errors import InputError
from detector.features.catalog import ACCOUNT_MEASURES, DEVICE_MEASURES, EntityKind
from detector.features.common import (
    as_lazy,
    entity_of,
    image_hash,
    is_device_target,
    prepare,
    typical_aggs,
    window_measures,
)
from detector.features.config import DEFAULT_WINDOW, FeatureConfig
from detector.features.dictionary import DeviceIndex
from detector.features.sessions import active_hours, idle_session_hours, presence, session_marks
from detector.schema import UTC_US

FORMAT: Final = "ami-detector-profiles"
VERSION: Final = 3
SCALARS_FILE: Final = "profiles.json"

_SEEN: Final[dict[str, pl.DataType]] = {"events": pl.Int64(), "first_seen": UTC_US, "last_seen": UTC_US}

PROFILE_SCHEMAS: Final[dict[str, pl.Schema]] = {
    "account_ips": pl.Schema({"account": pl.String(), "src_ip": pl.String(), **_SEEN}),
    "account_hosts": pl.Schema({"account": pl.String(), "src_host": pl.String(), **_SEEN}),
    # The hosts that logged the account's events (where it logged on, worked, installed...).
    "account_dest_hosts": pl.Schema({"account": pl.String(), "host": pl.String(), **_SEEN}),
    "account_actions": pl.Schema({"account": pl.String(), "action": pl.String(), **_SEEN}),
    # Every device an account acted on (membership is all that is asked of it).
    "account_targets": pl.Schema({"account": pl.String(), "target_id": pl.String()}),
    # weekday is ISO (1 = Monday), hour 0-23, both in the configured zone ([features] timezone, UTC by default).
    "account_hours": pl.Schema({"account": pl.String(), "weekday": pl.Int8(), "hour": pl.Int8(), "events": pl.Int64()}),
    # Clock hours it was logged on interactively without logging anything (see features.sessions), by weekday and hour.
    "account_session_hours": pl.Schema({"account": pl.String(), "weekday": pl.Int8(), "hour": pl.Int8(),
                                        "hours": pl.Int64()}),
    "account_activity": pl.Schema({
        "account": pl.String(), **_SEEN, "active_days": pl.Int64(), "active_windows": pl.Int64(),
        # Clock hours in which it logged an event (what an idle logged-on hour weighs: events / active_hours).
        "active_hours": pl.Int64(),
        # The distinct targets of its busiest windows (95th percentile): how wide it ever reaches.
        "targets_peak": pl.Float64(),
        "role": pl.String(), "role_source": pl.String(),
    }),
    # Typical count of each measure in a window where it occurs (null: never); see catalog.
    "account_typical": pl.Schema({"account": pl.String(), **{m: pl.Float64() for m in ACCOUNT_MEASURES}}),
    "device_issuers": pl.Schema({"device_id": pl.String(), "account": pl.String(), **_SEEN}),
    "device_activity": pl.Schema({
        "device_id": pl.String(), "device_type": pl.String(), **_SEEN, "active_days": pl.Int64(),
        "active_windows": pl.Int64(),
    }),
    "device_typical": pl.Schema({"device_id": pl.String(), **{m: pl.Float64() for m in DEVICE_MEASURES}}),
    "image_hashes": pl.Schema({"image_sha256": pl.String(), **_SEEN}),
    # Targets of configuration changes (settings, meter programs...), whoever changed them.
    "config_targets": pl.Schema({"target_id": pl.String(), **_SEEN}),
}


# The columns that identify a row of each table: each key occurs once.
PROFILE_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "account_ips": ("account", "src_ip"),
    "account_hosts": ("account", "src_host"),
    "account_dest_hosts": ("account", "host"),
    "account_actions": ("account", "action"),
    "account_targets": ("account", "target_id"),
    "account_hours": ("account", "weekday", "hour"),
    "account_session_hours": ("account", "weekday", "hour"),
    "account_activity": ("account",),
    "account_typical": ("account",),
    "device_issuers": ("device_id", "account"),
    "device_activity": ("device_id",),
    "device_typical": ("device_id",),
    "image_hashes": ("image_sha256",),
    "config_targets": ("target_id",),
}


@dataclass(frozen=True)
class Profiles:
    """Baseline profiles of accounts, devices and firmware images over one training period.

    Attributes
    ----------
    account_ips, account_hosts, account_dest_hosts, account_actions
        Per account and source IP / source host / host that logged its event / action: ``events``,
        ``first_seen``, ``last_seen``.
    account_targets
        Per account, each device (or group) it acted on.
    account_hours
        Per account, ISO weekday (1 = Monday) and hour (in ``[features] timezone``): ``events``. Both the hour-of-day and
        the weekday histograms are its margins.
    account_session_hours
        Per account, ISO weekday and hour as ``account_hours``: ``hours``, the clock hours it was logged
        on interactively without logging any event (:mod:`detector.features.sessions`). The hour
        habits count each as an hour of its usual activity (:func:`habit_histogram`).
    account_activity
        Per account: ``events``, ``first_seen``, ``last_seen``, ``active_days``, ``active_windows``,
        ``active_hours`` (clock hours with an event),
        ``role`` and ``role_source`` (see the module docstring).
    account_typical
        Per account, one column per measure (:data:`~detector.features.catalog.ACCOUNT_MEASURES`):
        its median count over the windows where the measure was non-zero; null if never.
    device_issuers
        Per device and issuing account: ``events``, ``first_seen``, ``last_seen``.
    device_activity
        Per device: ``device_type`` and the same activity columns as accounts, without a role.
    device_typical
        Per device, like ``account_typical`` for :data:`~detector.features.catalog.DEVICE_MEASURES`.
    image_hashes
        Per firmware image SHA-256 (lower case): ``events``, ``first_seen``, ``last_seen``.
    config_targets
        Per target of a configuration change (a setting, a meter program): ``events``,
        ``first_seen``, ``last_seen``.
    baseline_start, baseline_end
        Times of the first and last baseline event; ``None`` for empty profiles.
    window
        The window length the typical values were computed with.
    event_count
        Events the profiles were built from.
    """

    account_ips: pl.DataFrame
    account_hosts: pl.DataFrame
    account_dest_hosts: pl.DataFrame
    account_actions: pl.DataFrame
    account_targets: pl.DataFrame
    account_hours: pl.DataFrame
    account_session_hours: pl.DataFrame
    account_activity: pl.DataFrame
    account_typical: pl.DataFrame
    device_issuers: pl.DataFrame
    device_activity: pl.DataFrame
    device_typical: pl.DataFrame
    image_hashes: pl.DataFrame
    config_targets: pl.DataFrame
    baseline_start: datetime | None = None
    baseline_end: datetime | None = None
    window: str = DEFAULT_WINDOW
    event_count: int = 0

    # Tables (and the device index) computed from the ones above, kept on first use: see derived().
    _derived: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    # The profiles these were cut from (restricted()): what is derived comes from the whole.
    _whole: Profiles | None = field(default=None, init=False, repr=False, compare=False)
    # The devices (indices in the whole's device_index()) they were cut to.
    _devices: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    TABLES: ClassVar[tuple[str, ...]] = tuple(PROFILE_SCHEMAS)

    @classmethod
    def empty(cls, window: str = DEFAULT_WINDOW) -> Self:
        """Profiles with no baseline at all: every entity is a cold start."""
        # Any: the tables are keyword arguments by name, which mypy cannot match to the fields.
        tables: dict[str, Any] = {name: pl.DataFrame(schema=schema) for name, schema in PROFILE_SCHEMAS.items()}
        return cls(**tables, window=window)

    @property
    def has_baseline(self) -> bool:
        """Whether the profiles hold any baseline event."""
        return self.baseline_start is not None and self.baseline_end is not None and self.event_count > 0

    @property
    def baseline_days(self) -> float:
        """Length of the baseline period in days (0 for empty profiles)."""
        if not self.has_baseline:
            return 0.0
        assert self.baseline_start is not None and self.baseline_end is not None
        return (self.baseline_end - self.baseline_start).total_seconds() / 86_400

    def derived(self, name: str, build: Callable[[Profiles], pl.LazyFrame]) -> pl.DataFrame:
        """``build(self)`` collected, computed once for these profiles and kept under *name*.

        A scan builds windows against the same profiles day after day; what depends on the profiles
        alone (the typical values of peer groups, say) is then computed once, not every day.
        """
        table: pl.DataFrame = self._kept(name, lambda p: build(p).collect())
        return table

    def _kept(self, name: str, build: Callable[[Profiles], Any]) -> Any:
        """``build(whole)`` of the whole profiles (these, or those these were cut from), computed once."""
        whole = self.whole
        if name not in whole._derived:
            whole._derived[name] = build(whole)
        return whole._derived[name]

    @property
    def whole(self) -> Profiles:
        """The profiles these were cut from (:meth:`restricted`), or these."""
        return self._whole if self._whole is not None else self

    def device_index(self) -> DeviceIndex:
        """The devices of the (whole) profiles as integers (:class:`~detector.features.dictionary.DeviceIndex`),
        built once: what windows and :meth:`restricted` look a slice's devices up in."""
        index: DeviceIndex = self._kept("device_index", lambda p: DeviceIndex(
            p.device_activity, p.device_typical, p.device_issuers))
        return index

    def devices_aligned(self) -> bool:
        """Whether ``device_activity`` and ``device_typical`` hold one row per device in the same order
        (as built), so that a row number in one is the same device's row in the other."""
        activity, typical = self.device_activity, self.device_typical
        return activity.height == typical.height and activity["device_id"].equals(typical["device_id"])

    def restricted(self, events: pl.DataFrame | pl.LazyFrame) -> Profiles:
        """These profiles with the per-device tables cut to the devices *events* touch.

        ``device_issuers``, ``device_activity``, ``device_typical`` and ``account_targets`` hold a
        row per device (or per account and device) of the whole baseline: hundreds of thousands of
        rows for a large fleet, of which a few flagged windows touch a handful. Windows and signals
        only look them up by the devices of their own events, so joining the cut tables gives the
        same windows, at a cost that follows the events rather than the fleet (the detail of flagged
        device windows; lean device windows read the whole tables by index instead). The rows are
        taken by index (:meth:`device_index`); cut profiles cut again stay within their first cut.
        What is derived from the profiles as a whole (the peers' and the median device's typical
        values, the device index) is still derived from the whole (:meth:`derived`). Account tables
        are kept whole: they are small, and some comparisons are global (an address no account used).
        """
        whole = self.whole
        index = whole.device_index()
        devices = as_lazy(events).select(entity_of("device")).collect().to_series()
        found = index.devices.find(devices)
        # The slice's distinct devices, in index order (a mark per device of the model).
        touched = np.zeros(len(index.devices), dtype=bool)
        touched[found[found >= 0]] = True
        ids = np.flatnonzero(touched)
        if self._devices is not None:  # cut again: within the first cut
            ids = ids[np.isin(ids, self._devices, assume_unique=True)]
        tables: dict[str, Any] = {
            name: getattr(whole, name)[grouped.rows(ids)] for name, grouped in (
                ("device_activity", index.activity), ("device_typical", index.typical),
                ("device_issuers", index.issuers))}
        # Pairs of an account and any target: a set lookup of the events' device ids.
        tables["account_targets"] = self.account_targets.filter(
            pl.col("target_id").is_in(devices.drop_nulls().unique().implode()))
        restricted = replace(self, **tables)
        object.__setattr__(restricted, "_whole", whole)
        object.__setattr__(restricted, "_devices", ids)
        return restricted

    def write(self, directory: Path) -> None:
        """Write one Parquet file per table and ``profiles.json`` with the scalars into *directory*."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name in self.TABLES:
            getattr(self, name).write_parquet(directory / f"{name}.parquet")
        scalars = {
            "format": FORMAT,
            "version": VERSION,
            "baseline_start": self.baseline_start.isoformat() if self.baseline_start else None,
            "baseline_end": self.baseline_end.isoformat() if self.baseline_end else None,
            "window": self.window,
            "event_count": self.event_count,
        }
        (directory / SCALARS_FILE).write_text(json.dumps(scalars, indent=1) + "\n")

    @classmethod
    def read(cls, directory: Path) -> Self:
        """Read profiles written by :meth:`write`.

        Raises
        ------
        InputError
            When a file is missing, of another format version, or a table has the wrong columns.
        """
        directory = Path(directory)
        path = directory / SCALARS_FILE
        try:
            scalars = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read baseline profiles: {exc}", source=(str(path), None)) from None
        if scalars.get("format") != FORMAT or scalars.get("version") != VERSION:
            raise InputError(f"profiles are format {scalars.get('format')!r} version {scalars.get('version')!r}, "
                             f"expected {FORMAT!r} version {VERSION}; retrain the model",
                             source=(str(path), None))
        tables: dict[str, pl.DataFrame] = {}
        for name, schema in PROFILE_SCHEMAS.items():
            table_path = directory / f"{name}.parquet"
            try:
                table = pl.read_parquet(table_path)
            except (OSError, pl.exceptions.PolarsError) as exc:
                raise InputError(f"cannot read profile table {name}: {exc}; retrain the model",
                                 source=(str(table_path), None)) from None
            if table.schema != schema:
                raise InputError(f"profile table {name} has columns {dict(table.schema)}, expected {dict(schema)}",
                                 source=(str(table_path), None))
            if table.select(pl.struct(PROFILE_KEYS[name]).is_duplicated().any()).item():
                raise InputError(f"profile table {name} repeats a key {PROFILE_KEYS[name]}; retrain the model",
                                 source=(str(table_path), None))
            tables[name] = table
        return cls(
            **tables,
            baseline_start=_parse_time(scalars.get("baseline_start")),
            baseline_end=_parse_time(scalars.get("baseline_end")),
            window=str(scalars.get("window", DEFAULT_WINDOW)),
            event_count=int(scalars.get("event_count", 0)),
        )

    def __eq__(self, other: object) -> bool:
        # DataFrames do not compare with ==, so the dataclass default would raise.
        if not isinstance(other, Profiles):
            return NotImplemented
        return all(
            getattr(self, f.name).equals(getattr(other, f.name)) if f.name in PROFILE_SCHEMAS
            else getattr(self, f.name) == getattr(other, f.name)
            for f in fields(self) if f.compare
        )


def _parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _seen() -> list[pl.Expr]:
    return [pl.len().cast(pl.Int64).alias("events"), pl.col("time").min().alias("first_seen"),
            pl.col("time").max().alias("last_seen")]


def _pairs(frame: pl.LazyFrame, key: str, value: str) -> pl.LazyFrame:
    return (frame.filter(pl.col(value).is_not_null()).group_by(key, value).agg(*_seen())
            .sort(key, value))


def _activity(prepared: pl.LazyFrame, kind: EntityKind, *extra: pl.Expr) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Activity totals and typical measures per entity, keyed by ``entity_id``."""
    totals = prepared.group_by("entity_id").agg(
        *_seen(), pl.col("time").dt.date().n_unique().cast(pl.Int64).alias("active_days"), *extra)
    per_window = window_measures(prepared, prepared, kind)
    typical = per_window.group_by("entity_id").agg(
        *typical_aggs(kind), active_windows=pl.len().cast(pl.Int64),
        _targets_peak=pl.col("_m_targets").quantile(0.95, "higher").cast(pl.Float64) if kind == "account" else pl.lit(None))
    activity = totals.join(typical.select("entity_id", "active_windows", pl.col("_targets_peak").alias("targets_peak")),
                           on="entity_id", how="left")
    return activity, typical.drop("active_windows", "_targets_peak")


def _roles(accounts: pl.LazyFrame) -> pl.LazyFrame:
    by_category = (accounts.filter(pl.col("category") != "authentication")
                   .group_by("account", pl.col("category").cast(pl.String))
                   .agg(_n=pl.len()))
    return by_category.group_by("account").agg(
        role=pl.col("category").sort_by("_n", "category", descending=[True, False]).first())


def build_profiles(events: pl.LazyFrame | pl.DataFrame, config: FeatureConfig) -> Profiles:
    """Build baseline profiles from the events of a training period.

    Parameters
    ----------
    events
        Events in the normalized schema (:data:`detector.schema.EVENT_SCHEMA`).
    config
        Feature configuration; its window is used for the per-window medians.

    Returns
    -------
    Profiles
        Per-account, per-device and image-hash tables, sorted by their keys so that the same events
        always give the same Parquet files.
    """
    lf = as_lazy(events)
    # prepare() keeps ``account`` and adds ``entity_id``: the account itself, or the device whose
    # issuer is then ``account``.
    accounts = prepare(lf, entity_of("account"), config, None, None)
    devices = prepare(lf, entity_of("device"), config, None, None)
    account_activity, account_typical = _activity(accounts, "account")
    present = presence(lf)
    account_activity = account_activity.join(active_hours(present).rename({"account": "entity_id"}),
                                             on="entity_id", how="left")
    device_activity, device_typical = _activity(devices, "device", pl.col("target_type").min().alias("device_type"))
    devices = devices.rename({"entity_id": "device_id"})
    queries = {
        "account_ips": _pairs(accounts, "account", "src_ip"),
        "account_hosts": _pairs(accounts, "account", "src_host"),
        "account_dest_hosts": _pairs(lf.select(entity_of("account").alias("account"), "host", "time"),
                                     "account", "host").filter(pl.col("account").is_not_null()),
        "account_actions": _pairs(accounts, "account", "action"),
        "account_targets": (lf.filter(is_device_target()).select(entity_of("account").alias("account"), "target_id")
                            .drop_nulls("account").unique().sort("account", "target_id")),
        "account_hours": (accounts.group_by("account", "weekday", "hour")
                          .agg(events=pl.len().cast(pl.Int64)).sort("account", "weekday", "hour")),
        "account_session_hours": idle_session_hours(session_marks(lf), present, config)
        .sort("account", "weekday", "hour"),
        "account_activity": (
            account_activity.rename({"entity_id": "account"})
            .join(_roles(accounts), on="account", how="left")
            .with_columns(role=pl.col("role").fill_null("authentication"), role_source=pl.lit("inferred"))
            .sort("account")),
        "account_typical": account_typical.rename({"entity_id": "account"}).sort("account"),
        "device_issuers": _pairs(devices, "device_id", "account"),
        "device_activity": device_activity.rename({"entity_id": "device_id"}).sort("device_id"),
        "device_typical": device_typical.rename({"entity_id": "device_id"}).sort("device_id"),
        "image_hashes": (lf.select(image_hash(), "time")
                         .filter(pl.col("image_sha256").is_not_null()).group_by("image_sha256")
                         .agg(*_seen()).sort("image_sha256")),
        "config_targets": (lf.filter((pl.col("category") == "config_change") & pl.col("target_id").is_not_null())
                           .group_by("target_id").agg(*_seen()).sort("target_id")),
        "_span": lf.select(_start=pl.col("time").min(), _end=pl.col("time").max(), _n=pl.len().cast(pl.Int64)),
    }
    collected = dict(zip(queries, pl.collect_all(list(queries.values())), strict=True))
    span = collected.pop("_span").row(0, named=True)
    tables = {name: collected[name].select(schema.names()).cast(schema) for name, schema in
              PROFILE_SCHEMAS.items()}
    return Profiles(**tables, baseline_start=span["_start"], baseline_end=span["_end"],
                    window=config.window, event_count=int(span["_n"] or 0))


def habit_histogram(profiles: Profiles) -> pl.LazyFrame:
    """Per account, ISO weekday and hour: how much it is active then (``account, weekday, hour, activity``).

    Its events there, plus each clock hour it was logged on there without logging anything
    (``account_session_hours``) counted as an hour of its usual activity: as many events as it logs
    in an average hour with any (``events / active_hours``). A night-shift worker whose logs hold a
    21:00 logon and a 06:00 logoff is then active through the night, as the sessions say. Without
    interactive sessions this is ``account_hours``.
    """
    per_hour = profiles.account_activity.lazy().select(
        "account", _rate=pl.col("events") / pl.col("active_hours").cast(pl.Float64))
    logged_on = (profiles.account_session_hours.lazy().join(per_hour, on="account", how="inner")
                 .select("account", "weekday", "hour", activity=pl.col("hours") * pl.col("_rate")))
    return (pl.concat([profiles.account_hours.lazy().select("account", "weekday", "hour",
                                                            activity=pl.col("events").cast(pl.Float64)),
                       logged_on])
            .group_by("account", "weekday", "hour").agg(pl.col("activity").sum()))
