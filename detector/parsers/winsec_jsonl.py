"""Windows Security events of the HES/DMS servers as JSON lines (ARCHITECTURE.md format 4).

Three shapes are read, mixed freely within one file:

* **flat** (Get-WinEvent projections, PowerShell ``ConvertTo-Json``): ``TimeCreated``, ``EventID``
  (or ``Id``), ``Computer`` (or ``MachineName``) and the EventData names at the top level.
  Windows PowerShell 5.1 writes dates as ``/Date(<epoch ms>)/``.
* **NXLog** ``im_msvistalog`` + ``to_json()``: ``EventTime`` (``YYYY-MM-DD hh:mm:ss`` in the agent's
  local time, so it needs ``--tz``; newer agents add an offset), ``Hostname``, ``EventID``,
  ``EventType`` (``AUDIT_SUCCESS``/``AUDIT_FAILURE``), ``Keywords`` (a 64-bit mask), ``Message``
  and the EventData / UserData names flattened to the top level.
* **Winlogbeat** 6, 7 and 8: ``@timestamp``, ``winlog.event_id`` (a number in 7, a string in 8;
  ``event_id`` at the top level in 6), ``winlog.computer_name``, ``winlog.event_data.*`` (and
  ``winlog.user_data.*``, where 1102 keeps its subject), ``winlog.keywords``, plus the ECS fields
  the security module adds (``host.name``, ``event.code``, ``event.outcome``, ``user.*``,
  ``source.ip``, ``source.domain``, ``group.name``), read only where the raw event data lacks a value.

Who the actor is depends on the event: the logged-on account (``Target*``) for logon events,
the administrator (``Subject*``) for account management, see :data:`WINDOWS_EVENTS`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

import polars as pl

from detector.exprs import formatted
from detector.parsers.base import FilesApart, ParseOptions, Parser, account_expr, clean, collect, parse_times
from detector.parsers.jsonlines import decode_json_parts
from detector.schema import DETAILS

if TYPE_CHECKING:
    from polars.expr.whenthen import ChainedThen, Then

Actor = Literal["target", "subject", "lockout"]
TargetKind = Literal["account", "member", "none"]


@dataclass(frozen=True)
class WindowsEvent:
    """How one Security event ID normalizes."""

    action: str
    actor: Actor  # whose name is ``account``
    target: TargetKind  # what ``target_id`` is
    summary: str  # Windows' own title, used when the record carries no Message
    outcome: Literal["success", "failure"] = "success"  # unless the record says otherwise


WINDOWS_EVENTS: Final[dict[str, WindowsEvent]] = {
    "4624": WindowsEvent("login_success", "target", "none", "An account was successfully logged on"),
    "4625": WindowsEvent("login_failure", "target", "none", "An account failed to log on", "failure"),
    "4634": WindowsEvent("logout", "target", "none", "An account was logged off"),
    "4647": WindowsEvent("logout", "target", "none", "User initiated logoff"),
    # 4672 carries only Subject* fields: the subject is the account that just logged on.
    "4672": WindowsEvent("privileged_logon", "subject", "none", "Special privileges assigned to new logon"),
    "4720": WindowsEvent("account_created", "subject", "account", "A user account was created"),
    "4723": WindowsEvent("password_changed", "subject", "account",
                         "An attempt was made to change an account's password"),
    "4724": WindowsEvent("password_changed", "subject", "account",
                         "An attempt was made to reset an account's password"),
    "4726": WindowsEvent("account_deleted", "subject", "account", "A user account was deleted"),
    "4728": WindowsEvent("group_member_added", "subject", "member",
                         "A member was added to a security-enabled global group"),
    "4729": WindowsEvent("role_revoked", "subject", "member",
                         "A member was removed from a security-enabled global group"),
    "4732": WindowsEvent("group_member_added", "subject", "member",
                         "A member was added to a security-enabled local group"),
    "4733": WindowsEvent("role_revoked", "subject", "member",
                         "A member was removed from a security-enabled local group"),
    "4738": WindowsEvent("account_modified", "subject", "account", "A user account was changed"),
    # 4740 is logged by the domain controller: the subject is its machine account and
    # TargetDomainName is the computer the bad attempts came from.
    "4740": WindowsEvent("lockout", "lockout", "account", "A user account was locked out"),
    "4756": WindowsEvent("group_member_added", "subject", "member",
                         "A member was added to a security-enabled universal group"),
    "4757": WindowsEvent("role_revoked", "subject", "member",
                         "A member was removed from a security-enabled universal group"),
    "1102": WindowsEvent("log_cleared", "subject", "none", "The audit log was cleared"),
    "104": WindowsEvent("log_cleared", "subject", "none", "The System log file was cleared"),
    "4719": WindowsEvent("audit_policy_changed", "subject", "none", "System audit policy was changed"),
    "4688": WindowsEvent("process_created", "subject", "none", "A new process has been created"),
    "4697": WindowsEvent("service_installed", "subject", "none", "A service was installed in the system"),
    "7045": WindowsEvent("service_installed", "subject", "none", "A service was installed in the system"),
    "7040": WindowsEvent("service_config_changed", "subject", "none", "The start type of a service was changed"),
    "4698": WindowsEvent("task_created", "subject", "none", "A scheduled task was created"),
    "4702": WindowsEvent("task_modified", "subject", "none", "A scheduled task was updated"),
    "4648": WindowsEvent("explicit_credential_logon", "subject", "account",
                         "A logon was attempted using explicit credentials"),
    "4768": WindowsEvent("kerberos_ticket", "target", "none", "A Kerberos authentication ticket (TGT) was requested"),
    "4769": WindowsEvent("kerberos_ticket", "target", "none", "A Kerberos service ticket was requested"),
    "4776": WindowsEvent("ntlm_auth", "target", "none",
                         "The computer attempted to validate the credentials for an account"),
    "6416": WindowsEvent("removable_media", "subject", "none", "A new external device was recognized by the system"),
    # Sysmon's event ids repeat other providers' ids, so they are looked up with the provider in front.
    "sysmon:1": WindowsEvent("process_created", "subject", "none", "Process Create"),
    "sysmon:3": WindowsEvent("network_connection", "subject", "none", "Network connection detected"),
    "sysmon:11": WindowsEvent("file_created", "subject", "none", "File created"),
    "sysmon:13": WindowsEvent("registry_set", "subject", "none", "Registry value set"),
}

# Events kept as action ``other`` whose category is still clear; anything else is ``system``.
OTHER_CATEGORIES: Final[dict[str, str]] = {
    "4722": "account_mgmt",  # account enabled
    "4725": "account_mgmt",  # account disabled
    "4767": "account_mgmt",  # account unlocked
    "4781": "account_mgmt",  # account renamed
    "4771": "authentication",  # Kerberos pre-authentication failed
    "1100": "log_tamper",  # event logging service shut down
}

LOGON_TYPES: Final[dict[str, str]] = {
    "0": "System", "2": "Interactive", "3": "Network", "4": "Batch", "5": "Service", "7": "Unlock",
    "8": "NetworkCleartext", "9": "NewCredentials", "10": "RemoteInteractive", "11": "CachedInteractive",
    "12": "CachedRemoteInteractive", "13": "CachedUnlock",
}

# NTSTATUS codes of 4625 Status/SubStatus that tell brute force from enumeration and lockouts.
LOGON_FAILURES: Final[dict[str, str]] = {
    "0xc0000064": "unknown user name",
    "0xc000006a": "wrong password",
    "0xc000006d": "bad user name or password",
    "0xc000006e": "account restriction",
    "0xc000006f": "outside allowed hours",
    "0xc0000070": "workstation not allowed",
    "0xc0000071": "password expired",
    "0xc0000072": "account disabled",
    "0xc0000133": "clock skew",
    "0xc000015b": "logon type not granted",
    "0xc0000193": "account expired",
    "0xc0000224": "password must change",
    "0xc0000234": "account locked out",
}

# EventData / UserData names read, whichever shape they arrive in.
EVENT_DATA = ("TargetUserName", "TargetDomainName", "TargetUserSid", "TargetSid", "SubjectUserName",
              "SubjectDomainName", "SubjectUserSid", "MemberName", "MemberSid", "LogonType", "IpAddress",
              "WorkstationName", "Status", "SubStatus", "PrivilegeList",
              # sessions, processes, services, tasks, audit policy, Kerberos/NTLM, devices, Sysmon
              "SubjectLogonId", "TargetLogonId", "LogonId", "NewProcessName", "Image", "CommandLine",
              "ParentProcessName", "ParentImage", "ParentCommandLine", "ProcessName", "Hashes",
              "ServiceName", "ServiceFileName", "ImagePath", "ServiceType", "StartType", "ServiceStartType",
              "ServiceAccount", "TaskName", "TaskContent", "TaskContentNew", "CategoryId", "SubcategoryId",
              "SubcategoryGuid", "AuditPolicyChanges", "param1", "param2", "param3", "param4",
              "TargetServerName", "TargetInfo", "TicketEncryptionType", "TicketOptions", "PackageName",
              "Workstation", "DeviceDescription", "ClassName", "DeviceId", "DestinationIp", "DestinationPort",
              "DestinationHostname", "Protocol", "TargetFilename", "TargetObject", "Details")
_DATA = pl.Struct({f: pl.String for f in EVENT_DATA})
# Record-level fields: times, ids, where it was logged, and who the record says ran it (NXLog puts the
# System channel's user in AccountName / Domain / UserID; Sysmon names it in User).
_TEXT = ("TimeCreated", "EventTime", "@timestamp", "EventReceivedTime", "UtcTime", "EventID", "Id", "event_id",
         "Computer", "Hostname", "Channel", "SourceName", "ProviderName", "User", "AccountName", "Domain",
         "UserID", "MachineName", "computer_name", "Message", "message", "EventType", "Keywords",
         "KeywordsDisplayNames", "keywords", "EventRecordID", "RecordNumber")

# Where each event's time may be, best first. An offset-bearing stamp always wins over a naive one
# (Parser.with_times); among those with offsets, the event's own clock before a relay's receive time.
# Sysmon's UtcTime is UTC by definition but comes last: a lab host's clock may be hours off.
TIME_FIELDS: Final = ("TimeCreated", "EventTime", "@timestamp", "EventReceivedTime", "event.created", "UtcTime")

SCHEMA: Final = pl.Schema(
    {f: pl.String for f in (*_TEXT, *EVENT_DATA)}
    | {
        # A string, not a struct: Logstash and syslog relays put a plain "host" on the record,
        # Beats an object {"name": ...}; reading it as text accepts both.
        "host": pl.String,
        "event_data": _DATA,  # Winlogbeat 6
        "user_data": _DATA,
        "winlog": pl.Struct({"event_id": pl.String, "computer_name": pl.String, "keywords": pl.String,
                             "channel": pl.String, "provider_name": pl.String,
                             "user": pl.Struct({"name": pl.String, "domain": pl.String, "identifier": pl.String}),
                             "event_data": _DATA, "user_data": _DATA}),
        "event": pl.Struct({"code": pl.String, "outcome": pl.String, "created": pl.String}),
        "user": pl.Struct({"name": pl.String, "domain": pl.String, "id": pl.String,
                           "target": pl.Struct({"name": pl.String})}),
        "source": pl.Struct({"ip": pl.String, "domain": pl.String}),
        "group": pl.Struct({"name": pl.String}),
    }
)

# ---- what lands in ``details`` ----------------------------------------------------------------------

# Audit policy ids as 4719 writes them (``%%8280``), from Microsoft's "Audit Policy" documentation and
# msobjs.dll; an id not listed is kept as written.
AUDIT_CATEGORIES: Final[dict[str, str]] = {
    "%%8272": "System", "%%8273": "Logon/Logoff", "%%8274": "Object Access", "%%8275": "Privilege Use",
    "%%8276": "Detailed Tracking", "%%8277": "Policy Change", "%%8278": "Account Management",
    "%%8279": "DS Access", "%%8280": "Account Logon",
}
AUDIT_SUBCATEGORIES: Final[dict[str, str]] = {f"%%{k}": v for k, v in {
    12288: "Security State Change", 12289: "Security System Extension", 12290: "System Integrity",
    12291: "IPsec Driver", 12292: "Other System Events", 12544: "Logon", 12545: "Logoff",
    12546: "Account Lockout", 12547: "IPsec Main Mode", 12548: "Special Logon", 12549: "IPsec Quick Mode",
    12550: "IPsec Extended Mode", 12551: "Other Logon/Logoff Events", 12552: "Network Policy Server",
    12553: "User / Device Claims", 12554: "Group Membership", 12800: "File System", 12801: "Registry",
    12802: "Kernel Object", 12803: "SAM", 12804: "Other Object Access Events", 12805: "Certification Services",
    12806: "Application Generated", 12807: "Handle Manipulation", 12808: "File Share",
    12809: "Filtering Platform Packet Drop", 12810: "Filtering Platform Connection", 12811: "Detailed File Share",
    12812: "Removable Storage", 12813: "Central Policy Staging", 13056: "Sensitive Privilege Use",
    13057: "Non Sensitive Privilege Use", 13058: "Other Privilege Use Events", 13312: "Process Creation",
    13313: "Process Termination", 13314: "DPAPI Activity", 13315: "RPC Events", 13316: "Plug and Play Events",
    13317: "Token Right Adjusted Events", 13568: "Audit Policy Change", 13569: "Authentication Policy Change",
    13570: "Authorization Policy Change", 13571: "MPSSVC Rule-Level Policy Change",
    13572: "Filtering Platform Policy Change", 13573: "Other Policy Change Events",
    13824: "User Account Management", 13825: "Computer Account Management", 13826: "Security Group Management",
    13827: "Distribution Group Management", 13828: "Application Group Management",
    13829: "Other Account Management Events", 14080: "Directory Service Access", 14081: "Directory Service Changes",
    14082: "Directory Service Replication", 14083: "Detailed Directory Service Replication",
    14336: "Credential Validation", 14337: "Kerberos Service Ticket Operations",
    14338: "Other Account Logon Events", 14339: "Kerberos Authentication Service",
}.items()}
AUDIT_CHANGES: Final[dict[str, str]] = {
    "%%8448": "Success removed", "%%8449": "Success added", "%%8450": "Failure removed", "%%8451": "Failure added",
}
# 4697 writes the service start type as a number, 7045 and 7040 as words; both become the words.
START_TYPES: Final[dict[str, str]] = {"0": "boot start", "1": "system start", "2": "auto start",
                                      "3": "demand start", "4": "disabled"}

# target_type of the events whose object is not an account (ARCHITECTURE.md's list, extended here).
TARGET_TYPES: Final[dict[str, str]] = {
    "service_installed": "service", "service_config_changed": "service", "task_created": "task",
    "task_modified": "task", "process_created": "process", "audit_policy_changed": "audit_policy",
    "removable_media": "device", "network_connection": "address", "file_created": "file",
    "registry_set": "registry",
}

_AUDIT_FAILURE_BIT: Final = 1 << 52  # WINEVENT_KEYWORD_AUDIT_FAILURE
_AUDIT_SUCCESS_BIT: Final = 1 << 53  # WINEVENT_KEYWORD_AUDIT_SUCCESS
_NULL_SID: Final = "S-1-0-0"  # "nobody": what 4625 records for an account that does not exist
_SUMMARY_CHARS: Final = 200

_JSON_OBJECT = re.compile(r"^\s*\{")
_ID_KEY = re.compile(r'"(?:EventID|event_id|winlog)"\s*:')
_WINDOWS_KEY = re.compile(
    r'"(?:Computer|computer_name|Hostname|MachineName|Channel|LogName|SourceName|ProviderName|'
    r'TargetUserName|SubjectUserName|TimeCreated|EventTime|winlog|event_data)"\s*:')
# Raw Get-WinEvent objects: "Id" is too generic alone, with the provider or log name it is not.
_GET_WINEVENT_ID = re.compile(r'"Id"\s*:')
_GET_WINEVENT_KEY = re.compile(r'"(?:ProviderName|LogName)"\s*:')


@dataclass(frozen=True)
class _Filled:
    """Which columns of a decoded frame hold a value (the others are null throughout): all that the
    expressions normalizing the frame depend on, so that they are built once per such set."""

    columns: frozenset[str]
    filled: frozenset[str]

    @classmethod
    def of(cls, frame: pl.DataFrame) -> _Filled:
        return cls(frozenset(frame.columns),
                   frozenset(c for c in frame.columns if frame.get_column(c).null_count() < frame.height))


def _first(frame: _Filled, *sources: pl.Expr) -> pl.Expr:
    """``pl.coalesce(sources)``, leaving out the sources whose column is null throughout *frame*.

    The frame holds one shape of record, which never has the other shapes' fields: leaving those
    out gives the same values and saves a pass over the chunk for each.
    """
    live = [s for s in sources if any(c in frame.filled for c in s.meta.root_names())]
    return pl.coalesce(live) if live else pl.lit(None, pl.String)


def _data(name: str, frame: _Filled, cleaner: Callable[[pl.Expr], pl.Expr] = clean) -> pl.Expr:
    """An EventData value from whichever shape the record has: flat, Winlogbeat 7/8 or 6."""
    return _first(
        frame,
        cleaner(pl.col(name)),
        cleaner(pl.col("winlog").struct.field("event_data").struct.field(name)),
        cleaner(pl.col("winlog").struct.field("user_data").struct.field(name)),
        cleaner(pl.col("event_data").struct.field(name)),
        cleaner(pl.col("user_data").struct.field(name)),
    )


def _sid(expr: pl.Expr) -> pl.Expr:
    """A SID usable as an account name: the null SID names nobody."""
    return pl.when(expr.str.to_uppercase() != _NULL_SID).then(expr)


def _time_texts(frame: _Filled) -> dict[str, pl.Expr]:
    """The text of each of :data:`TIME_FIELDS`, as ``_t0``, ``_t1``..."""
    def epoch(text: pl.Expr) -> pl.Expr:
        # Windows PowerShell 5.1 ConvertTo-Json: "/Date(1776132778903)/", epoch ms (UTC) + optional offset.
        return pl.coalesce(text.str.extract(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$", 1), text)

    utc = clean(pl.col("UtcTime"))
    sources = {"event.created": clean(pl.col("event").struct.field("created")),
               # Sysmon writes "2020-08-06 06:26:44.872": UTC by the field's definition, without a mark.
               "UtcTime": pl.when(utc.str.contains(r"^\d{4}-\d\d-\d\d[ T][\d:.]+$")).then(utc + "Z").otherwise(utc)}
    return {f"_t{i}": epoch(_first(frame, sources.get(name, clean(pl.col(name)))))
            for i, name in enumerate(TIME_FIELDS)}


def _hex_id(expr: pl.Expr) -> pl.Expr:
    """A logon id in one spelling: ``0x2B78CD`` (Message text) and ``0x2b78cd`` (EventData) agree."""
    return clean(expr).str.to_lowercase()


def _message_field(message: pl.Expr, label: str) -> pl.Expr:
    """The value after ``label:`` in a rendered Windows message (tab-, newline- or double-space-ended)."""
    return clean(message.str.extract(rf"(?:^|[\r\n\t ]){label}:[ \t]*([^\r\n\t]*?)[ \t]*(?:[\r\n\t]|  |$)", 1))


def _task_command(content: pl.Expr) -> pl.Expr:
    """``<Command> <Arguments>`` of a task's XML (4698, 4702), whether or not the XML is entity-escaped."""
    def element(name: str) -> pl.Expr:
        return content.str.extract(rf"(?s)(?:<|&lt;){name}(?:>|&gt;)(.*?)(?:<|&lt;)/{name}", 1)

    text = pl.concat_str([element("Command"), element("Arguments")], separator=" ", ignore_nulls=True)
    return clean(text.str.replace_all("&quot;", '"', literal=True).str.replace_all("&apos;", "'", literal=True)
                 .str.replace_all("&lt;", "<", literal=True).str.replace_all("&gt;", ">", literal=True)
                 .str.replace_all("&amp;", "&", literal=True))


_MAX_OFFSET_MINUTES: Final = 14 * 60


def _offset_from_utc_time(staged: pl.DataFrame, *, year: int) -> str | bool:
    """``+08:00`` when every record holding both a naive ``TimeCreated`` / ``EventTime`` and Sysmon's
    ``UtcTime`` (UTC by definition) shows the same whole-quarter-hour difference, within two minutes,
    and a real zone's size (at most 14 hours); else False.

    Get-WinEvent exports write TimeCreated in the exporting machine's zone without saying which:
    the Sysmon records of the same file give that zone's offset away.
    """
    utc, _ = parse_times(staged.get_column("_t5"), year=year)
    diffs = []
    for column in ("_t0", "_t1"):
        aware, naive = parse_times(staged.get_column(column), year=year)
        both = naive.is_not_null() & aware.is_null() & utc.is_not_null()
        if both.any():
            local = naive.filter(both).dt.replace_time_zone("UTC")
            diffs.append((local - utc.filter(both)).dt.total_seconds())
    if not diffs:
        return False
    seconds = pl.concat(diffs)
    quarter = (seconds / 900).round() * 900
    offset = quarter.min()
    if quarter.max() != offset or (seconds - quarter).abs().max() > 120 or abs(offset) > _MAX_OFFSET_MINUTES * 60:  # type: ignore[operator, arg-type]
        return False
    minutes = int(offset) // 60  # type: ignore[arg-type]
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _keywords_outcome() -> pl.Expr:
    """success/failure from the audit keywords, in any of the shapes they are written; else null."""
    names = pl.concat_str(
        [clean(pl.col(c)) for c in ("KeywordsDisplayNames", "keywords", "EventType")]
        + [clean(pl.col("winlog").struct.field("keywords"))],
        separator=" ", ignore_nulls=True,
    ).str.to_lowercase().str.replace_all("_", " ")
    mask_text = clean(pl.col("Keywords"))
    mask = pl.coalesce(
        mask_text.cast(pl.UInt64, strict=False),
        mask_text.cast(pl.Int64, strict=False).reinterpret(signed=False),  # signed in NXLog 4/5
        pl.when(mask_text.str.to_lowercase().str.starts_with("0x"))  # hex in NXLog 6
        .then(mask_text.str.slice(2).str.to_integer(base=16, dtype=pl.UInt64, strict=False)),
    )
    return (
        pl.when(names.str.contains("audit failure")).then(pl.lit("failure"))
        .when(names.str.contains("audit success")).then(pl.lit("success"))
        .when((mask & _AUDIT_FAILURE_BIT) != 0).then(pl.lit("failure"))
        .when((mask & _AUDIT_SUCCESS_BIT) != 0).then(pl.lit("success"))
    )


def _dn_common_name(expr: pl.Expr) -> pl.Expr:
    """``CN=Doe\\, John,OU=Vendors,...`` → ``Doe, John``; a value that is not a DN is kept as is."""
    cn = expr.str.extract(r"(?i)^CN=((?:[^,\\]|\\.)+)", 1).str.replace_all(r"\\(.)", "$1")
    return pl.when(expr.str.contains(r"(?i)^CN=")).then(cn).otherwise(expr)


def _first_sentence(expr: pl.Expr) -> pl.Expr:
    """The title of a rendered Windows message: its first line, up to the first full stop.

    The full text is kilobytes of boilerplate; NXLog configurations often flatten it to one line.
    """
    line = expr.str.extract(r"^\s*([^\r\n]+)", 1)
    return clean(line.str.replace(r"\.(?:\s.*)?$", "").str.head(_SUMMARY_CHARS))


_NAIVE_STAMP = r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?$"


class WinsecJsonl(Parser):
    name = "winsec_jsonl"
    description = "Windows Security events as JSON lines (Get-WinEvent, NXLog im_msvistalog, Winlogbeat/ECS)"
    source_system = "windows"
    independent_chunks = True
    # About ninety columns are staged per line (every EventData name, six time fields, details):
    # 8 MiB chunks keep a damaged 40 MB file at about 800 MiB peak instead of 1.1 GiB (bench_fuzz).
    chunk_bytes = 8 << 20
    together = True

    @classmethod
    def sniff(cls, head: list[str]) -> bool:
        def windows(line: str) -> bool:
            if not _JSON_OBJECT.match(line) or ('"command"' in line and '"jobId"' in line):
                return False
            return bool((_ID_KEY.search(line) and _WINDOWS_KEY.search(line))
                        or (_GET_WINEVENT_ID.search(line) and _GET_WINEVENT_KEY.search(line)))

        return any(windows(line) for line in head)

    def __init__(self, path: str, options: ParseOptions) -> None:
        super().__init__(path, options)
        # The zone offset of the file's naive TimeCreated / EventTime, when Sysmon records show it:
        # None until a chunk has been looked at, False when nothing (or nothing consistent) shows it.
        self._learned_offset: str | bool | None = None

    def parse_chunk(self, lines: pl.DataFrame, text: bytes | None = None) -> pl.DataFrame:
        # One shape at a time: the fields the other shapes use are then null throughout, so the
        # coalesces over every place a value may be cost only for the places this shape has.
        staged = pl.concat([self._normalize(part) for part in decode_json_parts(lines, SCHEMA)])
        columns, labels = [f"_t{i}" for i in range(len(TIME_FIELDS))], list(TIME_FIELDS)
        if self.options.tz is None:
            if self.files_together and staged.select(pl.any_horizontal(
                    pl.col(c).str.contains(_NAIVE_STAMP) for c in ("_t0", "_t1")).any()).item():
                raise FilesApart("a naive TimeCreated or EventTime: the offset its file's Sysmon records show")
            if self._learned_offset is None:
                self._learned_offset = _offset_from_utc_time(staged, year=self._year())
            if self._learned_offset is not False:
                # Last resort, after every stamp that carries its own offset.
                offset = str(self._learned_offset)
                staged = staged.with_columns(
                    pl.when(pl.col(c).str.contains(_NAIVE_STAMP)).then(pl.col(c) + offset).alias(f"{c}_at")
                    for c in ("_t0", "_t1"))
                columns += ["_t0_at", "_t1_at"]
                labels += [f"{name} (at {offset}, the offset Sysmon's UtcTime shows)" for name in TIME_FIELDS[:2]]
        return self.with_times(staged, columns, labels)

    def _normalize(self, decoded: pl.DataFrame) -> pl.DataFrame:
        stages, details = _normalizing(_Filled.of(decoded))
        staged = decoded.lazy()
        for stage in stages:
            staged = staged.with_columns(**stage)
        return _with_details(collect(staged), details)


def _stage(**columns: pl.Expr) -> dict[str, pl.Expr]:
    """Columns added together (one ``with_columns``)."""
    return columns


@functools.lru_cache(maxsize=64)
def _normalizing(decoded: _Filled) -> tuple[tuple[dict[str, pl.Expr], ...], tuple[str, ...]]:
    """The column stages that normalize a decoded frame of this shape, and the keys of its details.

    Built once per shape: building them (some thousand expressions) took longer than running them on
    a few thousand lines, and a file's chunks, a scan's files, mostly share one or two shapes.
    """
    # Each stage adds what later stages read more than once.
    user = pl.col("user")
    stages: list[dict[str, pl.Expr]] = [_time_texts(decoded)]
    stages.append(_stage(
        _id=_first(
            decoded, clean(pl.col("EventID")), clean(pl.col("winlog").struct.field("event_id")),
            clean(pl.col("event_id")), clean(pl.col("event").struct.field("code")), clean(pl.col("Id")),
        ).str.replace(r"^(\d+)\.0*$", "$1"),  # 4624.0 from exporters that write every number as a float
        **{f"_d_{name}": _data(name, decoded) for name in EVENT_DATA},
        _d_TargetUserName_raw=_data("TargetUserName", decoded, _name),
        _channel=_first(decoded, clean(pl.col("Channel")), clean(pl.col("winlog").struct.field("channel"))),
        _user=clean(user.struct.field("name")),
        _user_domain=clean(user.struct.field("domain")),
        _user_id=_sid(clean(user.struct.field("id"))),
        _user_target=clean(user.struct.field("target").struct.field("name")),
    ))
    provider = _first(decoded, clean(pl.col("Channel")), clean(pl.col("SourceName")),
                      clean(pl.col("ProviderName")), clean(pl.col("winlog").struct.field("channel")),
                      clean(pl.col("winlog").struct.field("provider_name")))
    stages.append(_stage(_key=pl.when(provider.str.to_lowercase().str.contains("sysmon"))
                       .then(pl.concat_str([pl.lit("sysmon:"), pl.col("_id")])).otherwise(pl.col("_id"))))
    event_id, key = pl.col("_id"), pl.col("_key")
    stages.append(_stage(
        _actor=key.replace_strict({k: e.actor for k, e in WINDOWS_EVENTS.items()}, default=None),
        _kind=key.replace_strict({k: e.target for k, e in WINDOWS_EVENTS.items()}, default="none"),
        _action=key.replace_strict({k: e.action for k, e in WINDOWS_EVENTS.items()}, default="other"),
        _tsid=_sid(pl.coalesce("_d_TargetUserSid", "_d_TargetSid")),
        _ssid=_sid(pl.col("_d_SubjectUserSid")),
        _status=pl.coalesce(
            pl.when(pl.col("_d_SubStatus").str.to_lowercase() != "0x0").then(pl.col("_d_SubStatus")),
            pl.col("_d_Status"),
        ).str.to_lowercase(),
    ))

    actor = pl.col("_actor")
    # A rendered Message is read only where the structured fields leave something unknown: the
    # subject of 1102 / 104 / 4719 and the like when an exporter kept only the text, a service's
    # account (NXLog overwrites 7045's AccountName with the record's user), 7040's start types.
    needs_message = (pl.col("_d_SubjectUserName").is_null() & pl.col("_d_TargetUserName").is_null()
                     & clean(pl.col("User")).is_null()) | key.is_in(["4719", "7040", "7045", "4697"])
    message = pl.when(needs_message).then(
        pl.coalesce(clean(pl.col("Message")), clean(pl.col("message"))).str.head(_MESSAGE_HEAD))
    stages.append(_stage(_msg=message))
    stages.append(_stage(
        **{f"_m_{name}": _message_field(pl.col("_msg"), label) for name, label in _MESSAGE_FIELDS.items()},
        _m_start=pl.col("_msg").str.extract_groups(
            r"start type of the (.+?) service was changed from (.+?) to (.+?)\.").alias("_m_start"),
    ))
    # Unlisted events: the subject acts when there is one (4648, 4722...), else the target (Kerberos).
    stages.append(_stage(
        _by_target=(actor == "target") | (actor == "lockout") | (
            actor.is_null() & pl.col("_d_SubjectUserName").is_null() & pl.col("_ssid").is_null()),
        _target_id=pl.when(pl.col("_kind") == "account")
        .then(pl.coalesce("_d_TargetUserName", "_user_target", "_tsid"))
        .when(pl.col("_kind") == "member")
        .then(pl.coalesce(_dn_common_name(pl.col("_d_MemberName")), _sid(pl.col("_d_MemberSid")),
                          "_user_target")),
        # A group is a name as written: "None" is a real group (every local user's primary group).
        _group=pl.coalesce(_name(pl.col("_d_TargetUserName_raw")), _name(pl.col("group").struct.field("name"))),
    ))

    by_target = pl.col("_by_target")
    action = pl.col("_action")
    status = pl.col("_status")
    logon_type = pl.concat_str(
        [formatted("LogonType {}", pl.col("_d_LogonType")),
         pl.col("_d_LogonType").replace_strict(LOGON_TYPES, default=None)],
        separator=", ", ignore_nulls=True,
    )
    failure = pl.when(status != "0x0").then(
        pl.concat_str([status, status.replace_strict(LOGON_FAILURES, default=None)], separator=" ",
                      ignore_nulls=True))
    notes = pl.concat_str([pl.when(logon_type != "").then(logon_type), failure], separator="; ",
                          ignore_nulls=True)
    summary = pl.coalesce(
        _first_sentence(pl.coalesce(clean(pl.col("Message")), clean(pl.col("message")))),
        key.replace_strict({k: e.summary for k, e in WINDOWS_EVENTS.items()}, default=None),
        formatted("Windows event {}", event_id),
    )
    ecs_outcome = clean(pl.col("event").struct.field("outcome")).str.to_lowercase()
    winlog_user = pl.col("winlog").struct.field("user")
    # Who acted, with the domain that goes with that very name: (name, domain) pairs, best first.
    subject_actors = [
        (pl.col("_d_SubjectUserName"), pl.col("_d_SubjectDomainName")),
        (clean(pl.col("User")), pl.lit(None, pl.String)),  # Sysmon: DOMAIN\\user, split in finalize
        (pl.col("_user"), pl.col("_user_domain")),
        (pl.col("_m_account"), pl.col("_m_domain")),
        (clean(pl.col("AccountName")), clean(pl.col("Domain"))),  # NXLog: the record's user
        (clean(winlog_user.struct.field("name")), clean(winlog_user.struct.field("domain"))),
        (pl.col("_ssid"), pl.col("_d_SubjectDomainName")),
        (_sid(pl.coalesce(pl.col("_m_sid"), clean(pl.col("UserID")),
                          clean(winlog_user.struct.field("identifier")))), pl.lit(None, pl.String)),
        (pl.col("_user_id"), pl.col("_user_domain")),
    ]
    target_actors = [
        (pl.col("_d_TargetUserName"), pl.col("_d_TargetDomainName")),
        (pl.col("_user"), pl.col("_user_domain")),
        (pl.col("_tsid"), pl.col("_d_TargetDomainName")),
        (pl.col("_user_id"), pl.col("_user_domain")),
    ]

    def first_pair(pairs: list[tuple[pl.Expr, pl.Expr]]) -> tuple[pl.Expr, pl.Expr]:
        live = [(n, d) for n, d in pairs if all(_live(decoded, e) for e in (n,))]
        if not live:
            return pl.lit(None, pl.String), pl.lit(None, pl.String)
        domain: Then | ChainedThen = pl.when(live[0][0].is_not_null()).then(live[0][1])
        for name, dom in live[1:]:
            domain = domain.when(name.is_not_null()).then(dom)
        return pl.coalesce([n for n, _ in live]), domain

    subject, subject_domain = first_pair(subject_actors)
    target, target_domain = first_pair(target_actors)
    d = {name: pl.col(f"_d_{name}") for name in EVENT_DATA}
    start = pl.col("_m_start")
    service_name = pl.coalesce(d["ServiceName"], d["param1"], start.struct.field("1"))
    old_start = pl.coalesce(d["param2"], start.struct.field("2"))
    new_start = pl.coalesce(d["param3"], start.struct.field("3"))
    subcategory = pl.coalesce(d["SubcategoryId"].replace_strict(AUDIT_SUBCATEGORIES, default=None),
                              pl.col("_m_subcategory"), d["SubcategoryId"])
    changes = pl.coalesce(
        d["AuditPolicyChanges"].str.replace_all(r"\s+", "").str.split(",")
        .list.eval(pl.element().replace(AUDIT_CHANGES)).list.join(", "),
        pl.col("_m_changes"))
    image = pl.coalesce(d["NewProcessName"], d["Image"], d["ProcessName"])
    task_content = pl.coalesce(d["TaskContent"], d["TaskContentNew"])
    logon_id = _hex_id(pl.when(by_target).then(pl.coalesce(d["TargetLogonId"], d["SubjectLogonId"]))
                       .otherwise(pl.coalesce(d["SubjectLogonId"], d["LogonId"], pl.col("_m_logon_id"),
                                              d["TargetLogonId"])))
    is_ = key.is_in
    service_event = is_(["4697", "7045", "7040"])
    details_spec: list[tuple[str, pl.Expr]] = [
        ("channel", _channel(pl.col("_channel"))),
        ("logon_id", logon_id),
        ("target_logon_id", pl.when(event_id == "4624").then(_hex_id(d["TargetLogonId"]))),
        ("subject_logon_id", pl.when(by_target).then(_hex_id(d["SubjectLogonId"]))),
        ("image", image),
        ("command_line", d["CommandLine"]),
        ("parent_image", pl.coalesce(d["ParentProcessName"], d["ParentImage"])),
        ("parent_command_line", d["ParentCommandLine"]),
        ("hashes", d["Hashes"]),
        ("service_name", pl.when(service_event).then(service_name)),
        ("service_key", pl.when(key == "7040").then(d["param4"])),
        ("service_file", pl.coalesce(d["ServiceFileName"], d["ImagePath"])),
        ("service_type", pl.when(service_event).then(d["ServiceType"])),
        ("start_type", pl.coalesce(d["ServiceStartType"].replace(START_TYPES), d["StartType"])),
        ("service_account", pl.when(is_(["4697", "7045"])).then(
            pl.coalesce(d["ServiceAccount"], pl.col("_m_service_account")))),
        ("old_start_type", pl.when(key == "7040").then(old_start)),
        ("new_start_type", pl.when(key == "7040").then(new_start)),
        ("task_name", d["TaskName"]),
        ("task_command", _task_command(task_content)),
        ("audit_category", pl.coalesce(d["CategoryId"].replace_strict(AUDIT_CATEGORIES, default=None),
                                       pl.when(key == "4719").then(pl.col("_m_category")), d["CategoryId"])),
        ("audit_subcategory", subcategory),
        ("audit_subcategory_guid", d["SubcategoryGuid"]),
        ("audit_changes", changes),
        ("target_server", d["TargetServerName"]),
        ("target_info", d["TargetInfo"]),
        ("kerberos_service", pl.when(is_(["4768", "4769"])).then(d["ServiceName"])),
        ("ticket_encryption", d["TicketEncryptionType"]),
        ("ticket_options", d["TicketOptions"]),
        ("auth_package", d["PackageName"]),
        ("device_description", d["DeviceDescription"]),
        ("device_class", d["ClassName"]),
        ("device_id", d["DeviceId"]),
        ("protocol", d["Protocol"]),
        ("destination_ip", d["DestinationIp"]),
        ("destination_port", d["DestinationPort"]),
        ("destination_host", d["DestinationHostname"]),
        ("target_filename", d["TargetFilename"]),
        ("registry_key", d["TargetObject"]),
        ("registry_value", d["Details"]),
        ("record_id", clean(pl.coalesce(pl.col("EventRecordID"), pl.col("RecordNumber")))),
    ]
    details = [(k, e) for k, e in details_spec if _live(decoded, e)]
    target_type = action.replace_strict(TARGET_TYPES, default=None)
    object_id = (
        pl.when(action.is_in(["service_installed", "service_config_changed"]))
        .then(pl.coalesce(pl.when(key == "7040").then(d["param4"]), service_name))
        .when(action.is_in(["task_created", "task_modified"])).then(d["TaskName"])
        .when(action == "process_created").then(image)
        .when(action == "audit_policy_changed").then(subcategory)
        .when(action == "removable_media").then(pl.coalesce(d["DeviceId"], d["DeviceDescription"]))
        .when(action == "network_connection").then(d["DestinationIp"])
        .when(action == "file_created").then(d["TargetFilename"])
        .when(action == "registry_set").then(d["TargetObject"])
        .when(key == "4769").then(d["ServiceName"])
    )

    stages.append(_stage(
        **{f"_x_{k}": e.cast(pl.String) for k, e in details},
        host=_first(
            decoded, clean(pl.col("Computer")), clean(pl.col("winlog").struct.field("computer_name")),
            clean(pl.col("computer_name")), clean(pl.col("Hostname")), clean(pl.col("MachineName")),
            clean(pl.when(pl.col("host").str.starts_with("{"))
                  .then(pl.col("host").str.json_path_match("$.name")).otherwise(pl.col("host"))),
        ),
        account=pl.when(by_target).then(target).otherwise(subject),
        account_domain=pl.coalesce(
            pl.when(actor == "lockout").then(pl.col("_d_SubjectDomainName"))
            .when(by_target).then(target_domain)
            .otherwise(subject_domain),
            pl.col("_user_domain"),
        ),
        src_ip=pl.coalesce("_d_IpAddress", clean(pl.col("source").struct.field("ip"))),
        # Windows writes some workstation names as \\NAME; 4740 names the caller in TargetDomainName.
        src_host=clean(pl.coalesce(
            pl.when(actor == "lockout").then(pl.col("_d_TargetDomainName")),
            pl.col("_d_WorkstationName"), d["Workstation"], clean(pl.col("source").struct.field("domain")),
        ).str.strip_prefix("\\\\")),
        action=action,
        category=pl.when(action == "other").then(event_id.replace_strict(OTHER_CATEGORIES, default=None)),
        outcome=pl.coalesce(
            pl.when(ecs_outcome.is_in(["success", "failure"])).then(ecs_outcome),
            _keywords_outcome(),
            key.replace_strict({k: e.outcome for k, e in WINDOWS_EVENTS.items()}, default="unknown"),
        ),
        target_type=pl.when(pl.col("_target_id").is_not_null()).then(pl.lit("account"))
        .when(key == "4769").then(pl.when(object_id.is_not_null()).then(pl.lit("kerberos_service")))
        .otherwise(pl.when(object_id.is_not_null()).then(target_type)),
        target_id=pl.coalesce(account_expr(pl.col("_target_id")), object_id),
        native_code=event_id,
        old_value=pl.when(action == "role_revoked").then(pl.col("_group"))
        .when(key == "7040").then(old_start),
        new_value=pl.when(action == "group_member_added").then(pl.col("_group"))
        .when(action == "privileged_logon").then(pl.col("_d_PrivilegeList").str.replace_all(r"\s+", " "))
        .when(key == "7040").then(new_start)
        .when(action == "audit_policy_changed").then(changes)
        .when(action == "registry_set").then(d["Details"]),
        message=pl.when(notes != "").then(formatted("{} ({})", summary, notes)).otherwise(summary),
        _error=pl.coalesce(
            pl.col("_error"),
            pl.when(event_id.is_null()).then(
                pl.lit("no event id (EventID, winlog.event_id, event_id or event.code)")),
        ),
    ))
    return tuple(stages), tuple(k for k, _ in details)


_MESSAGE_HEAD: Final = 2048  # the Subject block and the event's own fields come first in every message
# Labels of a rendered message read when the structured field is missing (the first one wins: the
# Subject block comes first).
_MESSAGE_FIELDS: Final[dict[str, str]] = {
    "account": "Account Name", "domain": "(?:Account Domain|Domain Name)", "sid": "Security ID",
    "logon_id": "Logon ID", "service_account": "Service Account", "category": "Category",
    "subcategory": "Subcategory", "changes": "Changes",
}
_CHANNELS: Final = {c.lower(): c for c in ("Security", "System", "Application", "Setup", "ForwardedEvents",
                                           "Microsoft-Windows-Sysmon/Operational")}


def _channel(expr: pl.Expr) -> pl.Expr:
    """A channel in one spelling: ``security`` and ``Security`` are the same log."""
    return expr.str.to_lowercase().replace_strict(_CHANNELS, default=expr)


def _name(expr: pl.Expr) -> pl.Expr:
    """A name as written, trimmed; only empty and ``-`` (Windows' "no value") are null."""
    text = expr.cast(pl.String).str.strip_chars()
    return pl.when(~text.is_in(["", "-"])).then(text)


def _live(frame: _Filled, expr: pl.Expr) -> bool:
    """Whether *expr* may be non-null on *frame*: False only when every column it reads is a decoded
    field that is null throughout (see :func:`_first`); columns computed later count as live."""
    roots = expr.meta.root_names()
    return not roots or any(c not in frame.columns or c in frame.filled for c in roots)


def _with_details(frame: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """``details`` = ``[{key, value}, ...]`` from the columns ``_x_<key>`` of *frame* (dropped), the
    known values in the order of *keys*; null when none is known.

    Built long and gathered back (unpivot, drop nulls, one list per row): a list of forty
    conditional structs per row costs thirty times as much.
    """
    columns = [f"_x_{k}" for k in keys]
    if not columns:
        return frame.with_columns(details=pl.lit(None, DETAILS))
    order = {c: i for i, c in enumerate(columns)}
    long = (
        frame.select(columns).with_row_index("_row").unpivot(index="_row", variable_name="_k", value_name="value")
        .filter(pl.col("value").is_not_null())
        .with_columns(_o=pl.col("_k").replace_strict(order, return_dtype=pl.Int32), key=pl.col("_k").str.slice(3))
        .sort("_row", "_o")
        .group_by("_row", maintain_order=True).agg(details=pl.struct("key", "value"))
    )
    return (frame.drop(columns).with_row_index("_row")
            .join(long.with_columns(pl.col("details").cast(DETAILS)), on="_row", how="left", maintain_order="left")
            .drop("_row"))
