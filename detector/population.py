"""Does the model know the entities it scores? A cheap check before trusting a borrowed model.

A model trained on one utility's logs knows that utility's accounts and devices. Scored against
another utility's logs, nearly every entity is new to it, every window looks unusual, and the
findings flood. :func:`known_share` counts, over the distinct accounts and devices of the events
being scored, how many the model's baseline profiles hold; the CLI says so once when it is less
than half.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

import polars as pl

from detector.detection import profiles_of
from detector.features import EntityKind
from detector.features.common import entity_of
from detector.model_store import Model

#: Below this share of known entities, the scan warns that the model was trained elsewhere.
KNOWN_SHARE_WARNING: Final = 0.5


@dataclass(frozen=True)
class Population:
    """Distinct entities of the scored events, and how many of them the model's profiles hold."""

    entities: int
    known: int
    accounts: int
    known_accounts: int
    devices: int
    known_devices: int

    @property
    def share(self) -> float:
        """Share of the entities the model knows (1.0 when there are none)."""
        return self.known / self.entities if self.entities else 1.0

    @property
    def mostly_unknown(self) -> bool:
        return self.entities > 0 and self.share < KNOWN_SHARE_WARNING


def known_share(events: pl.DataFrame | pl.LazyFrame, model: Model, *, since: datetime | None = None) -> Population:
    """How many of the accounts and devices in *events* (from *since* on) the model's profiles know.

    One pass over the events for the distinct entities of both kinds, each looked up in the
    profiles' entity list of its kind.
    """
    lazy = events.lazy() if isinstance(events, pl.DataFrame) else events
    if since is not None:
        lazy = lazy.filter(pl.col("time") >= since)
    profiles = profiles_of(model)
    lists: dict[EntityKind, pl.Series] = {"account": profiles.account_activity.get_column("account"),
                                          "device": profiles.device_activity.get_column("device_id")}
    seen = pl.collect_all([lazy.select(entity_of(kind).alias("entity")).drop_nulls().unique() for kind in lists])
    by_kind = {kind: (distinct.height, int(distinct.get_column("entity").is_in(lists[kind].implode()).sum()))
               for kind, distinct in zip(lists, seen, strict=True)}
    accounts, known_accounts = by_kind.get("account", (0, 0))
    devices, known_devices = by_kind.get("device", (0, 0))
    return Population(entities=accounts + devices, known=known_accounts + known_devices, accounts=accounts,
                      known_accounts=known_accounts, devices=devices, known_devices=known_devices)


def population_note(population: Population, logs: list[str] | tuple[str, ...]) -> str | None:
    """The one-line warning for a model that knows less than half of the scored entities, else None."""
    if not population.mostly_unknown:
        return None
    shown = " ".join(logs) if logs else "LOGS"
    return (f"the model knows only {population.known:,} of the {population.entities:,} accounts and devices "
            f"in these logs ({population.share:.0%}; accounts {population.known_accounts:,} of "
            f"{population.accounts:,}, devices {population.known_devices:,} of {population.devices:,}): it was "
            f"trained on other logs, so most findings may just be unfamiliar names. Train on your own "
            f"baseline: ami-detector train {shown} --model-dir model/ --baseline-until TIME "
            f"(then scan with --model model/), or scan with --baseline-until TIME and no --model")
