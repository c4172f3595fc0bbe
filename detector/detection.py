"""Training and scoring: events in, a model or ranked and explained findings out.

``train`` builds baseline profiles and fits one scorer per entity kind on the baseline's own
windows; ``score`` turns the windows of new events into findings per the ARCHITECTURE.md contract.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from detector.activity import remember
from detector.attribution import attribute
from detector.config import Config
from detector.errors import DetectorError
from detector.explain import reasons
from detector.features import (
    DETAIL_COLUMNS,
    ENTITY_KINDS,
    PROFILE_SCHEMAS,
    TAIL_FEATURES,
    EntityKind,
    Profiles,
    build_features,
    build_profiles,
    entity_of,
    feature_columns,
)
from detector.features.common import KEY
from detector.features.partial import Accumulated, PartialProfiles
from detector.findings import FINDINGS_SCHEMA, empty_findings, finding_ids, rank
from detector.incidents import assign_incidents
from detector.model_store import Model
from detector.scoring import (
    ColdStartError,
    SeenCells,
    SeverityThresholds,
    TrainingColumns,
    WindowScorer,
)
from detector.signals import (
    FAMILY,
    LEVELS,
    LOW,
    MEDIUM,
    SignalState,
    combine_expr,
    event_signals,
    novelty_detail,
    sensitive_windows,
    window_novelty,
)
from detector.spill import GROUP_EVENTS, grouped, in_memory_slices, slice_length

DETECTOR = "iforest"


class NoBaselineError(DetectorError, ValueError):
    """There are not enough baseline events or windows to train on."""


def _collect(*frames: pl.LazyFrame) -> list[pl.DataFrame]:
    # The in-memory engine runs these window plans about 1.5x faster than the streaming one here;
    # collected together, plans that share their input keep both cores busy where one would not.
    return pl.collect_all(frames, engine="in-memory")


def profiles_of(model: Model) -> Profiles:
    """The baseline profiles stored in a model (:attr:`Model.profiles`: the same object every time)."""
    return model.profiles


# The baseline is cut into this many + 1 equal parts; each part after the first is turned into
# training windows against the profiles of everything before it (see train_slices).
TRAINING_FOLDS = 3


def train(events: pl.DataFrame | pl.LazyFrame, config: Config | None = None,
          metadata: dict[str, Any] | None = None, sample: int | None = None) -> Model:
    """Learn baseline profiles and fit a scorer per entity kind on the baseline's windows
    (:func:`train_slices` of the events cut into a scan's slices).

    Raises
    ------
    NoBaselineError
        When the events hold no entity kind with enough windows to calibrate a scorer.
    """
    config = config or Config()
    frame = events.lazy().collect() if isinstance(events, pl.LazyFrame) else events
    return train_slices(in_memory_slices(frame, slice_length(config.features.window_length)), config, metadata,
                        sample)


def train_slices(slices: Iterable[tuple[datetime, int, pl.LazyFrame]], config: Config | None = None,
                 metadata: dict[str, Any] | None = None, sample: int | None = None, *,
                 group_events: int = GROUP_EVENTS) -> Model:
    """:func:`train` reading its baseline one slice at a time (the slices of a spill, in time order),
    so that memory follows a slice and the profile tables, not the baseline's length.

    Training windows meet their baseline the way scanned windows will: from the outside. Scored
    windows are compared with profiles of an earlier period, so a meter's first disconnect, an
    account's first new address or a first-ever setting change look new. Training windows compared
    with profiles that contain them would never look new, and the model would learn that novelty does
    not happen. So the baseline is cut in time into TRAINING_FOLDS + 1 equal parts: each later part is
    featurized against the profiles of all the parts before it (an expanding window), and the scorer
    learns how often novelty happens in ordinary weeks.

    The profiles are merged from per-slice partial aggregates (:mod:`detector.features.partial`);
    a fold's history is the merge of the slices before its cut and of the part of the cut's slice
    before it. Events are attributed slice by slice with the open sessions carried, windows built
    with each entity's last activity carried (as a scan does), and each fold's windows put back in
    the order of building them all at once (entity, window), so the model is the one :func:`train`
    gave when it read everything at once.

    Consecutive slices holding at most *group_events* events together are read as one
    (:func:`~detector.spill.grouped`; 0 reads each alone): a small baseline's days cost fewer queries,
    and the model is the same.

    With *sample*, each scorer learns from at most that many training windows (see :func:`fit_model`).

    Raises
    ------
    NoBaselineError
        When the events hold no entity kind with enough windows to calibrate a scorer.
    """
    config = config or Config()
    slices = list(grouped(slices, group_events))
    spans = pl.concat(pl.collect_all([lf.select(start=pl.col("time").min(), end=pl.col("time").max())
                                      for _, _, lf in slices])) if slices else pl.DataFrame()
    start = spans["start"].min() if spans.height else None
    end = spans["end"].max() if spans.height else None
    if start is None or end is None:
        raise NoBaselineError("no events to learn a baseline from")
    assert isinstance(start, datetime) and isinstance(end, datetime)
    with tempfile.TemporaryDirectory(prefix="ami-detector-training-") as directory:
        return _train_folds(slices, [_Fold(lower, upper, Path(directory) / f"fold{k}")
                                     for k, (lower, upper) in enumerate(fold_bounds(start, end))],
                            config, metadata, sample)


def _train_folds(slices: list[tuple[datetime, int, pl.LazyFrame]], folds: list[_Fold], config: Config,
                 metadata: dict[str, Any] | None, sample: int | None) -> Model:
    baseline = Accumulated()
    sessions: pl.DataFrame | None = None
    for _, _, lazy in slices:  # each slice's events dropped before the next is read
        sessions = _learn_slice(lazy, sessions, folds, baseline, config)
    for fold in folds:  # the last fold, open-ended, still holds its history's profiles
        fold.close()
    whole = baseline.merged()
    baseline.close()
    profiles = whole.finish()
    del whole
    return fit_model(profiles, folds, config, metadata, sample)


def _learn_slice(events: pl.LazyFrame, sessions: pl.DataFrame | None, folds: list[_Fold], baseline: Accumulated,
                 config: Config) -> pl.DataFrame | None:
    """One slice's events, attributed given the open *sessions*, into the folds' windows and the
    baseline's partial profiles (a fold that starts inside the slice first gets the profiles of
    everything before it); the sessions still open after it."""
    frame, sessions = attribute(events.collect(), sessions)
    if not frame.height:
        return sessions
    latest = frame.select(pl.col("time").max()).item()
    for fold in folds:
        if not fold.started and latest >= fold.lower:  # the fold starts in this slice
            before = PartialProfiles.of(frame.filter(pl.col("time") < fold.lower), config.features)
            baseline.compact()
            fold.start(baseline.merged(before).finish())
        fold.add(frame, config)
    baseline.add(PartialProfiles.of(frame, config.features))
    return sessions


def fit_model(profiles: Profiles, folds: Sequence[FoldWindows], config: Config, metadata: dict[str, Any] | None,
              sample: int | None = None) -> Model:
    """The model of baseline *profiles* with one scorer per entity kind fitted on the *folds*' windows.

    With *sample*, a kind with more training windows than that learns from a sample of *sample* of
    them, drawn without replacement with the scoring seed (``[scoring] random_state``, 0 if unset), so
    that the same baseline gives the same model; ``metadata["training_sample"]`` records the cap, the
    seed and how many windows of how many each scorer saw.
    """
    scorers: dict[str, WindowScorer] = {}
    skipped: dict[str, str] = {}
    seed = config.scoring.random_state if config.scoring.random_state is not None else 0
    sampled: dict[str, dict[str, int]] = {}
    for kind in ENTITY_KINDS:
        columns = _training_columns(folds, kind)
        if sample is not None and columns.rows > sample:
            columns = _sampled(columns, sample, seed)
            sampled[kind] = {"windows": sample, "of": sum(fold.rows(kind) for fold in folds)}
        try:
            scorers[kind] = config.scoring.make_scorer().fit(columns, feature_columns(kind),
                                                             tail_features=TAIL_FEATURES[kind])
        except ColdStartError as exc:
            skipped[kind] = exc.message
    if not scorers:
        raise NoBaselineError("not enough baseline windows to train any scorer: " + "; ".join(
            f"{kind}: {why}" for kind, why in skipped.items()))
    assert profiles.baseline_start is not None and profiles.baseline_end is not None
    extra: dict[str, Any] = {} if sample is None else {
        "training_sample": {"cap": sample, "seed": seed, "sampled": sampled}}
    return Model(
        training_span=(profiles.baseline_start, profiles.baseline_end),
        scorers=scorers,
        config=config.to_dict(),
        metadata={**(metadata or {}), **extra, "skipped_kinds": skipped, "profiles": {
            "baseline_start": profiles.baseline_start.isoformat(), "baseline_end": profiles.baseline_end.isoformat(),
            "window": profiles.window, "event_count": profiles.event_count},
            "training_windows": {k: s.n_training_windows for k, s in scorers.items()}},
        tables={name: getattr(profiles, name) for name in PROFILE_SCHEMAS},
    )


def fold_bounds(start: datetime, end: datetime) -> list[tuple[datetime, datetime | None]]:
    """Each fold's [lower, upper) (the last one open-ended)."""
    cuts = [start + (end - start) * k / (TRAINING_FOLDS + 1) for k in range(1, TRAINING_FOLDS + 1)]
    return list(zip(cuts, [*cuts[1:], None], strict=True))


def fold_piece(frame: pl.DataFrame, lower: datetime, upper: datetime | None) -> pl.DataFrame:
    """The events of *frame* in the fold [lower, upper)."""
    inside = pl.col("time") >= lower
    if upper is not None:
        inside &= pl.col("time") < upper
    return frame.filter(inside)


def fold_windows(piece: pl.DataFrame, profiles: Profiles, config: Config,
                 last_seen: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """The training windows of a fold's *piece* of a slice (attributed events), by entity kind
    (keys and feature columns), given the fold's history *profiles* and its entities' activity
    earlier in the fold."""
    built = build_features(piece.lazy(), profiles, config.features, last_seen, detail=False)
    return dict(zip(ENTITY_KINDS, _collect(*[built[kind].select(*KEY, *feature_columns(kind))
                                             for kind in ENTITY_KINDS]), strict=True))


class FoldWindows:
    """A fold's training windows, waiting on disk (Parquet, a file per slice and kind) until the forest
    is fitted: in memory, millions of device windows of a large fleet would outweigh everything else."""

    def __init__(self) -> None:
        self._parts: dict[str, list[Path]] = {kind: [] for kind in ENTITY_KINDS}
        self._rows: dict[str, int] = dict.fromkeys(ENTITY_KINDS, 0)
        self._order: dict[str, np.ndarray] = {}  # per kind, the permutation that puts the windows in order

    def add_file(self, kind: str, path: Path, rows: int) -> None:
        """One slice's windows of *kind* (added in slice order)."""
        self._parts[kind].append(path)
        self._rows[kind] += rows

    def rows(self, kind: EntityKind) -> int:
        return self._rows[kind]

    def column(self, kind: EntityKind, name: str) -> np.ndarray:
        """The fold's values of one feature of *kind*, in the order of building its windows all at once
        (by entity, then window)."""
        parts = self._parts[kind]
        if not parts:
            return np.empty(0, dtype=np.float64)
        windows = pl.scan_parquet(parts)
        if kind not in self._order:
            self._order[kind] = (windows.select(*KEY).with_row_index().sort(*KEY).select("index").collect()
                                 .to_series().to_numpy())
        return windows.select(name).collect().to_series().to_numpy()[self._order[kind]]


class _Fold(FoldWindows):
    """One later part of the baseline, [lower, upper), featurized against the profiles of everything before it."""

    def __init__(self, lower: datetime, upper: datetime | None, directory: Path) -> None:
        super().__init__()
        self.lower, self.upper = lower, upper
        self.directory = directory
        self.profiles: Profiles | None = None  # set when the slice holding `lower` is reached, dropped after `upper`
        self.started = self.has_baseline = False
        self._last_seen: dict[str, pl.DataFrame] = {}

    def start(self, history: Profiles) -> None:
        """Begin the fold with the profiles of everything before it (folds without any are left out)."""
        self.started, self.has_baseline = True, history.has_baseline
        self.profiles = history if history.has_baseline else None

    def add(self, frame: pl.DataFrame, config: Config) -> None:
        """Build the windows of the events of *frame* (a slice, attributed) that lie in this fold."""
        if self.profiles is None:
            return
        piece = fold_piece(frame, self.lower, self.upper)
        if piece.height:
            for kind, table in fold_windows(piece, self.profiles, config, self._last_seen).items():
                path = self.directory / kind / f"{len(self._parts[kind]):05d}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                table.write_parquet(path, compression="lz4", statistics=False)
                self.add_file(kind, path, table.height)
            remember(self._last_seen, piece)
        # The fold is complete.
        if self.upper is not None and frame.select(pl.col("time").max()).item() >= self.upper:
            self.close()

    def close(self) -> None:
        """Let go of what building windows needed (the windows stay)."""
        self.profiles, self._last_seen = None, {}


def _training_columns(folds: Sequence[FoldWindows], kind: EntityKind) -> TrainingColumns:
    """The training windows of *kind*, fold after fold, read from the folds' files a column at a time:
    millions of device windows of a large fleet as one float64 matrix would be the largest thing in memory."""
    names = feature_columns(kind)
    return TrainingColumns(sum(fold.rows(kind) for fold in folds), len(names),
                           lambda j: np.concatenate([fold.column(kind, names[j]) for fold in folds]), fresh=True)


def _sampled(columns: TrainingColumns, size: int, seed: int) -> TrainingColumns:
    """*size* of the rows of *columns*, drawn without replacement with *seed*, kept in their order."""
    rows = np.sort(np.random.default_rng(seed).choice(columns.rows, size=size, replace=False))
    return TrainingColumns(size, columns.width, lambda j: columns.column(j)[rows], fresh=True)


def signals_only(events: pl.DataFrame | pl.LazyFrame, config: Config | None = None, reason: str = "") -> Model:
    """A model with the baseline profiles of *events* (possibly none) and no forest: what a scan runs
    with when the baseline is too short to calibrate a forest (a short incident capture, say).

    Its findings come from security signals alone (:mod:`detector.signals`), with their own impact:
    a log clear is high whatever the baseline. ``metadata["signals_only"]`` says why.
    """
    config = config or Config()
    frame = events.lazy().collect() if isinstance(events, pl.LazyFrame) else events
    profiles = build_profiles(attribute(frame)[0], config.features) if frame.height else Profiles.empty(
        config.features.window)
    start = profiles.baseline_start or datetime(1970, 1, 1, tzinfo=UTC)
    end = profiles.baseline_end or start
    return Model(
        model_id="signals-only", training_span=(start, end), scorers={}, config=config.to_dict(),
        metadata={"signals_only": reason or "no forest", "profiles": {
            "baseline_start": profiles.baseline_start.isoformat() if profiles.baseline_start else None,
            "baseline_end": profiles.baseline_end.isoformat() if profiles.baseline_end else None,
            "window": profiles.window, "event_count": profiles.event_count}},
        tables={name: getattr(profiles, name) for name in PROFILE_SCHEMAS},
    )


@dataclass(frozen=True)
class _TopFeatures:
    """The ``top_features`` of flagged windows, flat: entries of window r are ``offsets[r]:offsets[r+1]``."""

    offsets: np.ndarray
    feature: np.ndarray  # names
    value: np.ndarray
    baseline: np.ndarray
    contribution: np.ndarray

    def of(self, r: int) -> list[dict[str, Any]]:
        """Window *r*'s entries, for its reasons."""
        entries = range(self.offsets[r], self.offsets[r + 1])
        return [{"feature": self.feature[e], "value": float(self.value[e])} for e in entries]

    def series(self) -> pl.Series:
        fields = pa.StructArray.from_arrays(
            [pa.array(self.feature, pa.string()), pa.array(self.value), pa.array(self.baseline),
             pa.array(self.contribution)], names=["feature", "value", "baseline", "contribution"])
        lists = pa.ListArray.from_arrays(pa.array(self.offsets.astype(np.int32), pa.int32()), fields)
        return pl.Series("top_features", pl.from_arrow(lists)).cast(FINDINGS_SCHEMA["top_features"])


def _top_features(scorer: WindowScorer, matrix: np.ndarray, lead: np.ndarray, top_k: int) -> _TopFeatures:
    """The forest's most telling features of each window; where the tail component raised the
    score (*lead* >= 0, its rarest feature), that feature leads at half the credit and the
    forest's follow at half theirs."""
    order, shares = scorer.top_contributions(matrix, top_k)
    led = lead >= 0
    features = np.column_stack([lead, np.where((shares > 0.0) & (order != lead[:, None]), order, -1)])
    credit = np.column_stack([np.full(lead.shape[0], 0.5), shares * np.where(led, 0.5, 1.0)[:, None]])
    present = features >= 0
    rows, _ = np.nonzero(present)
    chosen = features[present]
    offsets = np.zeros(lead.shape[0] + 1, dtype=np.int64)
    np.cumsum(present.sum(axis=1), out=offsets[1:])
    return _TopFeatures(offsets=offsets, feature=np.asarray(scorer.feature_names_, dtype=object)[chosen],
                        value=matrix[rows, chosen].astype(np.float64),
                        baseline=scorer.feature_median_[chosen].astype(np.float64), contribution=credit[present])


def lean_windows(events: pl.DataFrame | pl.LazyFrame, model: Model, config: Config | None = None, *,
                 profiles: Profiles | None = None,
                 earlier: Mapping[str, pl.DataFrame] | None = None) -> dict[str, pl.DataFrame]:
    """The windows of *events* for each entity kind *model* scores, without the detail columns.

    Those (:data:`~detector.features.DETAIL_COLUMNS`: value lists, count structs, evidence) are
    only read for findings; left out, polars skips their aggregations and the events need no
    sorting (a day of a million meters: 0.83 s and 246 MB of windows -> 0.59 s and 70 MB without
    the columns, 0.46 s without the sort too). :func:`findings_of` adds them to the windows it flags.
    *profiles* are the model's (:func:`profiles_of`, passed in so that a scan reuses what is derived
    from them); *earlier* is the entities' last activity in logs scanned before *events* (see
    :func:`~detector.features.build_features`).
    """
    config = config or model.settings
    profiles = profiles if profiles is not None else profiles_of(model)
    frames = build_features(events.lazy(), profiles, config.features, earlier, detail=False,
                            kinds=[kind for kind in ENTITY_KINDS if kind in model.scorers])
    return dict(zip(frames, _collect(*frames.values()), strict=True))


def _with_detail(flagged: pl.DataFrame, kind: EntityKind, events: pl.DataFrame | pl.LazyFrame,
                 profiles: Profiles, config: Config, *, full: bool = False) -> pl.DataFrame:
    """*flagged* windows (keys) with their detail columns (with *full*, every window column), built
    again from their own events only.

    Detail columns depend on nothing but the window's own events and the profiles, so they come out
    as they would have from all the events (dormancy, which does not, is read from the lean windows).
    """
    window = pl.struct(entity_of(kind).alias("entity_id"),
                       pl.col("time").dt.truncate(config.features.window).alias("window_start"))
    wanted = flagged.select(pl.struct(*KEY)).to_series().implode()
    source = events.lazy()
    if kind == "device":  # a device's events name it as their target: those few first (collected), then windows
        source = (source.filter(pl.col("target_id").is_in(flagged.get_column("entity_id").unique().implode()))
                  .collect().lazy())
    own = source.filter(window.is_in(wanted)).collect()
    # Account windows read only account tables, which restricting leaves whole: only devices' need cutting.
    built = build_features(own, profiles.restricted(own) if kind == "device" else profiles, config.features,
                           kinds=[kind])[kind]
    detail = built if full else built.select(*KEY, *DETAIL_COLUMNS[kind])
    return flagged.join(_collect(detail)[0], on=list(KEY), how="left", maintain_order="left")


def score(events: pl.DataFrame | pl.LazyFrame, model: Model, config: Config | None = None,
          min_severity: str = "low") -> pl.DataFrame:
    """Score the windows of *events* against *model* and return the findings, most severe first.

    Only windows whose severity reaches *min_severity* become findings; findings are grouped into
    incidents (``incident_id``, see :mod:`detector.incidents`).
    """
    frame = events.lazy().collect() if isinstance(events, pl.LazyFrame) else events
    frame, _ = attribute(frame)
    return assign_incidents(findings_of(lean_windows(frame, model, config), frame, model, config, min_severity,
                                        links=True))


# The forest alone, without any signal, reaches at most medium for an account window (and only from
# the `critical` threshold on: rarer than 99.99 % of baseline windows) and low for a device window:
# it ranks within what is unusual and finds what no signal names, but "unusual" alone is not an
# alarm: among a thousand employees' 60,000 windows a week, 0.1 % is sixty false alarms.
FOREST_ONLY_ACCOUNT = MEDIUM
FOREST_ONLY_DEVICE = LOW


def _forest_levels(scores: np.ndarray, thresholds: SeverityThresholds, kind: str) -> np.ndarray:
    """Severity levels (0 none .. 4 critical) the forest alone gives windows of *kind*."""
    if kind == "device":
        return np.where(scores >= thresholds.high, FOREST_ONLY_DEVICE, 0).astype(np.int8)
    return np.where(scores >= thresholds.critical, FOREST_ONLY_ACCOUNT,
                    np.where(scores >= thresholds.low, LOW, 0)).astype(np.int8)


def _signal_table(rows: pl.DataFrame, kind: str) -> pl.DataFrame:
    """Per window of *kind*: its event signals, one per name (the strongest, the first words), and
    the cited lines behind them."""
    mine = rows.filter(pl.col("entity_kind") == kind)
    # Sorted fully (level, then time, then name and words) so that the order never depends on how
    # the events were cut into slices.
    per_signal = (mine.sort("level", "time", "signal", "detail", "evidence", descending=[True, False, False, False, False])
                  .group_by("entity_id", "window_start", "signal", maintain_order=True)
                  .agg(pl.col("level").first(), pl.col("time").first(), pl.col("detail").first(),
                       pl.col("evidence").unique(maintain_order=True)))
    # For combining: the strongest signal of each family (signals of one act count once).
    families = (per_signal.with_columns(_family=pl.col("signal").replace_strict(FAMILY, default=pl.col("signal")))
                .group_by("entity_id", "window_start", "_family").agg(pl.col("level").max())
                .sort("level", descending=True)
                .group_by("entity_id", "window_start").agg(_ev_family_level=pl.col("level")))
    return (per_signal.sort("level", "time", "signal", descending=[True, False, False])
            .group_by("entity_id", "window_start", maintain_order=True)
            .agg(_ev_signal=pl.col("signal"), _ev_level=pl.col("level"), _ev_detail=pl.col("detail"),
                 _ev_evidence=pl.col("evidence").list.explode(keep_nulls=False, empty_as_null=False)
                 .unique(maintain_order=True))
            .join(families, on=["entity_id", "window_start"], how="left", maintain_order="left"))


def _candidates(table: pl.DataFrame, forest: np.ndarray, signals: pl.DataFrame, novelty: pl.DataFrame) -> np.ndarray:
    """Rows of *table* that can be flagged, ascending: a forest level, an event signal or a window
    novelty signal. The rest (most of a day's device windows: routine reads) have none of the three,
    so no level, and go no further than their scores."""
    wanted = forest > 0
    signalled = (table.select(*KEY).with_row_index("_at")
                 .filter(pl.col("entity_id").is_in(signals.get_column("entity_id").unique().implode()))
                 .join(signals.select(*KEY), on=list(KEY), how="semi").get_column("_at").to_numpy())
    wanted[signalled] = True
    novel = [c for c in novelty.columns if c.startswith("_s_")]
    if novel:
        wanted |= novelty.select(pl.any_horizontal(*[pl.col(c) > 0 for c in novel]).fill_null(False)).to_series().to_numpy()
    return np.flatnonzero(wanted)


def findings_of(windows: dict[str, pl.DataFrame], events: pl.DataFrame | pl.LazyFrame, model: Model,
                config: Config | None = None, min_severity: str = "low", *,
                profiles: Profiles | None = None, state: SignalState | None = None,
                links: bool = False, seen: Mapping[str, SeenCells] | None = None) -> pl.DataFrame:
    """The findings among *windows* (from :func:`lean_windows` of *events*), most severe first.

    A window's severity is the larger of what its security signals say (:mod:`detector.signals`) and
    what the forest alone may say (:data:`FOREST_ONLY_ACCOUNT`). *state* carries what signals need from
    earlier slices of a scan (accounts created so far). With *links*, each finding keeps a ``_links``
    column (the accounts behind a device's commands) for :func:`~detector.incidents.assign_incidents`.
    *seen* holds, per entity kind, the forest cells met in earlier slices of the scan (scored once).
    """
    config = config or model.settings
    profiles = profiles if profiles is not None else profiles_of(model)
    thresholds = SeverityThresholds.from_dict(model.config.get("scoring", {}).get("severity", {}))
    frame = events.lazy().collect() if isinstance(events, pl.LazyFrame) else events
    rows = event_signals(frame, profiles, config.features.window, state)
    sensitive = sensitive_windows(frame, config.features.window)
    floor = LEVELS.index(min_severity) if min_severity in LEVELS else 1
    parts = [empty_findings().with_columns(pl.lit([], dtype=pl.List(pl.String)).alias("_links"))]
    for kind in ENTITY_KINDS:
        table = windows.get(kind)
        scorer = model.scorers.get(kind)
        signals = _signal_table(rows, kind)
        if table is None or scorer is None or table.height == 0:
            scored = signals.select(*KEY).with_columns(
                pl.lit(0.0).alias("score"), pl.lit(0, pl.Int8).alias("_forest"), pl.lit(-1).alias("_rarest"),
                pl.lit(False).alias("_tail"), pl.lit(None, pl.Int64).alias("_row"))
            novelty = scored.select(*KEY)
            matrix = None
        else:
            names = feature_columns(kind)
            matrix = table.select(names).to_numpy()
            scores, rarest, tail_driven = scorer.combined(matrix, seen.get(kind) if seen is not None else None)
            forest = _forest_levels(scores, thresholds, kind)
            novelty = window_novelty(table, kind)
            at = _candidates(table, forest, signals, novelty)
            scored = table.select(*KEY)[at].with_columns(
                pl.Series("score", scores[at], pl.Float64), pl.Series("_forest", forest[at]),
                pl.Series("_rarest", rarest[at]), pl.Series("_tail", tail_driven[at]), pl.Series("_row", at, pl.Int64))
            novelty = novelty[at]
            if kind == "account" and novelty.width > 2:
                novelty = novelty.join(sensitive, on=list(KEY), how="left")
            scored = scored.join(signals.select(*KEY), on=list(KEY), how="full", coalesce=True).with_columns(
                pl.col("score").fill_null(0.0), pl.col("_forest").fill_null(0), pl.col("_rarest").fill_null(-1),
                pl.col("_tail").fill_null(False))
        novel = [c for c in novelty.columns if c.startswith("_s_")]
        combined = (scored.join(signals, on=list(KEY), how="left").join(novelty, on=list(KEY), how="left")
                    .with_columns(_levels=pl.concat_list(
                        pl.col("_ev_family_level").fill_null(pl.lit([], dtype=pl.List(pl.Int8))),
                        *[pl.col(c).fill_null(0).cast(pl.Int8) for c in novel])
                        .list.eval(pl.element().filter(pl.element() > 0)))
                    .with_columns(_signal_level=combine_expr(pl.col("_levels")))
                    # Novelty where the window administers or comes in remotely (a new network, an
                    # unusual hour) is worth reading: medium.
                    .with_columns(_signal_level=pl.max_horizontal(
                        "_signal_level",
                        pl.when(pl.col("_sensitive").fill_null(False) & (pl.sum_horizontal(*novel) > 0) if novel
                                and "_sensitive" in novelty.columns else pl.lit(False))
                        .then(pl.lit(MEDIUM)).otherwise(pl.lit(0))).cast(pl.Int8))
                    # Novelty the forest also finds rare (rarer than the `high` share of baseline
                    # windows) is worth reading: a low signal then makes medium.
                    .with_columns(_level=pl.max_horizontal(
                        "_signal_level", "_forest",
                        pl.when((pl.col("_signal_level") == LOW) & (pl.col("score") >= thresholds.high))
                        .then(pl.lit(MEDIUM)).otherwise(pl.lit(0))).cast(pl.Int8)))
        flagged = combined.filter(pl.col("_level") >= max(floor, 1))
        if flagged.height == 0:
            continue
        if matrix is not None and table is not None:
            lean = table.drop(*[c for c in ("entity_kind", "event_count") if c in table.columns], *feature_columns(kind))
            # A window's lean columns by its row (null for windows only a signal flagged).
            flagged = pl.concat([flagged, table.select("event_count", *[c for c in lean.columns if c not in KEY])
                                 .select(pl.all().gather(flagged.get_column("_row")))], how="horizontal")
            flagged = _with_detail(flagged, kind, frame, profiles, config)
            missing = flagged.filter(pl.col("_row").is_null())
            if missing.height:  # windows only a signal flagged, which the lean windows lack
                filled = _with_detail(missing.select(*KEY), kind, frame, profiles, config, full=True)
                flagged = pl.concat([flagged.filter(pl.col("_row").is_not_null()),
                                     missing.select(*[c for c in missing.columns if c not in filled.columns or c in KEY])
                                     .join(filled, on=list(KEY), how="left")], how="diagonal_relaxed")
        else:
            flagged = _with_detail(flagged, kind, frame, profiles, config, full=True)
        parts.append(_findings_frame(flagged, kind, novel, scorer, matrix, model, config, links))
    found = pl.concat(parts, how="diagonal_relaxed")
    return rank(found.select(*FINDINGS_SCHEMA, *(["_links"] if links else [])))


def _column(name: str, values: list[Any], dtype: pl.DataType) -> pl.Series:
    """A column of Python *values* (lists, dicts), converted through Arrow: several times faster than
    polars' own conversion of nested values."""
    return pl.Series(name, pa.array(values, type=pl.Series(name, [], dtype).to_arrow().type)).cast(dtype)


def _findings_frame(flagged: pl.DataFrame, kind: str, novel: list[str], scorer: WindowScorer | None,
                    matrix: np.ndarray | None, model: Model, config: Config, links: bool) -> pl.DataFrame:
    """Flagged windows (scored, with signals and detail columns) as findings."""
    context = (flagged.drop("evidence", "action_counts", strict=False)
               .with_columns(pl.lit(kind).alias("entity_kind"), pl.lit(config.features.timezone).alias("_zone"))
               .to_dicts())
    rows_idx = flagged.get_column("_row").to_numpy()
    forest = scorer is not None and matrix is not None
    if scorer is not None and matrix is not None:
        present = ~np.isnan(rows_idx.astype(np.float64)) if rows_idx.dtype.kind == "f" else np.ones(len(rows_idx), bool)
        index = np.where(present, rows_idx, 0).astype(np.int64)
        top = _top_features(scorer, matrix[index], np.where(flagged.get_column("_tail").to_numpy(),
                                                            flagged.get_column("_rarest").to_numpy(), -1),
                            config.scoring.top_k)
    signals_col, reasons_col = [], []
    for r, row in enumerate(context):
        named: list[tuple[int, str, str]] = list(zip(row.get("_ev_level") or [], row.get("_ev_signal") or [],
                                                    row.get("_ev_detail") or [], strict=True))
        named = [(int(level), name, detail) for level, name, detail in named]
        for column in novel:
            if row.get(column):
                name = column.removeprefix("_s_")
                named.append((int(row[column]), name, novelty_detail(name, row)))
        named.sort(key=lambda item: -item[0])
        signals_col.append([{"signal": name, "impact": LEVELS[level], "detail": detail}
                            for level, name, detail in named])
        sentences = [detail for _, _, detail in named]
        scored_by_forest = forest and row.get("_row") is not None
        features = top.of(r) if scored_by_forest else []
        reasons_col.append(reasons(row, features, float(row["score"]) if scored_by_forest else None, sentences))
    no_features = pl.lit([], dtype=FINDINGS_SCHEMA["top_features"])
    # Windows that only signals flagged have no forest row: no features to show.
    top_features = (pl.when(pl.col("_row").is_not_null()).then(top.series()).otherwise(no_features) if forest
                    else no_features)
    evidence = pl.concat_list(pl.col("_ev_evidence").fill_null(pl.lit([], dtype=pl.List(pl.String))),
                              pl.col("evidence").fill_null(pl.lit([], dtype=pl.List(pl.String)))
                              ).list.unique(maintain_order=True).list.head(config.features.evidence_cap)
    detector = pl.when(pl.col("_signal_level") >= pl.col("_forest")).then(pl.lit("signals")).otherwise(pl.lit(DETECTOR))
    frame = flagged.select(
        pl.lit(kind).alias("entity_kind"), "entity_id", "window_start", "window_end",
        pl.col("score").cast(pl.Float64),
        pl.col("_level").replace_strict({i: name for i, name in enumerate(LEVELS)}, return_dtype=pl.String)
        .cast(FINDINGS_SCHEMA["severity"]).alias("severity"),
        detector.alias("detector"),
        _column("reasons", reasons_col, pl.List(pl.String)),
        _column("signals", signals_col, FINDINGS_SCHEMA["signals"]),
        top_features.alias("top_features"),
        "event_count", evidence.alias("evidence"), pl.lit(model.model_id, pl.String).alias("model_id"),
        pl.lit(None, pl.String).alias("incident_id"),
        # A device's findings join the incident of the account that commanded it first in the window
        # (one account: a meter two operators served must not merge their stories).
        (pl.col("issuers").list.head(1) if (links and kind == "device" and "issuers" in flagged.columns)
         else pl.lit([], dtype=pl.List(pl.String))).alias("_links"),
    )
    return frame.with_columns(finding_ids(frame))
