"""Security signals: what a window's events say on their own, whatever the forest makes of them.

The isolation forest answers "how unusual is this window against the baseline?". That is the wrong
question for an audit log cleared, a backdoor account created, or an account nobody has seen issuing
remote disconnects: those matter even when they are not rare in a statistical sense (a short capture
has no baseline to be rare against), and they matter *more* than an operator who is merely busier
than usual. So detection has two parts (see ``README.md``, "How findings are ranked"):

* **signals** (this module): a small catalog of rules, each read from the events and the entities'
  history, each with a stated impact (``low`` .. ``high``). The impact drops when the same account did
  the same thing in the baseline (routine), and rises when several signals meet in one window;
* **the forest** ranks within what is unusual and finds what no signal names; on its own it
  reaches ``medium`` at most.

A window's severity is the larger of the two. Every signal names what happened in words an operator
understands, and the raw lines behind it are in the finding's evidence.

Catalog
-------
:data:`CATALOG` lists the signals with their impact and meaning; the README renders it as a table.
Signals of events (``log_cleared``, ``account_created``...) are computed here from a slice of events
(:func:`event_signals`); signals of windows (``unusual_hour``, ``new_network``...) from the window
features the forest also reads (:func:`window_novelty`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import polars as pl

from detector.exprs import formatted
from detector.features import CONTROL_ACTIONS, Profiles
from detector.features.common import entity_of, is_device_target
from detector.features.controls import weakened_change
from detector.schema import UTC_US, detail

LEVELS: Final = ("none", "low", "medium", "high", "critical")
LOW, MEDIUM, HIGH, CRITICAL = 1, 2, 3, 4


@dataclass(frozen=True)
class SignalKind:
    """One entry of the catalog: its name, its impact before adjustment, and what it means."""

    name: str
    impact: str
    meaning: str
    adjusted: str = ""  # how the impact moves (routine, what was done...)


CATALOG: Final[dict[str, SignalKind]] = {s.name: s for s in (
    SignalKind("log_cleared", "high", "an audit or event log was cleared (Windows 1102/104, HES AuditLogCleared)",
               "medium when the account cleared logs in the baseline"),
    SignalKind("logging_disabled", "high",
               "auditing or a log collector was switched off: an audit policy with auditing removed (4719), "
               "the event-log or a collector service disabled (7040)", ""),
    SignalKind("audit_policy_changed", "medium", "the system audit policy was changed (4719)",
               "low when the account changed it in the baseline"),
    SignalKind("control_weakened", "high",
               "a security setting switched off, a limit loosened tenfold, a retention cut tenfold or an "
               "access rule opened to any address (0.0.0.0/0, ::/0, any)", ""),
    SignalKind("privilege_granted", "high",
               "an account added to an administrators group or given an administrator role",
               "medium for other groups and roles; one level lower when the granting account did so in the baseline"),
    SignalKind("account_created", "medium", "an account was created",
               "low when the creating account created accounts in the baseline"),
    SignalKind("created_account_used", "high", "an account created in the scanned logs administers something "
               "(accounts, privileges, settings, logs, services, tasks)",
               "medium when it only uses the system and its creator never created accounts before; low when a "
               "routine creator made it"),
    SignalKind("new_account_acting", "high",
               "an account never seen in the baseline changes accounts, privileges, settings, logs, services, "
               "firmware or keys, or sends control commands",
               "medium for remote logons (RDP, VPN, explicit credentials), low for anything else; machine "
               "accounts low; accounts created in the scanned logs are `created_account_used` instead"),
    SignalKind("first_privileged_logon", "medium", "an account with a baseline gets special privileges (4672) "
               "for the first time", ""),
    SignalKind("first_control_command", "medium",
               "an account sends a control command (disconnect, connect, load limit, firmware, keys, breaker) "
               "it never sent in the baseline",
               "low when it reaches at most two devices and is not firmware or keys"),
    SignalKind("control_burst", "medium",
               "control commands other than firmware (whose signal is the image) reach at least 10 devices in a "
               "window, five times the account's usual",
               "high at fifty times"),
    SignalKind("new_firmware_image", "medium", "firmware with an image hash never seen in the baseline", ""),
    SignalKind("service_installed", "medium", "a service was installed (4697, 7045)",
               "high for a known remote-execution service or a binary in a user-writable path; "
               "low when the account installed services in the baseline"),
    SignalKind("task_created", "medium", "a scheduled task was created or changed (4698, 4702)",
               "low when the account did so in the baseline"),
    SignalKind("suspicious_process", "high",
               "a process whose command line is a known attacker technique (credential dumping, Kerberos ticket "
               "theft, shadow-copy deletion, log clearing, adding local administrators)",
               "medium for tools administrators also use (remote services, firewall rules, Defender exclusions, "
               "encoded PowerShell); low for those when the account ran processes in the baseline"),
    SignalKind("removable_media", "low", "removable media used by a person who never used any in the baseline "
               "(events a machine logged are attributed to the user logged on)", ""),
    SignalKind("new_territory", "medium",
               "an account acts on at least 10 devices it never touched before, three times the distinct "
               "devices it usually acts on in a window, and three times as many devices as in its busiest "
               "windows", "low at twice its usual and beyond its busiest windows"),
    SignalKind("new_logon_host", "low", "a logon to a host the account never logged on to in the baseline", ""),
    SignalKind("explicit_credentials", "low", "a logon with explicitly given credentials (4648) the account never "
               "made in the baseline", ""),
    SignalKind("account_deleted", "medium", "an account was deleted",
               "low when the deleting account deleted accounts in the baseline"),
    SignalKind("new_network", "low", "activity from a network (/24, /64) the account never used",
               "medium in a window that administers (accounts, privileges, settings, logs, services), pushes "
               "firmware or keys, or comes in remotely (VPN, RDP); the same for the three below"),
    SignalKind("unusual_hour", "low", "activity at an hour the account (and, with a short history, its peers) is "
               "rarely or never active", ""),
    SignalKind("unusual_weekday", "low", "activity on a weekday the account is rarely or never active", ""),
    SignalKind("dormant_account", "low", "first activity after at least 14 days of silence", "medium after 30 days"),
)}

# Signals that tell the same act count once when they combine: creating an account and adding it to
# a group is one act of provisioning, not two alarms.
FAMILY: Final[dict[str, str]] = {
    "log_cleared": "logging", "logging_disabled": "logging", "audit_policy_changed": "logging",
    "control_weakened": "controls",
    "privilege_granted": "accounts", "account_created": "accounts", "account_deleted": "accounts",
    "created_account_used": "new_account", "new_account_acting": "new_account",
    "first_privileged_logon": "privilege",
    "first_control_command": "devices", "control_burst": "devices", "new_territory": "devices",
    "new_firmware_image": "firmware",
    "service_installed": "persistence", "task_created": "persistence",
    "suspicious_process": "execution",
    "removable_media": "media",
    "new_logon_host": "lateral", "explicit_credentials": "lateral",
}

# Two signals of medium impact or more in one window (of different families) raise its severity by
# one level; three different low signals together make medium.
COMBINE_AT: Final = 2
LOWS_TO_MEDIUM: Final = 3

# A group or role whose members administer the system.
ADMIN_GROUP: Final = (r"(?i)admin|root|superuser|sudo|wheel|backup operators|account operators|server operators"
                      r"|schema|enterprise|privileged|security")
# Services whose installation is remote execution, and binaries no legitimate service runs from.
# (Not \ProgramData\: Defender and many updaters install their drivers from there.)
SUSPICIOUS_SERVICE: Final = (r"(?i)psexe|paexec|remcom|csexec|winexe|\\users\\|\\temp\\|\\appdata\\"
                             r"|\\perflogs\\|cmd(?:\.exe)?\s*/c|powershell|%comspec%|rundll32|regsvr32|mshta"
                             r"|\.bat\b|\.ps1\b|\\\\127\.0\.0\.1\\|\\admin\$\\")
# Command lines of well-documented attacker techniques: credential theft and covering tracks (MITRE
# ATT&CK T1003, T1558, T1490, T1070, T1136, T1098) are high; tools and changes an administrator also
# makes (remote services, firewall rules, Defender exclusions: T1569, T1543, T1562) medium.
SUSPICIOUS_COMMAND: Final = (r"(?i)sekurlsa|mimikatz|comsvcs(?:\.dll)?[\s,]+minidump|procdump[^\n]*lsass|dumpert"
                             r"|rubeus|asktgt|kerberoast|\s/ptt\b|vssadmin[^\n]*delete\s+shadows|wbadmin[^\n]*delete"
                             r"|wevtutil(?:\.exe)?\s+(?:cl|clear-log)|clear-eventlog"
                             r"|net1?(?:\.exe)?\s+user\s+\S+\s+\S*\s*/add"
                             r"|net1?(?:\.exe)?\s+(?:localgroup|group)\s+\"?(?:administrators|domain admins)\"?\s+\S+\s+/add"
                             r"|auditpol(?:\.exe)?\s+/(?:set|clear)|ntdsutil|reg(?:\.exe)?\s+save\s+hklm\\\\?(?:sam|security)")
RISKY_COMMAND: Final = (r"(?i)psexe|paexec|\bsc(?:\.exe)?\s+(?:\\\\\S+\s+)?(?:create|config)\b"
                        r"|netsh(?:\.exe)?\s+(?:advfirewall\s+)?firewall\s+(?:add|set)"
                        r"|set-mppreference\s+-disable|add-mppreference\s+-exclusion|invoke-(?:wmimethod|command)\b"
                        r"|-enc(?:odedcommand)?\s+[a-z0-9+/=]{20,}")
# Logging and collection services whose start type must not be switched off.
LOGGING_SERVICE: Final = r"(?i)event ?log|sysmon|audit|wecsvc|winlogbeat|nxlog|splunk|elastic|syslog"
# Actions by which a never-seen account does damage.
HIGH_IMPACT_ACTIONS: Final = (
    "account_created", "account_deleted", "account_modified", "password_changed", "group_member_added",
    "role_granted", "role_revoked", "privileged_logon", "setting_changed", "log_cleared", "audit_policy_changed",
    "service_installed", "service_config_changed", "task_created", "task_modified", "fw_download", "fw_activate",
    "key_renewal", *CONTROL_ACTIONS,
)
# Actions that administer a system rather than use it.
ADMINISTRATIVE_ACTIONS: Final = (
    "account_created", "account_deleted", "account_modified", "password_changed", "group_member_added",
    "role_granted", "role_revoked", "privileged_logon", "setting_changed", "log_cleared", "audit_policy_changed",
    "service_installed", "service_config_changed", "task_created", "task_modified",
)
# Windows where novelty weighs more: administration, and commands that change what devices trust
# (firmware, keys) rather than what they do all day.
SENSITIVE_ACTIONS: Final = (*ADMINISTRATIVE_ACTIONS, "fw_download", "fw_activate", "key_renewal")
REMOTE_ACTIONS: Final = ("vpn_connect", "explicit_credential_logon")
# A remote interactive logon (RDP) as the normalized message of a Windows 4624 says it.
REMOTE_LOGON: Final = r"LogonType 10\b|RemoteInteractive"

# Every event signal reads these actions (plus every action of a never-seen account).
_SIGNAL_ACTIONS: Final = (
    "log_cleared", "audit_policy_changed", "service_config_changed", "setting_changed", "group_member_added",
    "role_granted", "account_created", "account_deleted", "service_installed", "task_created", "task_modified",
    "fw_download", "fw_activate", "privileged_logon", "removable_media", "explicit_credential_logon",
    "process_created", "login_success", *CONTROL_ACTIONS,
)
# A "never seen" account means something only after this much baseline.
MIN_BASELINE_DAYS: Final = 2.0
# How long after its creation a created account's use is called out.
CREATED_RECENTLY: Final = timedelta(days=7)

SIGNAL_ROW: Final = pl.Schema({
    "entity_kind": pl.String(), "entity_id": pl.String(), "window_start": UTC_US, "time": UTC_US,
    "signal": pl.String(), "level": pl.Int8(), "detail": pl.String(), "evidence": pl.String(),
})

CREATED_SCHEMA: Final = pl.Schema({"account": pl.String(), "created_at": UTC_US, "creator": pl.String(),
                                   "routine_creator": pl.Boolean()})
# What an account did for the first time in a scan (``what``: an action, or ``logon <host>``) and the
# window it first did it in: a "first time" signal is raised in that window only, not again each time
# the new habit repeats later in the scan.
FIRSTS_SCHEMA: Final = pl.Schema({"_actor": pl.String(), "_what": pl.String(), "_first_window": UTC_US})
FIRST_TIME_ACTIONS: Final = ("privileged_logon", "explicit_credential_logon", "removable_media", *CONTROL_ACTIONS)


# The columns actor() reads.
ACTOR_COLUMNS: Final = ("attributed_account", "account", "host")


def actor() -> pl.Expr:
    """Who acted (the account entity of an event, :func:`detector.features.entity_of`)."""
    return entity_of("account")


def _text(*parts: pl.Expr | str) -> pl.Expr:
    return pl.concat_str([pl.lit(p) if isinstance(p, str) else p.fill_null("?") for p in parts])


def _lower(level: pl.Expr, when: pl.Expr, floor: int = 0) -> pl.Expr:
    """*level* one lower where *when* holds, not below *floor*."""
    return pl.when(when).then((level - 1).clip(lower_bound=floor)).otherwise(level)


def _routine_note(when: pl.Expr) -> pl.Expr:
    return pl.when(when).then(pl.lit(" (it did so in the baseline too)")).otherwise(pl.lit(""))


def _details_text() -> pl.Expr:
    """All details values of an event in one lower-cased string, for pattern rules."""
    return pl.col("details").list.eval(pl.element().struct.field("value")).list.join(" ").fill_null("")


@dataclass
class SignalState:
    """What signals carry from one slice of a scan to the next: the accounts created so far, and the
    first window in which each account did each new thing (:data:`FIRSTS_SCHEMA`)."""

    created: pl.DataFrame
    firsts: pl.DataFrame

    @classmethod
    def empty(cls) -> SignalState:
        return cls(pl.DataFrame(schema=CREATED_SCHEMA), pl.DataFrame(schema=FIRSTS_SCHEMA))


def event_signals(events: pl.DataFrame, profiles: Profiles, window: str,
                  state: SignalState | None = None) -> pl.DataFrame:
    """The signals of *events* (one row per signal and event, :data:`SIGNAL_ROW`), newest state in *state*.

    Parameters
    ----------
    events
        Events in the normalized schema (after attribution).
    profiles
        The baseline the novelty and routine checks compare with (empty profiles: no check says
        "never seen", none says "routine").
    window
        The window length, to key each signal to its entity's window.
    state
        Accounts created in earlier slices of the same scan; updated with this slice's.
    """
    state = state if state is not None else SignalState.empty()
    has_base = profiles.has_baseline
    days = profiles.baseline_days
    # Known / routine means seen *before the event's window*: when the baseline overlaps the events
    # (training, or a scan that learned from its own logs), an account is not its own history.
    activity = profiles.account_activity  # one row per account
    # Each actor's first baseline event by a lookup (a replace: half the cost of a join over every event).
    known_since = pl.col("_actor").replace_strict(activity.get_column("account"), activity.get_column("first_seen"),
                                                  default=None, return_dtype=activity.schema["first_seen"])
    done = profiles.account_actions.lazy().select(
        pl.col("account").alias("_actor"), "action", _done_since=pl.col("first_seen"))
    # Every event's actor and whether it is known, over a few light columns: the candidates below are
    # a fraction of the events, and their full rows are gathered afterwards (carrying the events'
    # thirty columns through this join and filter cost several times the work itself).
    ev = (events.lazy().with_row_index("_event")
          .select("_event", "time", "target_type", "target_id", "raw_file", "raw_line",
                  _actor=actor(), action="action")  # the Enum: compared without a string per event
          .filter(pl.col("_actor").is_not_null())
          .with_columns(_known_since=known_since)
          .with_columns(_known=(pl.col("_known_since") < pl.col("time").dt.truncate(window)).fill_null(False))
          # Collected once: the candidates, the accounts created and new territory all read it.
          .collect().lazy())
    # "Never seen" needs history before the event: not in the baseline's first days.
    start = profiles.baseline_start
    history_from = start + timedelta(days=MIN_BASELINE_DAYS) if has_base and start is not None else None
    new_actor = (~pl.col("_known") & pl.lit(has_base and days >= MIN_BASELINE_DAYS)
                 & (pl.col("time") >= pl.lit(history_from, UTC_US) if history_from is not None else pl.lit(False)))
    wanted = pl.col("action").is_in(_SIGNAL_ACTIONS) | new_actor
    # Every event of the accounts created so far or in this slice (their use is a signal); a lookup in
    # no account at all (the usual slice) is left out rather than made for every event.
    created_names = pl.concat([state.created.get_column("account"),
                               ev.filter(pl.col("action") == "account_created").select(
                                   pl.col("target_id").alias("account")).collect().to_series()]).drop_nulls()
    if created_names.len():
        wanted |= pl.col("_actor").is_in(created_names.unique().implode())
    picked = ev.filter(wanted).select("_event", "_actor", "_known_since", "_known").collect()
    cand = (
        events[picked.get_column("_event")].lazy()
        .with_columns(action=pl.col("action").cast(pl.String), category=pl.col("category").cast(pl.String))
        .with_columns(*picked.drop("_event").get_columns())
        .join(done, on=["_actor", "action"], how="left", maintain_order="left")
        .with_columns(
            _routine=(pl.col("_done_since") < pl.col("time").dt.truncate(window)).fill_null(False) & pl.lit(has_base),
            _new=new_actor,
            window_start=pl.col("time").dt.truncate(window),
            _evidence=pl.concat_str([pl.col("raw_file"), pl.lit(":"), pl.col("raw_line").cast(pl.String)]),
            _group=pl.coalesce("new_value", "old_value"),
            _detail_text=_details_text(),
            _host=pl.coalesce("host", "src_host"),
        )
        .collect()
    )
    cand = _mark_repeats(cand, state)
    created_now = cand.filter(pl.col("action") == "account_created").select(
        pl.col("target_id").alias("account"), pl.col("time").alias("created_at"), pl.col("_actor").alias("creator"),
        pl.col("_routine").alias("routine_creator")).drop_nulls("account")
    created = pl.concat([state.created, created_now]).group_by("account").agg(
        pl.all().sort_by("created_at").first())
    state.created = created.sort("account")

    rules = _event_rules(cand, profiles, created)
    if has_base:
        rules.append(_new_territory(ev, profiles, window))
    rows = [r for r in rules if r.height]
    if not rows:
        return pl.DataFrame(schema=SIGNAL_ROW)
    return (pl.concat(rows).filter(pl.col("level") > 0).cast(SIGNAL_ROW)
            .select(list(SIGNAL_ROW)))


def _first_time_what() -> pl.Expr:
    """What an event does that can be a first (:data:`FIRSTS_SCHEMA` ``_what``), else null."""
    action = pl.col("action")
    return (pl.when(action.is_in(FIRST_TIME_ACTIONS)).then(action)
            .when((action == "login_success") & pl.col("host").is_not_null())
            .then(formatted("logon {}", pl.col("host").str.to_lowercase())))


def _firsts(frame: pl.DataFrame) -> pl.DataFrame:
    """The first window of each (account, what) in *frame* (``_actor``, ``_what``, ``window_start``)."""
    return (frame.lazy().filter(pl.col("_actor").is_not_null() & pl.col("_what").is_not_null())
            .group_by("_actor", "_what").agg(_first_window=pl.col("window_start").min())
            .collect().cast(FIRSTS_SCHEMA))


def first_times(events: pl.DataFrame, window: str) -> pl.DataFrame:
    """What each account of *events* (attributed) does that can be a first, and the first window it
    does it in (:data:`FIRSTS_SCHEMA`): what :class:`SignalState` learns from a slice, for engines
    that compute each slice's carried state ahead."""
    action = pl.col("action").cast(pl.String)
    return _firsts(events.select(_actor=actor(), action=action, host=pl.col("host"),
                                 window_start=pl.col("time").dt.truncate(window))
                   .with_columns(_what=_first_time_what()))


def merge_firsts(*tables: pl.DataFrame) -> pl.DataFrame:
    """Firsts of several slices as one (the earliest window of each)."""
    return (pl.concat([t.cast(FIRSTS_SCHEMA) for t in tables]).group_by("_actor", "_what")
            .agg(pl.col("_first_window").min()).sort("_actor", "_what"))


def _mark_repeats(cand: pl.DataFrame, state: SignalState) -> pl.DataFrame:
    """``_repeat``: the account already did this (a first-time action, or a logon to this host) in an
    earlier window of the scan; *state* learns this slice's firsts."""
    cand = cand.with_columns(_what=_first_time_what())
    state.firsts = merge_firsts(state.firsts, _firsts(cand))
    return (cand.join(state.firsts, on=["_actor", "_what"], how="left", maintain_order="left")
            .with_columns(_repeat=(pl.col("_first_window") < pl.col("window_start")).fill_null(False))
            .drop("_what", "_first_window"))


def _rows(frame: pl.DataFrame, signal: str, level: pl.Expr | int, words: pl.Expr,
          entity: pl.Expr | None = None, kind: str = "account") -> pl.DataFrame:
    level_expr = level if isinstance(level, pl.Expr) else pl.lit(level)
    return frame.select(
        entity_kind=pl.lit(kind), entity_id=entity if entity is not None else pl.col("_actor"),
        window_start="window_start", time="time", signal=pl.lit(signal),
        level=level_expr.cast(pl.Int8), detail=words, evidence="_evidence")


def _event_rules(cand: pl.DataFrame, profiles: Profiles, created: pl.DataFrame) -> list[pl.DataFrame]:
    action, routine, host = pl.col("action"), pl.col("_routine"), pl.col("_host")
    note = _routine_note(routine)
    rows: list[pl.DataFrame] = []

    def rule(mask: pl.Expr, signal: str, level: pl.Expr | int, words: pl.Expr) -> None:
        part = cand.filter(mask)
        if part.height:
            rows.append(_rows(part, signal, level, words))

    log_name = (pl.when(pl.col("native_code") == "104").then(pl.lit("System"))
                .when(pl.col("source_system").cast(pl.String) == "windows").then(pl.lit("Security"))
                .otherwise(pl.lit("audit")))
    rule(action == "log_cleared", "log_cleared", _lower(pl.lit(HIGH), routine, MEDIUM),
         _text("cleared the ", log_name, " log on ", host.fill_null(pl.col("source_system").cast(pl.String)), note))

    audit_off = (pl.col("_detail_text").str.contains(r"(?i)removed") | pl.col("message").fill_null("")
                 .str.contains(r"(?i)removed|no auditing"))
    subcategory = pl.coalesce(detail("audit_subcategory"), detail("subcategory"), pl.lit("a subcategory"))
    rule((action == "audit_policy_changed") & audit_off, "logging_disabled", HIGH,
         _text("removed auditing of ", subcategory, " on ", host))
    rule((action == "audit_policy_changed") & ~audit_off, "audit_policy_changed", _lower(pl.lit(MEDIUM), routine, LOW),
         _text("changed the audit policy (", subcategory, ") on ", host, note))

    service_text = pl.concat_str([pl.col("target_id").fill_null(""), pl.col("message").fill_null(""),
                                  pl.col("_detail_text")], separator=" ")
    disabled = pl.concat_str([pl.col("new_value").fill_null(""), pl.col("message").fill_null("")],
                             separator=" ").str.contains(r"(?i)disabled")
    rule((action == "service_config_changed") & service_text.str.contains(LOGGING_SERVICE) & disabled,
         "logging_disabled", HIGH, _text("disabled the ", pl.coalesce("target_id", pl.lit("logging")),
                                         " service on ", host))

    weakened = weakened_change()
    rule(weakened.is_not_null(), "control_weakened", HIGH, _text("weakened a security control: ", weakened))

    admin = pl.col("_group").str.contains(ADMIN_GROUP).fill_null(False)
    grant = action.is_in(["group_member_added", "role_granted"])
    rule(grant, "privilege_granted",
         pl.when(admin).then(_lower(pl.lit(HIGH), routine, MEDIUM)).otherwise(_lower(pl.lit(MEDIUM), routine, LOW)),
         _text("added ", pl.col("target_id"), " to ", pl.col("_group"), note))

    rule(action == "account_created", "account_created", _lower(pl.lit(MEDIUM), routine, LOW),
         _text("created account ", pl.col("target_id"), note))
    rule(action == "account_deleted", "account_deleted", _lower(pl.lit(MEDIUM), routine, LOW),
         _text("deleted account ", pl.col("target_id"), note))

    service = pl.coalesce(formatted("service {}", pl.coalesce(detail("service_name"), pl.col("target_id"))),
                          pl.lit("a service"))
    path = pl.coalesce(detail("service_file"), detail("image_path"), pl.lit(""))
    suspicious = service_text.str.contains(SUSPICIOUS_SERVICE)
    rule(action == "service_installed", "service_installed",
         pl.when(suspicious).then(pl.lit(HIGH)).otherwise(_lower(pl.lit(MEDIUM), routine, LOW)),
         _text("installed ", service, pl.when(path != "").then(formatted(" ({})", path)).otherwise(pl.lit("")),
               " on ", host, note))
    task = pl.coalesce(formatted("scheduled task {}", pl.coalesce(detail("task_name"), pl.col("target_id"))),
                       pl.lit("a scheduled task"))
    rule(action.is_in(["task_created", "task_modified"]), "task_created", _lower(pl.lit(MEDIUM), routine, LOW),
         _text(pl.when(action == "task_created").then(pl.lit("created")).otherwise(pl.lit("changed")),
               " ", task, " on ", host, note))

    command_line = pl.concat_str([pl.coalesce(detail("command_line"), pl.lit("")), pl.col("_detail_text"),
                                  pl.col("message").fill_null("")], separator=" ")
    shown = pl.coalesce(detail("command_line"), detail("image"),
                        pl.col("message").str.extract(r"(?i)(?:Process )?Command ?Line:\s*([^\r\n]+)", 1),
                        pl.lit("a process")).str.head(160)
    dangerous = command_line.str.contains(SUSPICIOUS_COMMAND)
    rule((action == "process_created") & (dangerous | command_line.str.contains(RISKY_COMMAND)), "suspicious_process",
         pl.when(dangerous).then(pl.lit(HIGH)).otherwise(_lower(pl.lit(MEDIUM), routine, LOW)),
         _text("ran ", shown, " on ", host))

    images = set(profiles.image_hashes.get_column("image_sha256").to_list()) if profiles.has_baseline else None
    if images is not None:
        sha = pl.col("image_sha256").str.strip_chars().str.to_lowercase()
        new_image = (pl.col("category") == "firmware") & sha.is_not_null() & ~sha.is_in(list(images))
        rule(new_image, "new_firmware_image", MEDIUM,
             _text("sent firmware image ", sha.str.head(16), "… never seen in the baseline to ",
                   pl.coalesce("target_id", pl.lit("devices"))))
        part = cand.filter(new_image & is_device_target())
        if part.height:
            rows.append(_rows(part, "new_firmware_image", MEDIUM,
                              _text("received firmware image ", sha.str.head(16), "… never seen in the baseline"),
                              entity=pl.col("target_id"), kind="device"))

    if profiles.has_baseline:
        known = pl.col("_known")
        once = known & ~routine & ~pl.col("_repeat")
        rule(once & (action == "privileged_logon"), "first_privileged_logon", MEDIUM,
             _text("got special privileges at logon on ", host, " for the first time"))
        # One meter's first disconnect is an operator's new duty as often as not; several devices, or
        # firmware and keys, are not.
        wide = action.is_in(["fw_download", "fw_activate", "key_renewal"]) | (pl.col("target_count") >= 3)
        rule(once & action.is_in(CONTROL_ACTIONS), "first_control_command",
             pl.when(wide).then(MEDIUM).otherwise(LOW),
             _text("sent ", action, " for the first time (to ", pl.coalesce("target_id", pl.lit("a device")), ")"))
        rule(once & (action == "explicit_credential_logon"), "explicit_credentials", LOW,
             _text("logged on with explicit credentials of ", pl.coalesce("target_id", pl.lit("another account")),
                   pl.when(detail("target_server").is_not_null()).then(formatted(" to {}", detail("target_server")))
                   .otherwise(pl.lit("")), " for the first time"))
        user = pl.col("attributed_account").is_not_null() | ~pl.col("_actor").str.ends_with("$")
        rule((action == "removable_media") & ~routine & ~pl.col("_repeat") & user, "removable_media", LOW,
             _text("used removable media (", pl.coalesce(detail("device_description"), pl.lit("a device")),
                   ") on ", host, " for the first time"))
        new_actor = pl.col("_new")
        remote = action.is_in(REMOTE_ACTIONS) | ((action == "login_success")
                                                  & pl.col("message").fill_null("").str.contains(REMOTE_LOGON))
        what = (pl.when(action.is_in(HIGH_IMPACT_ACTIONS)).then(pl.lit(HIGH))
                .when(remote).then(pl.lit(MEDIUM)).otherwise(pl.lit(LOW)))
        machine = pl.col("_actor").str.ends_with("$")
        days = profiles.baseline_days
        rule(new_actor & ~pl.col("_actor").is_in(created.get_column("account").implode()), "new_account_acting", pl.when(machine).then(pl.lit(LOW)).otherwise(what),
             _text("an account never seen in ", f"{days:.0f} days of baseline", " did ", action,
                   pl.when(host.is_not_null()).then(formatted(" on {}", host)).otherwise(pl.lit(""))))
        hosts = profiles.account_dest_hosts.lazy().select(pl.col("account").alias("_actor"), "host", _been=pl.lit(True))
        logons = (cand.lazy().filter(known & (action == "login_success") & pl.col("host").is_not_null()
                                     & ~pl.col("_repeat"))
                  .join(hosts, on=["_actor", "host"], how="left").filter(pl.col("_been").is_null()).collect())
        if logons.height:
            rows.append(_rows(logons, "new_logon_host", LOW,
                              _text("logged on to ", pl.col("host"), ", a host it never logged on to in the baseline")))

    if profiles.has_baseline:
        rows.append(_control_bursts(cand, profiles))

    if created.height:
        used = (cand.join(created.rename({"account": "_actor"}), on="_actor", how="inner")
                .filter((pl.col("time") >= pl.col("created_at"))
                        & (pl.col("time") - pl.col("created_at") <= CREATED_RECENTLY)))
        if used.height:
            # Provisioning is routine (a new operator's first day); a new account that administers is not.
            privileged = pl.col("action").is_in(ADMINISTRATIVE_ACTIONS)
            minutes = ((pl.col("time") - pl.col("created_at")).dt.total_seconds() / 60).round(0).cast(pl.Int64)
            level = (pl.when(privileged).then(pl.lit(HIGH)).when(~pl.col("routine_creator")).then(pl.lit(MEDIUM))
                     .otherwise(pl.lit(LOW)))
            rows.append(_rows(used, "created_account_used", level,
                              _text("created by ", pl.col("creator"), " ", minutes.cast(pl.String),
                                    " minutes earlier, then did ", action)))
    return rows


BURST_ACTIONS: Final = tuple(a for a in CONTROL_ACTIONS if a not in ("fw_download", "fw_activate"))
BURST_DEVICES: Final = 10
BURST_FACTOR: Final = 5.0
BURST_FACTOR_HIGH: Final = 50.0


def _control_bursts(cand: pl.DataFrame, profiles: Profiles) -> pl.DataFrame:
    """``control_burst`` rows: an account's control commands reaching at least BURST_DEVICES devices in
    a window, BURST_FACTOR times what it usually reaches when it sends any (its peers' usual for an
    account without one)."""
    devices = pl.when(is_device_target()).then(pl.col("target_count").cast(pl.Int64).fill_null(1).clip(lower_bound=0))
    # Firmware pushes reach whole groups by design; their signal is the image (new_firmware_image).
    per_window = (cand.filter(pl.col("action").is_in(BURST_ACTIONS) & pl.col("_known"))
                  .group_by("_actor", "window_start")
                  .agg(_devices=devices.sum(), time=pl.col("time").min(),
                       _evidence=pl.col("_evidence").sort_by("time", "raw_file", "raw_line").first(),
                       # In time order: the rows' order after the joins is not fixed, and the
                       # words must not change from one run to the next.
                       _actions=pl.col("action").sort_by("time", "raw_file", "raw_line").unique(maintain_order=True)
                       .head(3)))
    if per_window.height == 0:
        return pl.DataFrame(schema=SIGNAL_ROW)
    usual = profiles.account_typical.select(pl.col("account").alias("_actor"), _usual=pl.col("devices"))
    everyone = profiles.account_typical.get_column("devices").drop_nulls().median()
    bursts = (per_window.join(usual, on="_actor", how="left")
              .with_columns(_usual=pl.coalesce("_usual", pl.lit(everyone, pl.Float64), pl.lit(1.0)).clip(lower_bound=1.0))
              .filter((pl.col("_devices") >= BURST_DEVICES) & (pl.col("_devices") >= BURST_FACTOR * pl.col("_usual"))))
    return _rows(bursts, "control_burst",
                 pl.when(pl.col("_devices") >= BURST_FACTOR_HIGH * pl.col("_usual")).then(HIGH).otherwise(MEDIUM),
                 formatted("sent {} to {} devices in the window (usually {} when it sends any)",
                           pl.col("_actions").list.join(", "), pl.col("_devices"), pl.col("_usual").round(0).cast(pl.Int64)))


TERRITORY_TARGETS: Final = 10
TERRITORY_FACTOR: Final = 2.0
TERRITORY_FACTOR_MEDIUM: Final = 3.0


def _new_territory(ev: pl.LazyFrame, profiles: Profiles, window: str) -> pl.DataFrame:
    """``new_territory`` rows: an account acting on many devices it never touched, against how many
    distinct devices it usually acts on in a window (an operator reading three times the meters
    they usually do, the extra ones strangers)."""
    known = profiles.account_targets.lazy().select(pl.col("account").alias("_actor"), "target_id", _been=pl.lit(True))
    usual = profiles.account_typical.select(pl.col("account").alias("_actor"), _usual=pl.col("targets"))
    peak = profiles.account_activity.select(pl.col("account").alias("_actor"), _peak=pl.col("targets_peak"))
    usual_at_least_one = pl.col("_usual").fill_null(1.0).clip(lower_bound=1.0)
    acting = (ev.filter(pl.col("_known") & is_device_target())
              .select("_actor", "target_id", "time", "raw_file", "raw_line", window_start=pl.col("time").dt.truncate(window)))
    # Only windows reaching enough devices at all can reach enough new ones (new <= all): the lookup
    # of each (account, device) in the baseline is left to them.
    busy_windows = (acting.group_by("_actor", "window_start").agg(_all=pl.col("target_id").n_unique())
                    .join(usual.lazy(), on="_actor", how="left").join(peak.lazy(), on="_actor", how="left")
                    .filter(pl.col("_all") >= TERRITORY_TARGETS,
                            pl.col("_all") >= TERRITORY_FACTOR * usual_at_least_one,
                            pl.col("_all") > pl.col("_peak").fill_null(0.0))
                    .select("_actor", "window_start"))
    busy = busy_windows.collect()
    if busy.height == 0:
        return pl.DataFrame(schema=SIGNAL_ROW)
    # The baseline's pairs of those windows' accounts only: a hash table of every pair costs more than the join.
    known = known.filter(pl.col("_actor").is_in(busy.get_column("_actor").unique().implode()))
    # Those windows' events picked from the slice's again (a filter of the frame in memory), rather
    # than every device event of the slice kept for them.
    touched = (acting.join(busy.lazy(), on=["_actor", "window_start"], how="semi")
               .join(known, on=["_actor", "target_id"], how="left")
               .collect())
    per_window = (
        touched.lazy().group_by("_actor", "window_start")
        .agg(_new=pl.col("target_id").filter(pl.col("_been").is_null()).n_unique(),
             _all=pl.col("target_id").n_unique(), time=pl.col("time").min())
        .filter(pl.col("_new") >= TERRITORY_TARGETS)
        .collect())
    if per_window.height == 0:
        return pl.DataFrame(schema=SIGNAL_ROW)
    # Beyond its busiest windows too: an account whose work reaches random devices in bursts (outage
    # pings) reaches new ones every busy hour.
    wide = (per_window.join(usual, on="_actor", how="left").join(peak, on="_actor", how="left")
            .with_columns(_usual=usual_at_least_one, _peak=pl.col("_peak").fill_null(0.0))
            .filter((pl.col("_new") >= TERRITORY_FACTOR * pl.col("_usual")) & (pl.col("_all") > pl.col("_peak"))))
    far = ((pl.col("_new") >= TERRITORY_FACTOR_MEDIUM * pl.col("_usual"))
           & (pl.col("_all") > TERRITORY_FACTOR_MEDIUM * pl.col("_peak")))
    # The first line of a new device in each window (time, file, line order), for the few windows left.
    first_new = (touched.lazy().filter(pl.col("_been").is_null())
                 .join(wide.lazy().select("_actor", "window_start"), on=["_actor", "window_start"], how="semi")
                 # The first line has the window's first time: only lines at that time need sorting.
                 .filter(pl.col("time") == pl.col("time").min().over("_actor", "window_start"))
                 .sort("time", "raw_file", "raw_line")
                 .group_by("_actor", "window_start", maintain_order=True)
                 .agg(_evidence=pl.concat_str([pl.col("raw_file"), pl.lit(":"), pl.col("raw_line").cast(pl.String)])
                      .first()))
    wide = wide.join(first_new.collect(), on=["_actor", "window_start"], how="left", maintain_order="left")
    return _rows(wide, "new_territory", pl.when(far).then(MEDIUM).otherwise(LOW),
                 formatted("acted on {} devices it never touched before ({} in all; usually {} in a window)",
                           pl.col("_new"), pl.col("_all"), pl.col("_usual").round(0).cast(pl.Int64)))


def sensitive_windows(events: pl.DataFrame, window: str) -> pl.DataFrame:
    """Account windows (``entity_id, window_start``) that administer, push firmware or keys, or come
    in remotely: novelty there (a new network, an unusual hour) weighs a level more than in a window
    of reads and logins."""
    remote = (pl.col("action").is_in(REMOTE_ACTIONS)
              | ((pl.col("action") == "login_success") & pl.col("message").fill_null("").str.contains(REMOTE_LOGON)))
    # Device commands are left out: service accounts send them all day, and a schedule that moved
    # an hour (a daylight-saving change) would be novelty in every window.
    # The actions first, collected apart (polars would fuse the filters): the remote-logon pattern is then
    # read in logon messages only, not in every event's. A few columns only: the slice's frame comes in
    # many chunks, which an eager filter of every column would all cut.
    return (events.lazy().select("action", "message", "time", *ACTOR_COLUMNS)
            .filter(pl.col("action").is_in([*SENSITIVE_ACTIONS, *REMOTE_ACTIONS, "login_success"])).collect()
            .lazy().filter(pl.col("action").is_in(SENSITIVE_ACTIONS) | remote)
            .select(actor().alias("entity_id"), pl.col("time").dt.truncate(window).alias("window_start"))
            .drop_nulls("entity_id").unique().with_columns(_sensitive=pl.lit(True)).collect())


def window_novelty(windows: pl.DataFrame, kind: str) -> pl.DataFrame:
    """Window signals from the forest's own features (lean windows): ``entity_id, window_start`` and
    one Int8 level column per novelty signal (0 = absent). Only account windows have them."""
    if kind != "account" or windows.height == 0:
        return windows.select("entity_id", "window_start")
    import math

    gated = pl.col("has_baseline") if "has_baseline" in windows.columns else pl.lit(True)
    return windows.select(
        "entity_id", "window_start",
        _s_new_network=pl.when(gated & (pl.col("new_src_net_events") > 0)).then(LOW).otherwise(0),
        _s_unusual_hour=pl.when(gated & (pl.col("hour_rarity") >= 0.9)).then(LOW).otherwise(0),
        _s_unusual_weekday=pl.when(gated & (pl.col("weekday_rarity") >= 0.9)).then(LOW).otherwise(0),
        _s_dormant_account=pl.when(pl.col("dormancy_days") >= math.log1p(30)).then(MEDIUM)
        .when(pl.col("dormancy_days") >= math.log1p(14)).then(LOW).otherwise(0),
    ).with_columns(pl.col("^_s_.*$").cast(pl.Int8))


def novelty_detail(signal: str, row: Mapping[str, object]) -> str:
    """The words of a window novelty signal, from the window's detail columns."""
    def listed(name: str) -> str:
        found = row.get(name)
        values = [str(v) for v in found if v] if isinstance(found, list) else []
        return ", ".join(values[:3]) + (f" and {len(values) - 3} more" if len(values) > 3 else "")

    days = row.get("baseline_days") or 0
    span = f"{days:.0f} days of baseline" if days else "the baseline"
    if signal == "new_network":
        return f"used network {listed('new_src_nets') or '?'}, never used by this account in {span}"
    if signal == "unusual_hour":
        hour = row.get("rarest_hour")
        zone = row.get("_zone") or "UTC"
        return (f"active at {hour:02d}:00 {zone}, an hour it is rarely or never active in {span}"
                if isinstance(hour, int) else "active at an hour it is rarely active")
    if signal == "unusual_weekday":
        day = row.get("rarest_weekday")
        names = ("", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
        return (f"active on a {names[day]}, a day it is rarely or never active in {span}"
                if isinstance(day, int) else "active on a day it is rarely active")
    if signal == "dormant_account":
        previous = row.get("previous_activity")
        first = row.get("first_time")
        if previous is not None and first is not None:
            gap = (first - previous).days  # type: ignore[operator]
            return f"first activity after {gap} days of silence (last seen {previous:%Y-%m-%d})"
        return "first activity after a long silence"
    return signal


def combine(levels: list[int]) -> int:
    """A window's signal level from its signals' levels (one per distinct signal)."""
    if not levels:
        return 0
    top = max(levels)
    strong = sum(1 for v in levels if v >= MEDIUM)
    if strong >= COMBINE_AT:
        top += 1
    elif top == LOW and len(levels) >= LOWS_TO_MEDIUM:
        top = MEDIUM
    return min(top, CRITICAL)


def combine_expr(levels: pl.Expr) -> pl.Expr:
    """:func:`combine` over a list column of levels (one per distinct signal)."""
    top = levels.list.max().fill_null(0)
    strong = levels.list.eval(pl.element() >= MEDIUM).list.sum().fill_null(0)
    n = levels.list.len().fill_null(0)
    return (pl.when(strong >= COMBINE_AT).then(top + 1)
            .when((top == LOW) & (n >= LOWS_TO_MEDIUM)).then(pl.lit(MEDIUM))
            .otherwise(top)).clip(upper_bound=CRITICAL).cast(pl.Int8)
