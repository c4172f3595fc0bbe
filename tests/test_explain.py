"""The feature registry and the sentences of reasons made from it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from detector.explain import feature_sentence
from detector.features import FEATURES, MEASURES, feature_columns


def test_every_model_input_is_in_the_registry_with_what_its_sentence_needs() -> None:
    for kind in ("account", "device"):
        assert set(feature_columns(kind)) <= set(FEATURES)
    for feature in FEATURES.values():
        assert feature.description
        if feature.kind == "novelty":
            assert feature.listed and "{listed}" in feature.sentence and feature.log1p
        if feature.kind == "excess":
            assert feature.measure in MEASURES


@pytest.mark.parametrize(("feature", "value", "row", "expected"), [
    ("excess_remote_disconnect", 2.0, {"counts": {"remote_disconnect": 1}, "typical": {"remote_disconnect": 0}},
     "1 remote disconnect in the window (never in the baseline)"),
    ("excess_remote_disconnect", 2.0, {"counts": {"remote_disconnect": 40}, "typical": {"remote_disconnect": 5},
                                       "typical_source": "peers"},
     "40 remote disconnects in the window (usually 5 when its peers do any)"),
    ("excess_events", 1.0, {"counts": {"events": 3}, "typical": {"events": 9}}, None),  # fewer than usual
    ("new_src_ip_events", 1.0986122886681098, {"new_src_ips": ["203.0.113.77"], "baseline_days": 21.0},
     "2 events from 203.0.113.77, never seen for this account in 21 days of baseline"),
    ("new_src_ip_events", 1.0, {"new_src_ips": []}, None),
    ("new_image_hash_count", 0.69, {"new_image_hashes": ["ab" * 32, ""]},
     "firmware image hash abababababababab… never seen in the baseline"),
    ("hour_rarity", 0.9, {"rarest_hour": 3, "hour_share": 0.001, "_zone": "America/Chicago"},
     "active at 03:00 America/Chicago, an hour with 0.1% of its usual activity"),
    ("weekday_rarity", 0.2, {"rarest_weekday": 7, "weekday_share": 0.3}, None),
    ("dormancy_days", 3.4339872044851463, {"previous_activity": datetime(2026, 1, 2, tzinfo=UTC)},
     "first activity after 30 days of silence (last seen 2026-01-02)"),
    ("failure_ratio", 0.25, {}, "25% of its events in the window failed"),
    ("no_such_feature", 1.0, {}, None),
])
def test_feature_sentences(feature, value, row, expected) -> None:
    assert feature_sentence(feature, value, row) == expected
