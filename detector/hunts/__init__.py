"""Advisory hunts: exact answers to the questions an advisory asks after a vendor breach.

Each hunt is a pure function of the normalized events and its options that returns a polars
DataFrame, one row per answer (an image pushed, a vendor session, an account created, a log
cleared, an indicator matched), ending in the columns every hunt shares:

``called_out`` (bool)
    The row needs a human: an unknown hash, a push outside the maintenance window, an indicator
    hit, a log cleared...
``reasons`` (list of str)
    Why it is called out, in sentences; empty when it is not.
``description`` (str)
    What the row is, in one sentence.
``event_count`` (int)
    Events behind the row.
``evidence`` (list of str)
    ``raw_file:raw_line`` of those events, as in the findings.

Rows that are called out come first. ``HUNTS[name].to_findings(table, severity)`` turns a table
into rows of the findings contract (``detector`` = the hunt's name) to merge into a scan's
findings with :func:`detector.hunts.common.merge_findings`::

    from detector.pipeline import read_logs
    from detector.hunts import HUNTS, merge_findings, run_hunt

    events, _ = read_logs("sample_logs/")
    table = run_hunt("firmware", events, windows=["Wed 00:00-04:00"], tz="America/Chicago",
                     manifest="known_good.csv", since="2026-03-15", until="2026-04-30")
    merge_findings("out/", HUNTS["firmware"].to_findings(table, "critical"))
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import polars as pl

from detector.errors import ConfigError
from detector.hunts import accounts, firmware, ioc, log_tamper, vendor_access
from detector.hunts.accounts import hunt_accounts
from detector.hunts.common import TimeWindow, WeeklyWindow, merge_findings, write_table
from detector.hunts.firmware import hunt_firmware, load_manifest
from detector.hunts.ioc import hunt_ioc, load_indicators
from detector.hunts.log_tamper import hunt_log_tamper
from detector.hunts.vendor_access import hunt_vendor_access


@dataclass(frozen=True)
class Hunt:
    """A registered hunt: its function, its findings conversion and its terminal summary."""

    name: str
    description: str
    run: Callable[..., pl.DataFrame]
    to_findings: Callable[..., pl.DataFrame]
    summary: Callable[[pl.DataFrame], list[str]]


HUNTS: Final[dict[str, Hunt]] = {
    firmware.NAME: Hunt(firmware.NAME, "firmware downloads and activations by image, checked against a manifest, "
                        "maintenance windows and past pushers", hunt_firmware, firmware.to_findings, firmware.summary),
    vendor_access.NAME: Hunt(vendor_access.NAME, "sessions of vendor accounts and vendor address ranges across VPN, "
                             "jump host, Windows and HES", hunt_vendor_access, vendor_access.to_findings,
                             vendor_access.summary),
    accounts.NAME: Hunt(accounts.NAME, "accounts created, privileges granted, used within 24 h; dormant accounts "
                        "waking up", hunt_accounts, accounts.to_findings, accounts.summary),
    log_tamper.NAME: Hunt(log_tamper.NAME, "audit logs cleared, logging tampered with, silences longer than a "
                          "source's normal", hunt_log_tamper, log_tamper.to_findings, log_tamper.summary),
    ioc.NAME: Hunt(ioc.NAME, "indicators of compromise (CSV or STIX 2.1) matched against every event", hunt_ioc,
                   ioc.to_findings, ioc.summary),
}


def get_hunt(name: str) -> Hunt:
    """The registered hunt called *name* (``vendor_access`` works for ``vendor-access``).

    Raises
    ------
    ConfigError
        For an unknown name, listing the known ones.
    """
    key = name.strip().lower().replace("_", "-")
    if key not in HUNTS:
        raise ConfigError(f"unknown hunt {name!r}; known: {', '.join(HUNTS)}")
    return HUNTS[key]


def run_hunt(name: str, events: pl.DataFrame | pl.LazyFrame, **options: Any) -> pl.DataFrame:
    """Run the hunt *name* over *events* with its keyword *options*.

    Parameters
    ----------
    name
        One of :data:`HUNTS`: ``firmware``, ``vendor-access``, ``accounts``, ``log-tamper``, ``ioc``.
    events
        Normalized events (see :mod:`detector.schema`).
    **options
        The hunt function's keyword arguments, e.g. ``since``, ``until``, ``manifest``,
        ``windows``, ``tz`` for ``firmware``; ``indicators`` for ``ioc``.

    Returns
    -------
    polars.DataFrame
        The hunt's table (see the hunt function's documentation).

    Raises
    ------
    ConfigError
        For an unknown hunt, an option the hunt does not have, or a bad option value.
    """
    hunt = get_hunt(name)
    try:
        inspect.signature(hunt.run).bind(events, **options)
    except TypeError as exc:
        known = [p for p in inspect.signature(hunt.run).parameters if p != "events"]
        raise ConfigError(f"hunt {hunt.name}: {exc}; its options: {', '.join(known)}") from None
    return hunt.run(events, **options)


__all__ = ["HUNTS", "Hunt", "TimeWindow", "WeeklyWindow", "get_hunt", "hunt_accounts", "hunt_firmware", "hunt_ioc",
           "hunt_log_tamper", "hunt_vendor_access", "load_indicators", "load_manifest", "merge_findings", "run_hunt",
           "write_table"]
