"""Indicators from STIX 2.1 bundles: a small parser of STIX patterns and a bundle reader.

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

_TOKEN: Final = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>(?P<prefix>[tbh]?)'(?P<body>(?:[^'\\]|\\.)*)')
  | (?P<path>[a-z0-9][a-z0-9-]*:(?:[A-Za-z0-9_]+|'(?:[^'\\]|\\.)*')
        (?:\.(?:[A-Za-z0-9_-]+|'(?:[^'\\]|\\.)*')|\[(?:\*|\d+)\])*)
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<op>!=|>=|<=|=|>|<)
  | (?P<punct>[\[\](),])
  | (?P<word>[A-Za-z_]+)
""", re.VERBOSE)

_COMPARISON_OPS: Final = ("LIKE", "MATCHES", "ISSUBSET", "ISSUPERSET", "IN")
_OBSERVATION_OPS: Final = ("AND", "OR", "FOLLOWEDBY")

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


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int
    value: str = ""


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", r"\1", body)


def tokenize(pattern: str) -> list[Token]:
    """STIX pattern tokens.

    Raises
    ------
    ValueError
        At the first character that starts no token.
    """
    tokens: list[Token] = []
    pos = 0
    while pos < len(pattern):
        m = _TOKEN.match(pattern, pos)
        if not m:
            raise ValueError(f"unexpected {pattern[pos:pos + 12]!r} at position {pos}")
        kind = next(k for k in ("ws", "string", "path", "number", "op", "punct", "word") if m.group(k) is not None)
        if kind != "ws":
            value = _unescape(m.group("body")) if kind == "string" else m.group(0)
            if kind == "path":
                value = re.sub(r"\s+", "", value)
            tokens.append(Token(kind, m.group(0), pos, value))
        pos = m.end()
    return tokens


class _Parser:
    """Recursive descent over the token list; collects every comparison it meets."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.tokens = tokenize(pattern)
        self.i = 0
        self.found: list[Comparison] = []

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def word(self) -> str | None:
        tok = self.peek()
        return tok.text.upper() if tok is not None and tok.kind == "word" else None

    def take(self, kind: str, text: str | None = None) -> Token:
        tok = self.peek()
        if tok is None:
            raise ValueError(f"pattern ends early: expected {text or kind}")
        if tok.kind != kind or (text is not None and tok.text.upper() != text):
            raise ValueError(f"expected {text or kind} at position {tok.pos}, found {tok.text!r}")
        self.i += 1
        return tok

    def parse(self) -> list[Comparison]:
        if not self.tokens:
            raise ValueError("the pattern is empty")
        self.observations()
        tok = self.peek()
        if tok is not None:
            raise ValueError(f"unexpected {tok.text!r} at position {tok.pos}")
        return self.found

    def observations(self) -> None:
        self.observation()
        while self.word() in _OBSERVATION_OPS:
            self.i += 1
            self.observation()

    def observation(self) -> None:
        tok = self.peek()
        if tok is not None and tok.text == "(":
            self.i += 1
            self.observations()
            self.take("punct", ")")
        else:
            self.take("punct", "[")
            self.comparisons()
            self.take("punct", "]")
        self.qualifiers()

    def qualifiers(self) -> None:
        while (word := self.word()) in ("WITHIN", "START", "REPEATS"):
            self.i += 1
            if word == "WITHIN":
                self.take("number")
                self.take("word", "SECONDS")
            elif word == "START":
                self.take("string")
                self.take("word", "STOP")
                self.take("string")
            else:
                self.take("number")
                self.take("word", "TIMES")

    def comparisons(self) -> None:
        self.comparison()
        while self.word() in ("AND", "OR"):
            self.i += 1
            self.comparison()

    def comparison(self) -> None:
        tok = self.peek()
        if tok is not None and tok.text == "(":
            self.i += 1
            self.comparisons()
            self.take("punct", ")")
            return
        if self.word() == "EXISTS":
            self.i += 1
            self.take("path")
            return
        path = self.take("path").value
        negated = False
        if self.word() == "NOT":
            negated = True
            self.i += 1
        tok = self.peek()
        if tok is not None and tok.kind == "op":
            self.i += 1
            op = tok.text
            values = (self.literal(),)
        elif (op := self.word() or "") in _COMPARISON_OPS:
            self.i += 1
            values = self.set_literal() if op == "IN" else (self.literal(),)
        else:
            where = f"position {tok.pos}, found {tok.text!r}" if tok else "the end"
            raise ValueError(f"expected a comparison operator after {path} at {where}")
        self.found.append(Comparison(path, op, values, negated))

    def literal(self) -> str:
        tok = self.peek()
        if tok is None:
            raise ValueError("pattern ends early: expected a value")
        if tok.kind in ("string", "number") or (tok.kind == "word" and tok.text.lower() in ("true", "false")):
            self.i += 1
            return tok.value if tok.kind == "string" else tok.text
        raise ValueError(f"expected a value at position {tok.pos}, found {tok.text!r}")

    def set_literal(self) -> tuple[str, ...]:
        self.take("punct", "(")
        values = [self.literal()]
        while (tok := self.peek()) is not None and tok.text == ",":
            self.i += 1
            values.append(self.literal())
        self.take("punct", ")")
        return tuple(values)


def parse_pattern(pattern: str) -> list[Comparison]:
    """Every comparison in a STIX 2.1 pattern.

    Raises
    ------
    ValueError
        When *pattern* is not valid STIX patterning, saying where.
    """
    return _Parser(pattern).parse()


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
    rows = []
    for comparison in comparisons:
        found = indicator_of(comparison)
        if found is None:
            notes.append(f"indicator {ident}: {comparison.path} {'NOT ' if comparison.negated else ''}"
                         f"{comparison.op} ... is not matched (only addresses, accounts, file hashes and host names)")
            continue
        kind, values = found
        rows.extend((kind, value, label, ident) for value in values)
    return rows
