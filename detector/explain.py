"""Reasons: the sentences a finding carries, written from a window's features and context.

Each sentence names the entity, what is unusual, and the baseline it is unusual against, with the
numbers an operator can check ("3 events from 203.0.113.77, never seen for this account in 21 days
of baseline"). The sentences follow the order of the finding's top features.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from detector.features import FEATURE_MEASURE, LOG1P_FEATURES, MEASURE_LABELS

_WEEKDAYS = ("", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _count(value: float) -> int:
    return int(round(value))


def _list(values: Sequence[str] | None, limit: int = 4) -> str:
    values = [str(v) for v in (values or [])]
    shown = ", ".join(values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _typical(value: float | None) -> str:
    if value is None or value == 0:
        return "never in the baseline"
    return f"usually {value:g} when it does any"


def feature_sentence(feature: str, value: float, row: Mapping[str, Any]) -> str | None:
    """One sentence for one feature of a window, or None when the feature says nothing useful."""
    days = row.get("baseline_days") or 0.0
    span = f"{days:.0f} days of baseline" if days >= 1 else "the baseline"
    shown = math.expm1(value) if feature in LOG1P_FEATURES else value
    if feature in FEATURE_MEASURE:
        measure = FEATURE_MEASURE[feature]
        count = (row.get("counts") or {}).get(measure)
        typical = (row.get("typical") or {}).get(measure)
        if not count:
            return None
        label = MEASURE_LABELS.get(measure, measure)
        who = "its peers" if row.get("typical_source") == "peers" else "it"
        text = _typical(typical).replace("it does", f"{who} do" if who == "its peers" else "it does")
        return f"{_count(count)} {label} in the window ({text})"
    if feature == "new_src_ip_events":
        return f"{_count(shown)} events from {_list(row.get('new_src_ips'))}, never seen for this account in {span}"
    if feature == "new_src_net_events":
        return (f"{_count(shown)} events from network {_list(row.get('new_src_nets'))}, "
                f"never seen for this account in {span}")
    if feature == "new_src_host_events":
        return f"{_count(shown)} events from host {_list(row.get('new_src_hosts'))}, never seen for this account in {span}"
    if feature == "new_global_src_ip_events":
        return f"source address {_list(row.get('new_global_src_ips'))} was never used by any account in {span}"
    if feature == "new_action_count":
        return f"first time doing {_list(row.get('new_actions'))} (never in {span})"
    if feature == "new_image_hash_count":
        hashes = [h[:16] + "…" for h in (row.get("new_image_hashes") or [])]
        return f"firmware image hash {_list(hashes)} never seen in {span}"
    if feature == "new_setting_count":
        return f"changed {_list(row.get('new_settings'))}, which nobody changed in {span}"
    if feature == "weakened_setting_count":
        return f"weakened a security control: {_list(row.get('weakened_settings'))}"
    if feature == "new_issuer_count":
        return f"commands from {_list(row.get('new_issuers'))}, never seen issuing to this device in {span}"
    if feature == "hour_rarity":
        hour, share = row.get("rarest_hour"), row.get("hour_share")
        if hour is None or share is None:
            return None
        return f"active at {hour:02d}:00 UTC, an hour with {share:.1%} of its past activity"
    if feature == "weekday_rarity":
        day, share = row.get("rarest_weekday"), row.get("weekday_share")
        if day is None or share is None:
            return None
        return f"active on a {_WEEKDAYS[int(day)]}, a day with {share:.1%} of its past activity"
    if feature == "dormancy_days":
        previous = row.get("previous_activity")
        when = f" (last seen {previous:%Y-%m-%d})" if isinstance(previous, datetime) else ""
        return f"first activity after {shown:.0f} days of silence{when}"
    if feature == "failure_ratio":
        return f"{value:.0%} of its events in the window failed"
    return None


def reasons(row: Mapping[str, Any], top_features: Sequence[Mapping[str, Any]], score: float) -> list[str]:
    """The reasons of one finding: entity, then a sentence per telling feature, most telling first."""
    entity = row["entity_id"]
    sentences: list[str] = []
    if not row.get("has_baseline", True):
        source = row.get("typical_source") or "none"
        sentences.append(f"{entity}: no baseline for this {row['entity_kind']} "
                         f"(volumes compared with {source}); novelty against its own history cannot be judged")
    for feature in top_features:
        sentence = feature_sentence(feature["feature"], feature["value"], row)
        if sentence and sentence not in sentences:
            sentences.append(sentence)
    if len(sentences) == (0 if row.get("has_baseline", True) else 1):
        sentences.append(f"an unusual combination of otherwise ordinary activity ({row.get('event_count', 0)} events)")
    sentences[0] = sentences[0] if sentences[0].startswith(f"{entity}:") else f"{entity}: {sentences[0]}"
    sentences.append(f"rarer than {score:.2%} of baseline windows")
    return sentences
