"""HES operator audit trail, CSV with a header (ARCHITECTURE.md format 1).

Columns are found by header name, case-insensitively, so exports that reorder columns or add their
own still parse; the required ones must be there.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from detector.errors import InputError
from detector.parsers.base import FILE_OF_LINE, FilesApart, Parser, clean, collect, per_distinct
from detector.parsers.csvlines import DATE_START, join_multiline_records, parse_header, split_fields, unterminated

COLUMNS = ("EventTimeUTC", "AuditId", "UserName", "Role", "ClientIP", "Workstation", "Category", "Action",
           "ObjectType", "ObjectId", "OldValue", "NewValue", "Result")
REQUIRED = ("EventTimeUTC", "UserName", "Action")

ACTIONS: dict[str, str] = {
    "userlogin": "login_success",
    "userloginfailed": "login_failure",
    "userlogout": "logout",
    "userlocked": "lockout",
    "userlockedout": "lockout",
    "passwordchanged": "password_changed",
    "passwordreset": "password_changed",
    "usercreated": "account_created",
    "userdeleted": "account_deleted",
    "usermodified": "account_modified",
    "roleassigned": "role_granted",
    "rolerevoked": "role_revoked",
    "settingchanged": "setting_changed",
    "meterprogramchanged": "setting_changed",
    "auditlogcleared": "log_cleared",
}

OBJECT_TYPES: dict[str, str] = {
    "user": "account",
    "role": "account",
    "globalsetting": "setting",
    "setting": "setting",
    "meter": "meter",
    "electricmeter": "meter",
    "meterprogram": "meter",
    "collector": "collector",
    "router": "router",
    "auditlog": "server",
    "server": "server",
}

OUTCOMES: dict[str, str] = {"success": "success", "succeeded": "success", "failure": "failure",
                            "failed": "failure", "denied": "failure"}

_CATEGORY_OF_OTHER: dict[str, str] = {
    "security": "authentication",
    "usermanagement": "account_mgmt",
    "configuration": "config_change",
}


def _lookup(column: str, table: dict[str, str], default: str | None) -> pl.Expr:
    """*column*'s word, lower-cased without spaces, ``_`` and ``-``, looked up in *table*."""
    return per_distinct(pl.col(column), lambda words: words.select(
        clean(pl.col("v")).str.to_lowercase().str.replace_all(r"[\s_\-]", "").replace_strict(table, default=default)))


class HesAuditCsv(Parser):
    name = "hes_audit_csv"
    description = "HES operator audit trail, CSV with header (logins, accounts, roles, settings, log clearing)"
    source_system = "hes"
    together = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._names: list[str] | None = None
        self._pending = pl.DataFrame(schema={"raw_line": pl.Int64, "raw": pl.String})

    @classmethod
    def sniff(cls, head: list[str]) -> bool:
        if not head:
            return False
        header = {h.lower() for h in parse_header(head[0])}
        return {c.lower() for c in REQUIRED} | {"auditid"} <= header

    def _read_header(self, lines: pl.DataFrame) -> pl.DataFrame:
        lines = lines.filter(pl.col("raw").str.strip_chars() != "")
        if lines.height == 0:
            return lines
        first = lines.row(0, named=True)
        names = parse_header(first["raw"])
        lowered = [n.lower() for n in names]
        missing = [c for c in REQUIRED if c.lower() not in lowered]
        if missing:
            raise InputError(f"CSV header lacks the columns {missing}; found {names}",
                             source=(self.path, first["raw_line"]))
        canonical = {c.lower(): c for c in COLUMNS}
        self._names = []
        for i, name in enumerate(names):  # a repeated column name: the first one counts
            known = canonical.get(name.lower())
            self._names.append(known if known and known not in self._names else f"_extra{i}")
        return lines.slice(1)

    def parse_chunk(self, lines: pl.DataFrame, text: bytes | None = None) -> pl.DataFrame:
        if self.files_together:
            return self._parse_files(lines)
        if self._names is None:
            lines = self._read_header(lines)
            if self._names is None:
                return lines.with_columns(time=pl.lit(None, pl.Datetime("us", "UTC")))
        lines = pl.concat([self._pending, lines.filter(pl.col("raw").str.strip_chars() != "")])
        starts = pl.col("raw").str.contains(DATE_START) if self._names[0] == "EventTimeUTC" else None
        records, self._pending = join_multiline_records(lines, starts)
        return self._stage(records)

    def _parse_files(self, lines: pl.DataFrame) -> pl.DataFrame:
        """The lines of several files: each starts with its header, the same in all, and no record spans
        lines (a quoted field across a line end could be open at the end of a file)."""
        lines = lines.filter(pl.col("raw").str.strip_chars() != "")
        header = FILE_OF_LINE.is_first_distinct()
        headers = lines.filter(header)
        if headers.get_column("raw").n_unique() > 1:
            raise FilesApart("files with different CSV headers")
        self._read_header(headers.head(1))
        lines = lines.filter(~header)
        if (lines.get_column("raw").str.count_matches('"', literal=True) % 2 == 1).any():
            raise FilesApart("a quoted field may span lines")
        records, _ = join_multiline_records(lines)
        return self._stage(records)

    def finish(self) -> pl.DataFrame | None:
        if self._pending.height == 0 or self._names is None:
            return None
        return self._stage(unterminated(self._pending))

    def _stage(self, records: pl.DataFrame) -> pl.DataFrame:
        assert self._names is not None
        fields = split_fields(records, self._names)
        fields = fields.with_columns([pl.lit(None, pl.String).alias(c) for c in COLUMNS if c not in fields.columns])
        staged = self.with_time(fields, "EventTimeUTC")
        action = pl.col("_action")
        outcome = pl.col("outcome")
        login = action == "login_success"
        return collect(staged.lazy().with_columns(
            _action=_lookup("Action", ACTIONS, "other"),
            outcome=_lookup("Result", OUTCOMES, "unknown"),
        ).with_columns(
            account=pl.col("UserName"),
            src_ip=pl.col("ClientIP"),
            src_host=pl.col("Workstation"),
            # A login recorded with Result=Failure is a failed login, whatever the action says.
            action=pl.when(login & (outcome == "failure")).then(pl.lit("login_failure")).otherwise(action),
            category=pl.when(action == "other").then(_lookup("Category", _CATEGORY_OF_OTHER, None)),
            target_type=_lookup("ObjectType", OBJECT_TYPES, None),
            target_id=pl.col("ObjectId"),
            job_id=pl.col("AuditId"),
            native_code=clean(pl.col("Action")),
            old_value=pl.col("OldValue"),
            new_value=pl.col("NewValue"),
            message=pl.concat_str(
                [clean(pl.col("Category")).fill_null("?"), pl.lit("/"), clean(pl.col("Action")).fill_null("?"),
                 pl.lit(" by role "), clean(pl.col("Role")).fill_null("unknown")]),
        ).drop("_action"))
