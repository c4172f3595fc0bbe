"""What every generator of one day needs: the utility, the day's clock, the plan, its random streams.

Each generator draws from its own stream, seeded by (seed, day, stream name). A day can therefore
be generated on its own, and adding a generator does not shift the randomness of the others.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from detector.simulate.clock import DayClock
from detector.simulate.population import Person, Population
from detector.simulate.settings import Settings

MAINTENANCE_WEEKDAY = 2  # Wednesday
BUSINESS_HOURS = (8.0, 17.0)

ROUTINE_SETTINGS: dict[str, tuple[str, ...]] = {
    "Reads.RetryCount": ("2", "3", "4"),
    "Collector.PollIntervalSec": ("300", "600", "900"),
    "Outage.PingTimeoutSec": ("20", "30", "45"),
    "Reports.DailyExportTime": ("01:00", "01:30", "02:00"),
    # Values with commas and quotes, as administrators really type them into settings screens.
    "Reports.ExportPath": ("\\\\fs01\\exports\\hes", "\\\\fs01\\exports\\hes, archive", '\\\\fs02\\exports\\"hes"'),
    "Alarms.EmailRecipients": ("ami-ops@util.local", "ami-ops@util.local,oncall@util.local"),
    "UI.SessionTimeoutMinutes": ("15", "20", "30"),
}


@dataclass(frozen=True)
class SettingChange:
    admin: str
    hour: float
    setting: str
    old: str
    new: str


@dataclass(frozen=True)
class RoutinePlan:
    """Routine that has to stay consistent across days: a setting's old value is its last new value,
    campaigns roll through the catalogue, a granted role is revoked later."""

    settings: dict[int, list[SettingChange]] = field(default_factory=dict)
    campaigns: dict[int, list[tuple[str, int]]] = field(default_factory=dict)  # day -> [(group, image)]
    role_grants: dict[int, list[tuple[str, str, bool]]] = field(default_factory=dict)  # (admin, who, grant)
    new_hire_created: int = -1


@dataclass(frozen=True)
class DayContext:
    pop: Population
    clock: DayClock
    plan: RoutinePlan
    seed: int
    _jitter: np.random.Generator = field(init=False, repr=False, compare=False)
    settings: Settings = field(default_factory=Settings)
    baseline_days: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "_jitter", self.rng("jitter"))

    @property
    def day(self) -> int:
        return self.clock.index

    def rng(self, stream: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.day, zlib.crc32(stream.encode())])

    def utc(self, local_s: np.ndarray) -> np.ndarray:
        return self.clock.utc_us(local_s)

    def t(self, hour: float) -> int:
        """UTC microseconds of a local hour, a few seconds late: people and schedulers are never exact."""
        return self.clock.at(hour) + int(self._jitter.uniform(0.0, 9.0) * 1_000_000)

    def works(self, person: int, offset: int = 0) -> bool:
        d = self.day + offset
        return 0 <= d < self.pop.roster.shape[1] and bool(self.pop.roster[person, d])

    @property
    def is_maintenance(self) -> bool:
        return self.clock.weekday == MAINTENANCE_WEEKDAY

    @property
    def is_workday(self) -> bool:
        return not self.clock.is_weekend

    def segments(self, person: int) -> list[tuple[float, float, bool, bool]]:
        """The parts of *person*'s shifts that fall on this local day: (start h, end h, logs in, logs out).
        A night shift that began yesterday ends this morning."""
        p = self.pop.people[person]
        start, end = self.pop.shift_hours[p.shift]
        out = []
        if p.shift == "night" and self.works(person, -1):
            out.append((0.0, end - 24.0, False, True))
        if self.works(person):
            out.append((start, min(end, 24.0), True, end <= 24.0))
        return out

    def on_duty(self, kind: str, hour: float) -> list[int]:
        """People of *kind* whose shift covers local *hour* today."""
        found = []
        for i, p in enumerate(self.pop.people):
            if p.kind != kind:
                continue
            if any(a <= hour < b for a, b, _, _ in self.segments(i)):
                found.append(i)
        return found


def people_of(pop: Population, kind: str) -> list[tuple[int, Person]]:
    return [(i, p) for i, p in enumerate(pop.people) if p.kind == kind]


def plan_routine(pop: Population, *, days: int, start: date, seed: int, new_hire_start: int) -> RoutinePlan:
    rng = np.random.default_rng([seed, 0x9E02])
    admins = [p.account for _, p in people_of(pop, "admin")]
    operators = [p.account for _, p in people_of(pop, "operator")][:-2]  # not the new hire nor the dormant
    weekdays = [(start + timedelta(days=d)).weekday() for d in range(days)]
    current = {s: values[0] for s, values in ROUTINE_SETTINGS.items()}
    settings: dict[int, list[SettingChange]] = {}
    role_grants: dict[int, list[tuple[str, str, bool]]] = {}
    campaigns: dict[int, list[tuple[str, int]]] = {}
    names = sorted(ROUTINE_SETTINGS)
    week = 0
    for d in range(days):
        if weekdays[d] >= 5:
            continue
        if rng.random() < 0.45:
            setting = names[int(rng.integers(len(names)))]
            new = str(rng.choice([v for v in ROUTINE_SETTINGS[setting] if v != current[setting]]))
            settings.setdefault(d, []).append(SettingChange(
                admins[int(rng.integers(len(admins)))], float(rng.uniform(9.0, 16.0)), setting, current[setting], new))
            current[setting] = new
        if rng.random() < 0.06 and d + 5 < days:
            who, admin = operators[int(rng.integers(len(operators)))], admins[int(rng.integers(len(admins)))]
            role_grants.setdefault(d, []).append((admin, who, True))
            role_grants.setdefault(d + int(rng.integers(2, 5)), []).append((admin, who, False))
        if weekdays[d] == MAINTENANCE_WEEKDAY:
            if week % 2 == 0:  # a campaign every other window, rolling through the regions and images
                image = (week // 4) % len(pop.firmware)
                groups = ["ALL_NORTH", "ALL_EAST"] if week % 4 == 0 else ["ALL_SOUTH", "ALL_WEST"]
                if pop.firmware[image].target_type == "ElectricMeter":
                    groups = [f"FW_WAVE_{week // 2 + 1}"]
                campaigns[d] = [(g, image) for g in groups]
            week += 1
    created = new_hire_start - 3 if 3 <= new_hire_start < days else -1
    while created > 0 and weekdays[created] >= 5:
        created -= 1
    return RoutinePlan(settings, campaigns, role_grants, created)


