"""Routine of the machines: integration service accounts on rigid schedules, machine accounts,
backups, key renewals in the maintenance window, and the field devices seen by the DMS.

The per-meter work here (re-reads of missing intervals, connectivity and outage pings, move-in and
non-payment connects) is built as whole arrays; it carries most of the volume and scales with
``--meters``.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from detector.simulate.clock import DAY, HOUR, US
from detector.simulate.context import DayContext
from detector.simulate.population import DOMAIN, HOSTS, REGIONS, SERVICE_ACCOUNTS
from detector.simulate.records import DayBuffer
from detector.simulate.routine_people import CONTROL_TYPES
from detector.simulate.sessions import (
    Actor,
    command,
    dms_alarm,
    dms_control,
    hes_login,
    hes_logout,
    sec,
    win_logoff,
    win_logon,
)

MDM_BATCHES = (2.0, 10.0, 18.0)  # local hours the MDM asks for missing interval data
CONNECTIVITY_CHECK = 6.0
REGISTER_READ = 0.08
TIME_SYNC = 3.25
DEMAND_RESET = 1.5
CIS_BATCHES = (9.0, 13.5)
BACKUP = 23.1
# Hours at which outages start: more in the afternoon and evening (heat, storms, traffic).
_OUTAGE_HOURS = np.array([2, 2, 1, 1, 1, 1, 2, 3, 3, 3, 3, 4, 4, 5, 6, 6, 6, 6, 5, 4, 3, 3, 2, 2], dtype=float)


def _svc(name: str) -> Actor:
    return Actor.of(SERVICE_ACCOUNTS[name])


def meter_commands(ctx: DayContext, who: Actor, name: str, t: np.ndarray, meters: np.ndarray,
                   ok: np.ndarray | float, rng: np.random.Generator, *, with_service_no: bool = False
                   ) -> pl.DataFrame:
    """One command per meter, as a frame: the cheap path that carries the bulk of the volume."""
    n = len(t)
    success = rng.random(n) < ok
    frame = pl.DataFrame({
        "t": t.astype(np.int64),
        "user": pl.repeat(who.account, n, eager=True),
        "client": pl.repeat(who.ip, n, eager=True),
        "command": pl.repeat(name, n, eager=True),
        "controlType": pl.repeat(CONTROL_TYPES.get(name), n, eager=True, dtype=pl.String),
        "targetType": pl.repeat("ElectricMeter", n, eager=True),
        "targetId": ctx.pop.meter_ids.gather(meters),
        "status": np.where(success, "Succeeded", "Failed"),
    })
    if with_service_no:
        frame = frame.with_columns(serviceAccount=ctx.pop.service_no.gather(meters))
    return frame


def _group(buf: DayBuffer, t: int, who: Actor, name: str, group: str, count: int,
           rng: np.random.Generator, fail_rate: float) -> None:
    failed = int(rng.binomial(count, fail_rate))
    command(buf, t, who, name, group=group, count=count, control=CONTROL_TYPES.get(name),
            status="PartialSuccess" if failed else "Succeeded", success=count - failed, failure=failed)


def _api_session(buf: DayBuffer, who: Actor, t0: int, t1: int) -> None:
    hes_login(buf, t0, who)
    hes_logout(buf, t1, who)


def service_accounts(ctx: DayContext, buf: DayBuffer) -> None:
    rng = ctx.rng("service_accounts")
    pop = ctx.pop
    M = pop.meters
    mdm, sched, billing, oms, cis, keymgr = (_svc(n) for n in (
        "svc_mdm", "svc_scheduler", "svc_billing", "svc_oms", "svc_cis", "svc_keymgr"))

    # Daily register reads and time sync: one group command per region.
    for k, region in enumerate(REGIONS):
        size = pop.group_size(f"ALL_{region}")
        _group(buf, ctx.t(REGISTER_READ) + sec(k * 1.2), sched, "OnDemandRead", f"ALL_{region}", size, rng, 0.03)
        _group(buf, ctx.t(TIME_SYNC) + sec(k * 1.1), sched, "TimeSync", f"ALL_{region}", size, rng, 0.01)

    # The MDM re-reads meters with missing intervals, three times a day, mostly the same poor-comm ones.
    for hour in MDM_BATCHES:
        t0 = hour * HOUR + rng.uniform(0, 40)
        poor = pop.poor_comm[rng.random(len(pop.poor_comm)) < 0.45]
        other = rng.integers(0, M, rng.binomial(M, 0.015))
        meters = np.concatenate([poor, other])
        span = 600 + 900 * min(1.0, len(meters) / 20_000)
        reads = ctx.utc(t0 + 20 + np.sort(rng.uniform(0, span, len(meters))))
        ok = np.concatenate([np.full(len(poor), 0.7), np.full(len(other), 0.97)])
        buf.add_frame("hes_commands", meter_commands(ctx, mdm, "OnDemandRead", reads, meters, ok, rng))
        _api_session(buf, mdm, ctx.clock.at(t0 / HOUR), ctx.clock.at((t0 + span + 80) / HOUR))

    # Connectivity check of every poor-comm meter, early morning.
    t0 = CONNECTIVITY_CHECK * HOUR + rng.uniform(0, 30)
    span = 900 + 1200 * min(1.0, len(pop.poor_comm) / 50_000)
    pings = ctx.utc(t0 + 10 + np.sort(rng.uniform(0, span, len(pop.poor_comm))))
    buf.add_frame("hes_commands", meter_commands(ctx, mdm, "PingByEndpoints", pings, pop.poor_comm, 0.62, rng))
    _api_session(buf, mdm, ctx.clock.at(t0 / HOUR), ctx.clock.at((t0 + span + 60) / HOUR))

    # Billing demand resets, one billing cycle per business day.
    if ctx.is_workday and "svc_billing" not in ctx.settings.services_off:
        cycle = _business_day_of_month(ctx)
        if cycle <= 21:
            t = ctx.t(DEMAND_RESET) + sec(rng.uniform(0, 20))
            _api_session(buf, billing, t - sec(3), t + sec(35))
            _group(buf, t, billing, "DemandReset", f"BILLCYCLE_{cycle}", pop.group_size(f"BILLCYCLE_{cycle}"),
                   rng, 0.015)

    # Customer system: move-out disconnects, move-in and paid-up reconnects, in two batches.
    if ctx.is_workday and "svc_cis" not in ctx.settings.services_off:
        for hour in CIS_BATCHES:
            t0 = hour * HOUR + rng.uniform(0, 60)
            last = t0 + 15
            for name, rate in (("RemoteDisconnect", 0.00025), ("RemoteConnect", 0.00035)):
                n = rng.binomial(M, rate)
                meters = rng.integers(0, M, n)
                local = t0 + 15 + np.sort(rng.uniform(0, 60 + n * 1.5, n))
                last = max(last, float(local.max(initial=0.0)))
                buf.add_frame("hes_commands", meter_commands(ctx, cis, name, ctx.utc(local), meters, 0.93, rng,
                                                             with_service_no=True))
            _api_session(buf, cis, ctx.clock.at(t0 / HOUR), ctx.clock.at((last + 40) / HOUR))

    # Outage management pings the meters behind a suspected outage, then again after restoration.
    outages(ctx, buf, rng.poisson(1.0 + M / 4000), rng, oms)
    for begin, end in ((0.0, 12.0), (12.0, 24.0)):  # the OMS holds a twelve-hour API session
        _api_session(buf, oms, ctx.clock.at(begin) + sec(rng.uniform(0.5, 3)),
                     ctx.clock.at(end) - sec(rng.uniform(1, 3)))

    # Key renewals: only in the maintenance window, two routes a week.
    if ctx.is_maintenance:
        t = ctx.t(1.0 + rng.uniform(0, 0.3))
        _api_session(buf, keymgr, t - sec(4), t + sec(95))
        week = ctx.day // 7
        for k in range(2):
            route = (week * 2 + k) % pop.routes + 1
            _group(buf, t + sec(k * 41), keymgr, "KeyRenewal", f"ROUTE_{route}",
                   pop.group_size(f"ROUTE_{route}"), rng, 0.03)


def outages(ctx: DayContext, buf: DayBuffer, clusters: int, rng: np.random.Generator, oms: Actor,
            hours: np.ndarray | None = None) -> None:
    """Pings of clusters of meters on one route: failing while out, succeeding once restored."""
    if clusters == 0:
        return
    pop = ctx.pop
    weights = _OUTAGE_HOURS / _OUTAGE_HOURS.sum()
    start = (hours if hours is not None else rng.choice(24, clusters, p=weights) + rng.random(clusters)) * HOUR
    size = rng.integers(3, 41, clusters)
    route_of_cluster = rng.integers(1, pop.routes + 1, clusters)
    order, bounds = pop.route_order, pop.route_bounds
    first, count = bounds[route_of_cluster - 1], np.diff(bounds)[route_of_cluster - 1]
    size = np.minimum(size, np.maximum(count, 1))
    pick = np.repeat(first, size) + (rng.random(size.sum()) * np.repeat(np.maximum(count, 1), size)).astype(np.int64)
    meters = order[np.minimum(pick, len(order) - 1)]
    t_out = np.repeat(start, size) + rng.uniform(5, 120, size.sum())
    restore = np.repeat(rng.uniform(1800, 4 * HOUR, clusters), size)
    t = np.concatenate([t_out, t_out + restore])
    m = np.concatenate([meters, meters])
    ok = np.concatenate([np.full(len(meters), 0.1), np.full(len(meters), 0.96)])
    keep = t < DAY - 1
    buf.add_frame("hes_commands", meter_commands(ctx, oms, "PingByEndpoints", ctx.utc(t[keep]), m[keep],
                                                 ok[keep], rng))


def _business_day_of_month(ctx: DayContext) -> int:
    d = ctx.clock.date
    return sum(1 for k in range(1, d.day + 1) if d.replace(day=k).weekday() < 5)


def windows_machines(ctx: DayContext, buf: DayBuffer) -> None:
    """Machine accounts and the backup agent: the steady background of every server's Security log."""
    rng = ctx.rng("windows_machines")
    pairs = (("HES-APP01", "HES-DB01", 1800.0), ("ADMS-APP01", "HES-APP01", 3600.0), ("HES-APP02", "HES-DB01", 1800.0))
    frames = []
    for source, target, every in pairs:
        local = np.arange(rng.uniform(0, every), DAY - 5, every)
        local = local + rng.uniform(0, 2.0, len(local))
        t = ctx.utc(local)
        n = len(t)
        common = {"Computer": pl.repeat(HOSTS[target].fqdn, n, eager=True),
                  "TargetUserName": pl.repeat(f"{source}$", n, eager=True),
                  "TargetDomainName": pl.repeat(DOMAIN, n, eager=True),
                  "LogonType": pl.repeat(3, n, eager=True, dtype=pl.Int64)}
        frames.append(pl.DataFrame({"t": t, "EventID": pl.repeat(4624, n, eager=True, dtype=pl.Int64), **common,
                                    "IpAddress": pl.repeat(HOSTS[source].ip, n, eager=True),
                                    "WorkstationName": pl.repeat("-", n, eager=True),
                                    "AuthenticationPackageName": pl.repeat("Kerberos", n, eager=True)}))
        frames.append(pl.DataFrame({"t": t + (rng.uniform(0.2, 3.0, n) * US).astype(np.int64),
                                    "EventID": pl.repeat(4634, n, eager=True, dtype=pl.Int64), **common}))
    for frame in frames:
        buf.add_frame("winsec", frame)
    backup = _svc("svc_backup")
    for k, server in enumerate(("HES-APP01", "HES-DB01", "ADMS-APP01")):
        t0 = ctx.t(BACKUP) + sec(k * 31 + rng.uniform(0, 10))
        win_logon(buf, t0, server, backup, 3)
        win_logoff(buf, t0 + sec(rng.uniform(1500, 2700)), server, backup, 3)


def dms_field(ctx: DayContext, buf: DayBuffer) -> None:
    """What the field reports by itself: recloser operations, breaker trips (closed again by the
    operator on duty), RTU communication alarms, and the VVO switching capacitor banks."""
    rng = ctx.rng("dms_field")
    pop = ctx.pop
    for feeder in pop.feeders:
        breaker, *rest = feeder.devices
        for device in (d for d in rest if "-R" in d):
            for _ in range(rng.poisson(0.04)):
                t = ctx.t(float(rng.choice(24, p=_OUTAGE_HOURS / _OUTAGE_HOURS.sum()) + rng.random()))
                dms_alarm(buf, t, device, feeder.rtu, "OPEN", commanded=False)
                dms_alarm(buf, t + sec(rng.uniform(2, 8)), device, feeder.rtu, "CLOSED", commanded=False)
        if rng.random() < 0.008:
            hour = float(rng.uniform(0, 22))
            breaker_trip(ctx, buf, breaker, feeder.rtu, hour, rng)
    vvo = Actor("svc_vvo", "svc_vvo", "Automation", HOSTS["ADMS-APP01"].ip, "VVO-AUTO")
    if ctx.is_workday or rng.random() < 0.5:
        for feeder in pop.feeders:
            for cap in (d for d in feeder.devices if "-CAP" in d):
                dms_control(buf, ctx.t(6.5 + rng.uniform(0, 1.5)), vvo, cap, feeder.rtu, "CLOSE", rng)
                dms_control(buf, ctx.t(20.5 + rng.uniform(0, 2.0)), vvo, cap, feeder.rtu, "OPEN", rng)
    for rtu in sorted({f.rtu for f in pop.feeders}):
        if rng.random() < 0.05:
            t = ctx.t(float(rng.uniform(0, 23)))
            for when, prev, new in ((t, "OK", "FAIL"), (t + sec(rng.uniform(60, 1200)), "FAIL", "OK")):
                buf.add("dms", when, pri=132, host="adms-fep02", app="ADMS-FEP", procid="2201", msgid="ALARM",
                        device=rtu, rtu=rtu, proto="DNP3", point="COMM.STATUS", prev=prev, new=new,
                        commanded="false", msg=f"Communication {prev}->{new} {rtu}")


def breaker_trip(ctx: DayContext, buf: DayBuffer, breaker: str, rtu: str, hour: float,
                 rng: np.random.Generator) -> str | None:
    """An uncommanded trip; the operator on duty closes the breaker after the crew's patrol.
    Returns who closed it."""
    dms_alarm(buf, ctx.t(hour), breaker, rtu, "OPEN", commanded=False)
    close_at = min(23.9, hour + rng.uniform(0.3, 1.5))
    duty = ctx.on_duty("dms_operator", close_at)
    if not duty:
        return None
    p = ctx.pop.people[duty[int(rng.integers(len(duty)))]]
    me = Actor.of(p)
    dms_control(buf, ctx.t(close_at), me, breaker, rtu, "CLOSE", rng)
    return p.account


# Integrations some utilities have and others not (``Settings.extra_services``), in this order.
EXTRA_SERVICES = ("svc_analytics", "svc_gis", "svc_prepay", "svc_wfm", "svc_dr")


def extra_service_plan(seed: int, k: int) -> tuple[float, tuple[int, ...], str, float]:
    """(local hour, weekdays, command, share of meters) of extra integration *k*, fixed for the run."""
    rng = np.random.default_rng([seed, 0x5E5, k])
    hour = float(rng.uniform(0.0, 23.0))
    weekdays = ((0, 1, 2, 3, 4, 5, 6), (0, 1, 2, 3, 4), (int(rng.integers(0, 7)),))[int(rng.integers(3))]
    name = ("OnDemandRead", "PingByEndpoints")[int(rng.integers(2))]
    return hour, weekdays, name, float(rng.uniform(0.002, 0.02))


def extra_integrations(ctx: DayContext, buf: DayBuffer) -> None:
    """Each extra integration reads or pings a sample of meters on its own schedule, through the API."""
    for k, account in enumerate(EXTRA_SERVICES[:ctx.settings.extra_services]):
        hour, weekdays, name, share = extra_service_plan(ctx.seed, k)
        if ctx.clock.weekday not in weekdays:
            continue
        rng = ctx.rng(f"extra_service_{k}")
        who = Actor(account, account, "Integration", f"10.10.9.{10 + k}", account.removeprefix("svc_").upper() + "01")
        meters = rng.integers(0, ctx.pop.meters, max(1, rng.binomial(ctx.pop.meters, share)))
        t0 = hour * HOUR + rng.uniform(0, 60)
        span = 120 + 2.0 * len(meters)
        t = ctx.utc(t0 + 5 + np.sort(rng.uniform(0, span, len(meters))))
        buf.add_frame("hes_commands", meter_commands(ctx, who, name, t, meters, 0.95, rng))
        _api_session(buf, who, ctx.clock.at(t0 / HOUR), ctx.clock.at(min(23.99, (t0 + span + 30) / HOUR)))
