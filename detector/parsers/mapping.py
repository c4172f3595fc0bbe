"""Mapping files: describe any other CSV or JSON-lines export in TOML instead of writing a parser.

A mapping file becomes a :class:`Parser` class like the built-in ones: it has a name, it is
sniffed, and its output passes the same schema validator. The syntax is documented in the README
("Mapping files"); :func:`load_mapping` checks it and says precisely what is wrong.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import polars as pl

from detector.errors import ConfigError, InputError
from detector.parsers.base import ParseOptions, Parser, check_timezone, clean
from detector.parsers.csvlines import DATE_START, join_multiline_records, parse_header, split_fields, unterminated
from detector.parsers.jsonlines import decode_json_lines
from detector.schema import ACTIONS, CATEGORIES, EVENT_SCHEMA, OUTCOMES, SOURCE_SYSTEMS, UTC_US

# Columns a mapping may fill from the export; the rest are the framework's.
MAPPABLE = tuple(c for c in EVENT_SCHEMA if c not in (
    "time", "source_format", "raw_file", "raw_line", "action", "outcome", "category"))


# Export columns are renamed with this prefix so that an export column called, say, "host" can never
# be taken for the schema column of that name unless the mapping says so.
_INPUT = "@"


@dataclass(frozen=True)
class ValueTable:
    """An export column and a table from its values to normalized values (case-insensitive)."""

    field: str | None
    values: dict[str, str]
    default: str | None


@dataclass(frozen=True)
class MappingSpec:
    name: str
    description: str
    kind: str  # "csv" or "jsonl"
    source_system: str
    delimiter: str
    columns: tuple[str, ...] | None  # for CSV without a header line
    sniff_keys: tuple[str, ...]
    time_field: str
    time_format: str | None
    timezone: str | None
    fields: dict[str, str]
    constants: dict[str, str]
    action: ValueTable
    outcome: ValueTable
    category: ValueTable
    path: str = field(default="")


def _table(doc: dict[str, Any], key: str, allowed: tuple[str, ...], where: str) -> ValueTable:
    spec = doc.get(key, {})
    if not isinstance(spec, dict):
        raise ConfigError(f"[{key}] must be a table", source=(where, None))
    values = {str(k).lower(): str(v) for k, v in spec.get("values", {}).items()}
    default = spec.get("default")
    bad = sorted({v for v in [*values.values(), default] if v is not None and v not in allowed})
    if bad:
        raise ConfigError(f"[{key}] maps to unknown value(s) {bad}; allowed: {', '.join(allowed)}",
                          source=(where, None))
    return ValueTable(spec.get("field"), values, default)


def load_mapping(path: str | Path) -> type[Parser]:
    """Read a mapping file and return a parser class for the export it describes.

    Raises
    ------
    ConfigError
        When the file is not valid TOML or does not describe a usable mapping.
    """
    where = str(path)
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read mapping file: {exc}", source=(where, None)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", source=(where, None)) from None
    fmt = doc.get("format", {})
    name = fmt.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError("[format] name must be set to a simple identifier such as acme_hes_audit",
                          source=(where, None))
    kind = fmt.get("kind", "csv")
    if kind not in ("csv", "jsonl"):
        raise ConfigError(f"[format] kind must be 'csv' or 'jsonl', not {kind!r}", source=(where, None))
    source_system = fmt.get("source_system", "other")
    if source_system not in SOURCE_SYSTEMS:
        raise ConfigError(f"[format] source_system must be one of {', '.join(SOURCE_SYSTEMS)}", source=(where, None))
    time = doc.get("time", {})
    if "field" not in time:
        raise ConfigError("[time] field (the column holding the timestamp) is required", source=(where, None))
    fields = {str(k): str(v) for k, v in doc.get("fields", {}).items()}
    constants = {str(k): str(v) for k, v in doc.get("constants", {}).items()}
    unknown = sorted(set(fields) - set(MAPPABLE)) + sorted(set(constants) - set(MAPPABLE))
    if unknown:
        raise ConfigError(f"unknown schema column(s) {unknown}; mappable columns: {', '.join(MAPPABLE)}",
                          source=(where, None))
    timezone = time.get("timezone")
    if timezone is not None:
        check_timezone(timezone)
    columns = fmt.get("columns")
    spec = MappingSpec(
        name=name,
        description=fmt.get("description", f"mapping file {Path(path).name}"),
        kind=kind,
        source_system=source_system,
        delimiter=fmt.get("delimiter", ","),
        columns=tuple(columns) if columns else None,
        sniff_keys=tuple(fmt.get("sniff", [])) or (time["field"],),
        time_field=time["field"],
        time_format=time.get("format"),
        timezone=timezone,
        fields=fields,
        constants=constants,
        action=_table(doc, "action", ACTIONS, where),
        outcome=_table(doc, "outcome", OUTCOMES, where),
        category=_table(doc, "category", CATEGORIES, where),
        path=where,
    )
    if len(spec.delimiter) != 1:
        raise ConfigError("[format] delimiter must be a single character", source=(where, None))
    return type(f"Mapping_{name}", (MappingParser,), {
        "name": name, "description": spec.description, "source_system": source_system, "spec": spec})


class MappingParser(Parser):
    """A parser configured by a :class:`MappingSpec` (see :func:`load_mapping`)."""

    spec: ClassVar[MappingSpec]

    def __init__(self, path: str, options: ParseOptions) -> None:
        if options.tz is None and self.spec.timezone is not None:
            options = ParseOptions(tz=self.spec.timezone, reference_time=options.reference_time)
        super().__init__(path, options)
        self._names: list[str] | None = list(self.spec.columns) if self.spec.columns else None
        self._pending = pl.DataFrame(schema={"raw_line": pl.Int64, "raw": pl.String})

    @classmethod
    def sniff(cls, head: list[str]) -> bool:
        if not head:
            return False
        if cls.spec.kind == "jsonl":
            return head[0].lstrip().startswith("{") and all(
                f'"{key.split(".")[0]}"' in head[0] for key in cls.spec.sniff_keys)
        if cls.spec.columns:
            return head[0].count(cls.spec.delimiter) == len(cls.spec.columns) - 1
        return set(cls.spec.sniff_keys) <= set(parse_header(head[0], cls.spec.delimiter))

    def parse_chunk(self, lines: pl.DataFrame, text: bytes | None = None) -> pl.DataFrame:
        lines = lines.filter(pl.col("raw").str.strip_chars() != "")
        if self.spec.kind == "jsonl":
            schema = self._json_schema()
            decoded = decode_json_lines(lines, schema).rename({k: _INPUT + k for k in schema})
            return self._stage(decoded)
        if self._names is None and lines.height:
            self._names = parse_header(lines.item(0, "raw"), self.spec.delimiter)
            missing = [c for c in self._used_columns() if c not in self._names]
            if missing:
                raise InputError(f"export lacks the column(s) {missing} named in mapping {self.spec.path}",
                                 source=(self.path, lines.item(0, "raw_line")))
            lines = lines.slice(1)
        if self._names is None:
            return lines.with_columns(time=pl.lit(None, UTC_US))
        starts = (pl.col("raw").str.contains(DATE_START) if self._names and self._names[0] == self.spec.time_field
                  else None)
        records, self._pending = join_multiline_records(pl.concat([self._pending, lines]), starts)
        names = [_INPUT + n for n in self._names]
        return self._stage(split_fields(records, names, self.spec.delimiter))

    def finish(self) -> pl.DataFrame | None:
        if self._pending.height == 0 or self._names is None:
            return None
        names = [_INPUT + n for n in self._names]
        return self._stage(split_fields(unterminated(self._pending), names, self.spec.delimiter))

    def _used_columns(self) -> list[str]:
        s = self.spec
        return [s.time_field, *s.fields.values(), *(t.field for t in (s.action, s.outcome, s.category) if t.field)]

    def _json_schema(self) -> pl.Schema:
        """A nested polars schema with a String leaf for every dotted path the mapping uses."""
        tree: dict[str, Any] = {}
        for dotted in self._used_columns():
            node = tree
            *parents, leaf = dotted.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node.setdefault(leaf, None)

        def dtype(node: dict[str, Any]) -> dict[str, pl.DataType]:
            return {k: pl.String() if v is None else pl.Struct(dtype(v)) for k, v in node.items()}

        return pl.Schema(dtype(tree))

    def _column(self, name: str) -> pl.Expr:
        if self.spec.kind == "jsonl":
            head, *rest = name.split(".")
            expr = pl.col(_INPUT + head)
            for part in rest:
                expr = expr.struct.field(part)
            return expr
        return pl.col(_INPUT + name)

    def _lookup(self, table: ValueTable) -> pl.Expr:
        if table.field is None:
            return pl.lit(table.default, pl.String)
        key = clean(self._column(table.field)).str.to_lowercase()
        return key.replace_strict(table.values, default=table.default, return_dtype=pl.String)

    def _stage(self, frame: pl.DataFrame) -> pl.DataFrame:
        spec = self.spec
        frame = frame.with_columns(_time_text=self._column(spec.time_field).cast(pl.String))
        if spec.time_format is None:
            frame = self.with_time(frame, "_time_text")
        else:
            frame = self._with_explicit_time(frame)
        values = {target: self._column(source).cast(pl.String) for target, source in spec.fields.items()}
        values |= {target: pl.lit(value) for target, value in spec.constants.items()}
        native = clean(self._column(spec.action.field)) if spec.action.field else pl.lit(None, pl.String)
        return frame.with_columns(
            **values,
            action=self._lookup(spec.action),
            outcome=self._lookup(spec.outcome),
            category=self._lookup(spec.category),
            native_code=values.get("native_code", native),
        )

    def _with_explicit_time(self, frame: pl.DataFrame) -> pl.DataFrame:
        text = pl.col("_time_text").str.strip_chars()
        fmt = self.spec.time_format
        assert fmt is not None
        if "%z" in fmt or "%#z" in fmt or "%Z" in fmt:
            return frame.with_columns(time=text.str.strptime(UTC_US, fmt, strict=False))
        tz = self.options.tz
        if tz is None:
            raise InputError(f"mapping {self.spec.name} gives a time format without an offset and no timezone; "
                             "set [time] timezone in the mapping or pass --tz", source=(self.path, None))
        naive = text.str.strptime(pl.Datetime("us"), fmt, strict=False)
        return frame.with_columns(time=naive.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
                                  .dt.convert_time_zone("UTC"))
