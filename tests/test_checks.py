"""The shared uniqueness check answers as pandera's ``unique=True`` does."""

from __future__ import annotations

import pandera.errors
import pandera.polars as pa
import polars as pl
import pytest

import carelink.checks  # noqa: F401  (registers unique_values)


class Hashed(pa.DataFrameModel):
    value: str = pa.Field(nullable=True, unique_values=())


class Pandera(pa.DataFrameModel):
    value: str = pa.Field(nullable=True, unique=True)


@pytest.mark.parametrize("values", [
    [], ["a"], [f"{i:032x}" for i in range(50_000)], ["a", "b", "a"], ["a", None, None], [None], ["x", "y", "z", "y"],
])
def test_unique_values_passes_and_fails_exactly_where_pandera_unique_does(values: list) -> None:
    frame = pl.DataFrame({"value": values}, schema={"value": pl.String})
    outcomes = []
    for model in (Hashed, Pandera):
        try:
            model.validate(frame)
            outcomes.append(True)
        except pandera.errors.SchemaError:
            outcomes.append(False)
    assert outcomes[0] == outcomes[1]
    assert outcomes[0] == (len(set(values)) == len(values))


def test_a_repeated_value_is_reported_with_its_column_and_failure_cases() -> None:
    frame = pl.DataFrame({"value": ["x", "y", "z", "y"]})
    with pytest.raises(pandera.errors.SchemaErrors) as raised:
        Hashed.validate(frame, lazy=True)
    cases = raised.value.failure_cases
    assert cases["column"].unique().to_list() == ["value"]
    assert sorted(cases["failure_case"].to_list()) == ["y", "y"]
