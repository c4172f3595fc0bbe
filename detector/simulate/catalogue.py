"""Every incident kind the simulator can plant: the classic catalogue and the extended one.

The classic kinds keep their catalogue positions as numbers (their random streams); extended kinds are
numbered from 100, so adding one never shifts another's randomness.
"""

from __future__ import annotations

from detector.simulate import scenarios
from detector.simulate.incidents import (
    CATALOGUE,
    HOUR_RANGES,
    PLANTERS,
    DayRule,
    Entry,
    Planter,
    _any,
    _workday,
)

EXTENDED: tuple[Entry, ...] = (
    ("rdp_new_account_disconnect", scenarios.rdp_new_account_disconnects, 0.2, 14.6, _workday, False),
    ("local_admin_night", scenarios.local_admin_night, 0.3, 1.2, _any, False),
    ("admin_account_weakens_tls", scenarios.admin_account_weakens_tls, 0.4, 1.7, _any, False),
    ("operator_read_sweep", scenarios.operator_read_sweep, 0.5, 10.5, _workday, False),
    ("vendor_opens_admin_rule", scenarios.vendor_opens_admin_rule, 0.65, 11.0, _workday, False),
    ("retention_cut", scenarios.retention_cut, 0.75, 15.2, _workday, False),
    ("service_task_new_host", scenarios.service_task_new_host, 0.88, 13.4, _workday, False),
)
EXTENDED_HOURS: dict[str, tuple[float, float]] = {
    "rdp_new_account_disconnect": (9.5, 16.0), "local_admin_night": (0.5, 3.0),
    "admin_account_weakens_tls": (0.5, 4.0), "operator_read_sweep": (9.0, 12.5),
    "vendor_opens_admin_rule": (9.5, 14.0), "retention_cut": (9.5, 16.0), "service_task_new_host": (9.5, 15.5),
}
HOUR_RANGES.update(EXTENDED_HOURS)

NUMBERED: dict[str, tuple[int, Entry]] = {entry[0]: (k, entry) for k, entry in enumerate(CATALOGUE)}
NUMBERED |= {entry[0]: (100 + k, entry) for k, entry in enumerate(EXTENDED)}
CLASSIC_KINDS: tuple[str, ...] = tuple(entry[0] for entry in CATALOGUE)
EXTENDED_KINDS: tuple[str, ...] = tuple(entry[0] for entry in EXTENDED)
ALL_KINDS: tuple[str, ...] = CLASSIC_KINDS + EXTENDED_KINDS
BENIGN_KINDS: frozenset[str] = frozenset(e[0] for e in (*CATALOGUE, *EXTENDED) if e[5])
ALL_PLANTERS: dict[str, Planter] = {**PLANTERS, **{e[0]: e[1] for e in EXTENDED}}


def select(kinds: tuple[str, ...] | None, *, benign: bool = True) -> tuple[tuple[int, Entry], ...] | None:
    """The numbered entries of *kinds* (None: the classic catalogue, returned as None so callers keep
    the classic path), without the benign ones unless *benign*."""
    if kinds is None and benign:
        return None
    wanted = CLASSIC_KINDS if kinds is None else kinds
    unknown = [k for k in wanted if k not in NUMBERED]
    if unknown:
        from detector.errors import ConfigError

        raise ConfigError(f"unknown incident kind(s) {', '.join(unknown)}; known: {', '.join(ALL_KINDS)}")
    return tuple(NUMBERED[k] for k in wanted if benign or not NUMBERED[k][1][5])


__all__ = ["ALL_KINDS", "ALL_PLANTERS", "BENIGN_KINDS", "CLASSIC_KINDS", "EXTENDED", "EXTENDED_KINDS", "DayRule",
           "select"]
