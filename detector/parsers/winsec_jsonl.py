"""Windows Security events of the HES/DMS servers as JSON lines (DESIGN.md format 4).

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

import re
from dataclasses import dataclass
from typing import Final, Literal

import polars as pl

from detector.parsers.base import Parser, account_expr, clean, collect
from detector.parsers.jsonlines import decode_json_parts

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
              "WorkstationName", "Status", "SubStatus", "PrivilegeList")
_DATA = pl.Struct({f: pl.String for f in EVENT_DATA})
_TEXT = ("TimeCreated", "EventTime", "@timestamp", "EventID", "Id", "event_id", "Computer", "Hostname",
         "Channel", "SourceName", "ProviderName", "User",
         "MachineName", "computer_name", "Message", "message", "EventType", "Keywords", "KeywordsDisplayNames",
         "keywords")

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
                             "event_data": _DATA, "user_data": _DATA}),
        "event": pl.Struct({"code": pl.String, "outcome": pl.String}),
        "user": pl.Struct({"name": pl.String, "domain": pl.String, "id": pl.String,
                           "target": pl.Struct({"name": pl.String})}),
        "source": pl.Struct({"ip": pl.String, "domain": pl.String}),
        "group": pl.Struct({"name": pl.String}),
    }
)

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


def _first(frame: pl.DataFrame, *sources: pl.Expr) -> pl.Expr:
    """``pl.coalesce(sources)``, leaving out the sources whose column is null throughout *frame*.

    The frame holds one shape of record, which never has the other shapes' fields: leaving those
    out gives the same values and saves a pass over the chunk for each.
    """
    live = [s for s in sources if any(frame.get_column(c).null_count() < frame.height
                                      for c in s.meta.root_names())]
    return pl.coalesce(live) if live else pl.lit(None, pl.String)


def _data(name: str, frame: pl.DataFrame) -> pl.Expr:
    """An EventData value from whichever shape the record has: flat, Winlogbeat 7/8 or 6."""
    return _first(
        frame,
        clean(pl.col(name)),
        clean(pl.col("winlog").struct.field("event_data").struct.field(name)),
        clean(pl.col("winlog").struct.field("user_data").struct.field(name)),
        clean(pl.col("event_data").struct.field(name)),
        clean(pl.col("user_data").struct.field(name)),
    )


def _sid(expr: pl.Expr) -> pl.Expr:
    """A SID usable as an account name: the null SID names nobody."""
    return pl.when(expr.str.to_uppercase() != _NULL_SID).then(expr)


def _time_text(frame: pl.DataFrame) -> pl.Expr:
    """The event's own creation time first; ``@timestamp`` may be a relay's receive time."""
    text = _first(frame, clean(pl.col("TimeCreated")), clean(pl.col("EventTime")), clean(pl.col("@timestamp")))
    # Windows PowerShell 5.1 ConvertTo-Json: "/Date(1776132778903)/", epoch ms (UTC) + optional offset.
    epoch_ms = text.str.extract(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$", 1)
    return pl.coalesce(epoch_ms, text)


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


class WinsecJsonl(Parser):
    name = "winsec_jsonl"
    description = "Windows Security events as JSON lines (Get-WinEvent, NXLog im_msvistalog, Winlogbeat/ECS)"
    source_system = "windows"
    independent_chunks = True

    @classmethod
    def sniff(cls, head: list[str]) -> bool:
        def windows(line: str) -> bool:
            if not _JSON_OBJECT.match(line) or ('"command"' in line and '"jobId"' in line):
                return False
            return bool((_ID_KEY.search(line) and _WINDOWS_KEY.search(line))
                        or (_GET_WINEVENT_ID.search(line) and _GET_WINEVENT_KEY.search(line)))

        return any(windows(line) for line in head)

    def parse_chunk(self, lines: pl.DataFrame, text: bytes | None = None) -> pl.DataFrame:
        # One shape at a time: the fields the other shapes use are then null throughout, so the
        # coalesces over every place a value may be cost only for the places this shape has.
        staged = pl.concat([self._normalize(part) for part in decode_json_parts(lines, SCHEMA)])
        return self.with_time(staged, "_time_text")

    def _normalize(self, decoded: pl.DataFrame) -> pl.DataFrame:
        # Each stage adds what later stages read more than once.
        user = pl.col("user")
        staged = decoded.lazy().with_columns(_time_text=_time_text(decoded)).with_columns(
            _id=_first(
                decoded, clean(pl.col("EventID")), clean(pl.col("winlog").struct.field("event_id")),
                clean(pl.col("event_id")), clean(pl.col("event").struct.field("code")), clean(pl.col("Id")),
            ).str.replace(r"^(\d+)\.0*$", "$1"),  # 4624.0 from exporters that write every number as a float
            **{f"_d_{name}": _data(name, decoded) for name in EVENT_DATA},
            _user=clean(user.struct.field("name")),
            _user_domain=clean(user.struct.field("domain")),
            _user_id=_sid(clean(user.struct.field("id"))),
            _user_target=clean(user.struct.field("target").struct.field("name")),
        )
        provider = _first(decoded, clean(pl.col("Channel")), clean(pl.col("SourceName")),
                          clean(pl.col("ProviderName")), clean(pl.col("winlog").struct.field("channel")),
                          clean(pl.col("winlog").struct.field("provider_name")))
        staged = staged.with_columns(_key=pl.when(provider.str.to_lowercase().str.contains("sysmon"))
                                     .then(pl.concat_str([pl.lit("sysmon:"), pl.col("_id")])).otherwise(pl.col("_id")))
        event_id, key = pl.col("_id"), pl.col("_key")
        staged = staged.with_columns(
            _actor=key.replace_strict({k: e.actor for k, e in WINDOWS_EVENTS.items()}, default=None),
            _kind=key.replace_strict({k: e.target for k, e in WINDOWS_EVENTS.items()}, default="none"),
            _action=key.replace_strict({k: e.action for k, e in WINDOWS_EVENTS.items()}, default="other"),
            _tsid=_sid(pl.coalesce("_d_TargetUserSid", "_d_TargetSid")),
            _ssid=_sid(pl.col("_d_SubjectUserSid")),
            _status=pl.coalesce(
                pl.when(pl.col("_d_SubStatus").str.to_lowercase() != "0x0").then(pl.col("_d_SubStatus")),
                pl.col("_d_Status"),
            ).str.to_lowercase(),
        )

        actor = pl.col("_actor")
        # Unlisted events: the subject acts when there is one (4648, 4722...), else the target (Kerberos).
        staged = staged.with_columns(
            _by_target=(actor == "target") | (actor == "lockout") | (
                actor.is_null() & pl.col("_d_SubjectUserName").is_null() & pl.col("_ssid").is_null()),
            _target_id=pl.when(pl.col("_kind") == "account")
            .then(pl.coalesce("_d_TargetUserName", "_user_target", "_tsid"))
            .when(pl.col("_kind") == "member")
            .then(pl.coalesce(_dn_common_name(pl.col("_d_MemberName")), _sid(pl.col("_d_MemberSid")),
                              "_user_target")),
            _group=pl.coalesce("_d_TargetUserName", clean(pl.col("group").struct.field("name"))),
        )

        by_target = pl.col("_by_target")
        action = pl.col("_action")
        status = pl.col("_status")
        logon_type = pl.concat_str(
            [pl.format("LogonType {}", pl.col("_d_LogonType")),
             pl.col("_d_LogonType").replace_strict(LOGON_TYPES, default=None)],
            separator=", ", ignore_nulls=True,
        )
        failure = pl.when(status != "0x0").then(
            pl.concat_str([status, status.replace_strict(LOGON_FAILURES, default=None)], separator=" ",
                          ignore_nulls=True))
        details = pl.concat_str([pl.when(logon_type != "").then(logon_type), failure], separator="; ",
                                ignore_nulls=True)
        summary = pl.coalesce(
            _first_sentence(pl.coalesce(clean(pl.col("Message")), clean(pl.col("message")))),
            key.replace_strict({k: e.summary for k, e in WINDOWS_EVENTS.items()}, default=None),
            pl.format("Windows event {}", event_id),
        )
        ecs_outcome = clean(pl.col("event").struct.field("outcome")).str.to_lowercase()

        return collect(staged.with_columns(
            host=_first(
                decoded, clean(pl.col("Computer")), clean(pl.col("winlog").struct.field("computer_name")),
                clean(pl.col("computer_name")), clean(pl.col("Hostname")), clean(pl.col("MachineName")),
                clean(pl.when(pl.col("host").str.starts_with("{"))
                      .then(pl.col("host").str.json_path_match("$.name")).otherwise(pl.col("host"))),
            ),
            account=pl.when(by_target).then(pl.coalesce("_d_TargetUserName", "_user", "_tsid", "_user_id"))
            .otherwise(pl.coalesce("_d_SubjectUserName", clean(pl.col("User")), "_user", "_ssid", "_user_id")),
            account_domain=pl.coalesce(
                pl.when(actor == "lockout").then(pl.col("_d_SubjectDomainName"))
                .when(by_target).then(pl.col("_d_TargetDomainName"))
                .otherwise(pl.col("_d_SubjectDomainName")),
                pl.col("_user_domain"),
            ),
            src_ip=pl.coalesce("_d_IpAddress", clean(pl.col("source").struct.field("ip"))),
            # Windows writes some workstation names as \\NAME; 4740 names the caller in TargetDomainName.
            src_host=clean(pl.coalesce(
                pl.when(actor == "lockout").then(pl.col("_d_TargetDomainName")),
                pl.col("_d_WorkstationName"), clean(pl.col("source").struct.field("domain")),
            ).str.strip_prefix("\\\\")),
            action=action,
            category=pl.when(action == "other").then(event_id.replace_strict(OTHER_CATEGORIES, default=None)),
            outcome=pl.coalesce(
                pl.when(ecs_outcome.is_in(["success", "failure"])).then(ecs_outcome),
                _keywords_outcome(),
                key.replace_strict({k: e.outcome for k, e in WINDOWS_EVENTS.items()}, default="unknown"),
            ),
            target_type=pl.when(pl.col("_target_id").is_not_null()).then(pl.lit("account")),
            target_id=account_expr(pl.col("_target_id")),
            native_code=event_id,
            old_value=pl.when(action == "role_revoked").then(pl.col("_group")),
            new_value=pl.when(action == "group_member_added").then(pl.col("_group"))
            .when(action == "privileged_logon").then(pl.col("_d_PrivilegeList").str.replace_all(r"\s+", " ")),
            message=pl.when(details != "").then(pl.format("{} ({})", summary, details)).otherwise(summary),
            _error=pl.coalesce(
                pl.col("_error"),
                pl.when(event_id.is_null()).then(
                    pl.lit("no event id (EventID, winlog.event_id, event_id or event.code)")),
            ),
        ))
