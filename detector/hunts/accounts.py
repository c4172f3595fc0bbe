"""Accounts hunt: accounts created, privileges granted, their use soon after, and dormant accounts waking.

The advisory's questions: *which accounts appeared, who was given privileges, and were they used
right away? Did an old account come back to life?* One row per account creation or privilege
grant (events of the same kind for the same account within ``cluster_gap`` are one row, so a
creation logged by the HES and by Windows is one answer), per dormant account's first activity
after ``dormant_after`` of silence, and — when ``since`` is given — per account first seen in the
period without a logged creation.

Called out: a created account or a grantee used within ``use_within`` (24 h), and every dormant
account that woke up.

Windows names the subject of a group change by the member's SID or directory name (``CN=Kevin
Hayes,OU=...``), not by its account. Such a subject is resolved to the account where the logs say
which: a Windows event that names both (4720 and the other account events: ``TargetUserName`` and
``TargetSid``; 4728/4732/4756: ``MemberName`` and ``MemberSid``), read from the raw lines of those
few events. A subject that cannot be resolved is never listed as an account: its row has no
``account`` and says how it was logged in ``logged_as``.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta
from typing import Final

import polars as pl

from detector.errors import ConfigError
from detector.hunts.common import (
    EVIDENCE_CAP,
    TimeWindow,
    as_lazy,
    clusters,
    counted,
    distinct,
    elapsed,
    evidence_line,
    finish_table,
    hunt_findings,
    normalized_account,
    sentences,
    summary_lines,
    utc_text,
)

NAME: Final = "accounts"
CREATION: Final = ("account_created",)
GRANTS: Final = ("role_granted", "group_member_added")
KINDS: Final = ("account_created", "privilege_granted", "dormant_woke", "first_seen")

COLUMNS: Final = ("kind", "account", "first_seen", "last_seen", "actors", "details", "systems", "used_within",
                  "first_use", "uses", "actions_after", "new_actions", "src_ips_after", "dormant_days",
                  "last_seen_before", "logged_as")

_SID: Final = r"^s-1-\d+(?:-\d+)+$"
# Windows account events whose raw lines may name an account together with its SID.
_IDENTITY_ACTIONS: Final = ("account_created", "account_deleted", "account_modified", "password_changed",
                            "group_member_added", "role_granted", "role_revoked", "lockout")

_USES_SCHEMA: Final = {"_row": pl.UInt32, "first_use": pl.Datetime("us", "UTC"), "uses": pl.Int64,
                       "actions_after": pl.List(pl.String), "src_ips_after": pl.List(pl.String),
                       "_use_evidence": pl.List(pl.String)}


def hunt_accounts(events: pl.DataFrame | pl.LazyFrame, *, since: datetime | date | str | None = None,
                  until: datetime | date | str | None = None, use_within: timedelta = timedelta(hours=24),
                  dormant_after: timedelta = timedelta(days=14), cluster_gap: timedelta = timedelta(hours=1),
                  evidence_cap: int = EVIDENCE_CAP) -> pl.DataFrame:
    """Account creations, privilege grants, use soon after them, and dormant accounts that woke up.

    Parameters
    ----------
    events
        Normalized events (all of them: dormancy and "never did before" look at the whole history).
    since, until
        Report creations, grants and wake-ups in this period (UTC; ``until`` exclusive). Use after
        them is followed past ``until``.
    use_within
        How soon after a creation or grant a use is called out (default 24 h).
    dormant_after
        Silence after which an account's next successful activity is a wake-up (default 14 days).
    cluster_gap
        Creations (or grants) of the same account this close together are one row.
    evidence_cap
        Most ``raw_file:raw_line`` entries kept per row (0 for all).

    Returns
    -------
    polars.DataFrame
        ``kind`` (``account_created``, ``privilege_granted``, ``dormant_woke``, ``first_seen``),
        ``account``, ``first_seen``, ``last_seen`` (of the creation/grant events, or the wake-up),
        ``actors``, ``details`` (roles and groups), ``systems``, ``used_within`` (the account acted
        within ``use_within``), ``first_use``, ``uses``, ``actions_after``, ``new_actions``
        (actions the account had never done before), ``src_ips_after``, ``dormant_days``,
        ``last_seen_before``, then the common columns. Called-out rows first.

    Raises
    ------
    ConfigError
        For a period or duration that makes no sense.
    """
    if use_within <= timedelta(0) or dormant_after <= timedelta(0) or cluster_gap < timedelta(0):
        raise ConfigError("use_within and dormant_after must be positive, cluster_gap not negative")
    period = TimeWindow.of(since, until)
    lf = as_lazy(events).with_columns(_evidence=evidence_line(), action=pl.col("action").cast(pl.String))
    # A "use" is anything the account itself did that did not fail.
    uses = (lf.filter(pl.col("account").is_not_null() & (pl.col("outcome") != "failure"))
            .select("account", "time", "action", "src_ip", "_evidence"))
    aliases = identity_aliases(lf)
    if aliases.height:  # an actor logged by SID is the account the logs tie it to
        uses = (uses.join(aliases.lazy(), left_on="account", right_on="alias", how="left")
                .with_columns(account=pl.coalesce("resolved", "account")).drop("resolved"))

    changes = (
        lf.filter(pl.col("action").is_in([*CREATION, *GRANTS]) & (pl.col("outcome") != "failure")
                  & pl.col("target_id").is_not_null())
        .with_columns(kind=pl.when(pl.col("action").is_in(CREATION)).then(pl.lit("account_created"))
                      .otherwise(pl.lit("privilege_granted")),
                      _logged=normalized_account("target_id"))
        .filter(pl.col("_logged") != "")
        .join(aliases.lazy(), left_on="_logged", right_on="alias", how="left")
        # A SID or a display name is not an account: resolved where the logs say which, else kept apart.
        .with_columns(_unresolved=pl.col("resolved").is_null() & _not_an_account("_logged"))
        .with_columns(_subject=pl.coalesce("resolved", "_logged"))
        .drop("resolved")
    )
    changes = clusters(changes, ["kind", "_subject"], cluster_gap, name="_cluster")
    changed = (
        changes.sort("time", "raw_file", "raw_line")
        .group_by("kind", "_subject", "_cluster", maintain_order=True)
        .agg(first_seen=pl.col("time").min(), last_seen=pl.col("time").max(), actors=distinct("account"),
             details=distinct("new_value"), systems=distinct(pl.col("source_system").cast(pl.String)),
             _anchor_evidence=pl.col("_evidence"), _unresolved=pl.col("_unresolved").all())
        .filter(period.contains("first_seen"))
        .select("kind", pl.when(~pl.col("_unresolved")).then(pl.col("_subject")).alias("account"),
                pl.when(pl.col("_unresolved")).then(pl.col("_subject")).alias("logged_as"),
                "first_seen", "last_seen", "actors", "details", "systems", "_anchor_evidence",
                pl.lit(None, dtype=pl.Float64).alias("dormant_days"),
                pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("last_seen_before"),
                # Use after a change: later than the first change event, up to use_within after the last.
                pl.col("first_seen").alias("_from"), pl.lit(False).alias("_from_incl"),
                (pl.col("last_seen") + use_within).alias("_to"))
    )

    activity = uses.sort("account", "time").with_columns(
        _prev=pl.col("time").shift(1).over("account"), _prev_evidence=pl.col("_evidence").shift(1).over("account"))
    woke = (
        activity.filter((pl.col("time") - pl.col("_prev") >= dormant_after) & period.contains("time"))
        .select(pl.lit("dormant_woke").alias("kind"), "account", pl.lit(None, dtype=pl.String).alias("logged_as"),
                pl.col("time").alias("first_seen"),
                pl.col("time").alias("last_seen"), pl.lit([], dtype=pl.List(pl.String)).alias("actors"),
                pl.lit([], dtype=pl.List(pl.String)).alias("details"),
                pl.lit([], dtype=pl.List(pl.String)).alias("systems"),
                pl.concat_list(pl.col("_prev_evidence")).alias("_anchor_evidence"),
                ((pl.col("time") - pl.col("_prev")).dt.total_seconds() / 86_400).round(1).alias("dormant_days"),
                pl.col("_prev").alias("last_seen_before"),
                pl.col("time").alias("_from"), pl.lit(True).alias("_from_incl"),
                (pl.col("time") + use_within).alias("_to"))
    )
    anchors = [changed, woke]
    if period.since is not None:
        anchors.append(_first_seen(uses, changes, period, use_within))
    rows = pl.concat(anchors, how="vertical").with_row_index("_row").collect()

    after = _use_after(uses, rows, evidence_cap)
    new_actions = _new_actions(uses, rows)
    table = (rows.join(after, on="_row", how="left").join(new_actions, on="_row", how="left")
             .with_columns(uses=pl.col("uses").fill_null(0),
                           actions_after=pl.col("actions_after").fill_null([]),
                           src_ips_after=pl.col("src_ips_after").fill_null([]),
                           new_actions=pl.col("new_actions").fill_null([]),
                           evidence=pl.concat_list(pl.col("_anchor_evidence"), pl.col("_use_evidence").fill_null([]))
                           .list.unique(maintain_order=True))
             .with_columns(used_within=pl.col("uses") > 0,
                           event_count=(pl.col("_anchor_evidence").list.len() + pl.col("uses")).cast(pl.Int64)))
    if evidence_cap > 0:
        table = table.with_columns(pl.col("evidence").list.head(evidence_cap))
    # A wake-up's first activity is itself one of the uses counted.
    table = table.with_columns(
        last_seen=pl.when(pl.col("kind") == "dormant_woke").then(pl.col("last_use")).otherwise(pl.col("last_seen")),
        event_count=pl.when(pl.col("kind") == "dormant_woke").then(pl.col("uses") + 1).otherwise(pl.col("event_count")),
    )

    within_text = f"{use_within.total_seconds() / 3600:g} h"
    used_text = pl.concat_str([
        pl.lit("; used "), elapsed(pl.col("first_use") - pl.col("first_seen")), pl.lit(" later ("),
        counted("uses", "event"),
        pl.lit(" within " + within_text + ": "), pl.col("actions_after").list.head(6).list.join(", "), pl.lit(")"),
        pl.when(pl.col("new_actions").list.len() > 0).then(pl.concat_str([
            pl.lit(", including actions it had never done before: "), pl.col("new_actions").list.join(", ")]))
        .otherwise(pl.lit(""))])
    by = pl.concat_str([pl.lit(" by "), pl.col("actors").list.join(", ")])
    when = pl.concat_str([pl.lit(" at "), utc_text("first_seen"), pl.lit(" UTC")])
    details = pl.when(pl.col("details").list.len() > 0).then(
        pl.concat_str([pl.lit(" ("), pl.col("details").list.join("; "), pl.lit(")")])).otherwise(pl.lit(""))
    reasons = sentences(
        pl.when((pl.col("kind") == "account_created") & pl.col("used_within")).then(pl.concat_str([
            pl.col("account"), pl.lit(" was created"), details, when, by, used_text])),
        pl.when((pl.col("kind") == "privilege_granted") & pl.col("used_within")).then(pl.concat_str([
            pl.col("account"), pl.lit(" was granted privileges"), details, when, by, used_text])),
        pl.when(pl.col("kind") == "dormant_woke").then(pl.concat_str([
            pl.col("account"), pl.lit(" woke up at "), utc_text("first_seen"), pl.lit(" UTC after "),
            pl.col("dormant_days").cast(pl.String), pl.lit(" days without activity (last seen "),
            utc_text("last_seen_before"), pl.lit(" UTC); "), counted("uses", "event"), pl.lit(" within " + within_text),
            pl.when(pl.col("src_ips_after").list.len() > 0)
            .then(pl.concat_str([pl.lit(" from "), pl.col("src_ips_after").list.join(", ")])).otherwise(pl.lit("")),
            pl.lit(": "), pl.col("actions_after").list.head(6).list.join(", ")])),
    )
    description = (
        pl.when(pl.col("kind") == "account_created").then(pl.concat_str([
            pl.lit("account created: "), pl.col("account"), details, when, by, pl.lit(" on "),
            pl.col("systems").list.join(", "),
            pl.when(pl.col("used_within")).then(pl.lit("")).otherwise(pl.lit(", not used within " + within_text))]))
        .when(pl.col("kind") == "privilege_granted").then(pl.concat_str([
            pl.lit("privileges granted: "), pl.col("account"), details, when, by, pl.lit(" on "),
            pl.col("systems").list.join(", "),
            pl.when(pl.col("used_within")).then(pl.lit("")).otherwise(pl.lit(", not used within " + within_text))]))
        .when(pl.col("kind") == "dormant_woke").then(pl.concat_str([
            pl.lit("dormant account woke up: "), pl.col("account"), pl.lit(" after "),
            pl.col("dormant_days").cast(pl.String), pl.lit(" days"), when]))
        .otherwise(pl.concat_str([
            pl.lit("account first seen: "), pl.col("account"), when, pl.lit(" without a logged creation; "),
            counted("uses", "event"), pl.lit(" within " + within_text + ": "),
            pl.col("actions_after").list.head(6).list.join(", ")]))
    )
    unresolved = pl.concat_str([
        pl.lit("privileges granted to "), pl.col("logged_as"), details, when, by, pl.lit(" on "),
        pl.col("systems").list.join(", "),
        pl.lit(" (logged by SID or display name; no event in these logs names its account)")])
    created_unresolved = pl.concat_str([
        pl.lit("account created: "), pl.col("logged_as"), details, when, by, pl.lit(" on "),
        pl.col("systems").list.join(", "),
        pl.lit(" (logged by SID or display name; no event in these logs names its account)")])
    description = (pl.when(pl.col("account").is_null() & (pl.col("kind") == "privilege_granted")).then(unresolved)
                   .when(pl.col("account").is_null() & (pl.col("kind") == "account_created")).then(created_unresolved)
                   .otherwise(description))
    table = table.with_columns(reasons=reasons).with_columns(
        called_out=pl.col("reasons").list.len() > 0, description=description,
        used_within=pl.when(pl.col("account").is_not_null()).then(pl.col("used_within")))
    return finish_table(table, COLUMNS, ["first_seen", "kind", "account"])


def _not_an_account(column: str) -> pl.Expr:
    """A SID (``s-1-5-21-...``) or a display name (``kevin hayes``, ``doe, john``) where an account is expected."""
    value = pl.col(column)
    return (value.str.contains(_SID) | value.str.contains(r"[ ,]")).fill_null(False)


def _dn_name(value: str) -> str:
    match = re.match(r"(?i)^CN=((?:[^,\\]|\\.)+)", value)
    return re.sub(r"\\(.)", r"\1", match.group(1)) if match else value


def _field(record: dict[str, object], name: str) -> str | None:
    winlog = record.get("winlog")
    data = winlog.get("event_data", {}) if isinstance(winlog, dict) else {}
    value = record.get(name, data.get(name) if isinstance(data, dict) else None)
    return value.strip() if isinstance(value, str) and value.strip() not in ("", "-") else None


def identity_aliases(events: pl.LazyFrame) -> pl.DataFrame:
    """``alias`` (a lower-case SID or display name) -> ``resolved`` (the account), where one event names both.

    Read from the raw lines of the Windows account events (few: creations, changes, group
    changes); a SID is tied to the account an event names with it (``TargetUserName`` and
    ``TargetSid``/``TargetUserSid``, ``SubjectUserName`` and ``SubjectUserSid``), and a member's
    display name to its SID (``MemberName`` and ``MemberSid``) and so, through the SID, to the
    account. Files that are gone or unreadable give no aliases.
    """
    schema = {"alias": pl.String, "resolved": pl.String}
    located = (events.filter(pl.col("source_format").str.starts_with("winsec")
                             & pl.col("action").cast(pl.String).is_in(_IDENTITY_ACTIONS)
                             & pl.col("raw_file").is_not_null() & pl.col("raw_line").is_not_null())
               .select("raw_file", "raw_line").unique().collect())
    if located.is_empty():
        return pl.DataFrame(schema=schema)
    from detector.evidence import read_raw_lines

    try:
        raw = read_raw_lines(located).get_column("raw").drop_nulls().to_list()
    except Exception:  # noqa: BLE001 - raw files rotated away or unreadable: nothing to resolve with
        return pl.DataFrame(schema=schema)
    sid_account: dict[str, str] = {}
    member_sid: dict[str, str] = {}
    for line in raw:  # a handful of account events, not a hot path
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        for name_key, sid_key in (("TargetUserName", "TargetSid"), ("TargetUserName", "TargetUserSid"),
                                  ("SubjectUserName", "SubjectUserSid")):
            name, sid = _field(record, name_key), _field(record, sid_key)
            if name and sid and not name.endswith("$") and re.match(_SID, sid.lower()):
                sid_account.setdefault(sid.lower(), name.lower().split("\\")[-1].split("@")[0])
        member, sid = _field(record, "MemberName"), _field(record, "MemberSid")
        if member and sid and re.match(_SID, sid.lower()):
            member_sid.setdefault(_dn_name(member).lower(), sid.lower())
    rows = dict(sid_account)
    for display, sid in member_sid.items():
        if sid in sid_account:
            rows.setdefault(display, sid_account[sid])
    # A group's own SID names a group, not an account: only names that look like accounts are kept.
    return pl.DataFrame({"alias": list(rows), "resolved": list(rows.values())}, schema=schema).filter(
        ~pl.col("resolved").str.contains(r"[ ,]"))


def _first_seen(uses: pl.LazyFrame, changes: pl.LazyFrame, period: TimeWindow, use_within: timedelta) -> pl.LazyFrame:
    """Accounts whose first activity falls in the period, with history before it, and no logged creation."""
    history = uses.filter(pl.col("time") < period.since).select(pl.len()).collect().item()
    created = changes.filter(pl.col("kind") == "account_created").select(account="_subject").unique()
    # Neither SIDs nor display names are accounts that could be "first seen".
    uses = uses.filter(~_not_an_account("account"))
    first = (uses.group_by("account").agg(first_seen=pl.col("time").min())
             .filter(period.contains("first_seen") & pl.lit(history > 0))
             .join(created, on="account", how="anti"))
    return first.select(
        pl.lit("first_seen").alias("kind"), "account", pl.lit(None, dtype=pl.String).alias("logged_as"), "first_seen", pl.col("first_seen").alias("last_seen"),
        pl.lit([], dtype=pl.List(pl.String)).alias("actors"), pl.lit([], dtype=pl.List(pl.String)).alias("details"),
        pl.lit([], dtype=pl.List(pl.String)).alias("systems"),
        pl.lit([], dtype=pl.List(pl.String)).alias("_anchor_evidence"),
        pl.lit(None, dtype=pl.Float64).alias("dormant_days"),
        pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("last_seen_before"),
        pl.col("first_seen").alias("_from"), pl.lit(True).alias("_from_incl"),
        (pl.col("first_seen") + use_within).alias("_to"))


def _use_after(uses: pl.LazyFrame, rows: pl.DataFrame, evidence_cap: int) -> pl.DataFrame:
    """Per row: the account's successful activity in (_from, _to] ([_from, _to] for wake-ups)."""
    spans = rows.lazy().select("_row", "account", "_from", "_from_incl", "_to")
    hits = (uses.join(spans, on="account", how="inner")
            .filter(((pl.col("time") > pl.col("_from")) | (pl.col("_from_incl") & (pl.col("time") == pl.col("_from"))))
                    & (pl.col("time") <= pl.col("_to")))
            .sort("_row", "time"))
    evidence = pl.col("_evidence").head(evidence_cap) if evidence_cap > 0 else pl.col("_evidence")
    counts = (hits.group_by("_row", "action").agg(n=pl.len())
              .sort("_row", "n", "action", descending=[False, True, False])
              .group_by("_row", maintain_order=True).agg(actions_after=pl.concat_str([
                  pl.col("action"), pl.lit(" ("), pl.col("n").cast(pl.String), pl.lit(")")])))
    first = hits.group_by("_row", maintain_order=True).agg(
        first_use=pl.col("time").min(), last_use=pl.col("time").max(), uses=pl.len().cast(pl.Int64),
        src_ips_after=distinct("src_ip"), _use_evidence=evidence)
    return first.join(counts, on="_row", how="left").collect()


def _new_actions(uses: pl.LazyFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """Per row: actions the account took after the anchor that it had never taken before it."""
    spans = rows.lazy().select("_row", "account", "_from", "_from_incl", "_to")
    joined = uses.join(spans, on="account", how="inner")
    before = joined.filter(pl.col("time") < pl.col("_from")).select("_row", "action").unique()
    after = (joined.filter((pl.col("time") >= pl.col("_from")) & (pl.col("time") <= pl.col("_to")))
             .group_by("_row", "action").agg(_t=pl.col("time").min()))
    return (after.join(before, on=["_row", "action"], how="anti").sort("_row", "_t")
            .group_by("_row", maintain_order=True).agg(new_actions=pl.col("action")).collect())


def to_findings(table: pl.DataFrame, severity: str = "high", *, called_out_only: bool = True) -> pl.DataFrame:
    """Account rows as findings: the created, granted or woken account is the entity."""
    who = pl.coalesce("account", "logged_as")
    key = pl.concat_str([pl.col("kind"), who, utc_text("first_seen", "%Y-%m-%dT%H:%M:%S%.f")], separator="|")
    return hunt_findings(table, detector=NAME, severity=severity, entity_kind=pl.lit("account"),
                         entity_id=who, key=key, called_out_only=called_out_only)


def summary(table: pl.DataFrame) -> list[str]:
    """The account rows for the terminal."""
    return summary_lines(NAME, table, noun="account events")
