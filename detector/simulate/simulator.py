"""Orchestration: build the utility, then generate, plant and write one local day at a time.

Nothing of a day outlives its writing, so memory depends on the size of a day (meters, operators),
never on the number of days. A day depends only on the seed, the utility and the fixed plans, so
any day can be regenerated on its own (:func:`generate_day`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from detector.errors import ConfigError
from detector.simulate import routine_people, routine_systems
from detector.simulate.catalogue import ALL_PLANTERS, select
from detector.simulate.clock import DayClock, iso_utc
from detector.simulate.context import DayContext, RoutinePlan, plan_routine
from detector.simulate.dialect import Dialect
from detector.simulate.incidents import Label, PlannedIncident, plan_incidents, plant
from detector.simulate.population import Population, build_population, new_hire_start
from detector.simulate.records import SOURCES, DayBuffer, Source
from detector.simulate.scenarios import ROUTINE_EXTRAS
from detector.simulate.settings import Settings
from detector.simulate.writers import FORMAT_OF, write_day

# In this order; each draws from its own random stream.
GENERATORS = (
    routine_people.hes_operators,
    routine_people.admins,
    routine_people.vendor_support,
    routine_people.dms_operators,
    routine_people.dms_engineers,
    routine_systems.service_accounts,
    routine_systems.windows_machines,
    routine_systems.dms_field,
)


@dataclass(frozen=True)
class SimulationSummary:
    """What :func:`simulate` wrote."""

    out_dir: Path
    files: tuple[Path, ...]
    events: dict[str, int]  # per reference format
    incidents: tuple[Label, ...]
    labels: Path

    @property
    def total_events(self) -> int:
        return sum(self.events.values())


@dataclass(frozen=True)
class World:
    """Everything fixed for a run: the utility, the routine plan and the incident plan."""

    seed: int
    start: date
    tz: str
    days: int
    baseline_days: int
    pop: Population
    plan: RoutinePlan
    incidents: tuple[PlannedIncident, ...]
    settings: Settings = field(default_factory=Settings)
    dialect: Dialect = field(default_factory=Dialect)

    def clock(self, day: int) -> DayClock:
        return DayClock.of(day, self.start + timedelta(days=day), self.tz)


def resolve(settings: Settings | None = None, **explicit: object) -> Settings:
    """*settings* (default: today's utility) with the explicitly given arguments (not None) on top."""
    given = {k: v for k, v in explicit.items() if v is not None}
    return replace(settings or Settings(), **given)  # type: ignore[arg-type]


def build_world(*, days: int | None = None, seed: int, meters: int | None = None, operators: int | None = None,
                start: date | None = None, tz: str | None = None, baseline_days: int | None = None,
                settings: Settings | None = None) -> World:
    s = resolve(settings, days=days, meters=meters, operators=operators, start=start, tz=tz,
                baseline_days=baseline_days)
    days, meters, operators, start, tz = s.days, s.meters, s.operators, s.start, s.tz
    s.validate()
    if days < 1:
        raise ConfigError("--days must be at least 1")
    if meters < 100:
        raise ConfigError("--meters must be at least 100")
    if operators < 3:
        raise ConfigError("--operators must be at least 3 (one per shift)")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {tz!r}; use an IANA name such as America/Chicago or UTC") from None
    baseline = s.baseline_days
    if baseline is None:
        baseline = max(1, (days * 3) // 4) if days > 1 else 1
    if baseline < 0:
        raise ConfigError("--baseline-days must not be negative")
    pop = build_population(seed, meters=meters, operators=operators, days=days, start_weekday=start.weekday(),
                           settings=s)
    plan = plan_routine(pop, days=days, start=start, seed=seed, new_hire_start=new_hire_start(days))
    incidents = tuple(plan_incidents(days=days, start=start, baseline_days=baseline,
                                     catalogue=select(s.scenarios, benign=s.benign), timing_seed=s.timing_seed))
    return World(seed, start, tz, days, baseline, pop, plan, incidents, s, Dialect.of(pop, s))


def generate_day(world: World, day: int) -> tuple[dict[Source, pl.DataFrame], list[Label]]:
    """The events of one local day, per source and sorted, with sequence ids; and its incidents' labels."""
    clock = world.clock(day)
    ctx = DayContext(world.pop, clock, world.plan, world.seed, world.settings, world.baseline_days)
    buf = DayBuffer()
    for generator in GENERATORS:
        generator(ctx, buf)
    if world.settings.extra_services:
        routine_systems.extra_integrations(ctx, buf)
    labels = []
    if world.settings.routine_extras:
        labels += _routine_extras(ctx, buf, scored=day >= world.baseline_days)
    labels += [plant(ctx, buf, incident, ALL_PLANTERS) for incident in world.incidents if incident.day == day]
    frames = {source: buf.frame(source) for source in SOURCES}
    audit = frames["hes_audit"]
    gaps = ctx.rng("audit_ids").integers(1, 6, audit.height)  # the id sequence is shared with other tables
    frames["hes_audit"] = audit.with_columns(AuditId=pl.Series(88_000_000 + day * 1_000_000 + gaps.cumsum()))
    frames["hes_commands"] = frames["hes_commands"].with_columns(
        jobId=pl.lit(f"J-{clock.date:%m%d}-") + pl.int_range(1, pl.len() + 1).cast(pl.String).str.zfill(6))
    return world.dialect.apply(frames), [_spelled(label, world.dialect) for label in labels]


def _routine_extras(ctx: DayContext, buf: DayBuffer, *, scored: bool) -> list[Label]:
    """Benign routine of ``Settings.routine_extras``; its occurrences in the scored days are labelled."""
    labels = []
    for kind, generator in ROUTINE_EXTRAS:
        own = DayBuffer()
        facts = generator(ctx, own)
        if facts is None:
            continue
        if scored:
            first, last = own.span()
            labels.append(Label(f"RTN-{ctx.clock.date:%m%d}-{kind}", kind, facts.description, True, iso_utc(first),
                                iso_utc(last), tuple(a.lower() for a in facts.accounts), tuple(facts.devices),
                                tuple(facts.hosts), tuple(facts.src_ips), tuple(facts.objects)))
        buf.merge(own)
    return labels


def _spelled(label: Label, dialect: Dialect) -> Label:
    if dialect.is_identity:
        return label
    return replace(label, accounts=tuple(dialect.account(a) for a in label.accounts),
                   hosts=tuple(dialect.host(h) for h in label.hosts))


def simulate(out_dir: Path | str, *, days: int | None = None, seed: int, meters: int | None = None,
             operators: int | None = None, start: date | None = None, tz: str | None = None,
             baseline_days: int | None = None, compress: bool = False,
             progress: Callable[[int, int], None] | None = None, settings: Settings | None = None
             ) -> SimulationSummary:
    """Write *days* days of a simulated utility's logs in the five reference formats, and labels.json.

    Parameters
    ----------
    out_dir
        Directory to write to (created if missing). One file per source per local day:
        ``hes_audit_<date>.csv``, ``hes_commands_<date>.jsonl``, ``dms_<date>.log``,
        ``winsec_<date>.jsonl``, ``vpn_<date>.cef``, ``jumphost_<date>.cef``; a source with no events
        on a day writes no file.
    days, seed
        Length of the run (default 28) and the seed; the same arguments give byte-identical output.
    meters, operators
        Size of the utility: meters drive the bulk of the volume, operators the number of people.
    start, tz
        First local day and the utility's time zone. Days, shifts and windows follow local time;
        every timestamp is written in UTC.
    baseline_days
        Days at the start without incidents (default: three quarters of the run). Incidents and
        benign surprises are planted after them.
    compress
        Write ``.gz`` files.
    progress
        Called with (days done, days) after each day.
    settings
        The utility's shape (:class:`~detector.simulate.settings.Settings`: sizes, shifts, naming,
        incident timing and sizes, catalogue); default today's utility. The arguments above, when
        given, take precedence over its fields.

    Returns
    -------
    SimulationSummary
        Files written, events per format and the labels of what was planted.
    """
    world = build_world(days=days, seed=seed, meters=meters, operators=operators, start=start, tz=tz,
                        baseline_days=baseline_days, settings=settings)
    days, meters, operators = world.days, world.settings.meters, world.settings.operators
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    events = dict.fromkeys(sorted(set(FORMAT_OF.values())), 0)
    labels: list[Label] = []

    def write(day: int, frames: dict[Source, pl.DataFrame]) -> None:
        clock = world.clock(day)
        for source in SOURCES:
            frame = frames[source]
            if frame.height:
                files.append(write_day(source, frame, out, clock, compress=compress))
                events[FORMAT_OF[source]] += frame.height
        if progress:
            progress(day + 1, days)

    # Day d is written in the background while day d + 1 is generated; never more than two days
    # are held, and each file's bytes do not depend on the overlap.
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending: Future[None] | None = None
        for day in range(days):
            frames, planted = generate_day(world, day)
            labels += planted
            if pending is not None:
                pending.result()
            pending = writer.submit(write, day, frames)
            del frames
        if pending is not None:
            pending.result()
    labels_path = out / "labels.json"
    labels_path.write_text(json.dumps(_labels_document(world, meters, operators, labels), indent=2) + "\n")
    return SimulationSummary(out, tuple(files), events, tuple(labels), labels_path)


def _labels_document(world: World, meters: int, operators: int, labels: list[Label]) -> dict[str, object]:
    baseline_end = world.clock(min(world.baseline_days, world.days) - 1).end_us
    document: dict[str, object] = {
        "generator": {
            "tool": "ami-detector simulate",
            "seed": world.seed,
            "days": world.days,
            "start": world.start.isoformat(),
            "tz": world.tz,
            "meters": meters,
            "operators": operators,
            "baseline_days": world.baseline_days,
            "baseline_until": iso_utc(baseline_end),
            "end": iso_utc(world.clock(world.days - 1).end_us),
            "files_per": "local day (file dates are local dates; timestamps inside are UTC)",
        },
        "incidents": [label.as_json() for label in labels],
    }
    if not world.settings.is_classic:  # the classic document stays as it was
        generator = document["generator"]
        assert isinstance(generator, dict)
        generator["settings"] = world.settings.describe()
    return document
