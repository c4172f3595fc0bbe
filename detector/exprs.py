"""Polars expressions the package shares."""

from __future__ import annotations

import polars as pl


def formatted(template: str, *args: pl.Expr | str) -> pl.Expr:
    """``pl.format(template, *args)``, built with ``concat_str``: the same text (null when an argument
    is null, other types cast to text; a string argument names a column).

    polars 2's ``pl.format`` has its own string kernel, which now and then panics ("index out of
    bounds" in a string view) on frames of many chunks (pola-rs/polars#25187, #25525): a scan that
    passed once could fail the next time on the same logs. ``concat_str`` does not.
    """
    pieces = template.split("{}")
    if len(pieces) != len(args) + 1:
        raise ValueError(f"{template!r} has {len(pieces) - 1} placeholders for {len(args)} arguments")
    exprs: list[pl.Expr] = []
    for i, piece in enumerate(pieces):
        if piece:
            exprs.append(pl.lit(piece))
        if i < len(args):
            arg = args[i]
            exprs.append(pl.col(arg) if isinstance(arg, str) else arg)
    return pl.concat_str(exprs)
