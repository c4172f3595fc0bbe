"""Routine of the people: HES operators, administrators, vendor support, DMS operators and engineers.

Their volume scales with ``--operators``; their shape follows shifts, weekends and each person's
habits (how busy, reads versus pings, how often a password is mistyped, which console).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl

from detector.simulate.clock import HOUR
from detector.simulate.context import BUSINESS_HOURS, DayContext, people_of
from detector.simulate.population import REGIONS, SERVICE_ACCOUNTS, VENDOR_RANGE, VPN_POOL, Person
from detector.simulate.records import DayBuffer
from detector.simulate.sessions import (
    Actor,
    audit,
    command,
    dms_auth,
    dms_config,
    dms_control,
    dms_tag,
    dms_user_admin,
    hes_login,
    hes_logout,
    jump_session,
    rdp,
    sec,
    vpn_session,
    win_account,
    win_failed,
)

CONTROL_TYPES = {"RemoteDisconnect": "3.31.0.23", "RemoteConnect": "3.31.0.18", "KeyRenewal": "0.12.32.13",
                 "DemandReset": "3.8.0.214"}
# Customer calls per hour on shift: the evening and night desks are quieter.
CALLS_PER_HOUR = {"day": 5.0, "evening": 3.2, "night": 1.0}
VENDOR_ADDRESSES = tuple(f"{VENDOR_RANGE}{n}" for n in (14, 15, 27, 28))
TAG_NOTES = ('WO-{n} crew "L{c}" on site', "WO-{n} [planned] line work", "Switching order SO-{n}\\rev{c}")


def _laptop(p: Person) -> str:
    return "LT-" + p.workstation.split("-", 1)[-1]


def collector_id(region: int, k: int) -> str:
    return f"COL{REGIONS[region][0]}{k:04d}"


def hes_operators(ctx: DayContext, buf: DayBuffer) -> None:
    """Customer-service and meter-operations desks: logins, calls (reads and pings), the odd
    non-payment disconnect or reconnect in business hours, mistyped passwords and lockouts."""
    rng = ctx.rng("hes_operators")
    pop = ctx.pop
    weekend = 0.6 if ctx.clock.is_weekend else 1.0
    times: list[np.ndarray] = []
    who: list[np.ndarray] = []
    what: list[np.ndarray] = []
    meters: list[np.ndarray] = []
    for i, p in people_of(pop, "operator"):
        actor = Actor.of(p)
        for start, end, logs_in, logs_out in ctx.segments(i):
            t_in = start + float(np.clip(rng.normal(0.12, 0.08), -0.2, 0.5)) if logs_in else start
            t_out = end + float(np.clip(rng.normal(0.08, 0.08), -0.3, 0.4)) if logs_out else end
            t_out = min(t_out, 23.99)
            if logs_in:
                mistype = bool(rng.random() < p.mistype)
                if mistype and p.shift == "day" and ctx.is_workday and rng.random() < 0.05:
                    _lockout(ctx, buf, actor, t_in, rng)
                    t_in += 0.5
                    mistype = False
                hes_login(buf, ctx.t(t_in), actor, mistype=mistype, rng=rng)
                if rng.random() < 1 / 60:  # password expiry: people change their own password
                    audit(buf, ctx.t(t_in) + sec(40), actor, "Security", "PasswordChanged", "User", p.account)
            if logs_out:
                hes_logout(buf, ctx.t(t_out), actor)
            away = (0.0, 0.0)
            if logs_in and logs_out and rng.random() < 0.35:  # session timeout over lunch
                back = (t_in + t_out) / 2 + rng.uniform(-0.5, 0.5)
                away = (back, back + rng.uniform(0.4, 0.8))
                hes_logout(buf, ctx.t(away[0]), actor)
                hes_login(buf, ctx.t(away[1]), actor, rng=rng)
            hours = max(0.0, t_out - t_in - (away[1] - away[0]))
            calls = rng.poisson(CALLS_PER_HOUR[p.shift] * p.activity * weekend * hours)
            if calls:
                per_call = rng.integers(1, 4, calls)
                start_h = rng.uniform(t_in + 0.05, max(t_in + 0.06, t_out - 0.05), calls)
                start_h = np.where((start_h >= away[0] - 0.05) & (start_h < away[1] + 0.02),
                                   start_h + (away[1] - away[0]) + 0.07, start_h)
                call_t = np.repeat(np.minimum(start_h, t_out - 0.03) * HOUR, per_call)
                step = np.concatenate([np.arange(k) for k in per_call]) * rng.uniform(15, 120, per_call.sum())
                call_meter = np.repeat(rng.integers(0, pop.meters, calls), per_call)
                kind = np.where(rng.random(per_call.sum()) < p.read_share, 0, 1)
                times.append(np.minimum(call_t + step, t_out * HOUR))
                who.append(np.full(len(call_t), i))
                what.append(kind)
                meters.append(call_meter)
            lo, hi = max(t_in, BUSINESS_HOURS[0]), min(t_out, BUSINESS_HOURS[1])
            if ctx.is_workday and hi > lo and p.shift != "night":
                for name, rate in (("RemoteDisconnect", 0.2), ("RemoteConnect", 0.3)):
                    for _ in range(rng.poisson(rate)):
                        m = int(rng.integers(pop.meters))
                        command(buf, ctx.t(rng.uniform(lo, hi)), actor, name, target=pop.meter_ids[m],
                                control=CONTROL_TYPES[name], service_no=pop.service_no[m],
                                status="Succeeded" if rng.random() < 0.92 else "Failed")
    if times:
        t = ctx.utc(np.concatenate(times))
        people = np.concatenate(who)
        kind = np.concatenate(what)
        targets = np.concatenate(meters)
        accounts = pl.Series([p.account for p in pop.people])
        ips = pl.Series([p.ip for p in pop.people])
        ok = np.where(kind == 0, 0.94, 0.96)
        buf.add_frame("hes_commands", pl.DataFrame({
            "t": t,
            "user": accounts.gather(people),
            "client": ips.gather(people),
            "command": np.where(kind == 0, "OnDemandRead", "PingByEndpoints"),
            "targetType": pl.repeat("ElectricMeter", len(t), eager=True),
            "targetId": pop.meter_ids.gather(targets),
            "status": np.where(rng.random(len(t)) < ok, "Succeeded", "Failed"),
        }))


def _lockout(ctx: DayContext, buf: DayBuffer, actor: Actor, hour: float, rng: np.random.Generator) -> None:
    """Five wrong passwords lock the account; the service desk resets it."""
    t = ctx.t(hour)
    for k in range(5):
        tk = t + sec(k * rng.uniform(5, 20))
        audit(buf, tk, actor, "Security", "UserLoginFailed", "User", actor.account, result="Failure")
        win_failed(buf, tk - sec(0.05), "HES-APP01", actor, 3)
    dc = Actor("dc01$", "DC01$", "System", "-", "-")
    win_account(buf, t + sec(100), 4740, dc, actor.win_name)
    admins = [p for i, p in people_of(ctx.pop, "admin") if ctx.works(i)] or [p for _, p in people_of(ctx.pop, "admin")]
    admin = Actor.of(admins[int(rng.integers(len(admins)))])
    win_account(buf, t + sec(rng.uniform(900, 1500)), 4738, admin, actor.win_name)


def admins(ctx: DayContext, buf: DayBuffer) -> None:
    """IT administrators: office hours, RDP to the servers, settings and account changes,
    sometimes an evening from home over the VPN."""
    rng = ctx.rng("admins")
    pop = ctx.pop
    staff = people_of(pop, "admin")
    for i, p in staff:
        if not ctx.works(i) or ctx.clock.is_weekend:
            continue
        me = Actor.of(p)
        arrive, leave = pop.office_start + rng.uniform(0, 1.5), pop.office_start + 8.5 + rng.uniform(0, 2.0)
        hes_login(buf, ctx.t(arrive + 0.1), me, mistype=bool(rng.random() < p.mistype), rng=rng)
        hes_logout(buf, ctx.t(leave), me)
        for _ in range(rng.poisson(1.5 * p.activity)):
            server = str(rng.choice(["HES-APP01", "HES-DB01", "ADMS-APP01"], p=[0.5, 0.3, 0.2]))
            t0 = rng.uniform(arrive + 0.2, leave - 0.3)
            rdp(buf, ctx.t(t0), ctx.t(min(leave, t0 + rng.uniform(0.15, 1.5))), server, me)
        for _ in range(rng.poisson(2.5)):
            m = int(rng.integers(pop.meters))
            command(buf, ctx.t(rng.uniform(arrive + 0.2, leave)), me,
                    str(rng.choice(["OnDemandRead", "PingByEndpoints"])), target=pop.meter_ids[m],
                    status="Succeeded" if rng.random() < 0.95 else "Failed")
        if rng.random() < p.vpn_evenings:
            _evening_from_home(ctx, buf, p, rng)
    on_site = [p for i, p in staff if ctx.works(i) and ctx.is_workday] or [p for _, p in staff]
    for change in ctx.plan.settings.get(ctx.day, []):
        me = Actor.of(pop.person(change.admin))
        audit(buf, ctx.t(change.hour), me, "Configuration", "SettingChanged", "GlobalSetting", change.setting,
              change.old, change.new)
    for admin, account, grant in ctx.plan.role_grants.get(ctx.day, []):
        me, target = Actor.of(pop.person(admin)), pop.person(account)
        t = ctx.t(rng.uniform(9.5, 15.5))
        if grant:
            audit(buf, t, me, "UserManagement", "RoleAssigned", "User", account, "Role=Operator",
                  "Role=Operator,FieldTech")
        else:
            audit(buf, t, me, "UserManagement", "RoleRevoked", "User", account, "Role=Operator,FieldTech",
                  "Role=Operator")
        win_account(buf, t + sec(30), 4728 if grant else 4738, me, "HES FieldTech" if grant else target.win_name,
                    member=f"CN={target.full_name},OU=Operations,DC=util,DC=local" if grant else None)
    if ctx.day == ctx.plan.new_hire_created:
        hire = pop.person(pop.new_hire)
        me = Actor.of(on_site[0])
        t = ctx.t(10.25 + rng.uniform(0, 1))
        win_account(buf, t, 4720, me, hire.win_name)
        win_account(buf, t + sec(20), 4728, me, "HES Operators",
                    member=f"CN={hire.full_name},OU=Operations,DC=util,DC=local")
        win_account(buf, t + sec(24), 4738, me, hire.win_name)
        audit(buf, t + sec(300), me, "UserManagement", "UserCreated", "User", hire.account, None, "Role=Operator")
        audit(buf, t + sec(330), me, "UserManagement", "RoleAssigned", "User", hire.account, None, "Role=Operator")
    if ctx.is_workday:
        for _ in range(rng.poisson(0.5)):  # service-desk password resets in the directory
            who = pop.people[int(rng.integers(len(pop.people) - 2))]
            me = Actor.of(on_site[int(rng.integers(len(on_site)))])
            win_account(buf, ctx.t(rng.uniform(8.5, 16.5)), 4738, me, who.win_name)
    if ctx.is_maintenance and ctx.day in ctx.plan.campaigns:
        _firmware_campaign(ctx, buf, rng)


def _evening_from_home(ctx: DayContext, buf: DayBuffer, p: Person, rng: np.random.Generator) -> None:
    t0 = rng.uniform(19.0, 21.5)
    t1 = t0 + rng.uniform(0.3, 1.2)
    pool = f"{VPN_POOL}{rng.integers(10, 250)}"
    vpn_session(buf, ctx.t(t0), ctx.t(t1), p.account, p.home_ip, pool, group="it-staff",
                gateway=str(rng.choice(["vpn01", "vpn02"])), failed_first=bool(rng.random() < p.mistype))
    me = Actor.of(p, ip=pool, workstation=_laptop(p))
    rdp(buf, ctx.t(t0 + 0.05), ctx.t(t1 - 0.05), "HES-APP01", me)
    hes_login(buf, ctx.t(t0 + 0.08), me)
    hes_logout(buf, ctx.t(t1 - 0.07), me)


def _firmware_campaign(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator) -> None:
    """The firmware administrator runs the approved campaign inside the maintenance window, from home."""
    pop = ctx.pop
    owner = people_of(pop, "admin")[0][1]
    t0, t1 = 0.1 + rng.uniform(0, 0.25), 3.4 + rng.uniform(0, 0.4)
    pool = f"{VPN_POOL}{rng.integers(10, 250)}"
    vpn_session(buf, ctx.t(t0), ctx.t(t1), owner.account, owner.home_ip, pool, group="it-staff")
    me = Actor.of(owner, ip=pool, workstation=_laptop(owner))
    rdp(buf, ctx.t(t0 + 0.03), ctx.t(t1 - 0.03), "HES-APP01", me)
    hes_login(buf, ctx.t(t0 + 0.05), me)
    for k, (group, image_no) in enumerate(ctx.plan.campaigns[ctx.day]):
        fw = pop.firmware[image_no]
        count = (pop.collectors_per_region[REGIONS.index(group.split("_")[1])] if fw.target_type == "Collector"
                 else pop.group_size(group))
        at = t0 + 0.15 + k * 0.05
        command(buf, ctx.t(at), me, "FirmwareDownload", group=group, count=count, target_type=fw.target_type,
                image=fw.image, sha256=fw.sha256, status="Queued")
        failed = int(rng.binomial(count, 0.02))
        command(buf, ctx.t(at + 2.2 + rng.uniform(0, 0.5)), me, "FirmwareActivate", group=group, count=count,
                target_type=fw.target_type, image=fw.image, sha256=fw.sha256,
                status="PartialSuccess" if failed else "Succeeded", success=count - failed, failure=failed)
    hes_logout(buf, ctx.t(t1 - 0.05), me)


def vendor_support(ctx: DayContext, buf: DayBuffer) -> None:
    """The HES vendor's support desk: VPN from its office range, through JUMP01, in business hours."""
    if not ctx.is_workday:
        return
    rng = ctx.rng("vendor")
    pop = ctx.pop
    vendor = Actor.of(SERVICE_ACCOUNTS["svc_vendor_support"])
    for _ in range(min(2 * len(pop.vendors), rng.poisson(0.8 * len(pop.vendors)))):
        if len(pop.vendors) > 1:  # the support desk's engineers take turns
            vendor = replace(vendor, account=(name := pop.vendors[int(rng.integers(len(pop.vendors)))]),
                             win_name=name)
        t0 = rng.uniform(9.0, 15.0)
        t1 = t0 + rng.uniform(0.3, 1.8)
        pool = f"{VPN_POOL}{rng.integers(10, 250)}"
        vpn_session(buf, ctx.t(t0), ctx.t(t1), vendor.account, str(rng.choice(VENDOR_ADDRESSES)), pool,
                    group="vendor-access", failed_first=bool(rng.random() < 0.04))
        sid = f"{ctx.clock.date:%Y%m%d}-{rng.integers(1000, 9999)}"
        onward = jump_session(buf, ctx.t(t0 + 0.02), ctx.t(t1 - 0.02), vendor, pool, "HES-APP01",
                              policy="vendor-rdp", session_id=sid)
        hes_login(buf, ctx.t(t0 + 0.04), onward)
        for _ in range(rng.poisson(4)):
            at = ctx.t(rng.uniform(t0 + 0.05, t1 - 0.05))
            if rng.random() < 0.5:
                r = int(rng.integers(len(REGIONS)))
                command(buf, at, onward, "PingByEndpoints", target_type="Collector",
                        target=collector_id(r, int(rng.integers(1, pop.collectors_per_region[r] + 1))))
            else:
                command(buf, at, onward, "OnDemandRead", target=pop.meter_ids[int(rng.integers(pop.meters))],
                        status="Succeeded" if rng.random() < 0.9 else "Failed")
        hes_logout(buf, ctx.t(t1 - 0.03), onward)


def dms_operators(ctx: DayContext, buf: DayBuffer) -> None:
    """Control-room operators: console logins per shift and planned switching (open, tag, later
    untag and close), each control followed by the field's status change."""
    rng = ctx.rng("dms_operators")
    pop = ctx.pop
    rate = {"day": 0.22, "evening": 0.12, "night": 0.05}
    for i, p in people_of(pop, "dms_operator"):
        for start, end, logs_in, logs_out in ctx.segments(i):
            # A shift keeps its console past midnight, so the choice hangs on the day it began.
            began = ctx.day if logs_in else ctx.day - 1
            seat = np.random.default_rng([ctx.seed, began, i, 0xC0])
            console = p.console if seat.random() < 0.9 else str(seat.choice(pop.consoles))
            me = Actor.of(p, ip=pop.console_ips[console], workstation=console)
            t_in = start + (float(np.clip(rng.normal(-0.1, 0.05), -0.3, 0.1)) if logs_in else 0.0)
            t_out = min(23.99, end + (float(np.clip(rng.normal(0.05, 0.05), -0.1, 0.3)) if logs_out else 0.0))
            t_in = max(0.0, t_in)
            if logs_in:
                if rng.random() < p.mistype:
                    dms_auth(buf, ctx.t(t_in) - sec(rng.uniform(5, 20)), me, result="failure")
                dms_auth(buf, ctx.t(t_in), me)
            if logs_out:
                dms_auth(buf, ctx.t(t_out), me, action="logout")
            weekend = 0.5 if ctx.clock.is_weekend else 1.0
            for _ in range(rng.poisson(rate[p.shift] * weekend * p.activity * max(0.0, t_out - t_in))):
                feeder = pop.feeders[int(rng.integers(len(pop.feeders)))]
                device = feeder.devices[0] if rng.random() < 0.5 else feeder.devices[1]
                t_open = rng.uniform(t_in + 0.1, max(t_in + 0.11, t_out - 0.5))
                t_close = min(t_out - 0.05, t_open + rng.uniform(0.4, 3.0))
                if t_close <= t_open + 0.1:
                    continue
                note = TAG_NOTES[int(rng.integers(len(TAG_NOTES)))].format(n=rng.integers(40000, 49999),
                                                                           c=rng.integers(1, 9))
                done = dms_control(buf, ctx.t(t_open), me, device, feeder.rtu, "OPEN", rng)
                dms_tag(buf, done + sec(rng.uniform(30, 120)), me, device, place=True, note=note)
                dms_tag(buf, ctx.t(t_close), me, device, place=False, note=note)
                dms_control(buf, ctx.t(t_close) + sec(rng.uniform(20, 90)), me, device, feeder.rtu, "CLOSE", rng)


def dms_engineers(ctx: DayContext, buf: DayBuffer) -> None:
    """Protection and SCADA engineers: office hours, alarm limits and scan settings, rare user admin."""
    if not ctx.is_workday:
        return
    rng = ctx.rng("dms_engineers")
    pop = ctx.pop
    for i, p in people_of(pop, "dms_engineer"):
        if not ctx.works(i):
            continue
        me = Actor.of(p)
        t_in, t_out = 8.0 + rng.uniform(0, 1), 16.0 + rng.uniform(0, 1.5)
        dms_auth(buf, ctx.t(t_in), me)
        dms_auth(buf, ctx.t(t_out), me, action="logout")
        for _ in range(rng.poisson(0.8)):
            feeder = pop.feeders[int(rng.integers(len(pop.feeders)))]
            device = feeder.devices[int(rng.integers(len(feeder.devices)))]
            param = str(rng.choice(["Alarm.Limit[HI]", "Alarm.Limit[LO]", "Deadband", "Scan.IntervalSec"]))
            old = int(rng.integers(2, 60)) * 10
            dms_config(buf, ctx.t(rng.uniform(t_in + 0.2, t_out)), me, device, param, str(old),
                       str(old + int(rng.choice([-20, -10, 10, 20]))))
        if rng.random() < 0.05:
            target = pop.people[int(rng.integers(len(pop.people) - 2))].account
            dms_user_admin(buf, ctx.t(rng.uniform(t_in + 0.2, t_out)), me, target, "PASSWORD_RESET")
