"""The run configuration: explicit, frozen, read from TOML only when the user names a file.

A configuration file has a ``[features]``, a ``[scoring]`` (with ``[scoring.severity]``) and an
``[alerts]`` table; every key is optional and falls back to the defaults documented in
``models/config.toml``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from detector.errors import ConfigError
from detector.features import FeatureConfig
from detector.findings import SEVERITIES
from detector.scoring import ScoringConfig


@dataclass(frozen=True)
class Config:
    """Settings of the feature, scoring and alerting stages."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    alert_severity: str = "medium"  # findings at or above it make scan and nightly exit 1

    def __post_init__(self) -> None:
        if self.alert_severity not in SEVERITIES:
            raise ConfigError(f"alert severity must be one of {', '.join(SEVERITIES)}, not {self.alert_severity!r}")

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Config:
        unknown = sorted(set(doc) - {"features", "scoring", "alerts"})
        if unknown:
            raise ConfigError(f"unknown configuration table(s) {unknown}; known: features, scoring, alerts")
        alerts = dict(doc.get("alerts", {}))
        extra = sorted(set(alerts) - {"severity"})
        if extra:
            raise ConfigError(f"unknown [alerts] setting(s) {extra}; known: severity")
        return cls(
            features=FeatureConfig.from_dict(doc.get("features", {})),
            scoring=ScoringConfig.from_dict(doc.get("scoring", {})),
            alert_severity=alerts.get("severity", "medium"),
        )

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
        return {"features": asdict(self.features), "scoring": self.scoring.to_dict(),
                "alerts": {"severity": self.alert_severity}}
