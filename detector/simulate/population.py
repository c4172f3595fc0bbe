"""The simulated utility: people, service accounts, hosts, addresses, meters, groups and feeders.

Everything here is drawn once from the seed and then fixed, as a real utility's staff and assets
are: routine and incidents only pick from it. Public addresses come from the documentation ranges
of RFC 5737 / RFC 3849 so that no simulated log ever names a real network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl

from detector.simulate.settings import Settings, Shift, shift_hours

PersonKind = Literal["operator", "admin", "dms_operator", "dms_engineer"]

REGIONS = ("NORTH", "SOUTH", "EAST", "WEST")
DOMAIN = "UTIL"
FQDN = "util.local"

# Local hours each shift covers: (start, end); the night shift runs past midnight.
SHIFT_HOURS: dict[Shift, tuple[float, float]] = {"day": (6.0, 14.0), "evening": (14.0, 22.0), "night": (22.0, 30.0)}

_FIRST = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard Susan "
    "Joseph Jessica Thomas Sarah Charles Karen Daniel Lisa Matthew Nancy Anthony Betty Mark Sandra Donald "
    "Ashley Steven Kimberly Andrew Emily Paul Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian Melissa "
    "George Deborah Timothy Stephanie Ronald Rebecca Jason Laura Edward Sharon Ryan Cynthia Jacob Kathleen "
    "Gary Amy Nicholas Angela Eric Shirley Jonathan Anna Larry Ruth Justin Brenda Scott Pamela Brandon Nicole"
).split()
_LAST = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez "
    "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark Ramirez "
    "Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker "
    "Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker Cruz Edwards "
    "Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey "
    "Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood Bennett Gray Mendoza Ruiz "
    "Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry Russell "
    "Sullivan Bell Coleman Butler Henderson Barnes Fisher Vasquez Simmons Romero Jordan Patterson Alexander "
    "Hamilton Graham Reynolds Griffin Wallace Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina"
).split()


@dataclass(frozen=True)
class Person:
    """A human account holder and the habits that shape their log trail."""

    account: str  # as the HES and DMS write it: lower case
    win_name: str  # as Active Directory writes it: JDoe
    full_name: str
    kind: PersonKind
    role: str  # HES role
    shift: Shift
    workstation: str
    ip: str
    home_ip: str  # VPN source address when working from home
    console: str  # DMS console (DMS people only, else "")
    days_off: tuple[int, int]  # weekdays off (0 = Monday)
    activity: float  # multiplier on how many commands a shift brings
    read_share: float  # share of on-demand reads among the person's reads and pings
    mistype: float  # chance that a login starts with a mistyped password
    vpn_evenings: float  # chance of an evening VPN session on a working day (admins)


@dataclass(frozen=True)
class ServiceAccount:
    account: str
    host: str
    ip: str
    role: str


@dataclass(frozen=True)
class Host:
    name: str  # short name as logs write it: HES-APP01
    ip: str

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{FQDN}"


@dataclass(frozen=True)
class Feeder:
    feeder: str  # FDR-1203
    substation: int
    rtu: str
    devices: tuple[str, ...]  # breaker first, then reclosers, then capacitor banks


@dataclass(frozen=True)
class FirmwareImage:
    image: str
    sha256: str
    target_type: str  # Collector or ElectricMeter


SERVICE_ACCOUNTS: dict[str, ServiceAccount] = {s.account: s for s in (
    ServiceAccount("svc_mdm", "MDM01", "10.10.5.20", "Integration"),
    ServiceAccount("svc_billing", "BILL01", "10.10.5.31", "Integration"),
    ServiceAccount("svc_scheduler", "HES-APP02", "10.10.4.12", "System"),
    ServiceAccount("svc_oms", "OMS01", "10.10.5.40", "Integration"),
    ServiceAccount("svc_cis", "CIS01", "10.10.5.50", "Integration"),
    ServiceAccount("svc_keymgr", "KMS01", "10.10.6.10", "Security"),
    ServiceAccount("svc_backup", "BACKUP01", "10.10.7.5", "Backup"),
    ServiceAccount("svc_vvo", "ADMS-APP01", "10.10.8.11", "Automation"),
    ServiceAccount("svc_vendor_support", "JUMP01", "10.40.8.21", "Administrator"),
)}

HOSTS: dict[str, Host] = {h.name: h for h in (
    Host("HES-APP01", "10.10.4.11"), Host("HES-APP02", "10.10.4.12"), Host("HES-DB01", "10.10.4.21"),
    Host("ADMS-APP01", "10.10.8.11"), Host("ADMS-FEP02", "10.10.8.22"), Host("DC01", "10.10.1.10"),
    Host("JUMP01", "10.40.8.21"), Host("VPN01", "10.40.8.1"),
    # The integration servers; only administrators' rounds (``routine_extras``) log on to them.
    Host("MDM01", "10.10.5.20"), Host("BILL01", "10.10.5.31"), Host("OMS01", "10.10.5.40"),
    Host("CIS01", "10.10.5.50"), Host("KMS01", "10.10.6.10"), Host("BACKUP01", "10.10.7.5"),
)}

VENDOR_RANGE = "203.0.113."  # the vendor's support office NAT range (RFC 5737 TEST-NET-3)
VPN_POOL = "10.40.9."


@dataclass(frozen=True)
class Population:
    """Everyone and everything in the simulated utility, fixed for the whole run."""

    seed: int
    people: tuple[Person, ...]
    roster: np.ndarray  # bool [person, day]: works a shift that *starts* on that local day
    meter_ids: pl.Series  # 8 hex digits
    meter_region: np.ndarray  # index into REGIONS
    meter_route: np.ndarray  # ROUTE_<n>
    meter_cycle: np.ndarray  # BILLCYCLE_<n>, 1..21
    poor_comm: np.ndarray  # meter indices with flaky communication (re-read and pinged more)
    service_no: pl.Series  # customer account number of each meter's premise
    collectors_per_region: tuple[int, ...]
    routes: int
    feeders: tuple[Feeder, ...]
    consoles: tuple[str, ...]
    console_ips: dict[str, str]
    firmware: tuple[FirmwareImage, ...]  # the approved catalogue, seen in campaigns
    dormant: str  # account that works on the first day only, then sleeps
    new_hire: str  # operator whose account is created mid-baseline
    extra: dict[str, str] = field(default_factory=dict)
    # Meter indices sorted by route, and where each route starts in that order (route r at r - 1).
    route_order: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    route_bounds: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    shift_hours: dict[Shift, tuple[float, float]] = field(default_factory=lambda: dict(SHIFT_HOURS))
    office_start: float = 7.5  # administrators arrive in the 1.5 hours after this
    vendors: tuple[str, ...] = ("svc_vendor_support",)  # accounts of the vendor's support desk

    @property
    def meters(self) -> int:
        return len(self.meter_ids)

    def person(self, account: str) -> Person:
        return next(p for p in self.people if p.account == account)

    def index(self, account: str) -> int:
        return next(i for i, p in enumerate(self.people) if p.account == account)

    def group_size(self, group: str) -> int:
        kind, _, value = group.rpartition("_")
        if kind == "ALL" and value not in REGIONS:  # collectors of a region: ALL_NORTH as a Collector group
            raise KeyError(group)
        if kind == "ROUTE":
            return int((self.meter_route == int(value)).sum())
        if kind == "BILLCYCLE":
            return int((self.meter_cycle == int(value)).sum())
        if kind == "FW_WAVE":
            return int((self.meter_route % 10 == int(value) % 10).sum())
        if kind == "FW_PILOT":
            return int((self.meter_route % 50 == 7).sum())
        if kind == "ALL":
            return int((self.meter_region == REGIONS.index(value)).sum())
        raise KeyError(group)


def _hex_ids(values: np.ndarray) -> pl.Series:
    digits = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)[
        (values[:, None] >> np.arange(28, -1, -4, dtype=np.uint32)) & 0xF]
    return pl.Series("meter", np.ascontiguousarray(digits).view("S8").ravel()).cast(pl.String)


def _distinct(values: np.ndarray) -> np.ndarray:
    values = np.sort(values)
    return values[np.concatenate([[True], values[1:] != values[:-1]])]


def _meter_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    ids = _distinct(rng.integers(0x10000000, 0xFFFFFFFF, int(n * 1.05) + 16, dtype=np.uint32))
    while len(ids) < n:  # only ever needed for absurd meter counts
        ids = _distinct(np.concatenate([ids, rng.integers(0x10000000, 0xFFFFFFFF, n, dtype=np.uint32)]))
    return rng.permutation(ids)[:n]


def _names(rng: np.random.Generator, n: int) -> list[tuple[str, str, str]]:
    """(account, windows name, full name); a clash gets a digit, as IT departments do."""
    seen: dict[str, int] = {"rjenkins": 1}  # reserved for the dormant account
    out = []
    for _ in range(n):
        first, last = _FIRST[rng.integers(len(_FIRST))], _LAST[rng.integers(len(_LAST))]
        base = (first[0] + last).lower()
        seen[base] = seen.get(base, 0) + 1
        suffix = "" if seen[base] == 1 else str(seen[base])
        out.append((base + suffix, first[0] + last + suffix, f"{first} {last}"))
    return out


def _roster(seed: int, people: list[Person], days: int, start_weekday: int) -> np.ndarray:
    """Who works which day; each person's own stream keeps a longer run's first days the same."""
    weekdays = (start_weekday + np.arange(days)) % 7
    roster = np.ones((len(people), days), dtype=bool)
    for i, person in enumerate(people):
        roster[i] &= ~np.isin(weekdays, person.days_off)
        roster[i] &= np.random.default_rng([seed, 0x9E03, i]).random(days) > 0.04  # sick days, leave, training
    return roster


def build_population(seed: int, *, meters: int, operators: int, days: int, start_weekday: int,
                     settings: Settings | None = None) -> Population:
    """Draw the utility from *seed*; the same arguments always give the same utility."""
    settings = settings or Settings()
    rng = np.random.default_rng([seed, 0x9E01])
    operators = max(3, operators)
    n_admins = max(3, round(operators / 6)) if settings.admins is None else max(1, settings.admins)
    n_dms = max(4, operators // 2) if settings.dms_operators is None else max(3, settings.dms_operators)
    n_eng = max(1, n_dms // 4)
    names = iter(_names(rng, operators + n_admins + n_dms + n_eng + 1))
    consoles = tuple(f"OPS-CON-{i:02d}" for i in range(1, max(3, n_dms // 2) + 2))
    console_ips = {c: f"10.30.1.{50 + i}" for i, c in enumerate(consoles)}
    people: list[Person] = []

    def home() -> str:
        if rng.random() < 0.25:
            return f"2001:db8:{rng.integers(0x100, 0xfff):x}:{rng.integers(1, 0xff):x}::{rng.integers(2, 0xfff):x}"
        return f"198.51.100.{rng.integers(2, 254)}"

    shifts: list[Shift] = ["day", "evening", "night"]
    # Most of the desk works days; a third of each shift (at least one person) covers weekends.
    n_night, n_evening = max(1, round(operators * 0.15)), max(1, round(operators * 0.25))
    desk: dict[Shift, int] = {"night": n_night, "evening": n_evening, "day": operators - n_night - n_evening}
    shift_of = [shift for shift, n in desk.items() for _ in range(n)]
    shift_of = [shift_of[int(k)] for k in rng.permutation(operators)]
    if settings.shifts == "office":
        shift_of = ["day"] * operators
    elif settings.shifts == "two_shift":
        shift_of = ["evening" if s == "night" else s for s in shift_of]
    weekend_crew = {i for s in shifts for i in [j for j in range(operators) if shift_of[j] == s][
        :-(-shift_of.count(s) // 3)]}
    for i in range(operators):
        account, win, full = next(names)
        shift = shift_of[i]
        off = int(rng.integers(0, 4)) if i in weekend_crew else 5
        if not settings.weekend_work:
            off = 5
        people.append(Person(
            account, win, full, "operator", "Operator", shift, f"WS-OPS-{i + 1:03d}",
            f"10.20.{1 + i // 200}.{10 + i % 200}", home(), "", (off, off + 1),
            float(rng.lognormal(0.0, 0.35)), float(rng.uniform(0.45, 0.85)), float(rng.uniform(0.02, 0.12)), 0.0))
    for i in range(n_admins):
        account, win, full = next(names)
        people.append(Person(
            account, win, full, "admin", "Administrator", "day", f"WS-IT-{i + 1:02d}", f"10.20.7.{20 + i}",
            home(), "", (5, 6), float(rng.lognormal(0.0, 0.3)), 0.7, float(rng.uniform(0.02, 0.08)),
            float(rng.uniform(0.05, 0.2))))
    for i in range(n_dms):
        account, win, full = next(names)
        people.append(Person(
            account, win, full, "dms_operator", "ReadOnly", shifts[i % 3], consoles[i % len(consoles)],
            console_ips[consoles[i % len(consoles)]], home(), consoles[i % len(consoles)],
            (int(i % 7), int((i + 1) % 7)) if i >= 3 else (int(rng.integers(0, 5)), 7),
            float(rng.lognormal(0.0, 0.3)), 0.7, float(rng.uniform(0.02, 0.08)), 0.0))
    for i in range(n_eng):
        account, win, full = next(names)
        people.append(Person(
            account, win, full, "dms_engineer", "ReadOnly", "day", f"ENG-WS-{i + 1:02d}", f"10.30.5.{20 + i}",
            home(), f"ENG-WS-{i + 1:02d}", (5, 6), 1.0, 0.7, float(rng.uniform(0.02, 0.08)), 0.05))
    account, win, full = next(names)
    new_hire = Person(account, win, full, "operator", "Operator", "day", f"WS-OPS-{operators + 1:03d}",
                      f"10.20.{1 + operators // 200}.{10 + operators % 200}", home(), "", (5, 6), 0.7, 0.6, 0.15, 0.0)
    dormant = Person("rjenkins", "RJenkins", "Robert Jenkins", "operator", "Operator", "day",
                     f"WS-OPS-{operators + 2:03d}", f"10.20.{1 + (operators + 1) // 200}.{10 + (operators + 1) % 200}",
                     home(), "", (5, 6), 0.5, 0.6, 0.05, 0.0)
    people += [new_hire, dormant]

    roster = _roster(seed, people, days, start_weekday)
    # The new hire starts two fifths into the run; the dormant account works day 0 only.
    hire_day = new_hire_start(days)
    roster[len(people) - 2, :hire_day] = False
    roster[len(people) - 1, :] = False
    roster[len(people) - 1, 0] = True

    ids = _meter_ids(rng, meters)
    region = rng.choice(len(REGIONS), size=meters, p=[0.34, 0.28, 0.22, 0.16]).astype(np.int8)
    routes = max(4, meters // 450)
    route = (rng.integers(0, routes, meters) + 1).astype(np.int32)
    cycle = (rng.integers(0, 21, meters) + 1).astype(np.int8)
    poor = np.sort(rng.choice(meters, size=max(1, meters // 12), replace=False))
    service_no = pl.Series("service_no", rng.integers(100_000_000, 999_999_999, meters)).cast(pl.String)
    collectors = tuple(max(2, int((region == r).sum()) // 900) for r in range(len(REGIONS)))

    n_feeders = max(6, meters // 1500)
    feeders = []
    for i in range(n_feeders):
        sub = 10 + i // 4
        name = f"FDR-{sub}{i % 4 + 1:02d}"
        reclosers = tuple(f"{name}-R{j}" for j in range(1, 1 + int(rng.integers(1, 3))))
        caps = tuple(f"{name}-CAP{j}" for j in range(1, 1 + int(rng.integers(1, 3))))
        feeders.append(Feeder(name, sub, f"SUB{sub}-RTU1", (f"{name}-CB", *reclosers, *caps)))

    def sha() -> str:
        return rng.bytes(32).hex()

    firmware = (FirmwareImage("nic_7.1.4.bin", sha(), "Collector"),
                FirmwareImage("meter_fw_4.7.9.bin", sha(), "ElectricMeter"),
                FirmwareImage("nic_7.1.5.bin", sha(), "Collector"))
    return Population(
        seed, tuple(people), roster, _hex_ids(ids), region, route, cycle, poor, service_no, collectors, routes,
        tuple(feeders), consoles, console_ips, firmware, dormant.account, new_hire.account,
        extra={"fw_new_benign_sha": sha(), "fw_new_bad_sha": sha()},
        route_order=(order := np.argsort(route, kind="stable")),
        route_bounds=np.searchsorted(route[order], np.arange(1, routes + 2)),
        shift_hours=shift_hours(settings), office_start=settings.office_start,
        vendors=("svc_vendor_support", *(f"svc_vendor_support{k}" for k in range(2, settings.vendors + 1))))


def new_hire_start(days: int) -> int:
    """The day the new operator starts: two fifths into the run, if the run is long enough."""
    return days + 1 if days < 10 else (days * 2) // 5
