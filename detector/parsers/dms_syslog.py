"""DMS/ADMS events as syslog: RFC 5424 with structured data, or RFC 3164 with ``key="value"`` pairs
(ARCHITECTURE.md format 3).

What is accepted
----------------
* **RFC 5424** ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]``. Any header
  field may be the NILVALUE ``-``, except TIMESTAMP: a line without a time is rejected. STRUCTURED-DATA
  is ``-`` or one or more ``[SD-ID name="value" ...]`` elements; ``\\"``, ``\\\\`` and ``\\]`` in a
  value are unescaped (a backslash before any other character stays, as the RFC says). A BOM before
  MSG is dropped. Parameters of the IANA SD-IDs ``meta`` and ``timeQuality`` describe the transport and
  are ignored; ``origin ip`` names the sender when HOSTNAME is ``-``. When STRUCTURED-DATA is ``-``
  the ``key="value"`` pairs are read from MSG instead, as for RFC 3164.
* **RFC 3164** ``<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG``, where MSG carries ``key="value"`` (or
  bare ``key=value``) pairs. The PRI may be missing (files written by rsyslog), HOSTNAME may be
  missing, the stamp may carry a year (``Apr 14 2026 02:40:01``) or be RFC 3339 (rsyslog's file
  format). Yearless stamps take their year from :attr:`ParseOptions.reference_time` (one year earlier
  when that would put them more than two days after the reference: a December log read in January);
  stamps without an offset need ``--tz``. Blank lines are skipped, as by every parser.
  **MSGID in RFC 3164**: an explicit ``msgid="..."`` pair; otherwise the first word of MSG when it is
  an upper-case name such as ``AUTH`` or ``SCADA_CTRL`` (the place RFC 5424 gives it); otherwise a
  ``type="..."`` pair. The event's message is MSG without that word and without the pairs.
* Either kind may carry RFC 6587 octet-counting framing (``123 <86>1 ...``) from TCP captures. A count
  smaller than the bytes that follow means the line holds more than one frame: it is rejected rather
  than read as one event. A larger count (a message cut at an embedded newline) is accepted.

Mapping (MSGID → action)
------------------------
Parameter names are matched without case or ``_-.`` and through aliases (:data:`PARAM_ALIASES`):
account from ``user``, src_ip from ``src``/``ip``, src_host from ``console``/``workstation``, host
from HOSTNAME; outcome from ``result`` (success/OK/true → success, fail/denied/ERROR/locked →
failure, else unknown). Unknown parameters are ignored; unknown MSGIDs and actions become ``other``
with the native code kept, and a category from the MSGID where it says one.

* ``AUTH``: ``lockout`` (result ``locked`` or the message says locked out; outcome failure), ``logout``
  (result, method, action or message says log out / log off / sign out), else ``login_success`` /
  ``login_failure`` by result; a result that says neither stays ``other`` (category authentication):
  never guessed from the message.
* ``SCADA_CTRL``: ``OPEN``/``TRIP`` → ``breaker_open``, ``CLOSE`` → ``breaker_close``. The ``SELECT``
  (and ``CANCEL``) step of select-before-operate changes nothing in the field, so it is kept as
  ``other`` (category device_command, same account, target and job id) with native code
  ``SCADA_CTRL:OPEN:SELECT``; counting it as a breaker operation would double every supervised
  control. target_type is recloser, capbank or regulator only when a device-type parameter or a whole
  token of the device id (``RCL-07``, ``SUB12-CAP3``, ``REG-44``) says so, else breaker.
* ``ALARM`` with ``prev``/``new`` → ``status_change``; other alarms → ``other`` (device_event). Alarms
  come from devices: account is always null; target is ``device`` (else ``rtu``).
* ``CONFIG`` → ``setting_changed``, target the ``setting``/``param``, old/new values from
  ``old``/``prev`` and ``new``/``value``.
* ``TAG`` → ``tag_placed`` / ``tag_removed`` by ``op``/``action`` (by the message's "placed" /
  "removed" when neither is given); the tag kind is the new (placed) or old (removed) value.
* ``USER_ADMIN`` → account_created / account_deleted / role_granted / role_revoked /
  password_changed / account_modified by its ``op``/``action`` parameter; ``add``/``remove`` with a
  ``role`` is a role change, without one an account change. Target is the ``target`` account.

native_code is ``MSGID`` or ``MSGID:ACTION`` (plus ``:SBO-STEP`` for SCADA controls), as written.
"""

from __future__ import annotations

import re
from typing import ClassVar, Final

import polars as pl
import polars.selectors as cs

from detector.exprs import formatted
from detector.parsers.base import Parser, clean, collect, late_yearless, per_distinct, spread
from detector.schema import UTC_US

# ---- grammar (Rust regex syntax: no look-around, linear time) -------------------------------------

_VALUE = r'"(?:[^"\\]|\\.)*"'  # PARAM-VALUE with backslash escapes
_SD_NAME = r'[^\s="\[\]]+'  # SD-NAME: printable, no '=', SP, ']' or '"' (nor '[' in practice)
_SD_PARAM = rf"{_SD_NAME}={_VALUE}"
_SD_ELEMENT = rf"\[{_SD_NAME}(?: +{_SD_PARAM})* *\]"

# Patterns with capture groups stop before the free text at the end of a line: capturing a long tail
# costs the regex engine several times more than the rest, so the tail is cut off by length instead.
# Each cut is exact because what the full grammar allows after the head always matches (``.*``).
_FRAME = r"(?s)^(?P<_octets>\d{1,10}) (?P<_framed><\d{1,3}>.*)$"
_IS_5424 = r"^<\d{1,3}>\d{1,2} "
# RFC 5424 HEADER; the line continues with " +" and STRUCTURED-DATA [MSG], or ends.
_HEAD_5424 = (r"^(?P<_head5><(?P<_pri>\d{1,3})>(?P<_ver>\d{1,2}) +(?P<_ts5>\S+) +(?P<_host5>\S+) +(?P<_app>\S+)"
              r" +(?P<_procid>\S+) +(?P<_msgid5>\S+))")
# STRUCTURED-DATA: "-" or SD elements, then " " MSG (RFC 5424 section 6).
_SD = rf"^(?:{_SD_ELEMENT})+"

_MONTH = r"(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
_STAMP_3164 = rf"{_MONTH} +\d{{1,2}}(?: \d{{4}})? \d{{1,2}}:\d{{2}}:\d{{2}}(?:\.\d{{1,9}})?"
_STAMP_ISO = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?"
_YEARLESS = rf"^{_MONTH} +\d{{1,2}} \d"
# RFC 3164 up to "TAG[PID]: "; MSG is the rest of the line.
_HEAD_3164 = (rf"^(?P<_head3>(?:<(?P<_pri3>\d{{1,3}})>)?(?P<_ts3>{_STAMP_3164}|{_STAMP_ISO}) +"
              r"(?:(?P<_host3>[^\s\[\]]*[^\s\[\]:]) +)?(?P<_tag>[^\s:\[\]]+)(?:\[(?P<_pid>[^\]]*)\])?: ?)")
_LOOKS_3164 = rf"^(?:<\d{{1,3}}>)?(?:{_STAMP_3164}|{_STAMP_ISO}) "

# Pairs in a message: quoted or bare, only at a word start so "http://x?a=b" is left alone.
_MSG_PAIR = rf'(?:^|\s)[\w.\-@]+=(?:{_VALUE}|[^\s"]+)'
_MSG_TOKEN = r"^\s*([A-Z][A-Z0-9_\-]+)(?:\s|$)"
_CEF = r"(?:^|[\s>:])CEF:\d+\|"

# ---- parameters ---------------------------------------------------------------------------------

# field -> parameter names (lower-case, without "_-."), first present wins.
PARAM_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "user": ("user", "operator", "actor"),
    "src": ("src", "srcip", "ip", "clientip", "client", "sourceip", "srcaddr"),
    "console": ("console", "workstation", "ws", "srchost", "terminal"),
    "device": ("device", "deviceid", "dev", "equipment", "rtu"),
    "devtype": ("devtype", "devicetype", "deviceclass", "equipmenttype"),
    "action": ("action", "op", "operation", "cmd", "command"),
    "sbo": ("sbo", "step", "phase"),
    "result": ("result", "outcome", "status"),
    "method": ("method", "authmethod"),
    "old": ("old", "prev", "previous", "oldvalue"),
    "new": ("new", "newvalue"),
    "value": ("value",),
    "setting": ("setting", "param", "parameter", "settingname", "key"),
    "target": ("target", "targetuser", "targetaccount", "account", "subject"),
    "role": ("role", "group", "privilege"),
    "tag": ("tag", "tagtype", "tagkind"),
    "job": ("jobid", "job", "ctrlid", "cmdid", "txid", "correlationid"),
    "msgid": ("msgid",),
    "type": ("type",),
    "origin_ip": ("origin.ip",),
}
_FIELD_OF = {alias: field for field, aliases in PARAM_ALIASES.items() for alias in aliases}
_RANK_OF = {alias: rank for aliases in PARAM_ALIASES.values() for rank, alias in enumerate(aliases)}
_IGNORED_SD_IDS = ("meta", "timequality")  # transport metadata (RFC 5424 section 7)

RESULT_OUTCOMES: Final[dict[str, str]] = {
    **dict.fromkeys(("success", "succeeded", "successful", "ok", "true", "accepted", "allowed", "granted",
                     "permitted", "pass", "passed", "complete", "completed", "done", "executed",
                     "logout", "logoff", "loggedout"), "success"),
    **dict.fromkeys(("fail", "failed", "failure", "denied", "error", "false", "rejected", "refused",
                     "timeout", "timedout", "invalid", "blocked", "locked", "lockedout", "lockout",
                     "nok"), "failure"),
    **dict.fromkeys(("partial", "partialsuccess"), "partial"),
    **dict.fromkeys(("pending", "queued", "inprogress"), "pending"),
}

# Category of an event whose action stays "other", from what its MSGID says it is about.
MSGID_CATEGORIES: Final[dict[str, str]] = {
    "AUTH": "authentication",
    "SCADA_CTRL": "device_command",
    "TAG": "device_command",
    "ALARM": "device_event",
    "CONFIG": "config_change",
    "USER_ADMIN": "account_mgmt",
}

# SBO steps that actually move the device; a missing sbo parameter is a direct operate.
EXECUTE_STEPS: Final = ("operate", "execute", "exec", "direct", "directoperate", "do")
BREAKER_ACTIONS: Final[dict[str, str]] = {"open": "breaker_open", "trip": "breaker_open",
                                          "close": "breaker_close"}
TAG_PLACED: Final = ("place", "placed", "add", "added", "apply", "applied", "set", "hang", "hung", "attach",
                     "attached", "on", "create", "created", "new")
TAG_REMOVED: Final = ("remove", "removed", "clear", "cleared", "delete", "deleted", "lift", "lifted",
                      "release", "released", "off", "detach", "detached")
USER_OPS: Final[dict[str, tuple[str, ...]]] = {  # in this order, after add/remove-with-role and password
    "role_granted": ("grant", "granted", "grantrole", "assign", "assigned", "assignrole", "roleassigned",
                     "rolegranted", "addrole", "addtogroup", "elevate"),
    "role_revoked": ("revoke", "revoked", "revokerole", "unassign", "unassigned", "unassignrole",
                     "roleremoved", "rolerevoked", "removerole", "removefromgroup"),
    "account_created": ("create", "created", "add", "added", "new", "adduser", "createuser", "usercreated",
                        "useradded"),
    "account_deleted": ("delete", "deleted", "remove", "removed", "drop", "deleteuser", "removeuser",
                        "userdeleted", "userremoved"),
    "account_modified": ("modify", "modified", "update", "updated", "change", "changed", "edit", "edited",
                         "enable", "enabled", "disable", "disabled", "lock", "locked", "unlock", "unlocked",
                         "rename", "renamed", "moduser", "usermodified"),
}

# Device kinds, from a device-type parameter or a token of the device id (FDR-1203-CB, RCL-0711).
_DEVTYPE_WORDS: Final = (("recloser", r"reclos|^rcl"), ("capbank", r"capacit|capbank|^cap"),
                         ("regulator", r"regulat|vreg|^reg"), ("breaker", r"breaker|^cb$|^bkr$|^brk$"))
_ID_SEP = r"(?:^|[-_.:/ ])"
_ID_END = r"\d*(?:$|[-_.:/ ])"
_DEVICE_ID_TOKENS: Final = (("recloser", "RCL|RECL|RECLOSER"), ("capbank", "CAP|CAPBANK|CBANK"),
                            ("regulator", "REG|VREG|REGULATOR"), ("breaker", "CB|BKR|BRK|CBR|BREAKER"))

_LOGOUT = r"(?i)\blog(?:ged)?[\s_-]?(?:out|off)\b|\bsign(?:ed)?[\s_-]?(?:out|off)\b"
_LOCKOUT = r"(?i)\block(?:ed)?[\s_-]?out\b|\baccount (?:is |was )?locked\b"
_PASSWORD = r"pass(?:word|wd)|pwd|^pw(?:change|reset|set)"

_NOT_SYSLOG = ("not a syslog line: expected RFC 5424 '<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG' "
               "or RFC 3164 '<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG'")
_NO_HEADER = ("syslog line without a complete header: after '<PRI>' expected RFC 5424 "
              "'1 TIMESTAMP HOST APP PROCID MSGID' or RFC 3164 'Mmm dd hh:mm:ss HOST TAG[PID]:'")
_BAD_SD = ("RFC 5424 STRUCTURED-DATA is missing or malformed: expected '-' or [SD-ID name=\"value\" ...] "
           "with '\"', '\\' and ']' in values escaped by a backslash")


def _norm(expr: pl.Expr) -> pl.Expr:
    """A lower-case key without punctuation, so ``Reset_Password`` and ``resetpassword`` compare equal."""
    return per_distinct(expr, lambda words: words.select(
        clean(pl.col("v")).str.to_lowercase().str.replace_all(r"[^a-z0-9]", "")))


def _matches(expr: pl.Expr, pattern: str) -> pl.Expr:
    """``expr.str.contains(pattern)`` for a column of few distinct values."""
    return per_distinct(expr, lambda values: values.select(pl.col("v").str.contains(pattern)), pl.Boolean())


def _unescape(expr: pl.Expr) -> pl.Expr:
    # RFC 5424 6.3.3: only \" \\ \] are escapes; any other backslash is a literal backslash. One
    # left-to-right pass, so "\\\"" is an escaped backslash and then an escaped quote.
    return expr.str.replace_many(['\\"', "\\\\", "\\]"], ['"', "\\", "]"])


def _after(text: pl.Expr, head: str) -> pl.Expr:
    """What follows the column *head*, a match at the start of *text*; null where *head* is."""
    return text.str.slice(pl.col(head).str.len_chars())


def _device_type(devtype: pl.Expr, device: pl.Expr) -> pl.Expr:
    """recloser / capbank / regulator / breaker when a parameter or the device id says so, else null."""
    v = pl.col("v")

    def by_param(kinds: pl.LazyFrame) -> pl.LazyFrame:
        kind = clean(v).str.to_lowercase().str.replace_all(r"[^a-z0-9]", "")
        return kinds.select(pl.coalesce([pl.when(kind.str.contains(pattern)).then(pl.lit(name))
                                         for name, pattern in _DEVTYPE_WORDS]))

    def by_id(devices: pl.LazyFrame) -> pl.LazyFrame:
        ident = clean(v).str.to_uppercase()
        return devices.select(pl.coalesce([pl.when(ident.str.contains(f"{_ID_SEP}(?:{tokens}){_ID_END}"))
                                           .then(pl.lit(name)) for name, tokens in _DEVICE_ID_TOKENS]))

    return pl.coalesce(per_distinct(devtype, by_param), per_distinct(device, by_id))


def _params(staged: pl.DataFrame) -> dict[str, pl.Series]:
    """One column ``p_<field>`` per :data:`PARAM_ALIASES` field, aligned with *staged* (``_row``).

    Every ``key="value"`` pair is first tokenized left to right (so a value that contains ``x="y"``
    text is never read as a pair), then the wanted keys are picked in alias order.
    """
    in_msg = staged.filter(pl.col("_kv_in_msg")).select(
        "_row", _sd_id=pl.lit(None, pl.String), _pair=pl.col("_msg").str.extract_all(_MSG_PAIR))
    # STRUCTURED-DATA in one scan: each element's "[SD-ID" token, then its params. The scan stays in
    # step with the elements (a value is consumed whole), so every param follows its own SD-ID.
    token = pl.col("_pair")
    in_sd = (
        staged.filter(~pl.col("_kv_in_msg"))
        .select("_row", _pair=pl.col("_sd").str.extract_all(rf"\[{_SD_NAME}| +{_SD_PARAM}"))
        .explode("_pair").filter(token.is_not_null())
        .with_columns(_sd_id=pl.when(token.str.starts_with("[")).then(token.str.slice(1).str.to_lowercase())
                      .forward_fill())
        .filter(~token.str.starts_with("["))
        .select("_row", "_sd_id", "_pair")
    )
    pairs = pl.concat([in_msg.explode("_pair"), in_sd]).filter(pl.col("_pair").is_not_null())
    # The same pair (user="jdoe", result="success") recurs on many lines: read each distinct one once.
    # A key never holds "=", so the pair splits at its first one.
    kv = pl.col("_pair").str.strip_chars_start().str.splitn("=", 2).struct.rename_fields(["_key", "_val"])
    key = pl.col("_key").str.to_lowercase().str.replace_all(r"[_\-.]", "")
    key = pl.when(pl.col("_sd_id") == "origin").then(pl.lit("origin.") + key).otherwise(key)
    value = pl.col("_val")
    quoted = value.str.starts_with('"') & value.str.ends_with('"') & (value.str.len_chars() >= 2)
    distinct = (
        pairs.lazy().select("_sd_id", "_pair").unique()
        .filter(~pl.col("_sd_id").is_in(_IGNORED_SD_IDS).fill_null(False))
        .with_columns(kv.alias("_kv")).unnest("_kv")
        .with_columns(_key=key)
        .with_columns(_name=pl.col("_key").replace_strict(_FIELD_OF, default=None, return_dtype=pl.String))
        .filter(pl.col("_name").is_not_null())
        .select(
            "_sd_id",
            "_pair",
            "_name",
            _rank=pl.col("_key").replace_strict(_RANK_OF, default=None, return_dtype=pl.Int32),
            _value=pl.when(quoted).then(_unescape(value.str.slice(1, value.str.len_chars() - 2)))
            .otherwise(value),
        )
    )
    long = collect(
        pairs.lazy().join(distinct, on=["_sd_id", "_pair"], how="inner", nulls_equal=True, maintain_order="left")
        .select("_row", "_name", "_rank", "_value")
        # Stable: within a row and field, the lowest alias rank first, then the first written.
        .sort("_rank", maintain_order=True)
    )
    wide = spread(long, staged.height, list(PARAM_ALIASES))
    return {f"p_{field}": column for field, column in wide.items()}


class DmsSyslog(Parser):
    name = "dms_syslog"
    description = "DMS/ADMS events, RFC 5424 syslog with structured data (or RFC 3164 with key=\"value\")"
    source_system = "dms"
    independent_chunks = True
    together = True

    _SNIFF_5424: ClassVar[re.Pattern[str]] = re.compile(
        r"^\s*(?:\d{1,10} )?<\d{1,3}>1 \S+ \S+ \S+ \S+ \S+ (?:-|\[)")
    _SNIFF_3164: ClassVar[re.Pattern[str]] = re.compile(
        rf"^\s*(?:\d{{1,10}} )?(?:<\d{{1,3}}>)?(?:{_STAMP_3164}|{_STAMP_ISO}) .*?[\w.\-@]+=\"")

    @classmethod
    def sniff(cls, head: list[str]) -> bool:
        # CEF behind a syslog header belongs to the cef parser.
        if not head or any("CEF:" in line for line in head):
            return False
        hits = sum(1 for line in head if cls._SNIFF_5424.match(line) or cls._SNIFF_3164.match(line))
        return hits * 2 > len(head)

    def parse_chunk(self, lines: pl.DataFrame, text: bytes | None = None) -> pl.DataFrame:
        staged = self._split(lines)
        staged = staged.with_columns(**_params(staged))
        staged = self._times(staged)
        return self._map(staged).select(~cs.starts_with("_", "p_") | cs.by_name("_error"))

    # -- stages -----------------------------------------------------------------------------------

    def _split(self, lines: pl.DataFrame) -> pl.DataFrame:
        """Header fields, STRUCTURED-DATA, MSG and ``_error`` of every line, by regex over the chunk."""
        text = pl.col("raw").str.strip_chars_start(" \t\ufeff")
        staged = (
            lines.lazy().filter(pl.col("raw").str.strip_chars() != "")  # blank lines carry nothing
            .with_columns(_row=pl.int_range(pl.len(), dtype=pl.Int64), _line=text)
            .with_columns(pl.col("_line").str.extract_groups(_FRAME).alias("_f")).unnest("_f")
            .with_columns(_text=pl.coalesce("_framed", "_line"))
            .with_columns(_is5424=pl.col("_text").str.contains(_IS_5424))
            .with_columns(pl.col("_text").str.extract_groups(_HEAD_5424).alias("_h5")).unnest("_h5")
            .with_columns(pl.when(~pl.col("_is5424")).then(pl.col("_text").str.extract_groups(_HEAD_3164))
                          .alias("_h3")).unnest("_h3")
            .with_columns(_after5=_after(pl.col("_text"), "_head5"), _body=_after(pl.col("_text"), "_head3"))
        )
        after = pl.col("_after5")
        # " +" then the rest, or the end of the line; anything else after MSGID means no header at all.
        head_ends = (after == "") | after.str.starts_with(" ")
        staged = staged.with_columns(
            [pl.when(head_ends).then(pl.col(c)).alias(c) for c in ("_pri", "_ver", "_ts5", "_host5", "_app", "_procid",
                                                                   "_msgid5")],
            _rest=pl.when(after != "").then(after.str.strip_chars_start(" ")),
        ).with_columns(_sd=pl.col("_rest").str.extract(_SD, 0))
        rest = pl.col("_rest")
        staged = staged.with_columns(
            _msg_nil=pl.when(rest.str.starts_with("- ")).then(rest.str.slice(2)),
            _msg_sd=_after(rest, "_sd").str.strip_prefix(" "),
        )
        is5424 = pl.col("_is5424")
        sd_ok = pl.col("_sd").is_not_null() | pl.col("_rest").str.contains(r"(?s)^-(?: |$)")
        pri = pl.coalesce("_pri", "_pri3").cast(pl.Int64)
        octets = pl.col("_octets").cast(pl.Int64)
        length = pl.col("_framed").str.strip_chars_end().str.len_bytes().cast(pl.Int64)
        msg_5424 = pl.coalesce("_msg_sd", "_msg_nil").str.strip_prefix("\ufeff")
        error = (
            pl.when(pl.col("_text").str.contains(_CEF))
            .then(pl.lit("a CEF record, not DMS syslog: parse it with --format cef"))
            .when(is5424 & pl.col("_ver").is_null()).then(pl.lit(
                "RFC 5424 header is incomplete: expected '<PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID'"))
            .when(is5424 & (pl.col("_ver") != "1"))
            .then(formatted("unsupported syslog VERSION {} (RFC 5424 defines only 1)", "_ver"))
            .when(is5424 & ~sd_ok).then(pl.lit(_BAD_SD))
            .when(~is5424 & pl.col("_ts3").is_null() & pl.col("_text").str.contains(_LOOKS_3164))
            .then(pl.lit("RFC 3164 line without 'HOSTNAME TAG[PID]:' after the timestamp"))
            .when(~is5424 & pl.col("_ts3").is_null() & pl.col("_text").str.contains(r"^<\d{1,3}>"))
            .then(pl.lit(_NO_HEADER))
            .when(~is5424 & pl.col("_ts3").is_null()).then(pl.lit(_NOT_SYSLOG))
            .when(pri > 191).then(formatted("syslog PRI {} is out of range 0-191", pri))
            .when(octets < length).then(formatted(
                "octet count {} is less than the {} bytes that follow: more than one syslog frame on the line, "
                "or a wrong count", octets, length))
            .when(is5424 & (pl.col("_ts5") == "-"))
            .then(pl.lit("RFC 5424 TIMESTAMP is the NILVALUE '-': the event has no time"))
        )
        return collect(staged.with_columns(
            _error=error,
            _kv_in_msg=~is5424 | pl.col("_sd").is_null(),
            _msg=pl.when(is5424).then(msg_5424).otherwise(pl.col("_body").str.strip_prefix("\ufeff")),
            _ts=pl.when(is5424).then(pl.col("_ts5")).otherwise(pl.col("_ts3")),
            _host=pl.when(is5424).then(pl.col("_host5")).otherwise(pl.col("_host3")),
        ).with_columns(
            # Rejected lines must not ask for --tz, nor feed pairs to the mapping.
            _ts=pl.when(pl.col("_error").is_null()).then(pl.col("_ts")),
            _sd=pl.when(pl.col("_error").is_null()).then(pl.col("_sd")),
            _msg=pl.when(pl.col("_error").is_null()).then(pl.col("_msg")),
        ))

    def _times(self, staged: pl.DataFrame) -> pl.DataFrame:
        staged = self.with_time(staged, "_ts")
        late = late_yearless(staged, self, pl.col("_ts").str.contains(_YEARLESS))
        return staged.with_columns(
            time=pl.when(late).then(pl.col("time").dt.offset_by("-1y")).otherwise(pl.col("time")).cast(UTC_US),
        ).with_columns(
            _error=pl.coalesce(
                "_error",
                pl.when(pl.col("time").is_null()).then(formatted("unparseable syslog TIMESTAMP '{}'", "_ts")),
            )
        )

    def _map(self, staged: pl.DataFrame) -> pl.DataFrame:
        """Normalized columns from the MSGID and the parameters (see the module docstring).

        Built in steps of ``_`` columns that later steps read; the words the exporter chose (MSGID,
        result, op, device kinds) are few, so they are normalized once per distinct value.
        """
        query = staged.lazy().with_columns(
            *[clean(pl.col(f"p_{f}")).alias(f"p_{f}") for f in PARAM_ALIASES],
            _token=pl.when(pl.col("_kv_in_msg") & ~pl.col("_is5424")).then(pl.col("_msg").str.extract(_MSG_TOKEN, 1)),
        )
        p = {f: pl.col(f"p_{f}") for f in PARAM_ALIASES}
        token = pl.col("_token")
        text = pl.col("_msg")
        from_token = token.is_not_null() & p["msgid"].is_null()
        query = query.with_columns(
            _msgid=pl.when(pl.col("_is5424")).then(pl.coalesce(clean(pl.col("_msgid5")), p["msgid"], p["type"]))
            .otherwise(pl.coalesce(p["msgid"], token, p["type"])),
            _result=_norm(p["result"]),
            _op=_norm(p["action"]),
            _step=_norm(p["sbo"]),
            _message=pl.when(pl.col("_kv_in_msg"))
            .then(pl.when(from_token).then(text.str.replace(_MSG_TOKEN, "")).otherwise(text)
                  .str.replace_all(_MSG_PAIR, "").str.strip_chars())
            .otherwise(text),
            _device_kind=_device_type(p["devtype"], p["device"]),
        ).with_columns(
            _kind=per_distinct(pl.col("_msgid"), lambda ids: ids.select(
                pl.col("v").str.to_uppercase().str.replace_all("-", "_"))),
            _outcome=pl.col("_result").replace_strict(RESULT_OUTCOMES, default="unknown"),
        )
        kind, result, op, step, message = (pl.col(c) for c in ("_kind", "_result", "_op", "_step", "_message"))
        outcome = pl.col("_outcome")

        # AUTH
        says = [p["result"], p["method"], p["action"], message]
        lockout = result.is_in(["locked", "lockedout", "lockout"]) | message.str.contains(_LOCKOUT).fill_null(False)
        logout = pl.any_horizontal([_matches(e, _LOGOUT) for e in says[:-1]] + [message.str.contains(_LOGOUT)]
                                   ).fill_null(False)
        auth = (pl.when(lockout).then(pl.lit("lockout")).when(logout).then(pl.lit("logout"))
                .when(outcome == "success").then(pl.lit("login_success"))
                .when(outcome == "failure").then(pl.lit("login_failure")))
        # SCADA_CTRL: only an executed step moves the device.
        executes = step.is_null() | step.is_in(EXECUTE_STEPS)
        breaker = op.replace_strict(BREAKER_ACTIONS, default=None)
        scada = pl.when(executes).then(breaker)
        # ALARM
        has_change = p["old"].is_not_null() | p["new"].is_not_null()
        # TAG: by its op, else by what the message says happened.
        placed = op.is_in(TAG_PLACED) | (op.is_null() & text.str.contains(r"(?i)\b(?:placed|applied|hung)\b"))
        removed = op.is_in(TAG_REMOVED) | (op.is_null() & text.str.contains(
            r"(?i)\b(?:removed|cleared|lifted|released)\b"))
        tag = pl.when(placed).then(pl.lit("tag_placed")).when(removed).then(pl.lit("tag_removed"))
        # USER_ADMIN: "add"/"remove" with a role is a role change, without one an account change.
        has_role = p["role"].is_not_null()
        user_admin = (
            pl.when(has_role & op.is_in(["add", "added"])).then(pl.lit("role_granted"))
            .when(has_role & op.is_in(["remove", "removed"])).then(pl.lit("role_revoked"))
            .when(op.str.contains(_PASSWORD)).then(pl.lit("password_changed"))
        )
        for name, ops in USER_OPS.items():
            user_admin = user_admin.when(op.is_in(ops)).then(pl.lit(name))

        query = query.with_columns(
            _action=pl.coalesce(
                pl.when(kind == "AUTH").then(auth)
                .when(kind == "SCADA_CTRL").then(scada)
                .when(kind == "ALARM").then(pl.when(has_change).then(pl.lit("status_change")))
                .when(kind == "CONFIG").then(pl.lit("setting_changed"))
                .when(kind == "TAG").then(tag)
                .when(kind == "USER_ADMIN").then(user_admin),
                pl.lit("other"),
            ),
            _breaker=breaker.is_not_null(),
        )
        action = pl.col("_action")
        device_kind = pl.col("_device_kind")
        is_device = kind.is_in(["SCADA_CTRL", "ALARM", "TAG"])
        target_type = (
            pl.when(kind == "SCADA_CTRL")
            .then(pl.coalesce(device_kind, pl.when(pl.col("_breaker")).then(pl.lit("breaker"))))
            .when(is_device).then(device_kind)
            .when(kind == "CONFIG")
            .then(pl.when(p["setting"].is_not_null()).then(pl.lit("setting")).otherwise(device_kind))
            .when(kind == "USER_ADMIN").then(pl.when(p["target"].is_not_null()).then(pl.lit("account")))
        )
        target_id = (
            pl.when(is_device).then(p["device"])
            .when(kind == "CONFIG").then(pl.coalesce(p["setting"], p["device"]))
            .when(kind == "USER_ADMIN").then(p["target"])
        )
        # The tag kind or role is what a tag/role change adds or takes away.
        extra = pl.coalesce(pl.when(kind == "TAG").then(p["tag"]), pl.when(kind == "USER_ADMIN").then(p["role"]))
        taken = action.is_in(["tag_removed", "role_revoked"])
        given = action.is_in(["tag_placed", "role_granted", "account_created"])
        return collect(query.with_columns(
            host=pl.coalesce(clean(pl.col("_host")), p["origin_ip"]),
            account=pl.when(kind == "ALARM").then(None).otherwise(p["user"]),  # alarms come from devices
            src_ip=p["src"],
            src_host=p["console"],
            action=action,
            category=pl.when(action == "other").then(kind.replace_strict(MSGID_CATEGORIES, default=None)),
            outcome=outcome,
            target_type=target_type,
            target_id=target_id,
            job_id=p["job"],
            native_code=pl.concat_str([pl.col("_msgid"), p["action"], pl.when(kind == "SCADA_CTRL").then(p["sbo"])],
                                      separator=":", ignore_nulls=True),
            old_value=pl.coalesce(p["old"], pl.when(taken).then(extra)),
            new_value=pl.coalesce(p["new"], pl.when(kind == "CONFIG").then(p["value"]), pl.when(given).then(extra)),
            message=message,
        ))
