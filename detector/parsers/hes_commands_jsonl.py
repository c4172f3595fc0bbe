"""HES command log: one JSON object per command, to one device or to a group (ARCHITECTURE.md format 2).

Commands follow IEC 61968-9 EndDeviceControl naming; the controlType code, when present, is kept as
the native code so an analyst can match it against the standard's tables.
"""

from __future__ import annotations

import polars as pl

from detector.parsers.base import Parser, clean, collect, first_present, per_distinct
from detector.parsers.jsonlines import decode_json_lines
from detector.schema import Action, Category, Outcome

COMMAND_ACTIONS: dict[str, str] = {
    "remotedisconnect": "remote_disconnect",
    "remoteconnect": "remote_connect",
    "firmwaredownload": "fw_download",
    "firmwareactivate": "fw_activate",
    "keyrenewal": "key_renewal",
    "loadlimitset": "load_limit_set",
    "demandreset": "demand_reset",
    "timesync": "time_sync",
    "ondemandread": "on_demand_read",
    "pingbyendpoints": "ping",
}

STATUS_OUTCOMES: dict[str, str] = {
    "succeeded": "success",
    "success": "success",
    "completed": "success",
    "failed": "failure",
    "failure": "failure",
    "rejected": "failure",
    "cancelled": "failure",
    "queued": "pending",
    "pending": "pending",
    "inprogress": "pending",
    "partialsuccess": "partial",
}

TARGET_TYPES: dict[str, str] = {
    "electricmeter": "meter",
    "gasmeter": "meter",
    "watermeter": "meter",
    "meter": "meter",
    "collector": "collector",
    "router": "router",
    "relay": "router",
}

_STRING = pl.String()

FIELDS = ("ts", "jobId", "user", "client", "command", "controlType", "targetType", "targetId", "targetGroup",
          "targetCount", "image", "sha256", "status", "host", "message")
SCHEMA = pl.Schema({f: pl.String for f in FIELDS})


def _lookup(column: str, table: dict[str, str], default: str | None, dtype: pl.DataType = _STRING) -> pl.Expr:
    """*column*'s word, lower-cased without spaces, ``_`` and ``-``, looked up in *table* (as *dtype*)."""
    return per_distinct(pl.col(column), lambda words: words.select(
        clean(pl.col("v")).str.to_lowercase().str.replace_all(r"[\s_\-]", "")
        .replace_strict(table, default=default, return_dtype=dtype)), dtype)


class HesCommandsJsonl(Parser):
    name = "hes_commands_jsonl"
    description = "HES command log, JSON lines (IEC 61968-9 EndDeviceControl commands)"
    source_system = "hes"
    independent_chunks = True
    together = True
    # Besides these five, the action, outcome and category are words of the tables above (or none).
    cleaned = frozenset({"target_type", "target_id", "native_code", "image_sha256", "message", "action", "outcome",
                         "category"})

    @classmethod
    def sniff(cls, head: list[str]) -> bool:
        return any(line.lstrip().startswith("{") and '"command"' in line and '"jobId"' in line for line in head)

    def parse_chunk(self, lines: pl.DataFrame, text: bytes | None = None) -> pl.DataFrame:
        decoded = decode_json_lines(lines, SCHEMA, text)
        staged = self.with_time(decoded, "ts")

        def field(name: str) -> pl.Expr | None:
            """The field cleaned; None when no line of the chunk has it (most hold no image, hash or
            message): a pass over a column of nulls still costs one."""
            return clean(pl.col(name)) if decoded.get_column(name).null_count() < decoded.height else None

        # The chunk query runs without common-subexpression elimination: what several columns read is
        # computed once, as a column of its own, first.
        group, command, action = pl.col("_group"), pl.col("_command"), pl.col("action")
        sha256 = field("sha256")
        return collect(staged.lazy().with_columns(
            _group=first_present(field("targetGroup")),
            _command=first_present(field("command")),
            # The event schema's own types: finalize has no word of these to check.
            action=_lookup("command", COMMAND_ACTIONS, "other", Action),
        ).with_columns(
            host=pl.col("host"),
            account=pl.col("user"),
            src_ip=pl.col("client"),
            # An unknown command is still a command sent to field devices.
            category=pl.when(action == "other").then(pl.lit("device_command", Category)),
            outcome=_lookup("status", STATUS_OUTCOMES, "unknown", Outcome),
            target_type=pl.when(group.is_not_null()).then(pl.lit("group"))
            .otherwise(_lookup("targetType", TARGET_TYPES, None)),
            target_id=first_present(group, field("targetId")),
            target_count=pl.col("targetCount"),
            job_id=pl.col("jobId"),
            native_code=first_present(field("controlType"), command),
            new_value=pl.col("image"),
            image_sha256=first_present(sha256 if sha256 is None else sha256.str.to_lowercase()),
            message=first_present(field("message"), command),
            _error=pl.coalesce(
                pl.col("_error"),
                pl.when(command.is_null()).then(pl.lit("no command field")),
            ),
        ).drop("_group", "_command"))
