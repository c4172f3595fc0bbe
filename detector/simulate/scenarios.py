"""The extended catalogue: incidents the classic one lacks, and benign routine that must not alarm.

Planted only when :class:`~detector.simulate.settings.Settings` asks for them (``scenarios``,
``routine_extras``), so the classic utility's output does not change. Windows events carry the field
names Windows writes (4697 ``ServiceName``/``ServiceFileName``, 7045 ``ImagePath``, 4698
``TaskName``/``TaskContent``, logon ids as hex).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from detector.simulate.clock import US
from detector.simulate.context import DayContext, people_of
from detector.simulate.incidents import Facts, _from_home, _on_shift, _pick_admin, _pool_ip
from detector.simulate.population import DOMAIN, HOSTS, SERVICE_ACCOUNTS, VENDOR_RANGE
from detector.simulate.records import DayBuffer
from detector.simulate.routine_people import CALLS_PER_HOUR, CONTROL_TYPES
from detector.simulate.sessions import (
    PRIVILEGES,
    Actor,
    audit,
    command,
    hes_login,
    hes_logout,
    jump_session,
    sec,
    vpn_session,
    win_account,
)


def _logon_id(rng: np.random.Generator) -> str:
    return f"0x{int(rng.integers(0x100000, 0xFFFFFFF)):x}"


def _session(buf: DayBuffer, t0: int, t1: int, computer: str, who: Actor, logon_type: int,
             rng: np.random.Generator, *, privileged: bool) -> str:
    """A Windows logon with its logon id on 4624, 4672 and 4634; returns the id."""
    lid = _logon_id(rng)
    fqdn = HOSTS[computer].fqdn
    buf.add("winsec", t0, EventID=4624, Computer=fqdn, TargetUserName=who.win_name, TargetDomainName=DOMAIN,
            LogonType=logon_type, IpAddress=who.ip, WorkstationName=who.workstation,
            AuthenticationPackageName="Kerberos" if logon_type == 10 else "Negotiate", TargetLogonId=lid)
    if privileged:
        buf.add("winsec", t0, EventID=4672, Computer=fqdn, SubjectUserName=who.win_name, SubjectDomainName=DOMAIN,
                PrivilegeList=PRIVILEGES, SubjectLogonId=lid)
    buf.add("winsec", t1, EventID=4634, Computer=fqdn, TargetUserName=who.win_name, TargetDomainName=DOMAIN,
            LogonType=logon_type, TargetLogonId=lid)
    return lid


# ---- malicious ------------------------------------------------------------------------------------

def rdp_new_account_disconnects(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator, hour: float) -> Facts:
    """An account never seen before logs on to the head-end over RDP and disconnects meters."""
    pop = ctx.pop
    me = Actor("kmarsh", "KMarsh", "Operator", "10.20.9.41", "WS-OPS-219")
    t0, t1 = ctx.t(hour), ctx.t(hour + 0.45)
    _session(buf, t0, t1, "HES-APP01", me, 10, rng, privileged=False)
    hes_login(buf, t0 + sec(35), me)
    n = max(5, ctx.settings.burst_size // 3)
    devices = []
    t = t0 + sec(120)
    for m in rng.choice(pop.meters, size=min(n, pop.meters), replace=False):
        t += sec(rng.uniform(8, 30))
        command(buf, t, me, "RemoteDisconnect", target=pop.meter_ids[int(m)],
                control=CONTROL_TYPES["RemoteDisconnect"], service_no=pop.service_no[int(m)])
        devices.append(pop.meter_ids[int(m)])
    hes_logout(buf, min(t + sec(40), t1 - sec(5)), me)
    return Facts(f"kmarsh, an account never seen before, logs on to HES-APP01 over RDP from WS-OPS-219 and "
                 f"remotely disconnects {len(devices)} meters.", ["kmarsh"], devices,
                 ["HES-APP01", "WS-OPS-219"], [me.ip])


def admin_account_weakens_tls(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator, hour: float) -> Facts:
    """A new administrator-named account, from a never-seen address at night, weakens TLS step by step."""
    me = Actor("adm_tnguyen", "adm_tnguyen", "Administrator", "10.20.66.14", "WS-LAB-03", True)
    t = ctx.t(hour)
    hes_login(buf, t, me)
    steps = (("Security.TlsMinVersion", "1.2", "1.1"), ("Security.TlsMinVersion", "1.1", "1.0"),
             ("Security.CipherSuites", "ECDHE-ECDSA-AES256-GCM", "ALL"),
             ("Security.ClientCertificateRequired", "true", "false"))
    for setting, old, new in steps:
        t += sec(rng.uniform(60, 200))
        audit(buf, t, me, "Configuration", "SettingChanged", "GlobalSetting", setting, old, new)
    hes_logout(buf, t + sec(rng.uniform(30, 90)), me)
    return Facts("adm_tnguyen, an administrator-named account never seen before, logs in at night from "
                 "10.20.66.14 (WS-LAB-03) and lowers the head-end's minimum TLS version twice, opens the cipher "
                 "suites and drops client certificates.", ["adm_tnguyen"], hosts=["HES-APP01", "WS-LAB-03"],
                 src_ips=[me.ip], objects=sorted({s for s, _, _ in steps}))


def operator_read_sweep(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator, hour: float) -> Facts:
    """An operator reads and pings about three times their usual number of meters; the extra ones are new."""
    pop = ctx.pop
    op = _on_shift(ctx, "operator", hour, rng)
    me = Actor.of(op)
    usual = CALLS_PER_HOUR[op.shift] * op.activity * 8.0 * 2.0  # calls a shift, about two commands each
    n = int(max(20, round(2.0 * usual)))
    meters = rng.choice(pop.meters, size=min(n, pop.meters), replace=False)
    local = hour * 3600 + np.sort(rng.uniform(0, 2.0 * 3600, len(meters)))
    t = ctx.utc(local)
    devices = []
    for when, m in zip(t, meters, strict=True):
        command(buf, int(when), me, "OnDemandRead" if rng.random() < op.read_share else "PingByEndpoints",
                target=pop.meter_ids[int(m)], status="Succeeded" if rng.random() < 0.95 else "Failed")
        devices.append(pop.meter_ids[int(m)])
    return Facts(f"Operator {op.account} reads and pings {len(devices)} meters in two hours, about twice their "
                 "usual shift's worth on top of it, none of which they had touched before.", [op.account],
                 devices, [], [op.ip])


def vendor_opens_admin_rule(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator, hour: float) -> Facts:
    """In an ordinary-looking vendor session, the administrative access rule is opened to the world."""
    name = ctx.pop.vendors[0]
    vendor = Actor(name, name, "Administrator", SERVICE_ACCOUNTS["svc_vendor_support"].ip, "JUMP01", True)
    pool = _pool_ip(rng)
    external = f"{VENDOR_RANGE}{int(rng.choice([14, 15, 27, 28]))}"
    t0, t1 = hour, hour + 0.6
    vpn_session(buf, ctx.t(t0), ctx.t(t1), name, external, pool, group="vendor-access")
    onward = jump_session(buf, ctx.t(t0 + 0.02), ctx.t(t1 - 0.02), vendor, pool, "HES-APP01", policy="vendor-rdp",
                          session_id=f"{ctx.clock.date:%Y%m%d}-{rng.integers(1000, 9999)}")
    hes_login(buf, ctx.t(t0 + 0.04), onward)
    audit(buf, ctx.t(t0 + 0.2), onward, "Configuration", "SettingChanged", "GlobalSetting",
          "Network.AdminAllowedCidr", "10.40.8.0/24", "0.0.0.0/0")
    hes_logout(buf, ctx.t(t1 - 0.04), onward)
    return Facts(f"The vendor account {name}, in a session like its usual ones, opens the head-end's "
                 "administrative network rule from 10.40.8.0/24 to 0.0.0.0/0.", [name],
                 hosts=["JUMP01", "HES-APP01"], src_ips=[external, pool], objects=["Network.AdminAllowedCidr"])


def retention_cut(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator, hour: float) -> Facts:
    p = _pick_admin(ctx, 7)
    me = Actor.of(p)
    audit(buf, ctx.t(hour), me, "Configuration", "SettingChanged", "GlobalSetting", "Audit.RetentionDays", "365", "1")
    return Facts(f"{p.account} cuts the audit retention of the head-end from 365 days to 1, in office hours, "
                 "from their own workstation.", [p.account], hosts=[p.workstation], src_ips=[p.ip],
                 objects=["Audit.RetentionDays"])


def local_admin_night(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator, hour: float) -> Facts:
    """At night an administrator creates a local administrator on a server; it is used within hours."""
    p = _pick_admin(ctx, 8)
    _, pool = _from_home(ctx, buf, p, hour, 0.5, rng)  # onto HES-APP01
    server = "HES-APP01"
    fqdn = HOSTS[server].fqdn
    t = ctx.t(hour + 0.15)
    lid = _logon_id(rng)
    buf.add("winsec", t, EventID=4720, Computer=fqdn, SubjectUserName=p.win_name, SubjectDomainName=DOMAIN,
            TargetUserName="sqlmaint", TargetDomainName=server, SubjectLogonId=lid)
    buf.add("winsec", t + sec(9), EventID=4732, Computer=fqdn, SubjectUserName=p.win_name,
            SubjectDomainName=DOMAIN, TargetUserName="Administrators", TargetDomainName="Builtin",
            MemberName="-", SubjectLogonId=lid)
    new = Actor("sqlmaint", "sqlmaint", "", pool, "LT-" + p.workstation.split("-", 1)[-1], True)
    later = hour + 0.15 + float(rng.uniform(1.0, 2.5))
    _session(buf, ctx.t(later), ctx.t(later + 0.4), server, new, 10, rng, privileged=True)
    vpn_session(buf, ctx.t(later - 0.02), ctx.t(later + 0.45), p.account, p.home_ip, pool, group="it-staff")
    return Facts(f"{p.account} creates the local account sqlmaint on {server} at night, adds it to Administrators, "
                 "and a little later someone logs on to the server with it over RDP.", [p.account, "sqlmaint"],
                 hosts=[server], src_ips=[p.home_ip, pool], objects=["sqlmaint"])


def service_task_new_host(ctx: DayContext, buf: DayBuffer, rng: np.random.Generator, hour: float) -> Facts:
    """An administrator logs on to a server they never used, installs PSEXESVC and creates a scheduled task."""
    p = _pick_admin(ctx, 9)
    me = Actor.of(p)
    server = "HES-APP02"
    fqdn = HOSTS[server].fqdn
    t0, t1 = ctx.t(hour), ctx.t(hour + 0.35)
    lid = _session(buf, t0, t1, server, me, 3, rng, privileged=True)
    t = t0 + sec(rng.uniform(2, 6))
    buf.add("winsec", t, EventID=4697, Computer=fqdn, SubjectUserName=p.win_name, SubjectDomainName=DOMAIN,
            SubjectLogonId=lid, ServiceName="PSEXESVC", ServiceFileName="%SystemRoot%\\PSEXESVC.exe",
            ServiceType="0x10", ServiceStartType="3", ServiceAccount="LocalSystem")
    buf.add("winsec", t + sec(0.1), EventID=7045, Computer=fqdn, ServiceName="PSEXESVC",
            ImagePath="%SystemRoot%\\PSEXESVC.exe", ServiceType="user mode service", StartType="demand start",
            AccountName="LocalSystem", Channel="System")
    task = "\\Microsoft\\Windows\\Maintenance\\WinSvcHealth"
    content = ('<?xml version="1.0" encoding="UTF-16"?><Task version="1.2"><Triggers><CalendarTrigger>'
               '<StartBoundary>2026-01-01T02:00:00</StartBoundary><ScheduleByDay><DaysInterval>1</DaysInterval>'
               '</ScheduleByDay></CalendarTrigger></Triggers><Actions Context="Author"><Exec><Command>'
               'C:\\ProgramData\\svchealth.exe</Command></Exec></Actions></Task>')
    buf.add("winsec", t + sec(rng.uniform(60, 240)), EventID=4698, Computer=fqdn, SubjectUserName=p.win_name,
            SubjectDomainName=DOMAIN, SubjectLogonId=lid, TaskName=task, TaskContent=content)
    return Facts(f"{p.account} logs on to {server}, a server they never used, installs the PSEXESVC service "
                 f"(4697, 7045) and creates the scheduled task {task} (4698).", [p.account], hosts=[server],
                 src_ips=[p.ip], objects=["PSEXESVC", task])


# ---- benign routine (``routine_extras``) -----------------------------------------------------------

QA_ACCOUNT = Actor("svc_meterqa", "svc_meterqa", "System", "10.10.4.12", "HES-APP02")
QA_WEEKDAYS = (1, 3)  # Tuesday and Thursday
QA_HOUR = 10.0


def meter_qa_job(ctx: DayContext, buf: DayBuffer) -> Facts | None:
    """Tue/Thu 10:00: a service job reads the next slice of meters, route by route, through the
    territory. Every run reaches meters (and routes) the job never read before."""
    if ctx.clock.weekday not in QA_WEEKDAYS:
        return None
    pop = ctx.pop
    run = sum(1 for d in range(ctx.day) if (ctx.clock.weekday - (ctx.day - d)) % 7 in QA_WEEKDAYS)
    size = max(20, pop.meters // 40)
    order = pop.route_order
    pick = order[(run * size + np.arange(size)) % len(order)]
    rng = ctx.rng("meter_qa")
    t0 = ctx.t(QA_HOUR)
    hes_login(buf, t0, QA_ACCOUNT)
    t = t0 + sec(5) + (np.sort(rng.uniform(0, 600, size)) * US).astype(np.int64)
    for when, m in zip(t, pick, strict=True):
        command(buf, int(when), QA_ACCOUNT, "OnDemandRead", target=pop.meter_ids[int(m)],
                status="Succeeded" if rng.random() < 0.96 else "Failed")
    hes_logout(buf, int(t[-1]) + sec(20), QA_ACCOUNT)
    routes = sorted({int(r) for r in pop.meter_route[pick]})
    return Facts(f"Benign routine: the Tue/Thu 10:00 meter-QA job reads {size} meters of routes "
                 f"{', '.join(map(str, routes))}, the next slice of its walk through the territory, none of "
                 "which it read before.", ["svc_meterqa"], [pop.meter_ids[int(m)] for m in pick], ["HES-APP01"],
                 [QA_ACCOUNT.ip])


ROUND_SERVERS = ("HES-APP01", "HES-APP02", "HES-DB01", "ADMS-APP01", "ADMS-FEP02", "MDM01", "OMS01", "CIS01",
                 "KMS01", "BACKUP01", "BILL01", "DC01")


def admin_rounds(ctx: DayContext, buf: DayBuffer) -> Facts | None:
    """Patch and health-check rounds: an administrator logs on to several servers in an hour, each
    logon with special privileges (4624 + 4672), the servers drawn afresh every time."""
    if not ctx.is_workday:
        return None
    rng = ctx.rng("admin_rounds")
    staff = [(i, p) for i, p in people_of(ctx.pop, "admin") if ctx.works(i)]
    accounts: list[str] = []
    hosts: set[str] = set()
    for _, p in staff:
        if rng.random() >= 0.3:
            continue
        me = Actor.of(p)
        start = float(rng.uniform(ctx.pop.office_start + 1.0, ctx.pop.office_start + 7.0))
        servers = rng.choice(len(ROUND_SERVERS), size=int(rng.integers(3, 7)), replace=False)
        for k, s in enumerate(servers):
            t0 = start + k * float(rng.uniform(0.12, 0.2))
            _session(buf, ctx.t(t0), ctx.t(t0 + float(rng.uniform(0.05, 0.15))), ROUND_SERVERS[int(s)], me, 10,
                     rng, privileged=True)
            hosts.add(ROUND_SERVERS[int(s)])
        accounts.append(p.account)
    if not accounts:
        return None
    return Facts("Benign routine: patch rounds, administrators log on to several servers within an hour, "
                 "each logon with special privileges.", accounts, hosts=sorted(hosts))


def on_call_night(ctx: DayContext, buf: DayBuffer) -> Facts | None:
    """The week's on-call administrator is called out some nights: VPN from home, RDP to the head-end,
    a few reads and pings to check on a problem."""
    rng = ctx.rng("on_call")
    if rng.random() >= 0.25:
        return None
    admins = [p for _, p in people_of(ctx.pop, "admin")]
    p = admins[(ctx.day // 7) % len(admins)]
    hour = float(rng.uniform(0.5, 4.5))
    length = float(rng.uniform(0.3, 0.9))
    me, pool = _from_home(ctx, buf, p, hour, length, rng)
    hes_login(buf, ctx.t(hour + 0.04), me)
    devices = []
    for _ in range(int(rng.integers(2, 7))):
        m = int(rng.integers(ctx.pop.meters))
        command(buf, ctx.t(hour + float(rng.uniform(0.06, length - 0.1))), me,
                "OnDemandRead" if rng.random() < 0.5 else "PingByEndpoints", target=ctx.pop.meter_ids[m])
        devices.append(ctx.pop.meter_ids[m])
    hes_logout(buf, ctx.t(hour + length - 0.05), me)
    return Facts(f"Benign routine: {p.account}, on call this week, is called out at night and checks meters "
                 "over the VPN.", [p.account], devices, ["HES-APP01"], [p.home_ip, pool])


PATCH_DRIVERS = ("MpKslDrv", "WinDefend", "Sense")


def patch_night(ctx: DayContext, buf: DayBuffer) -> Facts | None:
    """The second Thursday of the month, 21:00-23:30: administrators patch the servers. Each server
    gets a privileged RDP logon, an installed service (Defender's driver, an agent update) and the
    update orchestrator's scheduled task."""
    d = ctx.clock.date
    if d.weekday() != 3 or not 8 <= d.day <= 14:
        return None
    rng = ctx.rng("patch_night")
    admins = [p for _, p in people_of(ctx.pop, "admin")]
    hosts: list[str] = []
    accounts: list[str] = []
    for k, server in enumerate(ROUND_SERVERS):
        p = admins[k % len(admins)]
        me = Actor.of(p)
        t0 = 21.0 + k * float(rng.uniform(0.1, 0.18))
        lid = _session(buf, ctx.t(t0), ctx.t(t0 + float(rng.uniform(0.2, 0.4))), server, me, 10, rng,
                       privileged=True)
        fqdn = HOSTS[server].fqdn
        t = ctx.t(t0 + 0.05)
        name = PATCH_DRIVERS[int(rng.integers(len(PATCH_DRIVERS)))]
        image = (f"C:\\ProgramData\\Microsoft\\Windows Defender\\Definition Updates\\"
                 f"{{{rng.bytes(4).hex().upper()}-0000-4000-8000-{rng.bytes(6).hex().upper()}}}\\{name}.sys")
        buf.add("winsec", t, EventID=4697, Computer=fqdn, SubjectUserName=p.win_name, SubjectDomainName=DOMAIN,
                SubjectLogonId=lid, ServiceName=name, ServiceFileName=image, ServiceType="0x1",
                ServiceStartType="3", ServiceAccount="")
        buf.add("winsec", t + sec(0.1), EventID=7045, Computer=fqdn, ServiceName=name, ImagePath=image,
                ServiceType="kernel mode driver", StartType="demand start", AccountName="", Channel="System")
        buf.add("winsec", t + sec(rng.uniform(20, 90)), EventID=4698, Computer=fqdn, SubjectUserName=f"{server}$",
                SubjectDomainName=DOMAIN, SubjectLogonId="0x3e7",
                TaskName="\\Microsoft\\Windows\\UpdateOrchestrator\\Reboot_AC",
                TaskContent='<?xml version="1.0" encoding="UTF-16"?><Task version="1.6"><Actions Context="Author">'
                            '<Exec><Command>%systemroot%\\system32\\MusNotification.exe</Command>'
                            '<Arguments>RebootDialog</Arguments></Exec></Actions></Task>')
        hosts.append(server)
        accounts.append(p.account)
    return Facts("Benign routine: patch night, administrators log on to every server with special privileges; "
                 "each server installs Defender drivers and the update orchestrator's reboot task.",
                 sorted(set(accounts)), hosts=hosts)


def onboarding(ctx: DayContext, buf: DayBuffer) -> Facts | None:
    """Once, on the first working day after the first scored day: an administrator creates an operator
    account, adds it to the operators' group, and the new operator logs in from a new workstation."""
    first = next((d for d in range(ctx.baseline_days + 1, ctx.baseline_days + 8)
                  if (ctx.clock.weekday + d - ctx.day) % 7 < 5), -1)
    if ctx.day != first or ctx.baseline_days == 0:
        return None
    rng = ctx.rng("onboarding")
    admin = [p for _, p in people_of(ctx.pop, "admin")][-1]
    me = Actor.of(admin)
    new = Actor("lpatel", "LPatel", "Operator", "10.20.8.77", "WS-OPS-301")
    t = ctx.t(float(rng.uniform(9.0, 10.5)))
    win_account(buf, t, 4720, me, new.win_name)
    win_account(buf, t + sec(20), 4728, me, "HES Operators", member="CN=Laura Patel,OU=Operations,DC=util,DC=local")
    audit(buf, t + sec(300), me, "UserManagement", "UserCreated", "User", new.account, None, "Role=Operator")
    audit(buf, t + sec(330), me, "UserManagement", "RoleAssigned", "User", new.account, None, "Role=Operator")
    t2 = t + sec(rng.uniform(1800, 5400))
    hes_login(buf, t2, new, mistype=True, rng=rng)
    devices = []
    for k in range(int(rng.integers(8, 20))):
        m = int(rng.integers(ctx.pop.meters))
        command(buf, t2 + sec(60 + 120 * k + rng.uniform(0, 60)), new,
                "OnDemandRead" if rng.random() < 0.6 else "PingByEndpoints", target=ctx.pop.meter_ids[m])
        devices.append(ctx.pop.meter_ids[m])
    hes_logout(buf, t2 + sec(60 + 120 * len(devices) + 200), new)
    return Facts(f"Benign routine: {admin.account} onboards the new operator lpatel, who logs in from a new "
                 "workstation and starts on customer calls.", [admin.account, "lpatel"], devices,
                 ["WS-OPS-301", "HES-APP01", "DC01"], [new.ip], ["lpatel"])


RoutineExtra = Callable[[DayContext, DayBuffer], "Facts | None"]
ROUTINE_EXTRAS: tuple[tuple[str, RoutineExtra], ...] = (
    ("scheduled_job_new_meters", meter_qa_job),
    ("admin_server_rounds", admin_rounds),
    ("on_call_night", on_call_night),
    ("patch_night", patch_night),
    ("new_hire_onboarding", onboarding),
)

__all__ = ["ROUTINE_EXTRAS", "admin_account_weakens_tls", "local_admin_night", "operator_read_sweep",
           "rdp_new_account_disconnects", "retention_cut", "service_task_new_host", "vendor_opens_admin_rule"]
