"""Sharing findings: a STIX 2.1 bundle for an ISAC, CEF lines and ECS JSON lines for a SIEM.

The advisories that follow a vendor breach ask utilities to share what they found with their
ISAC (E-ISAC, WaterISAC) and to feed their SIEM. :func:`export_findings` reads a findings folder
(``ami-detector scan --out``, with hunt call-outs merged in) and writes:

* a STIX 2.1 bundle (:func:`stix_bundle`): one ``indicator`` per address, firmware image hash and
  account of the findings at the chosen severity, one ``sighting`` of each (how many events, first
  and last seen) by the utility's ``identity``, everything marked with a TLP marking. Built with the
  ``stix2`` library, which validates every object and every pattern, and parsed back before it is
  written;
* CEF (:func:`cef_lines`): one line per finding, escaped per the CEF rules, for syslog forwarding;
* ECS (:func:`ecs_documents`): one JSON document per finding, in Elastic Common Schema fields.

Addresses and image hashes come from the events a finding cites (``evidence.parquet``) and, for
hunt call-outs, from their reasons; accounts are the findings' account entities. Internal
(RFC 1918, loopback, link-local, unique-local) addresses are left out of the STIX bundle unless
asked for: they mean nothing to another utility. Every file is written under a temporary name and
renamed, so a reader never sees half of one.

Columns added to findings by later stages (``incident_id``, ``signals``) and ``incidents.parquet``
are used when present (the incident summary leads the CEF message), never required.
"""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Final, Literal

import polars as pl

from detector.atomic import atomic_write
from detector.errors import ConfigError, InputError
from detector.findings import SEVERITIES, rank, severity_at_least

TLP_LEVELS: Final = ("clear", "white", "green", "amber", "red")
IndicatorKind = Literal["ipv4", "ipv6", "sha256", "account"]

# Fixed namespace: the same indicator (kind and value) gets the same STIX id in every export, so a
# receiver can merge what several exports share.
_NAMESPACE: Final = uuid.UUID("6d5c2f0e-8f43-4c1e-9a57-2f7b9d0c4a11")
_CEF_SEVERITY: Final = {"low": 3, "medium": 5, "high": 8, "critical": 10}
_ECS_SEVERITY: Final = {"low": 21, "medium": 47, "high": 73, "critical": 99}
_ECS_VERSION: Final = "8.11.0"
_SHA256 = re.compile(r"\b[0-9a-fA-F]{64}\b")
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_INTERNAL: Final = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10",
    "::1/128", "fc00::/7", "fe80::/10"))
_HUNTS: Final = ("firmware", "vendor-access", "accounts", "log-tamper", "ioc")
# How a detector is named to people outside the team (the forest's name is jargon).
_DETECTOR_WORDS: Final = {"iforest": "anomaly model"}


def _version() -> str:
    try:
        return metadata.version("ami-detector")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


# ---- reading a findings folder ---------------------------------------------------------------------


@dataclass
class FindingsFolder:
    """What :func:`read_folder` found: the findings, the events they cite, incidents when present."""

    findings: pl.DataFrame
    evidence: pl.DataFrame | None = None
    incidents: pl.DataFrame | None = None


def read_folder(findings_dir: str | Path) -> FindingsFolder:
    """Read ``findings.parquet`` (required), ``evidence.parquet`` and ``incidents.parquet`` (optional).

    Raises
    ------
    InputError
        When the folder has no readable findings table.
    """
    directory = Path(findings_dir)
    source = directory / "findings.parquet" if directory.is_dir() else directory
    try:
        findings = pl.read_parquet(source)
    except Exception as exc:  # noqa: BLE001 - unreadable or missing: the same to the user
        raise InputError(f"cannot read findings from {source}: {exc}") from None
    needed = {"finding_id", "entity_kind", "entity_id", "window_start", "window_end", "severity", "score",
              "detector", "reasons", "event_count", "evidence"}
    if missing := sorted(needed - set(findings.columns)):
        raise InputError(f"{source} is not a findings table (missing {', '.join(missing)})")
    folder = FindingsFolder(rank(findings))
    evidence_path = source.parent / "evidence.parquet"
    if evidence_path.exists():
        evidence = pl.read_parquet(evidence_path)
        keep = [c for c in ("raw_file", "raw_line", "time", "src_ip", "image_sha256") if c in evidence.columns]
        if {"raw_file", "raw_line", "time"} <= set(keep):
            folder.evidence = evidence.select(keep)
    incidents_path = source.parent / "incidents.parquet"
    if incidents_path.exists() and "incident_id" in findings.columns:
        incidents = pl.read_parquet(incidents_path)
        if {"incident_id", "summary"} <= set(incidents.columns):
            folder.incidents = incidents
    return folder


# ---- the indicators of the findings -----------------------------------------------------------------


def _address_kind(text: str) -> Literal["ipv4", "ipv6"] | None:
    try:
        return "ipv4" if ipaddress.ip_address(text).version == 4 else "ipv6"
    except ValueError:
        return None


def is_internal(address: str) -> bool:
    """Whether *address* is internal to a network (RFC 1918, loopback, link-local, CGNAT, ULA)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in _INTERNAL)


_OBSERVATION = pl.Schema({"finding_id": pl.String(), "kind": pl.String(), "value": pl.String(),
                          "first_seen": pl.Datetime("us", "UTC"), "last_seen": pl.Datetime("us", "UTC"),
                          "events": pl.Int64()})


def observations(folder: FindingsFolder, findings: pl.DataFrame) -> pl.DataFrame:
    """Every (finding, indicator kind, value) with its events and first and last seen.

    Addresses and image hashes of the cited events (``evidence.parquet``); the account of account
    findings; for hunt call-outs, also the hashes and addresses their reasons name.
    """
    parts = [pl.DataFrame(schema=_OBSERVATION)]
    accounts = findings.filter(pl.col("entity_kind") == "account").select(
        "finding_id", kind=pl.lit("account"), value=pl.col("entity_id").str.to_lowercase(),
        first_seen=pl.col("window_start"), last_seen=pl.col("window_end"), events=pl.col("event_count").cast(pl.Int64))
    parts.append(accounts.cast(_OBSERVATION))
    if folder.evidence is not None and findings.height:
        cited = (findings.select("finding_id", "evidence").explode("evidence").drop_nulls("evidence")
                 .select("finding_id",
                         raw_file=pl.col("evidence").str.extract(r"^(.*):\d+$", 1),
                         raw_line=pl.col("evidence").str.extract(r":(\d+)$", 1).cast(pl.Int64))
                 .join(folder.evidence.with_columns(pl.col("raw_line").cast(pl.Int64)),
                       on=["raw_file", "raw_line"], how="inner"))
        for column, kind in (("src_ip", "address"), ("image_sha256", "sha256")):
            if column not in cited.columns:
                continue
            parts.append(
                cited.drop_nulls(column)
                .group_by("finding_id", pl.col(column).str.to_lowercase().alias("value"))
                .agg(first_seen=pl.col("time").min(), last_seen=pl.col("time").max(), events=pl.len())
                .with_columns(kind=pl.lit(kind)).select(list(_OBSERVATION)).cast(_OBSERVATION))
    hunts = findings.filter(pl.col("detector").is_in(_HUNTS))
    if hunts.height:
        text = hunts.select("finding_id", "window_start", "window_end", "event_count",
                            text=pl.col("reasons").list.join(" "))
        for pattern, kind in ((_SHA256.pattern, "sha256"), (_IPV4.pattern, "address")):
            parts.append(text.select(
                "finding_id", kind=pl.lit(kind), value=pl.col("text").str.extract_all(pattern),
                first_seen="window_start", last_seen="window_end", events=pl.col("event_count").cast(pl.Int64),
            ).explode("value").drop_nulls("value").with_columns(pl.col("value").str.to_lowercase())
                .unique(["finding_id", "value"]).select(list(_OBSERVATION)).cast(_OBSERVATION))
    frame = pl.concat(parts)
    # "address" becomes ipv4 / ipv6, and text that only looks like an address is dropped.
    kinds = [(_address_kind(v) if k == "address" else k) for k, v in zip(frame["kind"], frame["value"], strict=True)]
    return frame.with_columns(kind=pl.Series(kinds, dtype=pl.String)).drop_nulls("kind")


@dataclass(frozen=True)
class Indicator:
    """One indicator of the export: kind, value, and where and how often it was seen."""

    kind: IndicatorKind
    value: str
    events: int
    first_seen: datetime
    last_seen: datetime
    finding_ids: tuple[str, ...]
    severity: str
    detectors: tuple[str, ...]
    reason: str


def indicators(folder: FindingsFolder, *, min_severity: str = "medium",
               internal_addresses: bool = False) -> list[Indicator]:
    """The indicators of the findings at or above *min_severity*, most severe first, then by value."""
    if min_severity not in SEVERITIES:
        raise ConfigError(f"min_severity must be one of {', '.join(SEVERITIES)}, not {min_severity!r}")
    findings = severity_at_least(folder.findings, min_severity)
    seen = observations(folder, findings)
    if not internal_addresses:
        internal = [k in ("ipv4", "ipv6") and is_internal(v) for k, v in zip(seen["kind"], seen["value"], strict=True)]
        seen = seen.filter(~pl.Series(internal, dtype=pl.Boolean))
    rank_of = {s: i for i, s in enumerate(SEVERITIES)}
    meta = findings.select("finding_id", "detector", severity=pl.col("severity").cast(pl.String),
                           reason=pl.col("reasons").list.first())
    grouped = (seen.join(meta, on="finding_id", how="left")
               .with_columns(_rank=pl.col("severity").replace_strict(rank_of, default=0, return_dtype=pl.Int64))
               .sort(["_rank", "finding_id"], descending=[True, False])
               .group_by("kind", "value", maintain_order=True)
               .agg(events=pl.col("events").sum(), first_seen=pl.col("first_seen").min(),
                    last_seen=pl.col("last_seen").max(), finding_ids=pl.col("finding_id").unique(maintain_order=True),
                    severity=pl.col("severity").first(), _rank=pl.col("_rank").first(),
                    detectors=pl.col("detector").unique(maintain_order=True), reason=pl.col("reason").first())
               .sort(["_rank", "kind", "value"], descending=[True, False, False]))
    return [Indicator(kind=row["kind"], value=row["value"], events=int(row["events"]), first_seen=row["first_seen"],
                      last_seen=row["last_seen"], finding_ids=tuple(row["finding_ids"]), severity=row["severity"],
                      detectors=tuple(row["detectors"]), reason=row["reason"] or "")
            for row in grouped.iter_rows(named=True)]


# ---- STIX 2.1 -----------------------------------------------------------------------------------------


def _stix_string(value: str) -> str:
    """A value inside a STIX pattern's single-quoted string: backslash and quote escaped."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def stix_pattern(kind: IndicatorKind, value: str) -> str:
    """The STIX pattern that matches *value* of *kind*."""
    path = {"ipv4": "ipv4-addr:value", "ipv6": "ipv6-addr:value", "sha256": "file:hashes.'SHA-256'",
            "account": "user-account:account_login"}[kind]
    return f"[{path} = '{_stix_string(value)}']"


def _tlp(level: str) -> Any:
    import stix2

    markings = {"clear": stix2.TLP_WHITE, "white": stix2.TLP_WHITE, "green": stix2.TLP_GREEN,
                "amber": stix2.TLP_AMBER, "red": stix2.TLP_RED}
    if level not in markings:
        raise ConfigError(f"--tlp must be one of {', '.join(TLP_LEVELS)}, not {level!r}")
    return markings[level]


_KIND_NAMES: Final = {"ipv4": "address", "ipv6": "address", "sha256": "firmware image hash", "account": "account"}


def stix_bundle(found: Sequence[Indicator], *, identity: str, tlp: str = "amber",
                now: datetime | None = None) -> str:
    """A STIX 2.1 bundle of *found* as JSON text, validated by ``stix2`` (built, then parsed back).

    Parameters
    ----------
    found
        From :func:`indicators`.
    identity
        The sharing organisation's name (the utility); its ``identity`` creates every object and
        made every sighting.
    tlp
        ``clear`` (TLP 1.0 ``white``, the only TLP the ``stix2`` library defines for it), ``green``,
        ``amber`` or ``red``.
    now
        ``created`` / ``modified`` of the objects (default: the current time).
    """
    import stix2

    if not identity.strip():
        raise ConfigError("--identity must name the organisation sharing the bundle")
    marking = _tlp(tlp)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    common = {"created": now, "modified": now, "object_marking_refs": [marking.id]}
    org = stix2.Identity(id=f"identity--{uuid.uuid5(_NAMESPACE, 'identity|' + identity)}", name=identity,
                         identity_class="organization", sectors=["utilities"], **common)
    objects: list[Any] = [marking, org]
    for item in found:
        key = f"{item.kind}|{item.value}"
        malicious = "ioc" in item.detectors
        indicator = stix2.Indicator(
            id=f"indicator--{uuid.uuid5(_NAMESPACE, 'indicator|' + key)}", created_by_ref=org.id,
            name=f"{_KIND_NAMES[item.kind]} {item.value}",
            description=(f"{item.severity} finding of ami-detector "
                         f"({', '.join(_DETECTOR_WORDS.get(d, d + ' hunt') for d in item.detectors)}): {item.reason}"
                         f" [{len(item.finding_ids)} finding(s): {', '.join(item.finding_ids[:10])}]"),
            indicator_types=["malicious-activity" if malicious else "anomalous-activity"],
            pattern=stix_pattern(item.kind, item.value), pattern_type="stix", valid_from=item.first_seen,
            labels=[f"severity:{item.severity}"], **common)
        sighting = stix2.Sighting(
            id=f"sighting--{uuid.uuid5(_NAMESPACE, 'sighting|' + key + '|' + org.id)}", created_by_ref=org.id,
            sighting_of_ref=indicator.id, count=max(item.events, 1), first_seen=item.first_seen,
            last_seen=max(item.last_seen, item.first_seen), where_sighted_refs=[org.id], **common)
        objects += [indicator, sighting]
    bundle = stix2.Bundle(objects=objects, id=f"bundle--{uuid.uuid5(_NAMESPACE, 'bundle|' + str(now) + identity)}")
    text = bundle.serialize(pretty=True, ensure_ascii=True)
    stix2.parse(text, allow_custom=False)  # validates the bundle as a receiver would read it
    return text + "\n"


# ---- CEF ------------------------------------------------------------------------------------------


def cef_header(value: object) -> str:
    """A CEF header field: backslash and pipe escaped; line breaks (not allowed there) become spaces."""
    text = str(value).replace("\\", "\\\\").replace("|", "\\|")
    return text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def cef_value(value: object) -> str:
    """A CEF extension value: backslash, equals sign, line feed and carriage return escaped."""
    return (str(value).replace("\\", "\\\\").replace("=", "\\=").replace("\r\n", "\\n").replace("\n", "\\n")
            .replace("\r", "\\r"))


def _ms(moment: datetime | None) -> str | None:
    return None if moment is None else str(int(moment.timestamp() * 1000))


def _incident_summaries(folder: FindingsFolder) -> dict[str, str]:
    if folder.incidents is None:
        return {}
    rows = folder.incidents.select(pl.col("incident_id").cast(pl.String), pl.col("summary").cast(pl.String))
    return {i: s for i, s in rows.iter_rows() if i and s}


def _first_values(folder: FindingsFolder, findings: pl.DataFrame) -> dict[tuple[str, str], str]:
    """Per finding and kind (address, sha256), the value with most events."""
    seen = observations(folder, findings).filter(pl.col("kind") != "account")
    seen = seen.with_columns(kind=pl.when(pl.col("kind").is_in(["ipv4", "ipv6"])).then(pl.lit("address"))
                             .otherwise(pl.col("kind")))
    best = seen.sort(["events", "value"], descending=[True, False]).unique(["finding_id", "kind"], keep="first")
    return {(f, k): v for f, k, v in best.select("finding_id", "kind", "value").iter_rows()}


def cef_lines(folder: FindingsFolder, *, min_severity: str = "medium") -> list[str]:
    """One CEF line per finding at or above *min_severity*, in rank order."""
    findings = severity_at_least(folder.findings, min_severity)
    incidents = _incident_summaries(folder)
    values = _first_values(folder, findings)
    has_incident = "incident_id" in findings.columns
    version = cef_header(_version())
    lines = []
    for row in findings.iter_rows(named=True):
        reasons = [str(r) for r in row["reasons"] or []]
        incident = row.get("incident_id") if has_incident else None
        message = "; ".join(([incidents[incident]] if incident in incidents else []) + reasons)
        severity = str(row["severity"])
        ext: list[tuple[str, str | None]] = [
            ("rt", _ms(row["window_end"])), ("start", _ms(row["window_start"])), ("end", _ms(row["window_end"])),
            ("suser", row["entity_id"] if row["entity_kind"] == "account" else None),
            ("src", values.get((row["finding_id"], "address"))),
            ("fileHash", values.get((row["finding_id"], "sha256"))),
            ("externalId", row["finding_id"]),
            ("cat", f"ami-detector/{row['detector']}"),
            ("cnt", str(int(row["event_count"]))),
            ("cfp1Label", "score"), ("cfp1", f"{float(row['score']):.6f}"),
            ("cs1Label", "entity kind"), ("cs1", row["entity_kind"]),
            ("cs2Label", "entity"), ("cs2", row["entity_id"]),
            ("cs3Label", "incident"), ("cs3", incident),
            ("cs4Label", "evidence"), ("cs4", " ".join((row["evidence"] or [])[:20]) or None),
            ("msg", message or None),
        ]
        extension = " ".join(f"{k}={cef_value(v)}" for k, v in ext if v is not None
                             and not (k.endswith("Label") and _label_unused(ext, k)))
        # The name is fixed text (no log content): the reasons are in msg, which a SIEM shows beside it.
        name = f"{severity} {row['entity_kind']} finding"
        lines.append("|".join([
            "CEF:0", "ami-detector", "ami-detector", version, cef_header(row["detector"]),
            cef_header(name), str(_CEF_SEVERITY.get(severity, 5)), extension]))
    return lines


def _label_unused(ext: list[tuple[str, str | None]], label: str) -> bool:
    value_key = label.removesuffix("Label")
    return dict(ext).get(value_key) is None


# ---- ECS ------------------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ecs_documents(folder: FindingsFolder, *, min_severity: str = "medium") -> list[dict[str, Any]]:
    """One Elastic Common Schema document per finding at or above *min_severity*, in rank order."""
    findings = severity_at_least(folder.findings, min_severity)
    incidents = _incident_summaries(folder)
    values = _first_values(folder, findings)
    has_incident = "incident_id" in findings.columns
    has_signals = "signals" in findings.columns
    documents = []
    for row in findings.iter_rows(named=True):
        severity = str(row["severity"])
        reasons = [str(r) for r in row["reasons"] or []]
        incident = row.get("incident_id") if has_incident else None
        document: dict[str, Any] = {
            "@timestamp": _iso(row["window_end"]),
            "ecs": {"version": _ECS_VERSION},
            "message": "; ".join(reasons),
            "event": {
                "kind": "alert", "category": ["intrusion_detection"], "type": ["info"],
                "module": "ami_detector", "dataset": "ami_detector.findings", "provider": row["detector"],
                "id": row["finding_id"], "severity": _ECS_SEVERITY.get(severity, 47),
                "risk_score": round(float(row["score"]) * 100, 4), "start": _iso(row["window_start"]),
                "end": _iso(row["window_end"]), "reason": reasons[0] if reasons else None,
            },
            "rule": {"name": row["detector"]},
            "labels": {"severity": severity},
            "ami_detector": {
                "finding_id": row["finding_id"], "entity_kind": row["entity_kind"], "entity_id": row["entity_id"],
                "severity": severity, "score": round(float(row["score"]), 6), "event_count": int(row["event_count"]),
                "reasons": reasons, "evidence": list(row["evidence"] or []), "model_id": row.get("model_id"),
            },
        }
        if row["entity_kind"] == "account":
            document["user"] = {"name": row["entity_id"]}
        if address := values.get((row["finding_id"], "address")):
            document["source"] = {"ip": address}
        if digest := values.get((row["finding_id"], "sha256")):
            document["file"] = {"hash": {"sha256": digest}}
        if incident:
            document["ami_detector"]["incident_id"] = incident
            if incident in incidents:
                document["ami_detector"]["incident_summary"] = incidents[incident]
        if has_signals and row.get("signals"):
            document["ami_detector"]["signals"] = [dict(s) for s in row["signals"]]
        documents.append(document)
    return documents


# ---- the whole export -----------------------------------------------------------------------------


@dataclass
class ExportResult:
    """What :func:`export_findings` wrote."""

    findings: int
    indicators: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def export_findings(findings_dir: str | Path, *, stix: str | Path | None = None, cef: str | Path | None = None,
                    ecs: str | Path | None = None, identity: str | None = None, tlp: str = "amber",
                    min_severity: str = "medium", internal_addresses: bool = False,
                    now: datetime | None = None) -> ExportResult:
    """Write the findings of *findings_dir* as a STIX bundle, CEF lines and/or ECS JSON lines.

    Every output is complete or absent: written under a temporary name, then renamed. Options are
    checked (and the STIX bundle built and validated) before anything is written.

    Raises
    ------
    ConfigError
        For a bad severity or TLP level, or a STIX export without an identity.
    InputError
        When the folder holds no findings table.
    """
    if min_severity not in SEVERITIES:
        raise ConfigError(f"--min-severity must be one of {', '.join(SEVERITIES)}, not {min_severity!r}")
    if stix is not None:
        _tlp(tlp)
        if not identity or not identity.strip():
            raise ConfigError("--stix needs --identity NAME: the organisation (utility) sharing the bundle")
    folder = read_folder(findings_dir)
    result = ExportResult(findings=severity_at_least(folder.findings, min_severity).height)
    texts: dict[str, tuple[Path, str]] = {}
    if stix is not None:
        found = indicators(folder, min_severity=min_severity, internal_addresses=internal_addresses)
        for item in found:
            kind = "address" if item.kind in ("ipv4", "ipv6") else item.kind
            result.indicators[kind] = result.indicators.get(kind, 0) + 1
        texts["stix"] = (Path(stix), stix_bundle(found, identity=identity or "", tlp=tlp, now=now))
    if cef is not None:
        lines = cef_lines(folder, min_severity=min_severity)
        texts["cef"] = (Path(cef), "".join(f"{line}\n" for line in lines))
    if ecs is not None:
        documents = ecs_documents(folder, min_severity=min_severity)
        texts["ecs"] = (Path(ecs), "".join(json.dumps(d, ensure_ascii=True, sort_keys=False) + "\n"
                                           for d in documents))
    for name, (path, text) in texts.items():
        _write_text(path, text)
        result.outputs[name] = str(path)
    return result
