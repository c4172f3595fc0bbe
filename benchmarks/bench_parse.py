"""Parsing throughput and peak memory per raw format, with a per-stage split.

Generates N varied, mostly valid lines per format (deterministic for a given seed and N: users, IPs,
devices, times and actions vary; each format mixes the shapes real exporters write, and a few lines
are malformed so the reject path is exercised), then times ``parse_file`` (read + parse_chunk +
finalize) in a fresh interpreter per run, so that each run's peak RSS is its own. Reports the median
of the runs as a markdown table.

    python benchmarks/bench_parse.py                          # 1M lines per format, 3 runs
    python benchmarks/bench_parse.py --lines 200000 --formats cef dms_syslog
    python benchmarks/bench_parse.py --workdir /tmp/bp        # keep (and reuse) the generated files

The stage split times the same work as ``parse_file`` piece by piece: reading (``read_line_chunks``
and the long-line check), ``Parser.parse_chunk`` and ``finalize``. It runs once per format in its own
interpreter, after the timed runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

FORMATS = ("hes_audit_csv", "hes_commands_jsonl", "winsec_jsonl", "cef", "dms_syslog")
FILE_NAMES = {"hes_audit_csv": "hes_audit.csv", "hes_commands_jsonl": "hes_commands.jsonl",
              "winsec_jsonl": "winsec.jsonl", "cef": "vpn_jump_fw.cef", "dms_syslog": "dms.log"}
# NXLog writes local time without an offset; every other line carries its zone.
TZ = "UTC"
# A fixed reference time: yearless syslog stamps must not depend on the files' mtime.
REFERENCE = datetime(2026, 5, 1)
START_US = 1_776_124_800_000_000  # 2026-04-14T00:00:00Z


def fmt(template: str, *values: pl.Expr | str) -> pl.Expr:
    """``template`` with each ``{}`` replaced by the next value; null when any value is (like pl.format,
    which cannot take JSON's own braces in its template)."""
    pieces = template.split("{}")
    assert len(pieces) == len(values) + 1, template
    exprs: list[pl.Expr] = [pl.lit(pieces[0])]
    for value, piece in zip(values, pieces[1:]):
        exprs += [pl.col(value) if isinstance(value, str) else value.cast(pl.String), pl.lit(piece)]
    return pl.concat_str(exprs)


# ---- generation ------------------------------------------------------------------------------------

class Gen:
    """Vectorised random columns for one format's N lines."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.rng = np.random.default_rng(seed)

    def pick(self, pool: list[str], p: list[float] | None = None) -> pl.Series:
        weights = None if p is None else np.asarray(p, dtype=float) / sum(p)
        return pl.Series(pool, dtype=pl.String).gather(self.rng.choice(len(pool), self.n, p=weights))

    def ints(self, low: int, high: int) -> pl.Series:
        return pl.Series(self.rng.integers(low, high, self.n))

    def chance(self, share: float) -> pl.Series:
        return pl.Series(self.rng.random(self.n) < share)

    def times(self) -> pl.Series:
        # About 3 days of activity whatever N is, in time order with jitter.
        step = max(1, 3 * 86_400_000_000 // self.n)
        us = START_US + np.cumsum(self.rng.integers(0, 2 * step, self.n))
        return pl.Series(us).cast(pl.Datetime("us", "UTC"))

    def ipv4(self, prefix: str = "10", distinct: int = 500) -> pl.Series:
        """Addresses from a pool of *distinct*: operators sit at a few hundred workstations."""
        pool = self.rng.integers(0, 1 << 24, distinct)
        octets = [f"{prefix}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255 or 1}" for a in pool.tolist()]
        return self.pick(octets)


SURNAMES = ["doe", "smith", "kim", "garcia", "nguyen", "patel", "mueller", "rossi", "tanaka", "okafor", "silva",
            "johnson", "lee", "brown", "martin", "lopez", "wilson", "clark", "lewis", "walker", "young", "hall"]
USERS = [f"{i}{s}" for s in SURNAMES for i in "ajkmrst"] + ["svc_vendor_support", "svc_hes_batch", "ops_tmp7",
                                                           "itron_support", "hes_admin2", "Administrator"]
CASED_USERS = USERS + [u.capitalize() for u in USERS[:40]] + [f"UTIL\\{u}" for u in USERS[40:60]]
HOSTS = [f"HES-APP0{i}" for i in range(1, 5)] + [f"ADMS-APP0{i}" for i in range(1, 3)] + ["JUMP01", "DC01"]
WORKSTATIONS = [f"OPS-WS-{i:02d}" for i in range(1, 40)] + [f"ENG-WS-{i:02d}" for i in range(1, 12)] + ["JUMP01"]


def gen_hes_audit(g: Gen) -> pl.DataFrame:
    # (category, action, object type, weight)
    kinds = [("Security", "UserLogin", "User", 30), ("Security", "UserLoginFailed", "User", 5),
             ("Security", "UserLogout", "User", 25), ("UserManagement", "PasswordChanged", "User", 3),
             ("UserManagement", "UserCreated", "User", 1), ("UserManagement", "UserDeleted", "User", 1),
             ("UserManagement", "RoleAssigned", "Role", 1), ("UserManagement", "RoleRevoked", "Role", 1),
             ("Configuration", "SettingChanged", "GlobalSetting", 14), ("Configuration", "MeterProgramChanged",
                                                                          "MeterProgram", 12),
             ("Reports", "ReportExported", "Report", 6), ("Security", "AuditLogCleared", "AuditLog", 0.05)]
    k = g.rng.choice(len(kinds), g.n, p=np.array([w for *_, w in kinds]) / sum(w for *_, w in kinds))
    col = lambda i: pl.Series([kind[i] for kind in kinds]).gather(k)
    frame = pl.DataFrame({
        "t": g.times(), "id": pl.Series(np.arange(88_400_000, 88_400_000 + g.n)), "user": g.pick(CASED_USERS),
        "role": g.pick(["Operator", "Administrator", "Engineer", "ReadOnly"], [60, 10, 25, 5]),
        "ip": g.ipv4(), "ws": g.pick(WORKSTATIONS), "cat": col(0), "act": col(1), "obj": col(2),
        "other": g.pick(USERS), "setting": g.pick(["Firmware.MaxConcurrentDownloads", "Session.TimeoutMinutes",
                                                   "Banner.Text", "Ldap.Server", "Reads.RetryCount"]),
        "old": g.ints(1, 5000), "new": g.ints(1, 20000), "fail": g.chance(0.05), "quoted": g.chance(0.02),
    })
    act = pl.col("act")
    setting = act.is_in(["SettingChanged", "MeterProgramChanged"])
    line = pl.concat_str([
        pl.col("t").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"), pl.col("id").cast(pl.String), "user", "role", "ip", "ws",
        "cat", "act", "obj",
        pl.when(setting).then("setting").when(act.str.starts_with("UserLogin") | (act == "UserLogout"))
        .then(pl.col("user").str.to_lowercase()).otherwise("other"),
        pl.when(setting).then(pl.col("old").cast(pl.String)).otherwise(pl.lit("")),
        # A few values with a comma arrive quoted, as any CSV writer does.
        pl.when(setting & pl.col("quoted")).then(fmt('"{},{}"', "new", "old"))
        .when(setting).then(pl.col("new").cast(pl.String))
        .when(act == "RoleAssigned").then(pl.lit("Role=Administrator")).otherwise(pl.lit("")),
        pl.when(pl.col("fail") | (act == "UserLoginFailed")).then(pl.lit("Failure")).otherwise(pl.lit("Success")),
    ], separator=",")
    header = ("EventTimeUTC,AuditId,UserName,Role,ClientIP,Workstation,Category,Action,ObjectType,ObjectId,"
              "OldValue,NewValue,Result")
    return pl.concat([pl.DataFrame({"line": [header]}), frame.select(line.alias("line"))])


COMMANDS = [("RemoteDisconnect", "0.31.0.23", 20), ("RemoteConnect", "0.31.0.18", 20), ("OnDemandRead", None, 30),
            ("PingByEndpoints", None, 15), ("DemandReset", "0.8.0.214", 5), ("TimeSync", None, 4),
            ("LoadLimitSet", None, 3), ("KeyRenewal", "0.12.32.13", 1), ("FirmwareDownload", None, 1),
            ("FirmwareActivate", None, 1)]


def gen_hes_commands(g: Gen) -> pl.DataFrame:
    k = g.rng.choice(len(COMMANDS), g.n, p=np.array([w for *_, w in COMMANDS]) / sum(w for *_, w in COMMANDS))
    frame = pl.DataFrame({
        "t": g.times(), "job": pl.Series(np.arange(g.n)), "user": g.pick(USERS), "ip": g.ipv4(),
        "cmd": pl.Series([c for c, _, _ in COMMANDS]).gather(k),
        "ctl": pl.Series([c for _, c, _ in COMMANDS], dtype=pl.String).gather(k),
        "ttype": g.pick(["ElectricMeter", "GasMeter", "WaterMeter", "Collector"], [80, 10, 8, 2]),
        "dev": pl.Series(np.char.mod("%08X", g.rng.integers(0x10000000, 0xFFFFFFFF, g.n)).astype(str)),
        "group": g.chance(0.05), "route": g.ints(1, 60),
        "count": g.ints(2, 5000), "status": g.pick(["Succeeded", "Failed", "Queued", "PartialSuccess"],
                                                   [80, 8, 10, 2]),
    })
    fw = pl.col("cmd").str.starts_with("Firmware")
    group = pl.col("group") | fw
    line = pl.concat_str([
        fmt('{"ts":"{}","jobId":"J-{}","user":"{}","client":"{}","command":"{}"',
                  pl.col("t").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"), pl.col("job").cast(pl.String).str.zfill(9),
                  "user", "ip", "cmd"),
        fmt(',"controlType":"{}"', "ctl"),
        fmt(',"targetType":"{}"', "ttype"),
        pl.when(group).then(fmt(',"targetGroup":"ROUTE_{}","targetCount":{}', "route", "count"))
        .otherwise(fmt(',"targetId":"{}"', "dev")),
        pl.when(fw).then(pl.lit(',"image":"nic_7.2.1.bin","sha256":"9f2c5a0e4b1d7c3a9e8f6d5c4b3a2918'
                                '1716151413121110090807060504030201"')),
        fmt(',"status":"{}"}', "status"),
    ], ignore_nulls=True)
    return frame.select(line.alias("line"))


# (event id, share, what the record carries)
WIN_EVENTS = [(4624, 40), (4634, 25), (4672, 12), (4625, 8), (4769, 6), (4648, 3), (4720, 1), (4726, 1),
              (4728, 1), (4732, 1), (4738, 1), (4740, 0.5), (1102, 0.02)]


def gen_winsec(g: Gen) -> pl.DataFrame:
    k = g.rng.choice(len(WIN_EVENTS), g.n, p=np.array([w for _, w in WIN_EVENTS]) / sum(w for _, w in WIN_EVENTS))
    frame = pl.DataFrame({
        "t": g.times(), "id": pl.Series([e for e, _ in WIN_EVENTS]).gather(k), "host": g.pick(HOSTS),
        "user": g.pick(USERS), "subject": g.pick(USERS[:20] + ["HES-APP01$", "HES-APP02$"]),
        "ip": g.ipv4(), "ws": g.pick(WORKSTATIONS), "lt": g.pick(["2", "3", "10"], [20, 60, 20]),
        "sid": g.ints(1000, 99999),
        # Most exports here are flat Get-WinEvent; some days come from Winlogbeat, a few hosts use NXLog.
        "shape": g.pick(["flat", "ecs", "nxlog"], [60, 30, 10]),
    })
    logon = pl.col("id").is_in([4624, 4625, 4634])
    admin = pl.col("id").is_in([4720, 4726, 4728, 4732, 4738, 4740, 1102, 4648])
    tsid = fmt("S-1-5-21-3623811015-3361044348-30300820-{}", "sid")
    pairs = [  # (EventData name, value expression or null)
        ("SubjectUserSid", pl.when(admin | (pl.col("id") == 4672)).then(pl.lit("S-1-5-21-3623811015-1190"))
         .otherwise(pl.lit("S-1-5-18"))),
        ("SubjectUserName", pl.when(admin).then("subject").when(pl.col("id") == 4672).then("user")
         .when(logon).then(fmt("{}$", "host"))),
        ("SubjectDomainName", pl.lit("UTIL")),
        ("TargetUserSid", pl.when(~admin).then(tsid)),
        ("TargetUserName", pl.when(pl.col("id") != 4672).then(
            pl.when(pl.col("id").is_in([4728, 4732])).then(pl.lit("HES Operators")).otherwise("user"))),
        ("TargetDomainName", pl.when(pl.col("id") != 4672).then(pl.lit("UTIL"))),
        ("MemberName", pl.when(pl.col("id").is_in([4728, 4732])).then(fmt("CN={},OU=Ops,DC=util,DC=local",
                                                                                "user"))),
        ("LogonType", pl.when(logon).then("lt")),
        ("IpAddress", pl.when(logon).then("ip")),
        ("WorkstationName", pl.when(logon | (pl.col("id") == 4740)).then("ws")),
        ("Status", pl.when(pl.col("id") == 4625).then(pl.lit("0xc000006d"))),
        ("SubStatus", pl.when(pl.col("id") == 4625).then(pl.lit("0xc000006a"))),
        ("PrivilegeList", pl.when(pl.col("id") == 4672)
         .then(pl.lit("SeSecurityPrivilege\\n\\t\\t\\tSeDebugPrivilege"))),
    ]
    data = pl.concat_str([fmt(f',"{name}":"{{}}"', value) for name, value in pairs],
                         ignore_nulls=True).str.strip_prefix(",")
    iso = pl.col("t").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
    failed = pl.col("id") == 4625
    flat = fmt('{"TimeCreated":"{}","EventID":{},"Computer":"{}.util.local",{}}', iso, "id", "host", data)
    ecs = fmt(
        '{"@timestamp":"{}","event":{"code":"{}","kind":"event","outcome":"{}"},"host":{"name":"{}"},'
        '"winlog":{"channel":"Security","computer_name":"{}.util.local","event_id":"{}",'
        '"keywords":["{}"],"event_data":{{}}}}',
        iso, "id", pl.when(failed).then(pl.lit("failure")).otherwise(pl.lit("success")),
        pl.col("host").str.to_lowercase(), "host", "id",
        pl.when(failed).then(pl.lit("Audit Failure")).otherwise(pl.lit("Audit Success")), data)
    nxlog = fmt(
        '{"EventTime":"{}","Hostname":"{}","Keywords":{},"EventType":"{}","EventID":{},"Channel":"Security",{}}',
        pl.col("t").dt.strftime("%Y-%m-%d %H:%M:%S"), "host",
        pl.when(failed).then(pl.lit("-9218868437227405312")).otherwise(pl.lit("-9214364837600034816")),
        pl.when(failed).then(pl.lit("AUDIT_FAILURE")).otherwise(pl.lit("AUDIT_SUCCESS")), "id", data)
    shape = pl.col("shape")
    line = pl.when(shape == "flat").then(flat).when(shape == "ecs").then(ecs).otherwise(nxlog)
    return frame.select(line.alias("line"))


def gen_cef(g: Gen) -> pl.DataFrame:
    frame = pl.DataFrame({
        "t": g.times(), "user": g.pick(CASED_USERS), "ip": g.ipv4("203", distinct=50_000),
        "dst": g.ipv4(distinct=5_000), "sess": g.ints(1, 1 << 30),
        "device": g.pick(["vpn", "jump", "fw"], [40, 25, 35]),
        "vpn_ev": g.pick(["vpn-login|VPN session established", "vpn-logout|VPN session ended",
                          "vpn-auth-fail|VPN authentication failed"], [45, 45, 10]),
        "jump_ev": g.pick(["session-start|Session started", "session-end|Session ended",
                           "login-failed|Login failed"], [45, 45, 10]),
        "act": g.pick(["allow", "deny", "drop"], [85, 10, 5]), "port": g.ints(1, 65535),
        "srv": g.pick([f"hes-app0{i}" for i in range(1, 5)] + ["adms-app01", "dc01"]),
        "group": g.pick(["vendor-access", "ops", "engineering"]),
    })
    ts = pl.col("t")
    vpn = fmt("CEF:0|Acme|SSLVPN|9.1|{}|3|rt={} suser={} src={} dst=10.40.8.1 dhost=vpn01 outcome={} "
                    "cs1Label=group cs1={}", "vpn_ev", ts.dt.strftime("%b %d %Y %H:%M:%S UTC"), "user", "ip",
                    pl.when(pl.col("vpn_ev").str.contains("fail")).then(pl.lit("failure")).otherwise(pl.lit("success")),
                    "group")
    jump = fmt("<134>{} jump01 CEF:0|Northgate|PAM Jump|4.2.1|{}|3|rt={} suser={} src={} dhost={} "
                     "cs2Label=Session ID cs2=S-{}", ts.dt.strftime("%b %e %H:%M:%S"), "jump_ev",
                     (ts.dt.epoch("ms")).cast(pl.String), "user", "ip", "srv", pl.col("sess").cast(pl.String))
    fw = fmt("CEF:0|Palo Alto Networks|PAN-OS|10.2|end|TRAFFIC|1|rt={} src={} dst={} dpt={} proto=TCP act={} "
                   "msg=rule\\=vendor-in app=ssl", ts.dt.strftime("%b %d %Y %H:%M:%S.%3f UTC"), "ip", "dst", "port",
                   "act")
    device = pl.col("device")
    return frame.select(pl.when(device == "vpn").then(vpn).when(device == "jump").then(jump).otherwise(fw)
                        .alias("line"))


def gen_dms(g: Gen) -> pl.DataFrame:
    frame = pl.DataFrame({
        "t": g.times(), "kind": g.pick(["AUTH", "SCADA_CTRL", "ALARM", "CONFIG", "TAG", "USER_ADMIN"],
                                       [25, 20, 45, 4, 5, 1]),
        "user": g.pick(CASED_USERS), "ip": g.ipv4(), "console": g.pick([f"OPS-CON-{i:02d}" for i in range(1, 20)]),
        "feeder": g.ints(1000, 1999), "dev": g.pick(["CB", "RCL", "CAP", "REG"], [70, 15, 10, 5]),
        "op": g.pick(["OPEN", "CLOSE"]), "sbo": g.pick(["SELECT", "OPERATE"]),
        "result": g.pick(["success", "failure", "logout"], [85, 10, 5]),
        "state": g.pick(["OPEN", "CLOSED"]), "host": g.pick(["adms-app01", "adms-app02", "adms-fep01", "adms-fep02"]),
        "pid": g.ints(1000, 9999), "rfc3164": g.chance(0.1), "tag": g.pick(["HOLD", "CAUTION", "WORKING"]),
        "tagop": g.pick(["place", "remove"]), "value": g.ints(1, 100),
    })
    device = fmt("FDR-{}-{}", "feeder", "dev")
    kind = pl.col("kind")
    params = (
        pl.when(kind == "AUTH").then(fmt('user="{}" src="{}" console="{}" method="LDAP" result="{}"',
                                               "user", "ip", "console", "result"))
        .when(kind == "SCADA_CTRL").then(fmt('user="{}" device="{}" point="CB.STATUS" action="{}" sbo="{}" '
                                                   'result="OK"', "user", device, "op", "sbo"))
        .when(kind == "ALARM").then(fmt('device="{}" rtu="SUB{}-RTU1" proto="DNP3" prev="{}" new="{}"',
                                              device, pl.col("feeder") // 100, "state", "op"))
        .when(kind == "CONFIG").then(fmt('user="{}" setting="Feeder.{}.Limit" old="{}" new="{}"',
                                               "user", "feeder", "value", pl.col("value") + 5))
        .when(kind == "TAG").then(fmt('user="{}" device="{}" tag="{}" op="{}"', "user", device, "tag", "tagop"))
        .otherwise(fmt('user="{}" target="ops_{}" op="add" role="Operator"', "user", "value"))
    )
    message = (pl.when(kind == "AUTH").then(pl.lit("Operator login"))
               .when(kind == "SCADA_CTRL").then(fmt("Supervisory control {} on {}", "op", device))
               .when(kind == "ALARM").then(fmt("Status change {} {}->{}", device, "state", "op"))
               .otherwise(fmt("{} change", kind)))
    sd_id = kind.replace_strict({"AUTH": "auth", "SCADA_CTRL": "ctrl", "ALARM": "alm", "CONFIG": "cfg", "TAG": "tag",
                                 "USER_ADMIN": "usr"})
    rfc5424 = fmt("<86>1 {} {} ADMS {} {} [{}@32473 {}] {}", pl.col("t").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"),
                        "host", "pid", kind, sd_id, params, message)
    rfc3164 = fmt("<86>{} {} ADMS[{}]: {} {} {}", pl.col("t").dt.strftime("%b %e %H:%M:%S"), "host", "pid",
                        kind, params, message)
    return frame.select(pl.when(pl.col("rfc3164")).then(rfc3164).otherwise(rfc5424).alias("line"))


GENERATORS = {"hes_audit_csv": gen_hes_audit, "hes_commands_jsonl": gen_hes_commands, "winsec_jsonl": gen_winsec,
              "cef": gen_cef, "dms_syslog": gen_dms}
# One line in about 2000 is damaged, as exports are: it must become a reject, not slow the rest down.
DAMAGE = ["", "garbage that is no record", '{"truncated": ', "CEF:0|only|three", "<86>1 - host app - AUTH -"]


def generate(name: str, n: int, path: Path) -> None:
    g = Gen(n, seed=FORMATS.index(name) + 1)
    lines = GENERATORS[name](g).get_column("line")
    damaged = g.rng.random(lines.len()) < 0.0005
    damaged[0] = False  # the CSV header
    lines = lines.scatter(np.flatnonzero(damaged), pl.Series(DAMAGE).gather(g.rng.integers(0, len(DAMAGE),
                                                                                           int(damaged.sum()))))
    path.write_text("\n".join(lines.to_list()) + "\n")


# ---- measuring --------------------------------------------------------------------------------------

def _options() -> object:
    from detector.parsers import ParseOptions
    return ParseOptions(tz=TZ, reference_time=REFERENCE)


def run_total(name: str, path: Path) -> dict[str, object]:
    from detector.parsers import PARSERS, parse_file

    began = time.perf_counter()
    events = rejects = 0
    for chunk in parse_file(path, PARSERS[name], _options()):
        events += chunk.events.height
        rejects += chunk.rejects.height
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "events": events, "rejects": rejects, "peak_rss_mib": _peak_rss_mib()}


def _peak_rss_mib() -> float:
    # ru_maxrss of a child counts the parent's RSS at fork time (Linux carries the high-water mark
    # over exec); VmHWM belongs to this process image alone. Both are in KiB.
    try:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_stages(name: str, path: Path) -> dict[str, object]:
    """The work of ``parse_file``, timed piece by piece."""
    from detector.parsers import PARSERS
    from detector.parsers.base import finalize, reject_long_lines
    from detector.parsers.reader import read_line_chunks

    parser = PARSERS[name]
    instance = parser(str(path), _options())
    spent = {"read": 0.0, "parse_chunk": 0.0, "finalize": 0.0}
    chunks = read_line_chunks(path)

    def timed(stage: str, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        began = time.perf_counter()
        result = fn(*args, **kwargs)
        spent[stage] += time.perf_counter() - began
        return result

    while (chunk := timed("read", next, chunks, None)) is not None:
        lines, _ = timed("read", reject_long_lines, chunk.lines)
        staged = timed("parse_chunk", instance.parse_chunk, lines)
        timed("finalize", finalize, staged, source_format=name, raw_file=str(path), source_system=parser.source_system)
    return spent


def _child(mode: str, name: str, path: Path, lines: int = 0) -> dict[str, object]:
    command = [sys.executable, __file__, "--child", mode, name, str(path), "--lines", str(lines)]
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ.copy())
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines per format (default 1M)")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per format; the median is reported")
    parser.add_argument("--workdir", type=Path, help="where to write (and reuse) the generated files")
    parser.add_argument("--no-stages", action="store_true", help="skip the per-stage split")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "FORMAT", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, name, path = args.child
        if mode == "generate":
            generate(name, args.lines, Path(path))
            print("{}")
        else:
            print(json.dumps((run_total if mode == "total" else run_stages)(name, Path(path))))
        return

    import detector.parsers

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_parse_"))
    workdir.mkdir(parents=True, exist_ok=True)
    # Other work on the machine skews wall times: the load average says whether it was quiet.
    print(f"polars {pl.__version__}, {pl.thread_pool_size()} threads, {os.cpu_count()} CPUs, load {os.getloadavg()}; "
          f"parsers from {Path(detector.parsers.__file__).parent}; files in {workdir}", file=sys.stderr)
    rows = []
    for name in args.formats:
        path = workdir / f"{args.lines}_{FILE_NAMES[name]}"
        if not path.exists():
            _child("generate", name, path, args.lines)  # in a child: keep this process small
        runs = [_child("total", name, path) for _ in range(args.runs)]
        seconds = statistics.median(r["seconds"] for r in runs)
        row = {"format": name, "lines": args.lines, "MiB": path.stat().st_size / 2**20, "events": runs[0]["events"],
               "rejects": runs[0]["rejects"], "seconds": seconds, "lines_per_s": args.lines / seconds,
               "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs)}
        if not args.no_stages:
            row |= _child("stages", name, path)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)

    print(f"load {os.getloadavg()}", file=sys.stderr)
    stages = "" if args.no_stages else " read s | parse_chunk s | finalize s |"
    print(f"| format | lines | MiB | events | rejects | wall s | lines/s | peak RSS MiB |{stages}")
    print("|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" * 3 if stages else ""))
    for r in rows:
        split = "" if args.no_stages else f" {r['read']:.2f} | {r['parse_chunk']:.2f} | {r['finalize']:.2f} |"
        print(f"| {r['format']} | {r['lines']:,} | {r['MiB']:.0f} | {r['events']:,} | {r['rejects']:,} | "
              f"{r['seconds']:.2f} | {r['lines_per_s']:,.0f} | {r['peak_rss_mib']:.0f} |{split}")


if __name__ == "__main__":
    main()
