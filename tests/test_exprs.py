from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.exprs import formatted

_rows = st.lists(st.tuples(st.one_of(st.none(), st.text(max_size=8)), st.one_of(st.none(), st.integers(-10**6, 10**6)),
                           st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, width=32))),
                 max_size=20)


@given(_rows, st.sampled_from(["{}", "x {} y", "{}{}", "{} ({}): {}", "a {} b {} c {} d"]))
@settings(max_examples=60, deadline=None)
def test_formatted_gives_what_pl_format_gives(rows: list[tuple[str | None, int | None, float | None]],
                                              template: str) -> None:
    frame = pl.DataFrame(rows, schema={"s": pl.String, "i": pl.Int64, "f": pl.Float64}, orient="row")
    args = [pl.col("s"), pl.col("i"), pl.col("f").round(3)][: template.count("{}")]
    expected = frame.select(pl.format(template, *args).alias("t"))  # noqa: TID251 - what it must equal
    assert frame.select(formatted(template, *args).alias("t")).equals(expected)
    # Inside list.eval, as the findings' CSV flattening uses it.
    nested = frame.select(pl.concat_list(pl.col("s"), pl.col("s")).alias("l"))
    reference = nested.select(pl.col("l").list.eval(pl.format("<{}>", pl.element())))  # noqa: TID251
    assert nested.select(pl.col("l").list.eval(formatted("<{}>", pl.element()))).equals(reference)


def test_formatted_names_columns_and_checks_the_placeholders() -> None:
    frame = pl.DataFrame({"a": ["x"], "b": [2]})
    assert frame.select(formatted("{}-{}", "a", "b")).item() == "x-2"
    with pytest.raises(ValueError, match="2 placeholders for 1 arguments"):
        formatted("{}-{}", "a")
