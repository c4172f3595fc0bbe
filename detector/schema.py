"""The normalized event schema and the rejects schema (see ARCHITECTURE.md), as polars dtypes.

Every parser's output passes :func:`validate_events`; later stages trust it without checking again.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from detector.errors import SchemaError

SOURCE_SYSTEMS: Final = ("hes", "dms", "windows", "vpn", "jumphost", "firewall", "other")

CATEGORIES: Final = (
    "authentication", "account_mgmt", "privilege", "config_change", "device_command", "firmware",
    "key_mgmt", "remote_access", "log_tamper", "device_event", "system",
    # What attackers leave on Windows hosts: programs started; services and scheduled tasks that
    # outlive a session; and what a host's own sensors see (removable media, files, connections).
    "execution", "persistence", "endpoint",
)

# Each action belongs to one category; parsers name the action and the category follows from it,
# except for ``other``, whose category the parser chooses from what it knows of the native code.
ACTION_CATEGORY: Final[dict[str, str]] = {
    "login_success": "authentication",
    "login_failure": "authentication",
    "logout": "authentication",
    "lockout": "authentication",
    "account_created": "account_mgmt",
    "account_deleted": "account_mgmt",
    "account_modified": "account_mgmt",
    "password_changed": "account_mgmt",
    "group_member_added": "privilege",
    "role_granted": "privilege",
    "role_revoked": "privilege",
    "privileged_logon": "privilege",
    "setting_changed": "config_change",
    "remote_disconnect": "device_command",
    "remote_connect": "device_command",
    "load_limit_set": "device_command",
    "demand_reset": "device_command",
    "time_sync": "device_command",
    "on_demand_read": "device_command",
    "ping": "device_command",
    "fw_download": "firmware",
    "fw_activate": "firmware",
    "key_renewal": "key_mgmt",
    "breaker_open": "device_command",
    "breaker_close": "device_command",
    "tag_placed": "device_command",
    "tag_removed": "device_command",
    "vpn_connect": "remote_access",
    "vpn_disconnect": "remote_access",
    "log_cleared": "log_tamper",
    "status_change": "device_event",
    "audit_policy_changed": "log_tamper",
    "explicit_credential_logon": "authentication",
    "kerberos_ticket": "authentication",
    "ntlm_auth": "authentication",
    "process_created": "execution",
    "service_installed": "persistence",
    "service_config_changed": "persistence",
    "task_created": "persistence",
    "task_modified": "persistence",
    "removable_media": "endpoint",
    "network_connection": "endpoint",
    "file_created": "endpoint",
    "registry_set": "endpoint",
    "other": "system",
}
ACTIONS: Final = tuple(ACTION_CATEGORY)

OUTCOMES: Final = ("success", "failure", "partial", "pending", "unknown")

TARGET_TYPES: Final = (
    "meter", "collector", "router", "breaker", "recloser", "capbank", "regulator", "account", "group",
    "setting", "server",
)

SourceSystem = pl.Enum(SOURCE_SYSTEMS)
Category = pl.Enum(CATEGORIES)
Action = pl.Enum(ACTIONS)
Outcome = pl.Enum(OUTCOMES)
UTC_US = pl.Datetime("us", "UTC")
# Values an event carries beyond the fixed columns (a process's image and command line, a service's
# name and path, a task's name, an audit subcategory...), as key/value pairs in the order written.
DETAILS = pl.List(pl.Struct({"key": pl.String, "value": pl.String}))


def detail(key: str) -> pl.Expr:
    """The value of *key* in each event's ``details``, or null."""
    return (pl.col("details").list.eval(pl.element().filter(pl.element().struct.field("key") == key)
                                         .struct.field("value")).list.first())

EVENT_SCHEMA: Final = pl.Schema(
    {
        "time": UTC_US,
        "source_system": SourceSystem,
        "source_format": pl.String(),
        "host": pl.String(),
        "host_as_written": pl.String(),
        "account": pl.String(),
        "account_domain": pl.String(),
        "attributed_account": pl.String(),
        "src_ip": pl.String(),
        "src_host": pl.String(),
        "category": Category,
        "action": Action,
        "outcome": Outcome,
        "target_type": pl.String(),
        "target_id": pl.String(),
        "target_count": pl.Int32(),
        "job_id": pl.String(),
        "native_code": pl.String(),
        "old_value": pl.String(),
        "new_value": pl.String(),
        "image_sha256": pl.String(),
        "message": pl.String(),
        "details": DETAILS,
        "raw_file": pl.String(),
        "raw_line": pl.Int64(),
    }
)

REJECT_SCHEMA: Final = pl.Schema(
    {
        "raw_file": pl.String,
        "raw_line": pl.Int64,
        "source_format": pl.String,
        "reason": pl.String,
        "raw": pl.String,
    }
)

REJECT_RAW_BYTES: Final = 4096

# Columns that may never be null in a valid event table.
REQUIRED: Final = ("time", "source_system", "source_format", "category", "action", "outcome",
                   "raw_file", "raw_line")


def empty_events() -> pl.DataFrame:
    return pl.DataFrame(schema=EVENT_SCHEMA)


def empty_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECT_SCHEMA)


def validate_events(events: pl.DataFrame) -> pl.DataFrame:
    """Check that *events* meets the normalized schema contract and return it unchanged.

    Raises
    ------
    SchemaError
        When a column is missing, extra or of the wrong type, or a required column holds nulls.
    """
    if events.schema != EVENT_SCHEMA:
        got, want = dict(events.schema), dict(EVENT_SCHEMA)
        missing = [c for c in want if c not in got]
        extra = [c for c in got if c not in want]
        wrong = [f"{c}: {got[c]} (want {want[c]})" for c in want if c in got and got[c] != want[c]]
        order = list(got) != list(want) and not (missing or extra)
        parts = [f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else "",
                 f"wrong types {wrong}" if wrong else "", "columns out of order" if order else ""]
        raise SchemaError("event table does not match the schema: " + "; ".join(p for p in parts if p))
    nulls = events.select(pl.col(REQUIRED).null_count()).row(0, named=True)
    bad = {c: n for c, n in nulls.items() if n}
    if bad:
        raise SchemaError(f"event table has nulls in required columns: {bad}")
    if events.height and events.select((pl.col("raw_line") < 1).any()).item():
        raise SchemaError("event table has raw_line values below 1")
    return events


def validate_rejects(rejects: pl.DataFrame) -> pl.DataFrame:
    """Check that *rejects* meets the rejects schema and return it unchanged."""
    if rejects.schema != REJECT_SCHEMA:
        raise SchemaError(f"rejects table does not match the schema: {dict(rejects.schema)}")
    nulls = rejects.select(pl.col("raw_file", "source_format", "reason").null_count()).row(0)
    if any(nulls):
        raise SchemaError("rejects table has nulls in raw_file, source_format or reason")
    return rejects
