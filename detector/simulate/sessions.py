"""Building blocks that leave the same trail real sessions leave, across every source they touch.

A login to the HES web client writes an audit row and a Windows network logon; an RDP session
writes a logon, special privileges and a logoff; a vendor session crosses the VPN, the jump host
and the target server; a DMS control writes select, operate and the field status change. Routine
and incidents both use these, so an incident's events are shaped exactly like routine ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detector.simulate.clock import US
from detector.simulate.population import DOMAIN, HOSTS, Person, ServiceAccount
from detector.simulate.records import DayBuffer

PRIVILEGES = "\r\n\t\t\t".join(("SeSecurityPrivilege", "SeBackupPrivilege", "SeRestorePrivilege",
                                "SeTakeOwnershipPrivilege", "SeDebugPrivilege", "SeSystemEnvironmentPrivilege"))
FAILED_LOGON = {"Status": "0xc000006d", "SubStatus": "0xc000006a"}  # bad password
UNKNOWN_USER = {"Status": "0xc000006d", "SubStatus": "0xc0000064"}
FEP = ("adms-fep02", "ADMS-FEP", "2201")
APP = ("adms-app01", "ADMS", "4312")


@dataclass(frozen=True)
class Actor:
    """Who does something, and from where: the same person may act from another address."""

    account: str  # HES / DMS spelling, lower case
    win_name: str  # Active Directory spelling
    role: str
    ip: str
    workstation: str
    privileged: bool = False

    @classmethod
    def of(cls, who: Person | ServiceAccount, *, ip: str | None = None, workstation: str | None = None
           ) -> Actor:
        if isinstance(who, Person):
            return cls(who.account, who.win_name, who.role, ip or who.ip, workstation or who.workstation,
                       who.kind == "admin")
        return cls(who.account, who.account, who.role, ip or who.ip, workstation or who.host,
                   who.role in ("Administrator", "Backup", "Security"))


def sec(seconds: float) -> int:
    return round(seconds * US)


# ---- Windows -------------------------------------------------------------------------------------

def win_logon(buf: DayBuffer, t: int, computer: str, who: Actor, logon_type: int, *,
              privileged: bool | None = None, package: str = "Negotiate") -> None:
    buf.add("winsec", t, EventID=4624, Computer=HOSTS[computer].fqdn, TargetUserName=who.win_name,
            TargetDomainName=DOMAIN, LogonType=logon_type, IpAddress=who.ip, WorkstationName=who.workstation,
            AuthenticationPackageName=package)
    if who.privileged if privileged is None else privileged:
        buf.add("winsec", t, EventID=4672, Computer=HOSTS[computer].fqdn, SubjectUserName=who.win_name,
                SubjectDomainName=DOMAIN, PrivilegeList=PRIVILEGES)


def win_failed(buf: DayBuffer, t: int, computer: str, who: Actor, logon_type: int, *, unknown: bool = False
               ) -> None:
    buf.add("winsec", t, EventID=4625, Computer=HOSTS[computer].fqdn, TargetUserName=who.win_name,
            TargetDomainName=DOMAIN, LogonType=logon_type, IpAddress=who.ip, WorkstationName=who.workstation,
            AuthenticationPackageName="NTLM", **(UNKNOWN_USER if unknown else FAILED_LOGON))


def win_logoff(buf: DayBuffer, t: int, computer: str, who: Actor, logon_type: int) -> None:
    buf.add("winsec", t, EventID=4634, Computer=HOSTS[computer].fqdn, TargetUserName=who.win_name,
            TargetDomainName=DOMAIN, LogonType=logon_type)


def win_account(buf: DayBuffer, t: int, event_id: int, subject: Actor, target: str, *,
                computer: str = "DC01", member: str | None = None) -> None:
    """Account management on the domain controller: 4720, 4726, 4728, 4732, 4738, 4740."""
    buf.add("winsec", t, EventID=event_id, Computer=HOSTS[computer].fqdn, SubjectUserName=subject.win_name,
            SubjectDomainName=DOMAIN, TargetUserName=target, TargetDomainName=DOMAIN, MemberName=member)


def rdp(buf: DayBuffer, t0: int, t1: int, computer: str, who: Actor, *, logon_type: int = 10) -> None:
    win_logon(buf, t0, computer, who, logon_type, package="Kerberos")
    win_logoff(buf, t1, computer, who, logon_type)


# ---- HES -----------------------------------------------------------------------------------------

def audit(buf: DayBuffer, t: int, who: Actor, category: str, action: str, object_type: str, object_id: str,
          old: str | None = None, new: str | None = None, result: str = "Success") -> None:
    buf.add("hes_audit", t, UserName=who.account, Role=who.role or None, ClientIP=who.ip, Workstation=who.workstation,
            Category=category, Action=action, ObjectType=object_type, ObjectId=object_id, OldValue=old,
            NewValue=new, Result=result)


def hes_login(buf: DayBuffer, t: int, who: Actor, *, mistype: bool = False, rng: np.random.Generator | None = None
              ) -> None:
    """A web-client login: the HES audit row and the server's Windows network logon."""
    if mistype and rng is not None:
        tf = t - sec(rng.uniform(4, 25))
        audit(buf, tf, who, "Security", "UserLoginFailed", "User", who.account, result="Failure")
        win_failed(buf, tf - sec(0.05), "HES-APP01", who, 3)
    win_logon(buf, t - sec(0.04), "HES-APP01", who, 3, privileged=False)
    audit(buf, t, who, "Security", "UserLogin", "User", who.account)


def hes_logout(buf: DayBuffer, t: int, who: Actor) -> None:
    audit(buf, t, who, "Security", "UserLogout", "User", who.account)
    win_logoff(buf, t + sec(0.2), "HES-APP01", who, 3)


def command(buf: DayBuffer, t: int, who: Actor, name: str, *, target: str | None = None,
            group: str | None = None, count: int | None = None, target_type: str = "ElectricMeter",
            status: str = "Succeeded", control: str | None = None, image: str | None = None,
            sha256: str | None = None, success: int | None = None, failure: int | None = None,
            service_no: str | None = None) -> None:
    buf.add("hes_commands", t, user=who.account, client=who.ip, command=name, controlType=control,
            targetType=target_type, targetId=target, serviceAccount=service_no, targetGroup=group,
            targetCount=count, image=image, sha256=sha256, status=status, success=success, failure=failure)


# ---- VPN and jump host -----------------------------------------------------------------------------

def vpn_session(buf: DayBuffer, t0: int, t1: int, user: str, external_ip: str, pool_ip: str, *,
                group: str, gateway: str = "vpn01", failed_first: bool = False) -> None:
    common = {"suser": user, "src": external_ip, "dst": HOSTS["VPN01"].ip, "dhost": gateway,
              "cs1Label": "group", "cs1": group}
    if failed_first:
        buf.add("vpn", t0 - sec(19), sig="vpn-login-failed", name="VPN authentication failed", sev=5,
                outcome="failure", reason="invalid credentials", **common)
    buf.add("vpn", t0, sig="vpn-login", name="VPN session established", sev=3, outcome="success",
            cs2Label="assignedIp", cs2=pool_ip, **common)
    buf.add("vpn", t1, sig="vpn-logout", name="VPN session closed", sev=3, outcome="success",
            cn1Label="durationSec", cn1=(t1 - t0) // US, cs2Label="assignedIp", cs2=pool_ip, **common)


def jump_session(buf: DayBuffer, t0: int, t1: int, who: Actor, pool_ip: str, target: str, *,
                 policy: str, session_id: str) -> Actor:
    """Through JUMP01 to *target*; returns the actor as the target server sees it (from the jump host)."""
    path = f"D:\\Recordings\\{session_id[:8]}\\{session_id}.rec"
    common = {"suser": f"{DOMAIN}\\{who.win_name}", "src": pool_ip, "dst": HOSTS[target].ip, "dhost": target,
              "shost": "JUMP01", "app": "RDP", "cs1Label": "policy", "cs1": policy}
    at_jump = Actor(who.account, who.win_name, who.role, pool_ip, "-", who.privileged)
    win_logon(buf, t0 - sec(6), "JUMP01", at_jump, 10, privileged=False)
    buf.add("jumphost", t0, sig="session-start", name="Privileged session started", sev=4,
            outcome="success", msg=f"approval=auto; recording=on; target={target}", **common)
    buf.add("jumphost", t1, sig="session-end", name="Privileged session ended", sev=3, outcome="success",
            cn1Label="durationSec", cn1=(t1 - t0) // US, filePath=path, **common)
    win_logoff(buf, t1 + sec(2), "JUMP01", at_jump, 10)
    onward = Actor(who.account, who.win_name, who.role, HOSTS["JUMP01"].ip, "JUMP01", who.privileged)
    rdp(buf, t0 + sec(3), t1 - sec(1), target, onward)
    return onward


# ---- DMS -------------------------------------------------------------------------------------------

def dms_auth(buf: DayBuffer, t: int, who: Actor, *, action: str = "login", result: str = "success") -> None:
    host, app, procid = APP
    text = {"login": "Operator login", "logout": "Operator logout"}[action]
    buf.add("dms", t, pri=86 if result == "success" else 85, host=host, app=app, procid=procid, msgid="AUTH",
            user=who.account, src=who.ip, console=who.workstation, method="LDAP", action=action, result=result,
            msg=text if result == "success" else f"{text} failed: invalid credentials")


def point_of(device: str) -> str:
    kind = device.rsplit("-", 1)[-1]
    return "CB.STATUS" if kind == "CB" else "CAP.STATUS" if kind.startswith("CAP") else "RCL.STATUS"


def dms_alarm(buf: DayBuffer, t: int, device: str, rtu: str, new: str, *, commanded: bool) -> None:
    host, app, procid = FEP
    prev = "CLOSED" if new == "OPEN" else "OPEN"
    buf.add("dms", t, pri=132, host=host, app=app, procid=procid, msgid="ALARM", device=device, rtu=rtu,
            proto="DNP3", point=point_of(device), prev=prev, new=new, commanded="true" if commanded else "false",
            msg=f"Status change {device} {prev}->{new}")


def dms_control(buf: DayBuffer, t: int, who: Actor, device: str, rtu: str, action: str,
                rng: np.random.Generator) -> int:
    """Select-before-operate and the field's status change; returns the time of the last event."""
    host, app, procid = APP
    new = "OPEN" if action == "OPEN" else "CLOSED"
    t_op = t + sec(rng.uniform(1.5, 6.0))
    for when, sbo in ((t, "SELECT"), (t_op, "OPERATE")):
        verb = "selected" if sbo == "SELECT" else "executed"
        buf.add("dms", when, pri=133, host=host, app=app, procid=procid, msgid="SCADA_CTRL", user=who.account,
                src=who.ip, console=who.workstation, device=device, point=point_of(device), action=action, sbo=sbo,
                result="OK", msg=f"Supervisory control {action} {verb} on {device}")
    t_alarm = t_op + sec(rng.uniform(0.4, 2.5))
    dms_alarm(buf, t_alarm, device, rtu, new, commanded=True)
    return t_alarm


def dms_tag(buf: DayBuffer, t: int, who: Actor, device: str, *, place: bool, note: str) -> None:
    host, app, procid = APP
    buf.add("dms", t, pri=134, host=host, app=app, procid=procid, msgid="TAG", user=who.account,
            src=who.ip, console=who.workstation, device=device, tag="HOLD", action="PLACE" if place else "REMOVE",
            note=note, msg=f"Tag HOLD {'placed on' if place else 'removed from'} {device}")


def dms_config(buf: DayBuffer, t: int, who: Actor, obj: str, param: str, old: str, new: str) -> None:
    host, app, procid = APP
    buf.add("dms", t, pri=133, host=host, app=app, procid=procid, msgid="CONFIG", user=who.account,
            src=who.ip, console=who.workstation, object=obj, param=param, old=old, new=new, result="success",
            msg=f"Parameter {param} of {obj} changed")


def dms_user_admin(buf: DayBuffer, t: int, who: Actor, target: str, action: str, role: str | None = None
                   ) -> None:
    host, app, procid = APP
    buf.add("dms", t, pri=85, host=host, app=app, procid=procid, msgid="USER_ADMIN", user=who.account,
            src=who.ip, console=who.workstation, target=target, action=action, role=role, result="success",
            msg=f"User administration {action} on {target}")
