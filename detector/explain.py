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
from detector.features.catalog import MEASURE_SINGULAR

_WEEKDAYS = ("", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _count(value: float) -> int:
    return int(round(value))


def _plural(n: int, label: str, singular: str | None = None) -> str:
    """``1 event`` / ``3 events``: *label* is the plural, *singular* the form for one (default: *label*
    without its final ``s``)."""
    if n == 1:
        return f"1 {singular if singular is not None else label.removesuffix('s')}"
    return f"{n} {label}"


def _list(values: Sequence[str] | None, limit: int = 4) -> str:
    values = [str(v) for v in (values or []) if v not in (None, "")]
    shown = ", ".join(values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _typical(value: float | None) -> str:
    if value is None or value == 0:
        return "never in the baseline"
    return f"usually {value:g} when it does any"


def feature_sentence(feature: str, value: float, row: Mapping[str, Any]) -> str | None:
    """One sentence for one feature of a window, or None when the feature says nothing worth reading
    (a count no higher than usual, an empty list, an hour the entity is often active in)."""
    days = row.get("baseline_days") or 0.0
    span = f"{days:.0f} days of baseline" if days >= 1 else "the baseline"
    shown = math.expm1(value) if feature in LOG1P_FEATURES else value
    if feature in FEATURE_MEASURE:
        measure = FEATURE_MEASURE[feature]
        count = (row.get("counts") or {}).get(measure)
        typical = (row.get("typical") or {}).get(measure)
        if not count or (typical and count <= typical):
            return None
        label = MEASURE_LABELS.get(measure, measure)
        one = MEASURE_SINGULAR.get(measure, label)
        who = "its peers" if row.get("typical_source") == "peers" else "it"
        text = _typical(typical).replace("it does", f"{who} do" if who == "its peers" else "it does")
        return f"{_plural(_count(count), label, one)} in the window ({text})"
    if feature == "new_src_ip_events":
        listed = _list(row.get("new_src_ips"))
        return f"{_plural(_count(shown), 'events')} from {listed}, never seen for this account in {span}" if listed else None
    if feature == "new_src_net_events":
        listed = _list(row.get("new_src_nets"))
        return (f"{_plural(_count(shown), 'events')} from network {listed}, never seen for this account in {span}"
                if listed else None)
    if feature == "new_src_host_events":
        listed = _list(row.get("new_src_hosts"))
        return (f"{_plural(_count(shown), 'events')} from host {listed}, never seen for this account in {span}"
                if listed else None)
    if feature == "new_global_src_ip_events":
        listed = _list(row.get("new_global_src_ips"))
        return f"source address {listed} was never used by any account in {span}" if listed else None
    if feature == "new_action_count":
        listed = _list(row.get("new_actions"))
        return f"first time doing {listed} (never in {span})" if listed else None
    if feature == "new_image_hash_count":
        hashes = [h[:16] + "…" for h in (row.get("new_image_hashes") or []) if h]
        return f"firmware image hash {_list(hashes)} never seen in {span}" if hashes else None
    if feature == "new_setting_count":
        listed = _list(row.get("new_settings"))
        return f"changed {listed}, which nobody changed in {span}" if listed else None
    if feature == "weakened_setting_count":
        listed = _list(row.get("weakened_settings"))
        return f"weakened a security control: {listed}" if listed else None
    if feature == "new_issuer_count":
        listed = _list(row.get("new_issuers"))
        return f"commands from {listed}, never seen issuing to this device in {span}" if listed else None
    if feature == "hour_rarity":
        hour, share = row.get("rarest_hour"), row.get("hour_share")
        if hour is None or share is None or value < 0.5:
            return None
        zone = row.get("_zone") or "UTC"
        return f"active at {hour:02d}:00 {zone}, an hour with {share:.1%} of its usual activity"
    if feature == "weekday_rarity":
        day, share = row.get("rarest_weekday"), row.get("weekday_share")
        if day is None or share is None or value < 0.5:
            return None
        return f"active on a {_WEEKDAYS[int(day)]}, a day with {share:.1%} of its usual activity"
    if feature == "dormancy_days":
        if shown < 1:
            return None
        previous = row.get("previous_activity")
        when = f" (last seen {previous:%Y-%m-%d})" if isinstance(previous, datetime) else ""
        return f"first activity after {shown:.0f} days of silence{when}"
    if feature == "failure_ratio":
        return f"{value:.0%} of its events in the window failed" if value > 0 else None
    return None


def reasons(row: Mapping[str, Any], top_features: Sequence[Mapping[str, Any]], score: float | None,
            signals: Sequence[str] = ()) -> list[str]:
    """The reasons of one finding: its security signals, most important first (see
    :mod:`detector.signals`), then a sentence per telling feature of the forest, then how rare the
    window is against the baseline. The first reason names the entity."""
    entity = row["entity_id"]
    sentences: list[str] = [s for s in signals if s]
    for feature in top_features:
        sentence = feature_sentence(feature["feature"], feature["value"], row)
        if sentence and sentence not in sentences:
            sentences.append(sentence)
    if not row.get("has_baseline", True):
        sentences.append(f"no baseline of its own for this {row.get('entity_kind') or 'entity'} (volumes compared with "
                         f"{row.get('typical_source') or 'none'})")
    if not sentences:
        events = int(row.get("event_count") or 0)
        sentences.append(f"an unusual combination of otherwise ordinary activity ({_plural(events, 'events')})")
    sentences[0] = f"{entity}: {sentences[0]}"
    if score is not None:
        sentences.append(f"rarer than {score:.2%} of baseline windows")
    return sentences
