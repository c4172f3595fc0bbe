"""Every value of every schema enum is produced by some golden input: nothing in the schema is dead."""

from __future__ import annotations

import json

import pytest

from detector.schema import ACTIONS, CATEGORIES, OUTCOMES, SOURCE_SYSTEMS
from tests.conftest import GOLDEN


@pytest.mark.parametrize(("column", "values"), [("action", ACTIONS), ("category", CATEGORIES),
                                                ("outcome", OUTCOMES), ("source_system", SOURCE_SYSTEMS)])
def test_every_enum_value_is_reachable_from_some_input(column: str, values: tuple[str, ...]) -> None:
    seen = {event[column] for path in GOLDEN.glob("*.expected.json")
            for event in json.loads(path.read_text())["events"]}
    assert set(values) - seen == set()
