"""The shape of a simulated utility, as one frozen value: sizes, shifts, names, timing, catalogue.

``Settings()`` is today's utility (the one ``sample_logs/`` and the tests were written against); every
field's default keeps that output byte for byte. :meth:`Settings.random` draws another utility from a
seed, so a benchmark can score a detector on utilities whose routine, naming and incidents it was not
written against.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Literal, cast

import numpy as np

ShiftPattern = Literal["rotating", "two_shift", "office"]
Shift = Literal["day", "evening", "night"]
AccountNames = Literal["flast", "first.last", "LAST_F", "uid"]
HostNames = Literal["short", "fqdn"]

DEFAULT_START = date(2026, 3, 2)  # a Monday
DEFAULT_TZ = "America/Chicago"
DEFAULT_METERS = 20_000
DEFAULT_OPERATORS = 12

# Time zones a drawn utility may sit in (utilities with AMI rollouts, plus one without daylight saving).
TIME_ZONES = ("America/Chicago", "America/New_York", "America/Denver", "America/Los_Angeles",
              "America/Phoenix", "Europe/Berlin", "Europe/London", "Australia/Sydney", "UTC")

# Ranges of :meth:`Settings.random`; a benchmark on two shared cores wants small utilities.
RANDOM_RANGES: dict[str, tuple[int, int]] = {
    "meters": (1000, 3000), "operators": (8, 20), "admins": (2, 6), "dms_operators": (4, 10),
    "vendors": (1, 3), "baseline_days": (10, 35), "scored_days": (7, 7), "burst_size": (8, 60),
    "settings_changed": (1, 4), "malicious_kinds": (10, 14),
    "extra_services": (0, 3),
}


@dataclass(frozen=True)
class Settings:
    """Everything that shapes a simulated utility and its planted incidents.

    Parameters
    ----------
    days, baseline_days
        Length of the run; incidents are planted after ``baseline_days`` (default: three quarters).
    meters, operators, admins, dms_operators, vendors
        Population: meters drive the volume; ``admins`` and ``dms_operators`` default to a share of
        the operators (``max(3, round(operators / 6))`` and ``max(4, operators // 2)``); ``vendors`` is
        the number of vendor support accounts sharing the vendor's VPN and jump host.
    start, tz
        First local day and the utility's time zone (logs are always written in UTC).
    shifts, shift_start, office_start, weekend_work
        The HES desk's pattern: ``rotating`` (24/7, three 8-hour shifts from ``shift_start``),
        ``two_shift`` (day and evening, nobody at night) or ``office`` (day only, 9 hours from
        ``shift_start``). ``office_start`` is when administrators arrive (plus up to 1.5 h).
        ``weekend_work=False`` gives every operator Saturday and Sunday off.
    account_names, domain_prefix, host_names
        How the utility spells accounts (``jdoe``, ``john.doe``, ``DOE_J``, ``u12345``), whether the
        HES audit writes ``UTIL\\jdoe``, and servers' names (``HES-APP01`` vs
        ``hesprd-app-1.corp.example``).
    timing_seed
        ``None`` plants every incident at its catalogue position and hour; a seed draws both (each
        kind keeps to the hours that make it what it is: night stays night, office hours stay office).
    burst_size, settings_changed
        Meters in the disconnect burst; security settings changed in ``config_change`` (1-4).
    benign
        Whether the benign surprises (storm, approved campaign) are planted.
    scenarios
        Kinds to plant; ``None`` is the classic catalogue (15 kinds). See :data:`ALL_KINDS`.
    services_off, extra_services
        Integrations the utility does without (``svc_billing``, ``svc_cis``), and how many integrations
        it has beyond today's (0-5: analytics, GIS, prepayment, workforce management, demand response),
        each reading or pinging a sample of meters on its own schedule.
    routine_extras
        Benign routine that must not alarm: a Tue/Thu 10:00 service job reading meters it never read
        before, and administrators' rounds over several servers an hour (each logon with 4672). Their
        occurrences in the scored days are labelled ``benign``.
    """

    days: int = 28
    baseline_days: int | None = None
    meters: int = DEFAULT_METERS
    operators: int = DEFAULT_OPERATORS
    admins: int | None = None
    dms_operators: int | None = None
    vendors: int = 1
    start: date = DEFAULT_START
    tz: str = DEFAULT_TZ
    shifts: ShiftPattern = "rotating"
    shift_start: float = 6.0
    office_start: float = 7.5
    weekend_work: bool = True
    account_names: AccountNames = "flast"
    domain_prefix: bool = False
    host_names: HostNames = "short"
    timing_seed: int | None = None
    burst_size: int = 30
    settings_changed: int = 2
    benign: bool = True
    scenarios: tuple[str, ...] | None = None
    routine_extras: bool = False
    services_off: tuple[str, ...] = ()
    extra_services: int = 0

    @classmethod
    def random(cls, seed: int, **overrides: object) -> Settings:
        """A varied utility drawn from *seed*: the same seed always gives the same settings.

        Keyword arguments fix fields instead of drawing them (e.g. ``meters=1500``).
        """
        from detector.simulate.catalogue import ALL_KINDS, BENIGN_KINDS  # the catalogue imports this module

        rng = np.random.default_rng([zlib.crc32(b"settings"), seed])

        def between(name: str) -> int:
            lo, hi = RANDOM_RANGES[name]
            return int(rng.integers(lo, hi + 1))

        baseline = between("baseline_days")
        scored = between("scored_days")
        meters, operators = between("meters"), between("operators")
        admins, dms, vendors = between("admins"), between("dms_operators"), between("vendors")
        shifts = cast(ShiftPattern, str(rng.choice(["rotating", "rotating", "two_shift", "office"])))
        shift_start = float(rng.choice([5.0, 6.0, 7.0, 7.5, 8.0])) if shifts != "rotating" else float(
            rng.choice([5.0, 6.0, 7.0]))
        office_start = float(rng.uniform(6.5, 8.5))
        weekend_work = bool(rng.random() < (0.8 if shifts == "rotating" else 0.3))
        names: AccountNames = str(rng.choice(["flast", "first.last", "LAST_F", "uid"]))  # type: ignore[assignment]
        prefix = bool(rng.random() < 0.3)
        hosts: HostNames = str(rng.choice(["short", "fqdn"]))  # type: ignore[assignment]
        tz = str(rng.choice(TIME_ZONES))
        start = date(2026, 1, 5) + timedelta(days=int(rng.integers(0, 300)))
        burst, changed = between("burst_size"), between("settings_changed")
        benign = bool(rng.random() < 0.8)
        # A share of the catalogue, not all of it: about as many scenarios in the scored week as an
        # analyst's test set holds, and fewer scenarios sharing the same few administrators.
        malicious = [k for k in ALL_KINDS if k not in BENIGN_KINDS]
        lo, hi = RANDOM_RANGES["malicious_kinds"]
        picked = set(rng.choice(malicious, size=min(len(malicious), int(rng.integers(lo, hi + 1))), replace=False))
        kinds = tuple(k for k in ALL_KINDS if k in picked or k in BENIGN_KINDS)
        off = tuple(name for name in ("svc_billing", "svc_cis") if rng.random() < 0.25)
        extra = between("extra_services")
        drawn = cls(
            days=baseline + scored, baseline_days=baseline, meters=meters, operators=operators, admins=admins,
            dms_operators=dms, vendors=vendors, start=start, tz=tz, shifts=shifts, shift_start=shift_start,
            office_start=office_start, weekend_work=weekend_work, account_names=names, domain_prefix=prefix,
            host_names=hosts, timing_seed=seed, burst_size=burst, settings_changed=changed, benign=benign,
            scenarios=kinds, routine_extras=True, services_off=off, extra_services=extra)
        return replace(drawn, **overrides)  # type: ignore[arg-type]

    def validate(self) -> None:
        """Raise :class:`~detector.errors.ConfigError` for a setting the simulator cannot honour."""
        from detector.errors import ConfigError

        problems = []
        if self.shifts not in ("rotating", "two_shift", "office"):
            problems.append(f"shifts {self.shifts!r} (rotating, two_shift or office)")
        if self.account_names not in ("flast", "first.last", "LAST_F", "uid"):
            problems.append(f"account_names {self.account_names!r} (flast, first.last, LAST_F or uid)")
        if self.host_names not in ("short", "fqdn"):
            problems.append(f"host_names {self.host_names!r} (short or fqdn)")
        if not 0.0 <= self.shift_start <= 12.0 or not 0.0 <= self.office_start <= 12.0:
            problems.append("shift_start and office_start are local hours between 0 and 12")
        if self.burst_size < 1 or not 1 <= self.settings_changed <= 4:
            problems.append("burst_size must be at least 1 and settings_changed 1-4")
        if not set(self.services_off) <= {"svc_billing", "svc_cis"}:
            problems.append(f"services_off {list(self.services_off)} (only svc_billing and svc_cis can be off)")
        if not 0 <= self.extra_services <= 5 or self.vendors < 1:
            problems.append("extra_services must be 0-5 and vendors at least 1")
        if problems:
            raise ConfigError("unusable simulator settings: " + "; ".join(problems))

    def describe(self) -> dict[str, object]:
        """The settings as JSON-ready values (for labels.json and benchmark reports)."""
        out: dict[str, object] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, date) else list(value) if isinstance(
                value, tuple) else value
        return out

    @property
    def is_classic(self) -> bool:
        """True when nothing but the classic arguments differs from today's simulator."""
        base = Settings(days=self.days, baseline_days=self.baseline_days, meters=self.meters,
                        operators=self.operators, start=self.start, tz=self.tz)
        return self == base


def shift_hours(settings: Settings) -> dict[Shift, tuple[float, float]]:
    """Local hours each HES shift covers (the night shift runs past midnight)."""
    s = settings.shift_start
    if settings.shifts == "office":
        return {"day": (s, s + 9.0), "evening": (s + 9.0, s + 17.0), "night": (s + 16.0, s + 24.0)}
    return {"day": (s, s + 8.0), "evening": (s + 8.0, s + 16.0), "night": (s + 16.0, s + 24.0)}
