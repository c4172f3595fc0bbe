"""Reasons: the sentences a finding carries, written from a window's features and context.

Each sentence names the entity, what is unusual, and the baseline it is unusual against, with the
numbers an operator can check ("3 events from 203.0.113.77, never seen for this account in 21 days
of baseline"). The sentences follow the order of the finding's top features.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from detector.features.catalog import FEATURES, MEASURES, Feature, FeatureKind

_WEEKDAYS = ("", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _count(value: float) -> int:
    return round(value)


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
    (a count no higher than usual, an empty list, an hour the entity is often active in).

    What the sentence says comes from the feature's entry in the registry
    (:data:`detector.features.catalog.FEATURES`): its template, or the writer of its kind.
    """
    spec = FEATURES.get(feature)
    if spec is None:
        return None
    days = row.get("baseline_days") or 0.0
    span = f"{days:.0f} days of baseline" if days >= 1 else "the baseline"
    shown = math.expm1(value) if spec.log1p else value
    return _WRITERS[spec.kind](spec, value, shown, span, row)


def _excess(spec: Feature, _value: float, _shown: float, _span: str, row: Mapping[str, Any]) -> str | None:
    measure = spec.measure or ""
    count = (row.get("counts") or {}).get(measure)
    typical = (row.get("typical") or {}).get(measure)
    if not count or (typical and count <= typical):
        return None
    known = MEASURES.get(measure)
    label = known.label if known else measure
    one = known.singular if known else label
    who = "its peers" if row.get("typical_source") == "peers" else "it"
    text = _typical(typical).replace("it does", f"{who} do" if who == "its peers" else "it does")
    return f"{_plural(_count(count), label, one)} in the window ({text})"


def _novelty(spec: Feature, _value: float, shown: float, span: str, row: Mapping[str, Any]) -> str | None:
    values = [v for v in (row.get(spec.listed) if spec.listed else None) or [] if v]
    if spec.clip is not None:
        values = [v[:spec.clip] + "…" for v in values]
    listed = _list(values)
    if not listed:
        return None
    return spec.sentence.format(events=_plural(_count(shown), "events"), listed=listed, span=span)


def _hour(_spec: Feature, value: float, _shown: float, _span: str, row: Mapping[str, Any]) -> str | None:
    hour, share = row.get("rarest_hour"), row.get("hour_share")
    if hour is None or share is None or value < 0.5:
        return None
    zone = row.get("_zone") or "UTC"
    return f"active at {hour:02d}:00 {zone}, an hour with {share:.1%} of its usual activity"


def _weekday(_spec: Feature, value: float, _shown: float, _span: str, row: Mapping[str, Any]) -> str | None:
    day, share = row.get("rarest_weekday"), row.get("weekday_share")
    if day is None or share is None or value < 0.5:
        return None
    return f"active on a {_WEEKDAYS[int(day)]}, a day with {share:.1%} of its usual activity"


def _dormancy(_spec: Feature, _value: float, shown: float, _span: str, row: Mapping[str, Any]) -> str | None:
    if shown < 1:
        return None
    previous = row.get("previous_activity")
    when = f" (last seen {previous:%Y-%m-%d})" if isinstance(previous, datetime) else ""
    return f"first activity after {shown:.0f} days of silence{when}"


def _ratio(_spec: Feature, value: float, _shown: float, _span: str, _row: Mapping[str, Any]) -> str | None:
    return f"{value:.0%} of its events in the window failed" if value > 0 else None


_Writer = Callable[[Feature, float, float, str, Mapping[str, Any]], "str | None"]
_WRITERS: dict[FeatureKind, _Writer] = {"excess": _excess, "novelty": _novelty, "hour": _hour, "weekday": _weekday,
                                        "dormancy": _dormancy, "ratio": _ratio}


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
