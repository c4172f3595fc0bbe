"""Planted incidents and benign surprises, and their labels.

Incidents are needles: a handful of events, written with the same building blocks as routine,
by accounts and from hosts that look ordinary. What gives each away is context (the hour, a
first-seen address or console, a setting nobody touches, an image hash never seen, a burst), never
a suspicious name. Benign surprises look alarming on purpose and are labelled ``benign``.

All are planted after the baseline period. Each planter writes into its own buffer, so its label's
time span is exactly that of the events it planted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from detector.simulate.clock import iso_utc
from detector.simulate.context import MAINTENANCE_WEEKDAY, DayContext, people_of
from detector.simulate.population import HOSTS, REGIONS, SERVICE_ACCOUNTS, VPN_POOL, Person
from detector.simulate.records import DayBuffer
from detector.simulate.routine_people import CONTROL_TYPES, collector_id
from detector.simulate.routine_systems import breaker_trip, outages
from detector.simulate.sessions import (
    Actor,
    audit,
    command,
    dms_alarm,
    dms_auth,
    dms_control,
    hes_login,
    hes_logout,
    jump_session,
    rdp,
    sec,
    vpn_session,
    win_account,
    win_failed,
)


@dataclass(frozen=True)
class Label:
    """What is planted, for scoring a detector against: who, which devices, where from, when."""

    id: str
    kind: str
    description: str
    benign: bool
    start: str  # ISO 8601 UTC, first planted event
    end: str  # last planted event
    accounts: tuple[str, ...]  # lower case, as the normalized schema stores them
    devices: tuple[str, ...] = ()  # meters, collectors, groups, breakers
    hosts: tuple[str, ...] = ()  # servers, workstations, consoles
    src_ips: tuple[str, ...] = ()
    objects: tuple[str, ...] = ()  # settings, accounts created, firmware images

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "kind": self.kind, "description": self.description, "benign": self.benign,
                "start": self.start, "end": self.end, "accounts": list(self.accounts),
                "devices": list(self.devices), "hosts": list(self.hosts), "src_ips": list(self.src_ips),
                "objects": list(self.objects)}


@dataclass
class Facts:
    """What a planter reports about what it planted."""

    description: str
    accounts: list[str]
    devices: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    src_ips: list[str] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)


Planter = Callable[[DayContext, DayBuffer, np.random.Generator, float], Facts]


@dataclass(frozen=True)
class PlannedIncident:
    id: str
    kind: str
    day: int
    hour: float
    benign: bool
    number: int  # position in the catalogue, seeds the incident's random stream


# ---- helpers -------------------------------------------------------------------------------------

def _admins(ctx: DayContext) -> list[Person]:
    return [p for _, p in people_of(ctx.pop, "admin")]


def _pick_admin(ctx: DayContext, k: int) -> Person:
    """Admins other than the firmware owner (the first) when there are any."""
    admins = _admins(ctx)
    others = admins[1:] or admins
    return others[k % len(others)]


def _on_shift(ctx: DayContext, kind: str, hour: float, rng: np.random.Generator) -> Person:
    duty = ctx.on_duty(kind, hour)
    pool = duty or [i for i, p in enumerate(ctx.pop.people) if p.kind == kind]
    return ctx.pop.people[pool[int(rng.integers(len(pool)))]]


def _pool_ip(rng: np.random.Generator) -> str:
    return f"{VPN_POOL}{rng.integers(10, 250)}"


def _from_home(ctx: DayContext, buf: DayBuffer, p: Person, hour: float, length: float,
               rng: np.random.Generator, *, external_ip: str | None = None) -> tuple[Actor, str]:
    """VPN in (from home unless told otherwise) and RDP to the HES application server."""
    pool = _pool_ip(rng)
    vpn_session(buf, ctx.t(hour), ctx.t(hour + length), p.account, external_ip or p.home_ip, pool,
                group="it-staff" if p.kind == "admin" else "staff")
    me = Actor.of(p, ip=pool, workstation="LT-" + p.workstation.split("-", 1)[-1])
    rdp(buf, ctx.t(hour + 0.02), ctx.t(hour + length - 0.02), "HES-APP01", me)
    return me, pool


# ---- incidents -----------------------------------------------------------------------------------

def admin_login_offhours(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator, hour: float) -> Facts:
    p = _pick_admin(ctx, 0)
    me, pool = _from_home(ctx, buf, p, hour, 0.6, rng)
    hes_login(buf, ctx.t(hour + 0.04), me)
    rdp(buf, ctx.t(hour + 0.2), ctx.t(hour + 0.45), "HES-DB01", me)
    hes_logout(buf, ctx.t(hour + 0.55), me)
    return Facts(f"Administrator {p.account} connects over the VPN at {int(hour):02d}:{int(hour % 1 * 60):02d} local "
                 "time, an hour they never work, and opens sessions on HES-APP01 and HES-DB01; nothing else is "
                 "unusual.",
                 [p.account], hosts=["HES-APP01", "HES-DB01"], src_ips=[p.home_ip, pool])


def admin_login_new_ip(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator, hour: float) -> Facts:
    p = _pick_admin(ctx, 1)
    me = Actor.of(p, ip="10.20.3.187", workstation="WS-TRN-04")
    t0, t1 = ctx.t(hour), ctx.t(hour + 0.5)
    rdp(buf, t0, t1, "HES-APP01", me)
    hes_login(buf, t0 + sec(40), me)
    for k in range(3):
        command(buf, t0 + sec(300 + 240 * k), me, "OnDemandRead",
                target=ctx.pop.meter_ids[int(rng.integers(ctx.pop.meters))])
    hes_logout(buf, t1 - sec(20), me)
    return Facts(f"Administrator {p.account} logs in during office hours, but from a training-room workstation "
                 "(WS-TRN-04, 10.20.3.187) never used by any administrator before.",
                 [p.account], hosts=["WS-TRN-04", "HES-APP01"], src_ips=["10.20.3.187"])


def vendor_login_unusual(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator, hour: float) -> Facts:
    vendor = Actor.of(SERVICE_ACCOUNTS["svc_vendor_support"])
    pool, external = _pool_ip(rng), "192.0.2.61"
    t0, t1 = hour, hour + 0.7
    vpn_session(buf, ctx.t(t0), ctx.t(t1), vendor.account, external, pool, group="vendor-access")
    onward = jump_session(buf, ctx.t(t0 + 0.02), ctx.t(t1 - 0.02), vendor, pool, "HES-APP01",
                          policy="vendor-rdp", session_id=f"{ctx.clock.date:%Y%m%d}-{rng.integers(1000, 9999)}")
    hes_login(buf, ctx.t(t0 + 0.04), onward)
    devices = []
    for k in range(3):
        r = int(rng.integers(len(REGIONS)))
        col = collector_id(r, int(rng.integers(1, ctx.pop.collectors_per_region[r] + 1)))
        command(buf, ctx.t(t0 + 0.1 + 0.1 * k), onward, "PingByEndpoints", target_type="Collector", target=col)
        devices.append(col)
    hes_logout(buf, ctx.t(t1 - 0.04), onward)
    return Facts("The vendor support account connects at night from 192.0.2.61, outside the vendor's office "
                 "range, and goes through JUMP01 to the HES.", ["svc_vendor_support"], devices,
                 ["JUMP01", "HES-APP01"], [external, pool])


def password_spray(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator, hour: float) -> Facts:
    pop = ctx.pop
    source = Actor("", "", "", "10.20.4.66", "WS-KIOSK-02")
    humans = [p for p in pop.people[:-2]]
    victims = [humans[int(i)] for i in rng.choice(len(humans), size=min(12, len(humans)), replace=False)]
    t = ctx.t(hour)
    for p in victims:
        who = Actor(p.account, p.win_name, p.role, source.ip, source.workstation)
        audit(buf, t, who, "Security", "UserLoginFailed", "User", p.account, result="Failure")
        win_failed(buf, t - sec(0.05), "HES-APP01", who, 3)
        t += sec(rng.uniform(12, 45))
    ghost = Actor("administrator", "Administrator", "", source.ip, source.workstation)
    win_failed(buf, t, "HES-APP01", ghost, 3, unknown=True)
    audit(buf, t + sec(0.1), ghost, "Security", "UserLoginFailed", "User", "administrator", result="Failure")
    winner = next((p for p in victims if p.kind == "operator"), victims[0])
    got_in = Actor(winner.account, winner.win_name, winner.role, source.ip, source.workstation)
    t += sec(rng.uniform(20, 60))
    hes_login(buf, t, got_in)
    command(buf, t + sec(95), got_in, "OnDemandRead", target=pop.meter_ids[int(rng.integers(pop.meters))])
    hes_logout(buf, t + sec(400), got_in)
    return Facts(f"Password spraying from a kiosk PC: one failed login each for {len(victims)} accounts and "
                 f"'administrator' within minutes, then a successful login as {winner.account}.",
                 sorted({p.account for p in victims} | {"administrator"}), hosts=["WS-KIOSK-02"],
                 src_ips=[source.ip])


def new_account_used(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator, hour: float) -> Facts:
    p = _pick_admin(ctx, 2)
    me, pool = _from_home(ctx, buf, p, hour, 0.9, rng)
    hes_login(buf, ctx.t(hour + 0.04), me)
    t = ctx.t(hour + 0.1)
    new = Actor("svc_reporting", "svc_reporting", "Administrator", pool, me.workstation, True)
    win_account(buf, t, 4720, me, new.win_name)
    win_account(buf, t + sec(18), 4728, me, "HES Administrators", member="CN=svc_reporting,OU=Service,DC=util,DC=local")
    audit(buf, t + sec(75), me, "UserManagement", "UserCreated", "User", new.account, None, "Role=Administrator")
    hes_logout(buf, t + sec(120), me)
    t2 = t + sec(rng.uniform(600, 900))
    hes_login(buf, t2, new)
    audit(buf, t2 + sec(140), new, "Configuration", "SettingChanged", "GlobalSetting",
          "Firmware.MaxConcurrentDownloads", "500", "20000")
    command(buf, t2 + sec(260), new, "OnDemandRead", group="ALL_SOUTH", count=ctx.pop.group_size("ALL_SOUTH"),
            status="Queued")
    hes_logout(buf, t2 + sec(420), new)
    return Facts(f"{p.account} creates the administrator account svc_reporting in the evening over the VPN; "
                 "minutes later it logs in, raises Firmware.MaxConcurrentDownloads and reads a whole region.",
                 [p.account, "svc_reporting"], ["ALL_SOUTH"], ["HES-APP01", "DC01"], [p.home_ip, pool],
                 ["svc_reporting", "Firmware.MaxConcurrentDownloads"])


def privilege_grant_used(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator, hour: float) -> Facts:
    admin = _pick_admin(ctx, 3)
    op = _on_shift(ctx, "operator", hour, rng)
    me, them = Actor.of(admin), Actor.of(op)
    t = ctx.t(hour)
    audit(buf, t, me, "UserManagement", "RoleAssigned", "User", op.account, f"Role={op.role}",
          f"Role={op.role},Administrator")
    win_account(buf, t + sec(25), 4728, me, "HES Administrators",
                member=f"CN={op.full_name},OU=Operations,DC=util,DC=local")
    t2 = t + sec(rng.uniform(300, 600))
    audit(buf, t2, them, "Configuration", "SettingChanged", "GlobalSetting", "Security.MaxFailedLogins", "5", "50")
    audit(buf, t2 + sec(95), them, "Configuration", "MeterProgramChanged", "MeterProgram", "TOU_RES_2026", "v12", "v13")
    return Facts(f"{admin.account} gives operator {op.account} the Administrator role at the end of the day; "
                 f"within minutes {op.account} loosens the lockout threshold and changes a meter program.",
                 [admin.account, op.account], hosts=[admin.workstation, op.workstation],
                 src_ips=[admin.ip, op.ip], objects=["Security.MaxFailedLogins", "TOU_RES_2026"])


# Controls an insider switches off or loosens; the first two are the classic incident.
SECURITY_CHANGES: tuple[tuple[str, str, str], ...] = (
    ("Security.DisconnectApprovalRequired", "true", "false"),
    ("RemoteDisconnect.MaxPerHour", "50", "5000"),
    ("Security.FirmwareSignatureCheck", "enabled", "disabled"),
    ("Security.SessionIdleLockMinutes", "15", "1440"),
)


def config_change(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator, hour: float) -> Facts:
    p = _pick_admin(ctx, 4)
    me = Actor.of(p)
    t = ctx.t(hour)
    changes = SECURITY_CHANGES[:max(1, min(len(SECURITY_CHANGES), ctx.settings.settings_changed))]
    for k, (setting, old, new) in enumerate(changes):
        if k:
            t += sec(rng.uniform(40, 120))
        audit(buf, t, me, "Configuration", "SettingChanged", "GlobalSetting", setting, old, new)
    text = (f"In office hours and from their own workstation, {p.account} turns off approval of remote "
            "disconnects and lifts their hourly limit: settings nobody changes." if len(changes) == 2 else
            f"In office hours and from their own workstation, {p.account} weakens {len(changes)} security "
            "setting(s) nobody changes (" + ", ".join(f"{s} {o}->{n}" for s, o, n in changes) + ").")
    return Facts(text, [p.account], hosts=[p.workstation], src_ips=[p.ip], objects=[s for s, _, _ in changes])


def disconnect_burst(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator, hour: float) -> Facts:
    pop = ctx.pop
    op = _on_shift(ctx, "operator", hour, rng)
    me = Actor.of(op)
    route = int(rng.integers(1, pop.routes + 1))
    on_route = np.flatnonzero(pop.meter_route == route)
    meters = on_route[rng.permutation(len(on_route))[:ctx.settings.burst_size]]
    t = ctx.t(hour)
    devices = []
    for m in meters:
        t += sec(rng.uniform(6, 18))
        command(buf, t, me, "RemoteDisconnect", target=pop.meter_ids[int(m)], control=CONTROL_TYPES["RemoteDisconnect"],
                service_no=pop.service_no[int(m)], status="Succeeded" if rng.random() < 0.95 else "Failed")
        devices.append(pop.meter_ids[int(m)])
    return Facts(f"Operator {op.account}, in their usual session, remotely disconnects {len(devices)} meters on "
                 f"ROUTE_{route} within minutes; they disconnect at most one or two a day.",
                 [op.account], devices, [], [op.ip])


def firmware_outside_window(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator, hour: float) -> Facts:
    p = _pick_admin(ctx, 5)
    me, pool = _from_home(ctx, buf, p, hour, 0.8, rng)
    hes_login(buf, ctx.t(hour + 0.04), me)
    count = ctx.pop.collectors_per_region[0]
    sha = ctx.pop.extra["fw_new_bad_sha"]
    command(buf, ctx.t(hour + 0.12), me, "FirmwareDownload", group="ALL_NORTH", count=count, target_type="Collector",
            image="nic_7.2.1.bin", sha256=sha, status="Queued")
    command(buf, ctx.t(hour + 0.55), me, "FirmwareActivate", group="ALL_NORTH", count=count,
            target_type="Collector", image="nic_7.2.1.bin", sha256=sha, status="Queued")
    hes_logout(buf, ctx.t(hour + 0.75), me)
    return Facts(f"{p.account} pushes and activates collector firmware nic_7.2.1.bin, whose hash was never seen, "
                 "to every northern collector at night outside the maintenance window.",
                 [p.account], ["ALL_NORTH"], ["HES-APP01"], [p.home_ip, pool], ["nic_7.2.1.bin", sha])


def key_change_unusual_time(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator, hour: float) -> Facts:
    pop = ctx.pop
    me = Actor.of(SERVICE_ACCOUNTS["svc_keymgr"])
    t = ctx.t(hour)
    hes_login(buf, t - sec(4), me)
    devices = []
    for m in rng.choice(pop.meters, size=min(6, pop.meters), replace=False):
        t += sec(rng.uniform(3, 20))
        command(buf, t, me, "KeyRenewal", target=pop.meter_ids[int(m)], control=CONTROL_TYPES["KeyRenewal"])
        devices.append(pop.meter_ids[int(m)])
    route = int(rng.integers(1, pop.routes + 1))
    size = pop.group_size(f"ROUTE_{route}")
    command(buf, t + sec(30), me, "KeyRenewal", group=f"ROUTE_{route}", count=size,
            control=CONTROL_TYPES["KeyRenewal"], status="Succeeded", success=size, failure=0)
    hes_logout(buf, t + sec(90), me)
    return Facts("The key-management service account renews keys of six single meters and a route outside "
                 "the maintenance window, at night.", ["svc_keymgr"], [*devices, f"ROUTE_{route}"],
                 [SERVICE_ACCOUNTS["svc_keymgr"].host], [me.ip])


def dms_unusual_console(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator, hour: float) -> Facts:
    p = _on_shift(ctx, "dms_operator", hour, rng)
    me = Actor.of(p, ip="10.30.5.77", workstation="ENG-WS-07")
    t = ctx.t(hour)
    dms_auth(buf, t, me)
    feeders = rng.choice(len(ctx.pop.feeders), size=min(3, len(ctx.pop.feeders)), replace=False)
    devices = []
    for k in feeders:
        feeder = ctx.pop.feeders[int(k)]
        t = dms_control(buf, t + sec(rng.uniform(50, 140)), me, feeder.devices[0], feeder.rtu, "OPEN", rng)
        devices.append(feeder.devices[0])
    dms_auth(buf, t + sec(200), me, action="logout")
    return Facts(f"DMS operator {p.account} logs in from engineering workstation ENG-WS-07, never used for "
                 f"control, and opens {len(devices)} feeder breakers one after another.",
                 [p.account], devices, ["ENG-WS-07"], ["10.30.5.77"])


def audit_log_cleared(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator, hour: float) -> Facts:
    p = _pick_admin(ctx, 6)
    me, pool = _from_home(ctx, buf, p, hour, 0.4, rng)
    hes_login(buf, ctx.t(hour + 0.04), me)
    t = ctx.t(hour + 0.15)
    audit(buf, t, me, "Security", "AuditLogCleared", "AuditLog", "HES.Audit", f"entries={rng.integers(10**6, 10**7)}",
          "entries=0")
    buf.add("winsec", t + sec(rng.uniform(30, 90)), EventID=1102, Computer=HOSTS["HES-APP01"].fqdn,
            SubjectUserName=p.win_name, SubjectDomainName="UTIL")
    hes_logout(buf, ctx.t(hour + 0.3), me)
    return Facts(f"{p.account} clears the HES audit trail and the Windows Security log of HES-APP01 before dawn.",
                 [p.account], hosts=["HES-APP01"], src_ips=[p.home_ip, pool], objects=["HES.Audit"])


def dormant_account(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator, hour: float) -> Facts:
    pop = ctx.pop
    p = pop.person(pop.dormant)
    pool, external = _pool_ip(rng), "192.0.2.144"
    vpn_session(buf, ctx.t(hour), ctx.t(hour + 0.6), p.account, external, pool, group="staff")
    me = Actor.of(p, ip=pool, workstation="-")
    hes_login(buf, ctx.t(hour + 0.03), me)
    devices = []
    for k in range(12):
        m = int(rng.integers(pop.meters))
        command(buf, ctx.t(hour + 0.06 + 0.035 * k), me, "OnDemandRead", target=pop.meter_ids[m])
        devices.append(pop.meter_ids[m])
    hes_logout(buf, ctx.t(hour + 0.55), me)
    return Facts(f"{p.account}, unused since the first day, connects over the VPN in the evening from "
                 f"{external} and reads a dozen meters.", [p.account], devices, [], [external, pool])


# ---- benign surprises ----------------------------------------------------------------------------

def storm_day(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator, hour: float) -> Facts:
    pop = ctx.pop
    hit = rng.choice(len(pop.feeders), size=max(2, int(len(pop.feeders) * 0.6)), replace=False)
    devices: list[str] = []
    accounts: set[str] = set()
    for k in sorted(hit):
        feeder = pop.feeders[int(k)]
        start = hour + float(rng.uniform(0, 6))
        for device in (d for d in feeder.devices if "-R" in d):
            t = ctx.t(start)
            for _ in range(int(rng.integers(1, 4))):  # reclose attempts
                dms_alarm(buf, t, device, feeder.rtu, "OPEN", commanded=False)
                t += sec(rng.uniform(2, 15))
                dms_alarm(buf, t, device, feeder.rtu, "CLOSED", commanded=False)
                t += sec(rng.uniform(5, 60))
            devices.append(device)
        if rng.random() < 0.6:
            closer = breaker_trip(ctx, buf, feeder.devices[0], feeder.rtu, start + float(rng.uniform(0.1, 1.0)), rng)
            devices.append(feeder.devices[0])
            if closer:
                accounts.add(closer)
    # Off-shift DMS operators called in for the evening.
    evening = ctx.on_duty("dms_operator", 18.0)
    off = [i for i, p in enumerate(pop.people) if p.kind == "dms_operator" and i not in evening]
    for i in off[:2]:
        p = pop.people[i]
        me = Actor.of(p)
        t_in = hour + 2.5 + float(rng.uniform(0, 0.5))
        dms_auth(buf, ctx.t(t_in), me)
        feeder = pop.feeders[int(hit[int(rng.integers(len(hit)))])]
        dms_control(buf, ctx.t(t_in + 0.5), me, feeder.devices[0], feeder.rtu, "OPEN", rng)
        dms_control(buf, ctx.t(t_in + 2.0), me, feeder.devices[0], feeder.rtu, "CLOSE", rng)
        dms_auth(buf, ctx.t(min(23.9, t_in + 5.0)), me, action="logout")
        accounts.add(p.account)
        devices.append(feeder.devices[0])
    oms = Actor.of(SERVICE_ACCOUNTS["svc_oms"])
    clusters = int(20 + pop.meters / 500)
    outages(ctx, buf, clusters, rng, oms, hours=hour + rng.uniform(0, 7, clusters))
    accounts.add("svc_oms")
    return Facts("Benign: a summer storm trips feeders across the territory in the afternoon and evening; "
                 "reclosers operate, breakers trip and are closed again, off-shift operators are called in "
                 "and outage pings surge.", sorted(accounts), sorted(set(devices)), ["adms-app01", "adms-fep02"])


def approved_campaign(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator, hour: float) -> Facts:
    pop = ctx.pop
    owner = _admins(ctx)[0]
    me = Actor.of(owner)
    count = pop.group_size("FW_PILOT_A")
    sha = pop.extra["fw_new_benign_sha"]
    t = ctx.t(hour)
    command(buf, t, me, "FirmwareDownload", group="FW_PILOT_A", count=count, image="meter_fw_4.8.0.bin", sha256=sha,
            status="Queued")
    failed = int(rng.binomial(count, 0.03))
    command(buf, ctx.t(hour + 1.6), me, "FirmwareActivate", group="FW_PILOT_A", count=count,
            image="meter_fw_4.8.0.bin", sha256=sha, status="PartialSuccess" if failed else "Succeeded",
            success=count - failed, failure=failed)
    return Facts("Benign: an emergency meter firmware release, approved by the change board and announced, "
                 "is pushed to the pilot group in the afternoon by the usual firmware administrator, outside "
                 "the maintenance window and with a new image hash.", [owner.account], ["FW_PILOT_A"],
                 [], [owner.ip], ["meter_fw_4.8.0.bin", sha])


# kind -> (planter, position in the incident period 0..1, local hour, day rule, benign)
DayRule = Callable[[date], bool]


def _any(d: date) -> bool:
    return True


def _workday(d: date) -> bool:
    return d.weekday() < 5


def _outside_window(d: date) -> bool:
    return d.weekday() != MAINTENANCE_WEEKDAY


def _workday_outside_window(d: date) -> bool:
    return _workday(d) and _outside_window(d)


CATALOGUE: tuple[tuple[str, Planter, float, float, DayRule, bool], ...] = (
    ("admin_login_offhours", admin_login_offhours, 0.05, 2.78, _any, False),
    ("password_spray", password_spray, 0.15, 11.3, _workday, False),
    ("vendor_login_unusual", vendor_login_unusual, 0.25, 1.2, _any, False),
    ("storm_day", storm_day, 0.3, 14.0, _any, True),
    ("new_account_used", new_account_used, 0.35, 19.6, _any, False),
    ("config_change", config_change, 0.45, 13.1, _workday, False),
    ("disconnect_burst", disconnect_burst, 0.5, 20.8, _any, False),
    ("privilege_grant_used", privilege_grant_used, 0.55, 16.8, _workday, False),
    ("approved_campaign_outside_window", approved_campaign, 0.6, 14.2, _workday_outside_window, True),
    ("dms_unusual_console", dms_unusual_console, 0.62, 21.25, _any, False),
    ("firmware_outside_window", firmware_outside_window, 0.7, 2.55, _outside_window, False),
    ("key_change_unusual_time", key_change_unusual_time, 0.78, 3.7, _outside_window, False),
    ("admin_login_new_ip", admin_login_new_ip, 0.85, 10.25, _workday, False),
    ("audit_log_cleared", audit_log_cleared, 0.9, 4.1, _outside_window, False),
    ("dormant_account", dormant_account, 0.95, 22.2, _any, False),
)
PLANTERS: dict[str, Planter] = {kind: planter for kind, planter, *_ in CATALOGUE}

# Local hours a drawn incident may start at (``timing_seed``): each kind keeps what makes it that
# kind (a night login stays at night, an office-hours change in office hours) and ends before midnight.
HOUR_RANGES: dict[str, tuple[float, float]] = {
    "admin_login_offhours": (0.5, 4.5), "password_spray": (9.0, 15.5), "vendor_login_unusual": (0.3, 4.5),
    "storm_day": (12.0, 15.5), "new_account_used": (19.0, 22.0), "config_change": (9.5, 15.0),
    "disconnect_burst": (18.5, 22.5), "privilege_grant_used": (14.0, 16.5),
    "approved_campaign_outside_window": (13.0, 15.5), "dms_unusual_console": (20.0, 22.5),
    "firmware_outside_window": (1.0, 4.5), "key_change_unusual_time": (2.0, 5.0),
    "admin_login_new_ip": (9.5, 15.0), "audit_log_cleared": (2.5, 5.0), "dormant_account": (19.5, 22.5),
}


Entry = tuple[str, Planter, float, float, DayRule, bool]


def plan_incidents(*, days: int, start: date, baseline_days: int,
                   catalogue: tuple[tuple[int, Entry], ...] | None = None,
                   timing_seed: int | None = None) -> list[PlannedIncident]:
    """Place every catalogue entry on a day after the baseline that satisfies its day rule.

    *catalogue* holds (number, entry) pairs (default: the classic catalogue, numbered by position);
    the number seeds the incident's own random stream. With *timing_seed*, the position in the
    incident period and the hour are drawn per incident, within the hours that make the kind what
    it is (:data:`HOUR_RANGES`).
    """
    if baseline_days >= days:
        return []
    if catalogue is None:
        catalogue = tuple(enumerate(CATALOGUE))
    span = days - baseline_days
    placed = []
    for number, (kind, _, position, hour, rule, benign) in catalogue:
        if timing_seed is not None:
            draw = np.random.default_rng([timing_seed, 0x71AE, number])
            lo, hi = HOUR_RANGES.get(kind, (hour - 1.0, hour + 1.0))
            position, hour = float(draw.uniform(0.0, 1.0)), float(draw.uniform(lo, hi))
        wanted = baseline_days + round(position * (span - 1))
        candidates = sorted(range(baseline_days, days), key=lambda d: (abs(d - wanted), d))
        day = next((d for d in candidates if rule(start + timedelta(days=d))), wanted)
        placed.append((day, hour, number, kind, benign))
    placed.sort()
    return [PlannedIncident(f"INC-{k + 1:03d}", kind, day, hour, benign, number)
            for k, (day, hour, number, kind, benign) in enumerate(placed)]


def plant(ctx: DayContext, buf: DayBuffer, incident: PlannedIncident,
          planters: dict[str, Planter] | None = None) -> Label:
    """Plant *incident* into *buf* (the day's buffer) and label it."""
    own = DayBuffer()
    rng = np.random.default_rng([ctx.seed, 0x1C1D, incident.number])
    facts = (planters or PLANTERS)[incident.kind](ctx, own, rng, incident.hour + float(rng.uniform(-0.2, 0.2)))
    first, last = own.span()
    buf.merge(own)
    return Label(incident.id, incident.kind, facts.description, incident.benign, iso_utc(first), iso_utc(last),
                 tuple(a.lower() for a in facts.accounts), tuple(facts.devices), tuple(facts.hosts),
                 tuple(facts.src_ips), tuple(facts.objects))


__all__ = ["CATALOGUE", "HOUR_RANGES", "Facts", "Label", "PlannedIncident", "plan_incidents", "plant"]
