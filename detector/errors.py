"""One exception root for everything the detector raises on purpose.

Errors that concern a place in the input carry it as ``source=(path, line)`` so that the
command line can say where, and a notebook user can go and look.
"""

from __future__ import annotations


class DetectorError(Exception):
    """Root of every error the detector raises deliberately."""

    def __init__(self, message: str, *, source: tuple[str, int | None] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.source = source

    def __str__(self) -> str:
        if self.source is None:
            return self.message
        path, line = self.source
        where = f"{path}:{line}" if line is not None else path
        return f"{where}: {self.message}"


class InputError(DetectorError, ValueError):
    """An input file cannot be read as a whole (binary, wrong encoding, truncated, empty...)."""


class FormatError(DetectorError, ValueError):
    """The format of an input is unknown, or a format was asked for that does not exist."""


class ParseError(DetectorError, ValueError):
    """A line cannot be parsed (raised only in strict mode; otherwise it becomes a reject)."""


class SchemaError(DetectorError, ValueError):
    """A table does not meet the normalized schema contract."""


class ConfigError(DetectorError, ValueError):
    """A configuration or mapping file is invalid."""
