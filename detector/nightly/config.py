"""Settings of the nightly job (``[nightly]`` of a TOML file, or command-line options)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from detector.config import Config
from detector.errors import ConfigError
from detector.features import parse_duration
from detector.findings import SEVERITIES

_NEVER: Final = ("never", "off", "none")


def _duration(value: object, name: str, *, never: bool = False) -> timedelta | None:
    """A duration setting: ``"7d"``, ``"90m"``, ``"0"`` (zero), or ``"never"`` where allowed."""
    if isinstance(value, timedelta) or value is None:
        return value
    text = str(value).strip().lower()
    if never and text in _NEVER:
        return None
    if text in ("0", "0s", "0m", "0h", "0d"):
        return timedelta()
    try:
        return parse_duration(text)
    except ConfigError as exc:
        extra = " or 'never'" if never else ""
        raise ConfigError(f"{name}: {exc.message}{extra}") from None


def _format_duration(value: timedelta | None) -> str:
    if value is None:
        return "never"
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


_PATH_KEYS: Final = ("inbox", "state", "out", "model")
_DURATION_KEYS: Final = {"retrain_every": True, "keep": True, "baseline": False, "min_baseline": False,
                         "settle": False, "history": False}


@dataclass(frozen=True)
class NightlyConfig:
    """Settings of the nightly job; every field but the three directories has a default.

    Parameters
    ----------
    inbox
        The drop folder of exports (walked recursively; hidden files and in-progress names skipped).
    state
        The state directory: event store, rejects, findings ledger, models, state file, lock, logs.
    out
        Where the dated reports go: ``OUT/YYYY-MM-DD/`` and the symlink ``OUT/latest``.
    model
        The initial model, copied into the state on the first run; later runs use the state's
        models. Without one, a baseline is built from the inbox first.
    retrain_every
        Cadence of retraining (``None``: never).
    keep
        Retention of event, reject and ledger partitions (``None``: keep everything).
    baseline
        How much of the recent store a retrained model learns from.
    min_baseline
        Span of events needed before a first model is trained when none was given.
    settle
        Quiet period after which a file that has not changed is taken as complete.
    history
        How far back the store is searched for an entity's previous activity (dormancy).
    tz
        IANA zone of timestamps written without an offset.
    min_severity
        Lowest severity written to the reports.
    detector
        Feature, scoring and alert settings (``[features]``, ``[scoring]``, ``[alerts]``).
    """

    inbox: Path
    state: Path
    out: Path
    model: Path | None = None
    retrain_every: timedelta | None = timedelta(days=7)
    keep: timedelta | None = timedelta(days=90)
    baseline: timedelta = timedelta(days=28)
    min_baseline: timedelta = timedelta(days=7)
    settle: timedelta = timedelta(minutes=5)
    history: timedelta = timedelta(days=30)
    tz: str | None = None
    min_severity: str = "low"
    detector: Config = field(default_factory=Config)

    def __post_init__(self) -> None:
        for name in _PATH_KEYS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        for name, never in _DURATION_KEYS.items():
            object.__setattr__(self, name, _duration(getattr(self, name), name, never=never))
            if getattr(self, name) is None and not never:
                raise ConfigError(f"{name} cannot be 'never'")
        for name in ("baseline", "min_baseline", "history"):
            if getattr(self, name) <= timedelta():
                raise ConfigError(f"{name} must be a positive duration")
        if self.min_severity not in SEVERITIES:
            raise ConfigError(f"min_severity must be one of {', '.join(SEVERITIES)}, not {self.min_severity!r}")
        if self.tz is not None:
            try:
                ZoneInfo(self.tz)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigError(f"unknown time zone {self.tz!r}; use an IANA name such as "
                                  "'America/Chicago'") from None

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], *, detector: Config | None = None,
                     base: Path | None = None) -> NightlyConfig:
        """Build from a ``[nightly]`` table; relative paths are taken relative to *base*.

        Raises
        ------
        ConfigError
            On an unknown key, a missing directory setting or an invalid value.
        """
        known = {f.name for f in fields(cls)} - {"detector"}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(f"unknown [nightly] setting(s) {unknown}; known: {sorted(known)}")
        values = {k: v for k, v in table.items() if v is not None}
        for name in ("inbox", "state", "out"):
            if name not in values:
                raise ConfigError(f"the {name} directory is not set: pass --{name} or set {name} in [nightly]")
        for name in _PATH_KEYS:
            if name in values:
                path = Path(str(values[name])).expanduser()
                values[name] = base / path if base is not None and not path.is_absolute() else path
        return cls(**values, detector=detector or Config())

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> NightlyConfig:
        """Read the ``[nightly]`` table (and ``[features]``, ``[scoring]``, ``[alerts]``) of a TOML file.

        Paths in the file are relative to the file's directory; *overrides* (``None`` ignored)
        replace the file's ``[nightly]`` values, as command-line options do.
        """
        path = Path(path)
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read configuration: {exc}", source=(str(path), None)) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", source=(str(path), None)) from None
        table = doc.pop("nightly", {})
        try:
            if not isinstance(table, dict):
                raise ConfigError("[nightly] must be a table")
            detector = Config.from_dict(doc)
            config = cls.from_mapping(table, detector=detector, base=path.parent)
        except ConfigError as exc:
            raise ConfigError(exc.message, source=(str(path), None)) from None
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(config, **given) if given else config

