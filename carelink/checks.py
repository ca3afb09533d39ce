"""Pandera checks shared by the stages' data contracts.

``unique_values`` replaces pandera's ``unique=True`` on columns of millions of values: pandera marks every value
that occurs twice (``is_duplicated``, a hash table of every value: 5.3 s for 9M record tokens), where sorting the
values' 64-bit hashes and comparing neighbours answers the same question in 0.2 s. Only where two hashes are equal
(two equal values, or a hash collision) are the values compared exactly, with pandera's failure cases.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.api.extensions import register_check_method


@register_check_method(check_type="vectorized")
def unique_values(data: pa.PolarsData) -> pl.LazyFrame | bool:
    """No value of the column occurs twice (use as ``pa.Field(unique_values=())``)."""
    hashes = data.lazyframe.select(pl.col(data.key).hash()).collect().to_series().sort()
    if not (hashes.slice(1) == hashes.slice(0, max(hashes.len() - 1, 0))).any():
        return True  # no two values share a hash, so no two are equal
    return data.lazyframe.select(pl.col(data.key).is_duplicated().not_())
