"""Baseline profiles as mergeable partial aggregates, so that training can read its baseline a slice at a time.

:func:`~detector.features.profiles.build_profiles` needs every baseline event at once. Everything in
the profiles is a sum, a minimum, a maximum or a set, except three things, which are kept in forms that
merge exactly:

- the days an entity was active (distinct dates): slices come in time order and do not overlap, so two
  partials share at most one date, the last of the earlier and the first of the later;
- the typical (median) count of each measure over an entity's windows, and an account's 95th percentile
  of distinct targets: each kept as how many windows had each value (``entity, measure, value, windows``),
  from which medians and quantiles come out as they would from the windows themselves;
- the role (the most frequent category): kept as counts per category;
- the hours an account was logged on without logging anything (``account_session_hours``): a session
  may start in one part and end in another, so what sessions are made of is kept as it is, the logons
  and logoffs (``session_marks``) and the clock hours each account logged an event in, per host
  (``presence``), and the sessions are found when the profiles are finished
  (:mod:`detector.features.sessions`). Merged, the hours with events are kept only for accounts with a
  logon or logoff so far (no other account has a session to end or fill) and for the last hour (which
  the next part may share), so that they follow the people who log on interactively, not every
  account's every hour of the baseline; each account's count of hours with events (``active_hours``)
  is kept as a sum, less the hours two parts share.

Device-keyed tables (``device_values``, ``device_totals``, ``device_issuers``, ``account_targets``) name a
device by an integer code, its row in the part's ``devices`` table: a slice's device events are sorted
once by device and window, and each window's measures counted over its run of rows; merges and medians
then sort and group integers instead of hundreds of thousands of device names, which come back only when
the profiles are finished. :class:`Accumulated` keeps one ``devices`` table for all its parts (a part's
names matched to it by hash, then by name) so that parts on disk share its codes; :func:`merge` matches
the parts' names the same way.

A window must lie in one part only (the spill's slices are whole numbers of windows); a part cut
inside a window holds the part of the window it saw, which is what a profile of the events before a
cut time means anyway (see :func:`detector.detection.train_slices`).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, Self

import numpy as np
import polars as pl

from detector.features.catalog import CONTROL_ACTIONS, DEVICE_COMMAND_ACTIONS, EntityKind, measures
from detector.features.common import (
    COMMAND_CATEGORIES,
    as_lazy,
    devices_reached,
    entity_of,
    image_hash,
    is_device_target,
    prepare,
    window_measures,
)
from detector.features.config import FeatureConfig
from detector.features.profiles import PROFILE_KEYS, PROFILE_SCHEMAS, Profiles
from detector.features.sessions import active_hours, idle_session_hours, presence, session_marks
from detector.schema import ACTIONS, CATEGORIES, OUTCOMES, UTC_US

# Tables of (key..., events, first_seen, last_seen), merged by sum / min / max.
_SEEN_TABLES: Final = ("account_ips", "account_hosts", "account_dest_hosts", "account_actions", "device_issuers",
                       "image_hashes", "config_targets")
_MERGE_SEEN: Final = (pl.col("events").sum(), pl.col("first_seen").min(), pl.col("last_seen").max())


def _seen() -> list[pl.Expr]:
    return [pl.len().cast(pl.Int64).alias("events"), pl.col("time").min().alias("first_seen"),
            pl.col("time").max().alias("last_seen")]


def _pairs(frame: pl.LazyFrame, key: str, value: str) -> pl.LazyFrame:
    return frame.filter(pl.col(value).is_not_null()).group_by(key, value).agg(*_seen())


def _totals(prepared: pl.LazyFrame, *extra: pl.Expr) -> pl.LazyFrame:
    return prepared.group_by("entity_id").agg(
        *_seen(), pl.col("time").dt.date().n_unique().cast(pl.Int64).alias("active_days"), *extra)


def _value_counts(prepared: pl.LazyFrame, kind: EntityKind) -> pl.LazyFrame:
    """How many windows of each entity had each non-zero count of each measure (the measure by its
    index in :func:`~detector.features.catalog.measures`)."""
    names = measures(kind)
    per_window = window_measures(prepared, prepared, kind)
    return (per_window.select("entity_id", *[pl.col(f"_m_{m}").alias(str(i)) for i, m in enumerate(names)])
            .unpivot(index="entity_id", variable_name="measure", value_name="value")
            .filter(pl.col("value") > 0)
            .group_by("entity_id", pl.col("measure").cast(pl.UInt8), "value").agg(windows=pl.len().cast(pl.Int64)))


def _account_targets_per_window(prepared: pl.LazyFrame) -> pl.LazyFrame:
    """How many windows of each account reached each number of distinct targets (zero included)."""
    per_window = prepared.group_by("entity_id", "window_start").agg(
        value=pl.col("target_id").drop_nulls().n_unique().cast(pl.Int64))
    return per_window.group_by("entity_id", "value").agg(windows=pl.len().cast(pl.Int64))


# Device-keyed tables hold a device as its code, its row in the part's ``devices`` table (the names):
# merges and medians then group integers, not millions of device names; names come back when finished.
_DEVICE_CODED: Final = {"device_values": "entity_id", "device_totals": "entity_id", "device_issuers": "device_id",
                        "account_targets": "target_id"}


def _device_tables(events: pl.LazyFrame, config: FeatureConfig) -> dict[str, pl.DataFrame]:
    """The device tables of *events* (``devices`` and those of :data:`_DEVICE_CODED`), from their device
    events sorted once by device, window and account: a device is a run of rows (its code, in name
    order), so is a window, and each window's measures are counts over its run (those of
    :func:`~detector.features.common.window_measures`, the issuers as runs of accounts)."""
    rows = (events.filter(is_device_target())
            .select("time", "account", "target_type", entity_id=pl.col("target_id"), actor=entity_of("account"),
                    window_start=pl.col("time").dt.truncate(config.window),
                    category=pl.col("category").cast(pl.Enum(CATEGORIES)),
                    action=pl.col("action").cast(pl.Enum(ACTIONS)),
                    outcome=pl.col("outcome").cast(pl.Enum(OUTCOMES)), _devices=devices_reached())
            .sort("entity_id", "window_start", "account").collect())
    entity, window, account = rows.get_column("entity_id"), rows.get_column("window_start"), rows.get_column("account")
    new_device = entity.ne_missing(entity.shift(1)).to_numpy()
    new_window = new_device | window.ne_missing(window.shift(1)).to_numpy()
    device = (np.cumsum(new_device) - 1).astype(np.uint32)
    starts = np.flatnonzero(new_window)
    window_of = np.cumsum(new_window) - 1

    def count_of(mask: np.ndarray) -> np.ndarray:
        return np.bincount(window_of[mask], minlength=len(starts))

    action = rows.get_column("action").to_physical().to_numpy()
    category = rows.get_column("category").to_physical().to_numpy()
    control = np.isin(action, [ACTIONS.index(a) for a in CONTROL_ACTIONS])
    # A burst sub-window lies inside one window: the biggest count of control commands in one.
    burst = np.zeros(len(starts), dtype=np.int64)
    if control.any():
        per_burst = (rows.lazy().select(_window=pl.Series(window_of), _burst=pl.col("time").dt.truncate(config.burst))
                     .filter(pl.Series(control)).group_by("_window", "_burst").agg(_n=pl.len())
                     .group_by("_window").agg(pl.col("_n").max()).collect())
        burst[per_burst.get_column("_window").to_numpy()] = per_burst.get_column("_n").to_numpy()
    first_of_account = new_window | account.ne_missing(account.shift(1)).to_numpy()
    counts = {
        "events": np.diff(np.append(starts, rows.height)),
        "commands": count_of(np.isin(category, [CATEGORIES.index(c) for c in COMMAND_CATEGORIES])),
        **{a: count_of(action == ACTIONS.index(a)) for a in DEVICE_COMMAND_ACTIONS},
        "config_change": count_of(category == CATEGORIES.index("config_change")),
        "failures": count_of(rows.get_column("outcome").to_physical().to_numpy() == OUTCOMES.index("failure")),
        "devices": (np.add.reduceat(np.where(control, rows.get_column("_devices").to_numpy(), 0), starts)
                    if len(starts) else np.zeros(0, dtype=np.int64)),
        "burst_commands": burst,
        "issuers": count_of(first_of_account & account.is_not_null().to_numpy()),
    }
    # How many windows of each device had each non-zero count of each measure.
    window_device = device[starts]
    names = measures("device")
    present = [counts[m] > 0 for m in names]
    values = _summed_counts(pl.DataFrame({
        "entity_id": np.concatenate([window_device[p] for p in present]),
        "measure": np.concatenate([np.full(p.sum(), i, dtype=np.uint8) for i, p in enumerate(present)]),
        "value": np.concatenate([counts[m][p] for m, p in zip(names, present, strict=True)]).astype(np.int64),
        "windows": np.ones(sum(int(p.sum()) for p in present), dtype=np.int64),
    }))
    coded = rows.lazy().with_columns(_code=pl.Series(device))
    totals, issuers, targets = pl.collect_all([
        coded.group_by(entity_id="_code").agg(
            *_seen(), pl.col("time").dt.date().n_unique().cast(pl.Int64).alias("active_days"),
            pl.col("target_type").min().alias("device_type")),
        coded.filter(pl.col("account").is_not_null()).group_by(device_id="_code", account="account").agg(*_seen()),
        coded.select(account="actor", target_id="_code").drop_nulls("account").unique(),
    ])
    return {"devices": entity.filter(pl.Series(new_device)).to_frame("device_id"), "device_values": values,
            "device_totals": totals, "device_issuers": issuers, "account_targets": targets}


def _extended(devices: pl.DataFrame, names: pl.Series) -> tuple[pl.DataFrame, np.ndarray]:
    """*devices* (a ``devices`` table) with the distinct *names* it lacks added at its end, and each
    name's code in it."""
    known = devices.get_column("device_id")
    # Matched by hash (integers: a join over a few thousand times fewer bytes), then by name, so
    # that two names of one hash are told apart.
    pairs = (known.hash().to_frame("_hash").with_row_index("_code")
             .join(names.hash().to_frame("_hash").with_row_index("_local"), on="_hash", how="inner"))
    pairs = pairs.filter(known.gather(pairs.get_column("_code")) == names.gather(pairs.get_column("_local")))
    codes = np.full(len(names), -1, dtype=np.int64)
    codes[pairs.get_column("_local").to_numpy()] = pairs.get_column("_code").to_numpy()
    missing = codes < 0
    codes[missing] = devices.height + np.arange(missing.sum())
    return (pl.concat([devices, names.filter(pl.Series(missing)).to_frame("device_id")]),
            codes.astype(np.uint32))


def _recoded(tables: dict[str, pl.LazyFrame], codes: np.ndarray) -> dict[str, pl.LazyFrame]:
    """A part's tables with each device code ``i`` written as ``codes[i]`` (and no ``devices`` table)."""
    recoded = {name: table for name, table in tables.items() if name != "devices"}
    for name, column in _DEVICE_CODED.items():
        table = recoded[name].collect()
        recoded[name] = table.with_columns(pl.Series(column, codes[table.get_column(column).to_numpy()])).lazy()
    return recoded


@dataclass(frozen=True)
class PartialProfiles:
    """The mergeable aggregates of some baseline events; :meth:`finish` turns them into :class:`Profiles`."""

    tables: dict[str, pl.DataFrame]
    config: FeatureConfig

    @property
    def window(self) -> str:
        return self.config.window

    @classmethod
    def of(cls, events: pl.LazyFrame | pl.DataFrame, config: FeatureConfig) -> Self:
        """The partial aggregates of *events* (a slice of a baseline, or all of it)."""
        lf = as_lazy(events)
        accounts = prepare(lf, entity_of("account"), config, None, None)
        present = presence(lf)
        queries = {
            "account_ips": _pairs(accounts, "account", "src_ip"),
            "account_hosts": _pairs(accounts, "account", "src_host"),
            "account_dest_hosts": _pairs(lf.select(entity_of("account").alias("account"), "host", "time")
                                         .filter(pl.col("account").is_not_null()), "account", "host"),
            "account_actions": _pairs(accounts, "account", "action"),
            "image_hashes": (lf.select(image_hash(), "time")
                             .filter(pl.col("image_sha256").is_not_null()).group_by("image_sha256").agg(*_seen())),
            "config_targets": (lf.filter((pl.col("category") == "config_change") & pl.col("target_id").is_not_null())
                               .group_by("target_id").agg(*_seen())),
            "account_hours": accounts.group_by("account", "weekday", "hour").agg(events=pl.len().cast(pl.Int64)),
            "session_marks": session_marks(lf),
            "presence": present,
            "active_hours": active_hours(present),
            "account_roles": (accounts.filter(pl.col("category") != "authentication")
                              .group_by("account", pl.col("category").cast(pl.String)).agg(_n=pl.len().cast(pl.Int64))),
            "account_totals": _totals(accounts),
            "account_values": _value_counts(accounts, "account"),
            "account_target_windows": _account_targets_per_window(accounts),
            "span": lf.select(start=pl.col("time").min(), end=pl.col("time").max(), n=pl.len().cast(pl.Int64)),
        }
        tables = dict(zip(queries, pl.collect_all(list(queries.values())), strict=True))
        return cls({**tables, **_device_tables(lf, config)}, config)

    @property
    def event_count(self) -> int:
        return int(self.tables["span"]["n"].sum())

    def merged(self, later: PartialProfiles) -> PartialProfiles:
        """These aggregates and those of *later* events (all after these) together."""
        return merge([self, later])

    def finish(self) -> Profiles:
        """The profiles these aggregates stand for: equal to ``build_profiles`` of the same events."""
        names = self.tables["devices"].get_column("device_id")

        def named(table: pl.DataFrame, column: str) -> pl.DataFrame:  # device codes back to names
            return table.with_columns(names.gather(table.get_column(column)).alias(column))

        t = {name: table.lazy() for name, table in self.tables.items()}
        for name in ("device_issuers", "account_targets"):
            t[name] = named(self.tables[name], _DEVICE_CODED[name]).lazy()
        account_typical, account_windows = _typical(t["account_values"], "account")
        device_typical, device_windows = (frame.lazy() for frame in _typical_of_codes(self.tables["device_values"],
                                                                                       "device"))
        roles = t["account_roles"].group_by("account").agg(
            role=pl.col("category").sort_by("_n", "category", descending=[True, False]).first())
        targets_peak = t["account_target_windows"].group_by("entity_id").agg(
            targets_peak=pl.col("value").repeat_by("windows").list.explode(keep_nulls=False, empty_as_null=False).quantile(0.95, "higher").cast(pl.Float64))
        queries = {
            **{name: t[name].sort(PROFILE_KEYS[name]) for name in _SEEN_TABLES},
            "account_targets": t["account_targets"].sort("account", "target_id"),
            "account_hours": t["account_hours"].sort("account", "weekday", "hour"),
            "account_session_hours": idle_session_hours(t["session_marks"], t["presence"], self.config)
            .sort("account", "weekday", "hour"),
            "account_activity": (
                t["account_totals"].join(account_windows, on="entity_id", how="left")
                .join(t["active_hours"].rename({"account": "entity_id"}), on="entity_id", how="left")
                .join(targets_peak, on="entity_id", how="left")
                .rename({"entity_id": "account"})
                .join(roles, on="account", how="left")
                .with_columns(role=pl.col("role").fill_null("authentication"), role_source=pl.lit("inferred"))
                .sort("account")),
            "account_typical": account_typical.rename({"entity_id": "account"}).sort("account"),
            "device_activity": (t["device_totals"].join(device_windows, on="entity_id", how="left")
                                .rename({"entity_id": "device_id"})),
            "device_typical": device_typical.rename({"entity_id": "device_id"}),
        }
        collected = dict(zip(queries, pl.collect_all(list(queries.values())), strict=True))
        for name in ("device_activity", "device_typical"):  # by name, as the profiles keep them
            collected[name] = named(collected[name], "device_id").sort("device_id")
        tables = {name: collected[name].select(schema.names()).cast(schema)
                  for name, schema in PROFILE_SCHEMAS.items()}
        span = self.tables["span"].row(0, named=True) if self.tables["span"].height else {}
        start: datetime | None = span.get("start")
        return Profiles(**tables, baseline_start=start, baseline_end=span.get("end"), window=self.window,
                        event_count=int(span.get("n") or 0))


# Slices' partial profiles kept on disk before they are merged into one (fewer merges mean fewer passes over the
# merged tables, which grow with the baseline; more mean more parts read by each merge).
COMPACT_AFTER: Final = 8


class Accumulated:
    """The partial profiles of successive slices of a baseline, waiting on disk (a Parquet file per table
    and slice, in a private temporary directory) and merged when asked, when :data:`COMPACT_AFTER` have
    gathered or when compacted (training compacts them at each fold's start, before merging the fold's
    history): in memory, the merged tables of a large fleet are as heavy as its profiles, and merging
    after every few slices is a pass over them each time."""

    def __init__(self) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="ami-detector-partials-")
        self._parts: list[Path] = []
        self._written = 0
        self._config: FeatureConfig | None = None
        # The names of the devices of every part so far: the parts on disk share its codes.
        self._devices = pl.DataFrame(schema={"device_id": pl.String})

    def add(self, part: PartialProfiles) -> None:
        """The next slice's aggregates (after every one added before)."""
        self._config = part.config
        self._parts.append(self._write({name: table.collect() for name, table in self._shared(part).items()}))
        if len(self._parts) > COMPACT_AFTER:
            self.compact()

    def compact(self) -> None:
        """Merge the parts on disk into one. Before a fold's history is merged (everything so far and a
        piece of the next slice), this makes that merge a pass over one merged part, and the parts
        merged once: the merges are passes over the whole merged tables, and fewer passes cost less."""
        if len(self._parts) > 1:
            merged = self._write(_merged_tables([_read(folder) for folder in self._parts]))
            for folder in self._parts:
                shutil.rmtree(folder)
            self._parts = [merged]

    def merged(self, *later: PartialProfiles) -> PartialProfiles:
        """Everything added so far, with *later* aggregates (after it) if given, as one."""
        config = later[0].config if later else self._config
        if config is None:
            raise ValueError("nothing to merge: no partial profiles were added")
        if len(self._parts) == 1 and not later:  # merged already: read as it is
            read = _read(self._parts[0])
            tables = dict(zip(read, pl.collect_all(list(read.values())), strict=True))
        else:
            tables = _merged_tables([*map(_read, self._parts), *map(self._shared, later)])
        return PartialProfiles({**tables, "devices": self._devices}, config)

    def _shared(self, part: PartialProfiles) -> dict[str, pl.LazyFrame]:
        """*part*'s tables in the codes of the devices kept here (those it brings in added)."""
        self._devices, codes = _extended(self._devices, part.tables["devices"].get_column("device_id"))
        return _recoded(_lazy(part), codes)

    def close(self) -> None:
        """Remove the parts on disk (also done when the accumulator is garbage-collected)."""
        self._parts = []
        self._directory.cleanup()

    def _write(self, tables: dict[str, pl.DataFrame]) -> Path:
        folder = Path(self._directory.name) / f"{self._written:05d}"
        self._written += 1
        folder.mkdir()
        for name, table in tables.items():
            table.write_parquet(folder / f"{name}.parquet", compression="lz4", statistics=False)
        return folder


def _read(folder: Path) -> dict[str, pl.LazyFrame]:
    return {path.stem: pl.scan_parquet(path) for path in sorted(folder.glob("*.parquet"))}


def _lazy(part: PartialProfiles) -> dict[str, pl.LazyFrame]:
    return {name: table.lazy() for name, table in part.tables.items()}


def merge(parts: Sequence[PartialProfiles]) -> PartialProfiles:
    """The aggregates of *parts* together: parts of events in time order, none overlapping another.

    Merging several at once costs one pass over the merged tables instead of one per part."""
    devices = pl.DataFrame(schema={"device_id": pl.String})
    shared = []
    for part in parts:  # each part's device codes made the merged part's
        devices, codes = _extended(devices, part.tables["devices"].get_column("device_id"))
        shared.append(_recoded(_lazy(part), codes))
    return PartialProfiles({**_merged_tables(shared), "devices": devices}, parts[0].config)


def _merged_tables(parts: Sequence[dict[str, pl.LazyFrame]]) -> dict[str, pl.DataFrame]:
    """:func:`merge` of the parts' tables (lazy: in memory or read from disk)."""
    both = {name: pl.concat([part[name] for part in parts]) for name in parts[0]}
    end = both["span"].select(pl.col("end").max()).collect().item()
    with_marks = both["session_marks"].select("account").unique().collect().to_series().implode()
    # Each part's hours with events, once: an hour that two parts share (a cut inside it) is one hour.
    hours = pl.concat([part["presence"].select("account", "slot").unique() for part in parts])
    shared = hours.group_by("account", "slot").agg(_n=pl.len() - 1).group_by("account").agg(_shared=pl.col("_n").sum())
    queries = {
        **{name: both[name].group_by(PROFILE_KEYS[name]).agg(*_MERGE_SEEN) for name in _SEEN_TABLES},
        "account_targets": both["account_targets"].unique(),
        "account_hours": both["account_hours"].group_by("account", "weekday", "hour").agg(pl.col("events").sum()),
        "session_marks": both["session_marks"],
        # Kept for those who log on interactively, and the last hour (the next part may share it) for all.
        "presence": both["presence"].unique().filter(
            pl.col("account").is_in(with_marks) | (pl.col("slot") >= pl.lit(end, UTC_US).dt.truncate("1h"))),
        "active_hours": (both["active_hours"].group_by("account").agg(pl.col("active_hours").sum())
                         .join(shared, on="account", how="left")
                         .select("account", active_hours=pl.col("active_hours")
                                 - pl.col("_shared").fill_null(0).cast(pl.Int64))),
        "account_roles": both["account_roles"].group_by("account", "category").agg(pl.col("_n").sum()),
        "account_totals": _merged_totals(both["account_totals"]),
        "device_totals": _merged_totals(both["device_totals"], pl.col("device_type").min()),
        "account_values": both["account_values"].group_by("entity_id", "measure", "value").agg(pl.col("windows").sum()),
        "account_target_windows": both["account_target_windows"].group_by("entity_id", "value")
        .agg(pl.col("windows").sum()),
        "span": both["span"].select(pl.col("start").min(), pl.col("end").max(), pl.col("n").sum()),
    }
    *tables, values = pl.collect_all([*queries.values(), both["device_values"]])
    return {**dict(zip(queries, tables, strict=True)), "device_values": _summed_counts(values)}


def _merged_totals(totals: pl.LazyFrame, *extra: pl.Expr) -> pl.LazyFrame:
    # Parts come in time order without overlapping: an entity's parts, in order, share at most one date
    # with the part before, its last date being the next one's first. Their rows are concatenated in
    # that order, so a stable sort by entity alone puts each entity's parts in time order.
    ordered = totals.sort("entity_id", maintain_order=True)
    shared = ((pl.col("entity_id") == pl.col("entity_id").shift(1))
              & (pl.col("first_seen").dt.date() == pl.col("last_seen").shift(1).dt.date())).fill_null(False)
    return ordered.with_columns(_shared=shared.cast(pl.Int64)).group_by("entity_id").agg(
        *_MERGE_SEEN, (pl.col("active_days").sum() - pl.col("_shared").sum()).alias("active_days"), *extra)


def _typical(values: pl.LazyFrame, kind: EntityKind) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Per entity, the median of each measure over its windows where it is non-zero (one column per
    measure, null if never), and its number of windows (``active_windows``)."""
    names = measures(kind)
    # The median of n values in order: the mean of those at 0-based positions (n-1)//2 and n//2. A row
    # of (value, windows) holds the positions [upto - windows, upto); each position's row is found by a
    # filter over all groups at once (a filter inside a group-by runs group by group: millions of them).
    ordered = values.sort("entity_id", "measure", "value").with_columns(_upto=pl.col("windows").cum_sum())
    # Running and total counts within each (entity, measure), from the sorted rows' running count:
    # boundaries carried forward and back, cheaper than a window over string keys.
    first = (pl.col("entity_id") != pl.col("entity_id").shift(1)) | (pl.col("measure") != pl.col("measure").shift(1))
    last = (pl.col("entity_id") != pl.col("entity_id").shift(-1)) | (pl.col("measure") != pl.col("measure").shift(-1))
    before = pl.when(first.fill_null(True)).then(pl.col("_upto") - pl.col("windows")).forward_fill()
    ordered = ordered.with_columns(_upto=pl.col("_upto") - before).with_columns(
        _total=pl.when(last.fill_null(True)).then(pl.col("_upto")).backward_fill())

    def holds(position: pl.Expr) -> pl.Expr:
        return (pl.col("_upto") - pl.col("windows") <= position) & (pl.col("_upto") > position)

    # The rows holding the two middle positions, low then high, come in that order within their group:
    # the low one's value carried forward reaches the high one (no join of the two).
    medians = (ordered.with_columns(_low=pl.when(holds((pl.col("_total") - 1) // 2)).then(pl.col("value")).forward_fill())
               .filter(holds(pl.col("_total") // 2))
               .select("entity_id", "measure", median=(pl.col("_low") + pl.col("value")).cast(pl.Float64) / 2.0))
    # One column per measure (null where the entity never had it), in the measures' order.
    wide = medians.pivot(on="measure", on_columns=pl.Series(range(len(names)), dtype=pl.UInt8), index="entity_id",
                         values="median").select("entity_id", *[pl.col(str(i)).alias(m) for i, m in enumerate(names)])
    # Every window counts at least one event, so the "events" measure counts the windows.
    events = names.index("events")
    windows = values.filter(pl.col("measure") == events).group_by("entity_id").agg(
        active_windows=pl.col("windows").sum().cast(pl.Int64))
    return wide, windows


def _typical_of_codes(values: pl.DataFrame, kind: EntityKind) -> tuple[pl.DataFrame, pl.DataFrame]:
    """:func:`_typical` of value counts keyed by integer codes, in numpy: the rows sorted once by
    entity, measure and value, each (entity, measure) a run of them; the two middle positions of a
    run's windows are found in the running count of windows (increasing: every row has a window)."""
    names = measures(kind)
    entity, measure = values.get_column("entity_id").to_numpy(), values.get_column("measure").to_numpy()
    value, windows = values.get_column("value").to_numpy(), values.get_column("windows").to_numpy()
    order = _sorted_order(entity, measure, value)
    entity, measure, value, windows = entity[order], measure[order], value[order], windows[order]
    new_entity = np.ones(len(entity), dtype=bool)
    new_entity[1:] = entity[1:] != entity[:-1]
    new_run = new_entity.copy()
    new_run[1:] |= measure[1:] != measure[:-1]
    starts = np.flatnonzero(new_run)
    upto = np.cumsum(windows)
    total = np.add.reduceat(windows, starts) if len(starts) else windows[:0]
    before = upto[starts] - windows[starts]
    low = value[np.searchsorted(upto, before + (total - 1) // 2, side="right")]
    high = value[np.searchsorted(upto, before + total // 2, side="right")]
    # Each run's entity as a row of the wide table (entities in code order), its measure as a column.
    row = (np.cumsum(new_entity) - 1)[starts]
    wide = np.full((int(new_entity.sum()), len(names)), np.nan)
    wide[row, measure[starts]] = (low + high).astype(np.float64) / 2.0
    typical = pl.DataFrame({"entity_id": entity[new_entity],
                            **{m: pl.Series(m, wide[:, i]).fill_nan(None) for i, m in enumerate(names)}})
    # Every window counts at least one event, so the "events" measure counts the windows.
    events = measure[starts] == names.index("events")
    counted = pl.DataFrame({"entity_id": entity[starts][events], "active_windows": total[events].astype(np.int64)})
    return typical, counted


def _summed_counts(values: pl.DataFrame) -> pl.DataFrame:
    """Coded value counts (``entity_id, measure, value, windows``) with the windows of equal keys
    summed, sorted by entity, measure and value."""
    entity, measure = values.get_column("entity_id").to_numpy(), values.get_column("measure").to_numpy()
    value, windows = values.get_column("value").to_numpy(), values.get_column("windows").to_numpy()
    key = _packed(entity, measure, value)
    if key is None:
        return (values.group_by("entity_id", "measure", "value").agg(pl.col("windows").sum())
                .sort("entity_id", "measure", "value"))
    order = np.argsort(key)
    key = key[order]
    first = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]])) if len(key) else order
    taken = order[first]
    return pl.DataFrame({"entity_id": entity[taken], "measure": measure[taken], "value": value[taken],
                         "windows": np.add.reduceat(windows[order], first) if len(key) else windows})


def _packed(entity: np.ndarray, measure: np.ndarray, value: np.ndarray) -> np.ndarray | None:
    """Entity, measure and value (non-negative integers) packed into one unsigned integer that orders
    rows as the three do, or None if they do not fit in one."""
    widths = [int(column.max()).bit_length() if len(column) else 0 for column in (entity, measure, value)]
    if sum(widths) > 63 or (len(value) and value.min() < 0):
        return None
    return ((entity.astype(np.uint64) << np.uint64(widths[1] + widths[2]))
            | (measure.astype(np.uint64) << np.uint64(widths[2])) | value.astype(np.uint64))


def _sorted_order(entity: np.ndarray, measure: np.ndarray, value: np.ndarray) -> np.ndarray | slice:
    """The order of rows by entity, measure and value (non-negative integers): none if they are in
    order already (merged counts are), else one sort of the three packed into one integer when they
    fit, or a sort by each."""
    key = _packed(entity, measure, value)
    if key is None:
        return np.lexsort((value, measure, entity))
    return slice(None) if bool((key[1:] > key[:-1]).all()) else np.argsort(key)


def empty_partial(config: FeatureConfig) -> PartialProfiles:
    """The aggregates of no events."""
    from detector.schema import EVENT_SCHEMA

    return PartialProfiles.of(pl.DataFrame(schema=EVENT_SCHEMA), config)
