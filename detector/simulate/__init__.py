"""A utility in a box: realistic, labelled HES, DMS, Windows and VPN logs to develop and test against.

:func:`simulate` writes days of routine (shifts, service-account schedules, vendor support,
maintenance windows, storms) in the five reference formats of ARCHITECTURE.md, plants incidents after a
clean baseline, and labels them in ``labels.json``. Deterministic from the seed.

:class:`Settings` shapes the utility (sizes, shifts, naming, time zone, incident timing and sizes, the
catalogue); ``Settings()`` is today's utility and ``Settings.random(seed)`` draws another.
:func:`simulate_fleet` writes a differently shaped world: an office fleet's Windows logons with insider
incidents.
"""

from detector.simulate.catalogue import ALL_KINDS, BENIGN_KINDS, EXTENDED_KINDS
from detector.simulate.fleet import FLEET_KINDS, FleetSettings, simulate_fleet
from detector.simulate.incidents import CATALOGUE, Label
from detector.simulate.settings import DEFAULT_METERS, DEFAULT_OPERATORS, DEFAULT_START, DEFAULT_TZ, Settings
from detector.simulate.simulator import (
    SimulationSummary,
    World,
    build_world,
    generate_day,
    simulate,
)

INCIDENT_KINDS: tuple[str, ...] = tuple(kind for kind, *_ in CATALOGUE)

__all__ = ["ALL_KINDS", "BENIGN_KINDS", "DEFAULT_METERS", "DEFAULT_OPERATORS", "DEFAULT_START", "DEFAULT_TZ",
           "EXTENDED_KINDS", "FLEET_KINDS", "INCIDENT_KINDS", "FleetSettings", "Label", "Settings", "SimulationSummary",
           "World", "build_world", "generate_day", "simulate", "simulate_fleet"]
