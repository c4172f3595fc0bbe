"""The run configuration: explicit, frozen, read from TOML only when the user names a file.

A configuration file has a ``[features]``, a ``[scoring]`` (with ``[scoring.severity]``), an
``[alerts]`` and a ``[report]`` table; every key is optional and falls back to the defaults documented
in ``models/config.toml``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from detector.errors import ConfigError
from detector.features import FeatureConfig
from detector.findings import SEVERITIES
from detector.scoring import ScoringConfig


def check_display_tz(name: str) -> str:
    """*name* if it is an IANA time zone (``UTC``, ``America/Chicago``).

    Raises
    ------
    ConfigError
        For any other text.
    """
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(f"unknown time zone {name!r}; use an IANA name such as America/Chicago or UTC") from None
    return name


@dataclass(frozen=True)
class ReportConfig:
    """How the HTML report shows findings; it changes no finding (and is not kept in a model)."""

    display_tz: str = "UTC"  # every time in the report is shown in this zone, with UTC beside it

    def __post_init__(self) -> None:
        check_display_tz(self.display_tz)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ReportConfig:
        extra = sorted(set(doc) - {"display_tz"})
        if extra:
            raise ConfigError(f"unknown [report] setting(s) {extra}; known: display_tz")
        return cls(**doc)


@dataclass(frozen=True)
class Config:
    """Settings of the feature, scoring and alerting stages."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    alert_severity: str = "medium"  # findings at or above it make scan and nightly exit 1
    report: ReportConfig = field(default_factory=ReportConfig)

    def __post_init__(self) -> None:
        if self.alert_severity not in SEVERITIES:
            raise ConfigError(f"alert severity must be one of {', '.join(SEVERITIES)}, not {self.alert_severity!r}")

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Config:
        unknown = sorted(set(doc) - {"features", "scoring", "alerts", "report"})
        if unknown:
            raise ConfigError(f"unknown configuration table(s) {unknown}; known: features, scoring, alerts, report")
        alerts = dict(doc.get("alerts", {}))
        extra = sorted(set(alerts) - {"severity"})
        if extra:
            raise ConfigError(f"unknown [alerts] setting(s) {extra}; known: severity")
        return cls(
            features=FeatureConfig.from_dict(doc.get("features", {})),
            scoring=ScoringConfig.from_dict(doc.get("scoring", {})),
            alert_severity=alerts.get("severity", "medium"),
            report=ReportConfig.from_dict(doc.get("report", {})),
        )

    @classmethod
    def of_model(cls, kept: Mapping[str, Any]) -> Config:
        """The settings a model was trained with, from the table it keeps (:meth:`to_dict`): its
        features, scoring and alerts; the report's display settings are not kept, so the defaults."""
        return cls.from_dict({k: v for k, v in kept.items() if k in ("features", "scoring", "alerts")})

    @classmethod
    def from_toml(cls, path: str | Path) -> Config:
        try:
            doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read configuration: {exc}", source=(str(path), None)) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", source=(str(path), None)) from None
        try:
            return cls.from_dict(doc)
        except ConfigError as exc:
            raise ConfigError(exc.message, source=(str(path), None)) from None

    def to_dict(self) -> dict[str, Any]:
        # [report] is left out: this table is kept in a trained model, and how a report shows
        # times must not change the model (or its id).
        return {"features": asdict(self.features), "scoring": self.scoring.to_dict(),
                "alerts": {"severity": self.alert_severity}}
