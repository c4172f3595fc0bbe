"""A differently shaped world: the logons of an office fleet, with insider incidents in the spirit of
CMU CERT r4.2.

About a thousand employees each have their own PC (``PC-1234``). Most keep office hours (some early
birds, a few on a night shift), most have weekends off, a few use USB drives routinely; a handful of IT
administrators log on to many PCs and servers a day, each logon with special privileges. Everything
is Windows Security events as flat JSON lines (Get-WinEvent / NXLog style, local time with its UTC
offset): 4624/4634 with ``TargetLogonId``, 4672 with ``SubjectLogonId``, and 6416 (removable media)
logged by the PC's machine account ``PC-1234$`` with the ``SubjectLogonId`` of the user logged on,
so that a detector can attribute the device to the person.

After ``baseline_days`` clean days, ``scored_days`` days carry labelled insider incidents
(``labels.json``, the same format as :func:`detector.simulate.simulate`):

* ``after_hours_usb``: a user who never worked after hours nor used removable media logs on late
  in the evening and plugs in a thumb drive;
* ``foreign_pc_usb``: a user logs on to other users' PCs (never before) and copies to removable media;
* ``supervisor_after_admin``: an administrator's session on a supervisor's PC in the evening, with a
  thumb drive, and minutes later the supervisor's account logs on there;
* ``first_offhours_logon``: a strict office-hours user's first-ever Saturday or 03:00 logon.

Sessions are drawn per person in numpy and the rows are built as columns; deterministic per seed.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Final, Literal

import numpy as np
import polars as pl

from detector.errors import ConfigError
from detector.simulate.clock import DAY, HOUR, US, DayClock, iso_utc
from detector.simulate.population import _FIRST, _LAST
from detector.simulate.writers import json_lines

DOMAIN: Final = "DTAA"
FQDN: Final = "dtaa.local"
SERVERS: Final = ("SRV-DC01", "SRV-DC02", "SRV-FS01", "SRV-FS02", "SRV-MAIL01", "SRV-APP01", "SRV-APP02",
                  "SRV-SQL01", "SRV-PRINT01", "SRV-WSUS01")
USB_CLASS: Final = "{4d36e967-e325-11ce-bfc1-08002be10318}"
USB_MODELS: Final = (("KINGSTON", "DATATRAVELER_3.0", "Kingston DataTraveler 3.0 USB Device"),
                     ("SANDISK", "CRUZER_BLADE", "SanDisk Cruzer Blade USB Device"),
                     ("SAMSUNG", "FLASH_DRIVE_FIT", "Samsung Flash Drive FIT USB Device"),
                     ("WD", "ELEMENTS_25A2", "WD Elements 25A2 USB Device"))
FLEET_KINDS: Final = ("after_hours_usb", "foreign_pc_usb", "supervisor_after_admin", "first_offhours_logon")
FLEET_BENIGN_KINDS: Final = ("team_overtime", "usb_rollout")
_DESCRIPTIONS: Final = {f"VEN_{v}&PROD_{p}": d for v, p, d in (
    *USB_MODELS, ("KINGSTON", "IRONKEY_D300S", "Kingston IronKey D300S USB Device"))}
SYSTEM_LOGON_ID: Final = "0x3e7"

# Person kinds.
REGULAR, EARLY, NIGHT, ADMIN = 0, 1, 2, 3

COLUMNS: Final = ("EventID", "Computer", "SubjectUserName", "SubjectDomainName", "SubjectLogonId",
                  "TargetUserName", "TargetDomainName", "TargetLogonId", "LogonType", "LogonProcessName",
                  "IpAddress", "WorkstationName", "PrivilegeList", "DeviceId", "DeviceDescription", "ClassName",
                  "ClassId")
_SCHEMA: Final = pl.Schema({"t": pl.Int64, "EventID": pl.Int64, **{c: pl.String for c in COLUMNS[1:]}}
                           | {"LogonType": pl.Int64})
PRIVILEGES: Final = "SeSecurityPrivilege\r\n\t\t\tSeBackupPrivilege\r\n\t\t\tSeRestorePrivilege\r\n\t\t\t" \
                    "SeTakeOwnershipPrivilege\r\n\t\t\tSeDebugPrivilege"


@dataclass(frozen=True)
class FleetSettings:
    """The shape of the fleet. ``random(seed)`` draws a varied one."""

    employees: int = 1000
    admins: int = 6
    baseline_days: int = 14
    scored_days: int = 7
    start: date = date(2026, 3, 2)  # a Monday
    tz: str = "America/New_York"
    usb_share: float = 0.10  # users who plug in USB drives routinely
    early_share: float = 0.15
    night_share: float = 0.02
    weekend_share: float = 0.06  # users who sometimes work a Saturday
    incidents_per_kind: int = 2
    benign: bool = True  # plant the benign surprises (a team's overtime evening, a USB-drive rollout)
    # Whose logon id a 6416 carries: the logged-on user's (attribution by id) or, as Windows usually
    # writes it, SYSTEM's 0x3e7 (attribution needs the sessions open on the PC at that time).
    usb_logon_id: Literal["user", "system"] = "user"

    @classmethod
    def random(cls, seed: int, **overrides: object) -> FleetSettings:
        rng = np.random.default_rng([zlib.crc32(b"fleet-settings"), seed])
        drawn = cls(
            employees=int(rng.integers(800, 1201)), admins=int(rng.integers(4, 9)),
            baseline_days=int(rng.integers(10, 36)), start=date(2026, 1, 5) + timedelta(days=int(rng.integers(0, 300))),
            tz=str(rng.choice(["America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London",
                               "UTC"])),
            usb_share=float(rng.uniform(0.05, 0.15)), early_share=float(rng.uniform(0.05, 0.25)),
            night_share=float(rng.uniform(0.0, 0.04)), weekend_share=float(rng.uniform(0.02, 0.1)))
        return replace(drawn, **overrides)  # type: ignore[arg-type]

    @property
    def days(self) -> int:
        return self.baseline_days + self.scored_days


@dataclass(frozen=True)
class Fleet:
    """The people and their habits, one entry per person (employees first, then admins)."""

    user: np.ndarray  # CERT-style ids: ACM2278
    pc: np.ndarray  # PC-1234
    ip: np.ndarray
    kind: np.ndarray
    start_h: np.ndarray  # usual local start
    hours: np.ndarray  # usual length of the day
    usb: np.ndarray  # bool: uses removable media routinely
    saturday: np.ndarray  # bool: works some Saturdays
    device: np.ndarray  # the person's own USB device id

    @property
    def size(self) -> int:
        return len(self.user)


def build_fleet(seed: int, s: FleetSettings) -> Fleet:
    rng = np.random.default_rng([seed, 0xF1EE7])
    n = s.employees + s.admins
    users: list[str] = []
    seen: set[str] = set()
    while len(users) < n:
        first, last = _FIRST[rng.integers(len(_FIRST))], _LAST[rng.integers(len(_LAST))]
        name = f"{first[0]}{last[0]}{chr(65 + int(rng.integers(26)))}{int(rng.integers(1000, 9999))}"
        if name not in seen:
            seen.add(name)
            users.append(name)
    pcs = np.array([f"PC-{k:04d}" for k in rng.choice(9000, size=n, replace=False) + 1000])
    kind = np.full(n, REGULAR)
    u = rng.random(s.employees)
    kind[: s.employees] = np.where(u < s.night_share, NIGHT, np.where(u < s.night_share + s.early_share, EARLY,
                                                                      REGULAR))
    kind[s.employees:] = ADMIN
    start_h = np.select([kind == EARLY, kind == NIGHT, kind == ADMIN],
                        [rng.normal(6.4, 0.35, n), rng.normal(21.5, 0.4, n), rng.normal(7.9, 0.3, n)],
                        rng.normal(8.6, 0.45, n))
    start_h = np.where(kind == REGULAR, np.clip(start_h, 7.5, 10.0), start_h)
    hours = np.clip(rng.normal(8.7, 0.5, n), 7.5, 10.0)
    usb = (rng.random(n) < s.usb_share) & (kind != ADMIN)
    saturday = (rng.random(n) < s.weekend_share) & (kind != ADMIN)
    ip = np.array([f"10.{1 + k // 250}.{k % 250 + 2}.{int(v)}" for k, v in
                   enumerate(rng.integers(10, 250, n))])
    device = np.array([_usb_id(rng) for _ in range(n)])
    return Fleet(np.array(users), pcs, ip, kind, start_h, hours, usb, saturday, device)


def _usb_id(rng: np.random.Generator) -> str:
    vendor, product, _ = USB_MODELS[int(rng.integers(len(USB_MODELS)))]
    serial = rng.bytes(8).hex().upper()
    return f"USBSTOR\\DISK&VEN_{vendor}&PROD_{product}&REV_PMAP\\{serial}&0"


def _description(device: str) -> str:
    return _DESCRIPTIONS[device.split("\\")[1].rsplit("&REV_", 1)[0].removeprefix("DISK&")]


class _Rows:
    """Events as columns: appended in blocks of arrays, built into one frame at the end."""

    def __init__(self) -> None:
        self.blocks: list[pl.DataFrame] = []

    def add(self, t: np.ndarray, event: int, **columns: object) -> None:
        n = len(t)
        if not n:
            return
        data: dict[str, object] = {"t": np.asarray(t, dtype=np.int64), "EventID": np.full(n, event, dtype=np.int64)}
        scalars = {}
        for name, value in columns.items():
            if isinstance(value, np.ndarray):
                data[name] = pl.Series(name, value.tolist() if value.dtype == object else value)
            else:
                scalars[name] = value
        frame = pl.DataFrame(data).with_columns(**{k: pl.lit(v) for k, v in scalars.items()})
        self.blocks.append(frame.select(
            [pl.col(c).cast(_SCHEMA[c]) if c in frame.columns else pl.lit(None, _SCHEMA[c]).alias(c)
             for c in _SCHEMA]))

    def frame(self) -> pl.DataFrame:
        return pl.concat(self.blocks).sort("t", maintain_order=True)


class _Ids:
    """Logon ids as Windows writes them (hex LUIDs, increasing), never reused."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.next = 0x3A0000 + int(rng.integers(0, 0x10000))
        self.rng = rng

    def take(self, n: int) -> np.ndarray:
        steps = self.rng.integers(1, 40, n)
        values = self.next + np.cumsum(steps)
        self.next = int(values[-1]) if n else self.next
        return np.array([f"0x{v:x}" for v in values], dtype=object)


def _utc(clocks: list[DayClock], day: np.ndarray, local_s: np.ndarray) -> np.ndarray:
    """UTC microseconds of local seconds after midnight of *day*; seconds may run past midnight (a
    night shift), and what would run past the last day ends at its last instant."""
    day = day + np.floor_divide(local_s, DAY).astype(np.int64)
    secs = np.where(day < len(clocks), np.mod(local_s, DAY), DAY - 1.0)
    day = np.minimum(day, len(clocks) - 1)
    out = np.zeros(len(day), dtype=np.int64)
    for d in np.unique(day):
        pick = day == d
        out[pick] = clocks[int(d)].utc_us(secs[pick])
    return out


def _logons(rows: _Rows, ids: _Ids, fleet: Fleet, who: np.ndarray, computer: np.ndarray, t0: np.ndarray,
            t1: np.ndarray, logon_type: int, *, privileged: bool) -> np.ndarray:
    """4624 (+ 4672) at t0 and 4634 at t1 for each row; returns the logon ids."""
    lid = ids.take(len(who))
    comp = np.array([f"{c}.{FQDN}" for c in computer], dtype=object)
    interactive = logon_type == 2
    rows.add(t0, 4624, Computer=comp, SubjectUserName=np.array([f"{c}$" for c in computer], dtype=object),
             SubjectDomainName=DOMAIN, SubjectLogonId="0x3e7", TargetUserName=fleet.user[who].astype(object),
             TargetDomainName=DOMAIN, TargetLogonId=lid, LogonType=logon_type,
             LogonProcessName="User32",
             IpAddress="127.0.0.1" if interactive else fleet.ip[who].astype(object),
             WorkstationName=computer.astype(object) if interactive else fleet.pc[who].astype(object))
    if privileged:
        rows.add(t0, 4672, Computer=comp, SubjectUserName=fleet.user[who].astype(object), SubjectDomainName=DOMAIN,
                 SubjectLogonId=lid, PrivilegeList=PRIVILEGES)
    rows.add(t1, 4634, Computer=comp, TargetUserName=fleet.user[who].astype(object), TargetDomainName=DOMAIN,
             TargetLogonId=lid, LogonType=logon_type)
    return lid


def _usb(rows: _Rows, computer: np.ndarray, lid: np.ndarray, t: np.ndarray, device: np.ndarray,
         s: FleetSettings) -> None:
    """6416 as the PC logs it: by its machine account, with the logged-on user's logon id (or SYSTEM's)."""
    if s.usb_logon_id == "system":
        lid = np.full(len(t), SYSTEM_LOGON_ID, dtype=object)
    rows.add(t, 6416, Computer=np.array([f"{c}.{FQDN}" for c in computer], dtype=object),
             SubjectUserName=np.array([f"{c}$" for c in computer], dtype=object), SubjectDomainName=DOMAIN,
             SubjectLogonId=lid, DeviceId=device.astype(object),
             DeviceDescription=np.array([_description(d) for d in device], dtype=object), ClassName="DiskDrive",
             ClassId=USB_CLASS)


@dataclass(frozen=True)
class _Sessions:
    """Employees' interactive sessions on their own PCs (not the administrators' rounds)."""

    person: np.ndarray
    day: np.ndarray
    t0: np.ndarray
    t1: np.ndarray
    lid: np.ndarray


def _routine(seed: int, s: FleetSettings, fleet: Fleet, clocks: list[DayClock], rows: _Rows, ids: _Ids
             ) -> _Sessions:
    rng = np.random.default_rng([seed, 0xF1EE8])
    n = fleet.size
    weekday = np.array([c.weekday for c in clocks])
    days = len(clocks)
    # Who works when: weekdays minus absences; a few users some Saturdays; the night shift Sun-Thu.
    works = np.zeros((n, days), dtype=bool)
    works[:, weekday < 5] = True
    works &= rng.random((n, days)) > 0.05
    sat = (weekday == 5)[None, :] & fleet.saturday[:, None] & (rng.random((n, days)) < 0.5)
    works |= sat
    person, day = np.nonzero(works)
    k = len(person)
    start = fleet.start_h[person] + rng.normal(0, 0.25, k)
    length = np.where(sat[person, day], rng.uniform(2.0, 5.0, k), fleet.hours[person] + rng.normal(0, 0.3, k))
    end = start + length
    lunch = (rng.random(k) < 0.35) & (fleet.kind[person] != NIGHT) & (length > 6)
    lunch_at = start + length * rng.uniform(0.4, 0.55, k)
    back = lunch_at + rng.uniform(0.5, 1.0, k)
    # Sessions: [start, lunch) and [back, end) where there is a lunch break, else [start, end).
    s_person = np.concatenate([person, person[lunch]])
    s_day = np.concatenate([day, day[lunch]])
    s0 = np.concatenate([start, back[lunch]])
    s1 = np.concatenate([np.where(lunch, lunch_at, end), end[lunch]])
    t0 = _utc(clocks, s_day, s0 * HOUR)
    t1 = _utc(clocks, s_day, s1 * HOUR)
    pcs = fleet.pc[s_person]
    lid = _logons(rows, ids, fleet, s_person, pcs, t0, t1, 2, privileged=False)
    # Routine USB use: those who use drives do so in some sessions, one to three times.
    uses = fleet.usb[s_person] & (rng.random(len(s_person)) < 0.45)
    idx = np.repeat(np.flatnonzero(uses), rng.integers(1, 4, uses.sum()))
    when = t0[idx] + ((t1[idx] - t0[idx]) * rng.uniform(0.05, 0.95, len(idx))).astype(np.int64)
    _usb(rows, pcs[idx], lid[idx], when, fleet.device[s_person[idx]], s)
    # Administrators: 2-3 PCs an hour through the day, sometimes a server, each logon privileged.
    admins = np.flatnonzero(fleet.kind == ADMIN)
    a_person, a_day = np.nonzero(works[admins])
    a_person = admins[a_person]
    per_day = rng.integers(10, 25, len(a_person))
    who = np.repeat(a_person, per_day)
    dday = np.repeat(a_day, per_day)
    begin = fleet.start_h[who] + 0.3 + rng.uniform(0, 8.0, len(who))
    server = rng.random(len(who)) < 0.2
    employees = np.flatnonzero(fleet.kind != ADMIN)
    target = np.where(server, np.array(SERVERS)[rng.integers(len(SERVERS), size=len(who))],
                      fleet.pc[employees[rng.integers(len(employees), size=len(who))]])
    a0 = _utc(clocks, dday, begin * HOUR)
    a1 = _utc(clocks, dday, (begin + rng.uniform(0.05, 0.4, len(who))) * HOUR)
    _logons(rows, ids, fleet, who, target.astype(object), a0, a1, 10, privileged=True)
    # Admins' own desks.
    own = works[admins]
    p2, d2 = np.nonzero(own)
    p2 = admins[p2]
    _logons(rows, ids, fleet, p2, fleet.pc[p2], _utc(clocks, d2, fleet.start_h[p2] * HOUR),
            _utc(clocks, d2, (fleet.start_h[p2] + fleet.hours[p2]) * HOUR), 2, privileged=True)
    return _Sessions(s_person, s_day, t0, t1, lid)


@dataclass
class _Label:
    id: str
    kind: str
    description: str
    start: int
    end: int
    accounts: list[str]
    hosts: list[str]
    devices: list[str]
    benign: bool = False

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "kind": self.kind, "description": self.description, "benign": self.benign,
                "start": iso_utc(self.start), "end": iso_utc(self.end), "accounts": [a.lower() for a in self.accounts],
                "devices": self.devices, "hosts": self.hosts, "src_ips": [], "objects": []}


def _incidents(seed: int, s: FleetSettings, fleet: Fleet, clocks: list[DayClock], rows: _Rows, ids: _Ids,
               sessions: _Sessions) -> list[_Label]:
    rng = np.random.default_rng([seed, 0xF1EE9])
    scored = list(range(s.baseline_days, s.days))
    weekdays = [d for d in scored if clocks[d].weekday < 5]
    saturdays = [d for d in scored if clocks[d].weekday == 5]
    strict = np.flatnonzero((fleet.kind == REGULAR) & ~fleet.usb & ~fleet.saturday)
    chosen = iter(rng.choice(strict, size=min(len(strict), 4 * s.incidents_per_kind + 16), replace=False))
    admins = np.flatnonzero(fleet.kind == ADMIN)
    labels: list[_Label] = []

    def day_of(k: int, pool: list[int]) -> int:
        return pool[int(rng.integers(len(pool)))] if pool else scored[k % len(scored)]

    def at(day: int, hour: float) -> int:
        return int(_utc(clocks, np.array([day]), np.array([hour * HOUR]))[0])

    def one(person: int, computer: str, t0: int, t1: int, logon_type: int = 2, privileged: bool = False) -> str:
        return str(_logons(rows, ids, fleet, np.array([person]), np.array([computer], dtype=object),
                           np.array([t0]), np.array([t1]), logon_type, privileged=privileged)[0])

    def usb(computer: str, lid: str, times: list[int], device: str) -> None:
        _usb(rows, np.array([computer] * len(times), dtype=object), np.array([lid] * len(times), dtype=object),
             np.array(times), np.array([device] * len(times)), s)

    for k in range(s.incidents_per_kind):
        # (a) after hours, with a thumb drive never seen.
        u = int(next(chosen))
        day = day_of(k, weekdays)
        h = float(rng.uniform(21.5, 23.0))
        t0, t1 = at(day, h), at(day, h + float(rng.uniform(0.6, 0.9)))
        lid = one(u, fleet.pc[u], t0, t1)
        drive = _usb_id(rng)
        usb(fleet.pc[u], lid, sorted(int(t0 + (t1 - t0) * f) for f in rng.uniform(0.1, 0.9, 3)), drive)
        labels.append(_Label("", "after_hours_usb", f"{fleet.user[u]}, who never worked after hours nor used removable "
                             f"media, logs on to {fleet.pc[u]} at {int(h):02d}:{int(h % 1 * 60):02d} and plugs in a "
                             "thumb drive.", t0, t1, [fleet.user[u]], [fleet.pc[u]], [drive]))
        # (b) other users' PCs, with a thumb drive.
        u = int(next(chosen))
        day = day_of(k + 1, weekdays)
        drawn = rng.choice(np.flatnonzero(fleet.kind != ADMIN), size=3, replace=False)
        others = [o for o in drawn if o != u][:2] or [int(drawn[0])]
        drive = _usb_id(rng)
        h = fleet.start_h[u] + float(rng.uniform(2.0, 5.0))
        first = last = 0
        hosts = []
        for j, o in enumerate(others):
            t0, t1 = at(day, h + 0.5 * j), at(day, h + 0.5 * j + 0.3)
            lid = one(u, fleet.pc[o], t0, t1)
            usb(fleet.pc[o], lid, [t0 + (t1 - t0) // 3, t0 + 2 * (t1 - t0) // 3], drive)
            first, last = first or t0, t1
            hosts.append(str(fleet.pc[o]))
        labels.append(_Label("", "foreign_pc_usb", f"{fleet.user[u]} logs on to other users' PCs "
                             f"({', '.join(hosts)}), never before, and copies to a thumb drive on each.", first, last,
                             [fleet.user[u]], hosts, [drive]))
        # (c) an administrator on a supervisor's PC in the evening, then the supervisor's account there.
        sup = int(next(chosen))
        admin = int(admins[int(rng.integers(len(admins)))])
        day = day_of(k + 2, weekdays)
        h = float(rng.uniform(18.5, 20.0))
        t0, t1 = at(day, h), at(day, h + 0.2)
        lid = one(admin, fleet.pc[sup], t0, t1, 10, privileged=True)
        drive = _usb_id(rng)
        usb(fleet.pc[sup], lid, [t0 + (t1 - t0) // 2], drive)
        s0 = at(day, h + 0.2 + float(rng.uniform(0.08, 0.25)))
        s1 = s0 + int(rng.uniform(0.3, 0.6) * HOUR * US)
        one(sup, fleet.pc[sup], s0, s1)
        labels.append(_Label("", "supervisor_after_admin", f"Administrator {fleet.user[admin]} logs on to "
                             f"{fleet.pc[sup]}, the PC of {fleet.user[sup]}, in the evening with a thumb drive; "
                             "minutes "
                             f"later {fleet.user[sup]}'s account logs on there.", t0, s1,
                             [fleet.user[sup], fleet.user[admin]], [fleet.pc[sup]], [drive]))
        # (d) a strict office-hours user's first Saturday or 03:00 logon.
        u = int(next(chosen))
        if k % 2 == 0 and saturdays:
            day, h, when = saturdays[k // 2 % len(saturdays)], float(rng.uniform(10.0, 14.0)), "on a Saturday"
        else:
            day, h, when = day_of(k + 3, weekdays), float(rng.uniform(2.5, 3.5)), "at 03:00"
        t0, t1 = at(day, h), at(day, h + float(rng.uniform(0.8, 2.0)))
        one(u, fleet.pc[u], t0, t1)
        labels.append(_Label("", "first_offhours_logon", f"{fleet.user[u]}, a strict office-hours user, logs on to "
                             f"{fleet.pc[u]} {when} for the first time.", t0, t1, [fleet.user[u]], [fleet.pc[u]], []))
    if s.benign and weekdays:
        labels += _benign(s, fleet, clocks, rows, ids, sessions, rng, chosen, weekdays)
    labels.sort(key=lambda label: (label.start, label.kind))
    for j, label in enumerate(labels):
        label.id = f"FLT-{j + 1:03d}"
    return labels


def _benign(s: FleetSettings, fleet: Fleet, clocks: list[DayClock], rows: _Rows, ids: _Ids, sessions: _Sessions,
            rng: np.random.Generator, chosen: Iterator[np.int64], weekdays: list[int]) -> list[_Label]:
    """Surprises that are not incidents: they look like the insider kinds on purpose."""
    labels = []
    # A team stays for a release: five strict office-hours users log on again in the evening, a first.
    team = [int(next(chosen)) for _ in range(5)]
    day = weekdays[int(rng.integers(len(weekdays)))]
    h = rng.uniform(19.0, 19.5, len(team))
    length = rng.uniform(1.5, 2.5, len(team))
    t0 = _utc(clocks, np.full(len(team), day), h * HOUR)
    t1 = _utc(clocks, np.full(len(team), day), (h + length) * HOUR)
    _logons(rows, ids, fleet, np.array(team), fleet.pc[team].astype(object), t0, t1, 2, privileged=False)
    labels.append(_Label("", "team_overtime", "Benign: a team of five, who never work late, stays for a release "
                         "evening and logs on again after 19:00.", int(t0.min()), int(t1.max()),
                         [str(fleet.user[u]) for u in team], [str(fleet.pc[u]) for u in team], [], benign=True))
    # IT hands out encrypted drives: eight users who never used removable media plug theirs in once,
    # in an ordinary working session.
    day = weekdays[int(rng.integers(len(weekdays)))]
    users = [int(next(chosen)) for _ in range(8)]
    pick = np.flatnonzero(np.isin(sessions.person, users) & (sessions.day == day))
    pick = pick[np.unique(sessions.person[pick], return_index=True)[1]]  # their first session that day
    if len(pick):
        when = sessions.t0[pick] + ((sessions.t1[pick] - sessions.t0[pick]) * rng.uniform(0.2, 0.8, len(pick))
                                    ).astype(np.int64)
        drives = np.array([f"USBSTOR\\DISK&VEN_KINGSTON&PROD_IRONKEY_D300S&REV_PMAP\\{rng.bytes(8).hex().upper()}&0"
                           for _ in pick])
        _usb(rows, fleet.pc[sessions.person[pick]].astype(object), sessions.lid[pick], when, drives, s)
        labels.append(_Label("", "usb_rollout", f"Benign: IT hands out encrypted drives; {len(pick)} users who never "
                             "used removable media plug theirs in during an ordinary working session.",
                             int(when.min()), int(when.max()), [str(fleet.user[p]) for p in sessions.person[pick]],
                             [str(fleet.pc[p]) for p in sessions.person[pick]], drives.tolist(), benign=True))
    return labels


@dataclass(frozen=True)
class FleetSummary:
    out_dir: Path
    files: tuple[Path, ...]
    events: int
    labels: Path
    incidents: tuple[dict[str, object], ...]


def simulate_fleet(out_dir: Path | str, *, seed: int, settings: FleetSettings | None = None) -> FleetSummary:
    """Write the fleet's Windows Security events (``winsec_<local date>.jsonl``) and ``labels.json``."""
    s = settings or FleetSettings()
    if s.employees < 50 or s.admins < 1 or s.baseline_days < 1 or s.scored_days < 1:
        raise ConfigError("the fleet needs at least 50 employees, 1 admin, 1 baseline and 1 scored day")
    fleet = build_fleet(seed, s)
    clocks = [DayClock.of(d, s.start + timedelta(days=d), s.tz) for d in range(s.days)]
    rows, ids = _Rows(), _Ids(np.random.default_rng([seed, 0xF1EEA]))
    sessions = _routine(seed, s, fleet, clocks, rows, ids)
    labels = _incidents(seed, s, fleet, clocks, rows, ids, sessions)
    events = rows.frame()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    local = pl.col("t").cast(pl.Datetime("us", "UTC")).dt.convert_time_zone(s.tz)
    events = events.with_columns(_ts=local.dt.strftime("%Y-%m-%dT%H:%M:%S%.3f%:z"), _day=local.dt.date())
    fields = [("TimeCreated", "_ts", True), ("EventID", "EventID", False)] + [
        (c, c, c != "LogonType") for c in COLUMNS[1:]]
    files = []
    for (day,), part in events.partition_by("_day", as_dict=True, maintain_order=True).items():
        path = out / f"winsec_{day.isoformat()}.jsonl"
        part.select(json_lines(part, fields).alias("line")).write_csv(
            path, include_header=False, quote_style="never", line_terminator="\n")
        files.append(path)
    incidents = [label.as_json() for label in labels]
    document = {
        "generator": {
            "tool": "detector.simulate.fleet", "seed": seed, "days": s.days, "start": s.start.isoformat(),
            "tz": s.tz, "employees": s.employees, "admins": s.admins, "baseline_days": s.baseline_days,
            "baseline_until": iso_utc(clocks[s.baseline_days - 1].end_us), "end": iso_utc(clocks[-1].end_us),
            "files_per": "local day (file dates are local dates; times carry their UTC offset)",
            "settings": {k: (v.isoformat() if isinstance(v, date) else v) for k, v in asdict(s).items()},
        },
        "incidents": incidents,
    }
    path = out / "labels.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return FleetSummary(out, tuple(sorted(files)), events.height, path, tuple(incidents))


__all__ = ["FLEET_BENIGN_KINDS", "FLEET_KINDS", "Fleet", "FleetSettings", "FleetSummary", "build_fleet", "simulate_fleet"]
