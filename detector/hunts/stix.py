"""Indicators from STIX 2.1 bundles: their patterns (read with ``stix2-patterns``) and a bundle reader.

Only what the IOC hunt can match is extracted: addresses and CIDRs (``ipv4-addr:value``,
``ipv6-addr:value``, ``network-traffic:src_ref.value`` / ``dst_ref.value``, with ``=``, ``IN`` or
``ISSUBSET``), file hashes (``file:hashes.'SHA-256'``, ``MD5``, ``'SHA-1'``, ``'SHA-512'``), accounts
(``user-account:user_id``, ``user-account:account_login``) and host names (``domain-name:value``).
Every comparison of a pattern counts on its own — an ``AND`` of two conditions yields both
indicators — since a hunt looks for any trace, not for the exact compound observation. Other
comparisons (ports, negations, ``LIKE``, ``MATCHES``) are skipped and reported as notes; a
pattern that is not valid STIX patterning, or a bundle that is not a STIX bundle, is an error.
Cyber-observable objects in the bundle (``ipv4-addr``, ``domain-name``, ``user-account``,
``file``) are indicators too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from detector.errors import ConfigError

# A literal as stix2-patterns gives it back: a quoted string (with an optional t/b/h prefix), or
# anything else (numbers, booleans) as written.
_STRING: Final = re.compile(r"[tbh]?'((?:[^'\\]|\\.)*)'")

IP_PATHS: Final = ("ipv4-addr:value", "ipv6-addr:value", "network-traffic:src_ref.value",
                   "network-traffic:dst_ref.value")
ACCOUNT_PATHS: Final = ("user-account:user_id", "user-account:account_login")
HOST_PATHS: Final = ("domain-name:value",)
HASH_ALGORITHMS: Final = {"SHA256": 64, "SHA1": 40, "MD5": 32, "SHA512": 128}


@dataclass(frozen=True)
class Comparison:
    """One comparison of a pattern: ``path op value(s)``."""

    path: str
    op: str
    values: tuple[str, ...]
    negated: bool = False


_OBJECT_TYPE: Final = re.compile(r"[a-z0-9][a-z0-9-]*")


def _where(message: str) -> str:
    """The grammar's ``line:column: message`` as ``message at position N`` (the pattern is one line)."""
    m = re.match(r"(\d+):(\d+): (.*)", message, re.DOTALL)
    if not m:
        return message
    text = m.group(3)
    if "<EOF>" in text:
        return f"the pattern ends early ({text})"
    return f"{text} at position {m.group(2)}"


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", r"\1", body)


def _values(op: str, text: str) -> tuple[str, ...]:
    """The value(s) of a comparison from their text: a literal, or a set ``(a,b,...)`` for IN."""
    if op == "IN" and text.startswith("("):
        inner = text[1:-1]
        strings = _STRING.findall(inner)
        if strings:
            return tuple(_unescape(s) for s in strings)
        return tuple(v.strip() for v in inner.split(",") if v.strip())
    m = _STRING.fullmatch(text)
    return (_unescape(m.group(1)),) if m else (text,)


def _path(object_type: str, steps: list[Any]) -> str:
    """``type:prop.sub`` as written in patterns; a step that is not a plain name is quoted."""
    parts: list[str] = []
    for step in steps:
        if isinstance(step, int) or step == "*":
            parts[-1] += f"[{step}]"
        elif re.fullmatch(r"[A-Za-z0-9_]+", str(step)):
            parts.append(str(step))
        else:
            parts.append("'" + str(step).replace("\\", "\\\\").replace("'", "\\'") + "'")
    return f"{object_type}:{'.'.join(parts)}"


def parse_pattern(pattern: str) -> list[Comparison]:
    """Every comparison in a STIX 2.1 pattern (read by ``stix2-patterns``, the reference grammar).

    ``EXISTS`` tests name no value and are left out; ``NOT`` comparisons come back negated.

    Raises
    ------
    ValueError
        When *pattern* is not valid STIX patterning, saying where.
    """
    from stix2patterns.exceptions import ParseException
    from stix2patterns.v21.pattern import Pattern

    if not pattern.strip():
        raise ValueError("the pattern is empty")
    try:
        inspected = Pattern(pattern).inspect()
    except ParseException as exc:
        raise ValueError(_where(str(exc))) from None
    except Exception as exc:  # noqa: BLE001 - the grammar's runtime can fail in other ways on odd input
        raise ValueError(f"{type(exc).__name__}: {exc}") from None
    found = []
    for object_type, comparisons in inspected.comparisons.items():
        if not _OBJECT_TYPE.fullmatch(object_type):
            # STIX 2.1 section 3.1: a type is lowercase ASCII letters, digits and hyphens.
            raise ValueError(f"object type {object_type!r} is not a STIX type (lowercase letters, digits, hyphens)")
        for steps, op, value in comparisons:
            if op == "EXISTS" or value is None:
                continue
            negated = op.startswith("NOT ")
            op = op.removeprefix("NOT ")
            found.append(Comparison(_path(object_type, list(steps)), op, _values(op, str(value)), negated))
    return found


def _hash_algorithm(path: str) -> str | None:
    m = re.fullmatch(r"file:hashes\.(?:'([^']+)'|([A-Za-z0-9_-]+))", path)
    if not m:
        return None
    name = (m.group(1) or m.group(2)).upper().replace("-", "").replace("_", "")
    return name if name in HASH_ALGORITHMS else None


def indicator_of(comparison: Comparison) -> tuple[str, list[str]] | None:
    """``(kind, values)`` for a comparison the IOC hunt can match, else None."""
    if comparison.negated:
        return None
    path, op = comparison.path, comparison.op
    if path in IP_PATHS and op in ("=", "IN", "ISSUBSET"):
        return "ip", list(comparison.values)
    if op not in ("=", "IN"):
        return None
    if path in ACCOUNT_PATHS:
        return "account", list(comparison.values)
    if path in HOST_PATHS:
        return "hostname", list(comparison.values)
    if _hash_algorithm(path) is not None:
        return "hash", list(comparison.values)
    return None


def read_bundle(path: str | Path) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    """Indicators of a STIX 2.1 (or 2.0) bundle file.

    Returns
    -------
    rows, notes
        ``(kind, value, label, origin)`` per indicator value (values as written; the caller
        validates and normalizes them), and a note per comparison or object that was skipped.

    Raises
    ------
    ConfigError
        When the file is not JSON, not a bundle, an object is malformed or a pattern is invalid,
        naming the file and the object.
    """
    path = Path(path)
    where = (str(path), None)
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the STIX bundle: {exc}", source=where) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", source=where) from None
    if not isinstance(doc, dict) or doc.get("type") != "bundle":
        raise ConfigError('not a STIX 2.1 bundle: the top-level object must have "type": "bundle"', source=where)
    objects = doc.get("objects", [])
    if not isinstance(objects, list):
        raise ConfigError('not a STIX 2.1 bundle: "objects" must be a list', source=where)
    rows: list[tuple[str, str, str, str]] = []
    notes: list[str] = []
    for index, obj in enumerate(objects):
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
            raise ConfigError(f'objects[{index}] is not a STIX object (no "type")', source=where)
        ident = str(obj.get("id") or f"objects[{index}]")
        label = str(obj.get("name") or obj.get("description") or ident)[:200]
        kind = obj["type"]
        if kind == "indicator":
            rows.extend(_indicator_rows(obj, ident, label, notes, where))
        elif kind in ("ipv4-addr", "ipv6-addr", "domain-name"):
            value = _text(obj, "value", ident, where)
            rows.append(("ip" if kind != "domain-name" else "hostname", value, label, ident))
        elif kind == "user-account":
            login = obj.get("user_id") or obj.get("account_login")
            if not isinstance(login, str) or not login.strip():
                raise ConfigError(f"{ident}: a user-account needs a user_id or account_login", source=where)
            rows.append(("account", login, label, ident))
        elif kind == "file":
            hashes = obj.get("hashes", {})
            if not isinstance(hashes, dict):
                raise ConfigError(f'{ident}: "hashes" must be an object', source=where)
            for algorithm, value in hashes.items():
                if _hash_algorithm(f"file:hashes.'{algorithm}'") is None:
                    notes.append(f"{ident}: hash algorithm {algorithm} is not matched "
                                 "(only SHA-256, SHA-1, MD5, SHA-512)")
                    continue
                if not isinstance(value, str):
                    raise ConfigError(f"{ident}: the {algorithm} hash must be text", source=where)
                rows.append(("hash", value, label, ident))
    return rows, notes


def _text(obj: dict[str, Any], key: str, ident: str, where: tuple[str, None]) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f'{ident}: "{key}" must be non-empty text', source=where)
    return value


def _indicator_rows(obj: dict[str, Any], ident: str, label: str, notes: list[str],
                    where: tuple[str, None]) -> list[tuple[str, str, str, str]]:
    pattern = obj.get("pattern")
    if not isinstance(pattern, str):
        raise ConfigError(f'indicator {ident} has no "pattern"', source=where)
    pattern_type = obj.get("pattern_type", "stix")
    if pattern_type != "stix":
        notes.append(f"indicator {ident}: pattern_type {pattern_type!r} is not matched (only stix)")
        return []
    if obj.get("revoked") is True:
        notes.append(f"indicator {ident} is revoked and was not used")
        return []
    try:
        comparisons = parse_pattern(pattern)
    except ValueError as exc:
        raise ConfigError(f"indicator {ident}: invalid STIX pattern {pattern!r}: {exc}", source=where) from None
    rows: list[tuple[str, str, str, str]] = []
    for comparison in comparisons:
        found = indicator_of(comparison)
        if found is None:
            notes.append(f"indicator {ident}: {comparison.path} {'NOT ' if comparison.negated else ''}"
                         f"{comparison.op} ... is not matched (only addresses, accounts, file hashes and host names)")
            continue
        kind, values = found
        rows.extend((kind, value, label, ident) for value in values)
    return rows
