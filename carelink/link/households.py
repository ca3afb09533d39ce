"""Does this data hold relatives? The evidence that decides whether the household levels belong in the model.

The household levels (``model.comparisons``) make a forename or birth-date disagreement among records that share a
surname and an address a near-veto: right where relatives live together, as in any partnership's care records, and
wrong in data whose records sharing a surname and address are nearly all the same person (a registry of
de-duplicated people, FEBRL). Which one a data set is, its own records say: take the pairs that share surname and
residence but whose forenames do not correspond at any level, and see how many are the same person — judged by an
NHS number or shared identifier where both records have one, else by the date of birth. Mostly different people:
relatives are present and the levels go in. Mostly the same: they stay out. Too few pairs to judge: they go in,
because an over-link merges two people's care records and a missed link does not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import polars as pl

from carelink.link import model

#: Where relatives meet: same surname and same postcode, or same surname and same house on the same street.
HOUSEHOLD_BLOCKS = (
    model.Block(("family_name_token", "postcode_unit_token")),
    model.Block(("family_name_token", "premises_token")),
)
#: Fewest judged pairs for a verdict.
MIN_JUDGED = 20
#: Most pairs worth scoring for the verdict; larger data is sampled by surname (whole households kept together).
MAX_PAIRS = 200_000


@dataclass(frozen=True)
class HouseholdEvidence:
    """Pairs sharing surname and residence whose forenames do not correspond, and what they turned out to be."""

    pairs: int
    judged_by: str
    judged: int
    same_person: int
    relatives_present: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _level_coded(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings whose level weights name the level: the k-th non-null level of a comparison scores −(k + 1), null 0
    (Splink 5 predictions keep match weights, not comparison-vector values)."""
    comparisons = []
    for comparison in settings["comparisons"]:
        levels, k = [], 0
        for level in comparison["comparison_levels"]:
            if not level.get("is_null_level"):
                level = {**level, "m_probability": 2.0 ** -(k + 2), "u_probability": 0.5, "fix_m_probability": True,
                         "fix_u_probability": True}
                k += 1
            levels.append({key: value for key, value in level.items() if not key.startswith("tf_")})
        comparisons.append({**comparison, "comparison_levels": levels})
    return {**settings, "comparisons": comparisons}


def level_code(comparison: dict[str, Any], label: str) -> int:
    """The weight ``_level_coded`` gives the level labelled ``label``."""
    labels = [level["label_for_charts"] for level in comparison["comparison_levels"] if not level.get("is_null_level")]
    return -(labels.index(label) + 1)


def household_evidence(open_linker: Callable[[dict[str, Any], pl.DataFrame], Any], frame: pl.DataFrame, dialect: str,
                       hardening: str = "none") -> HouseholdEvidence:
    """Find the pairs in ``HOUSEHOLD_BLOCKS`` and weigh the evidence (levels only; no trained parameters needed).

    ``open_linker`` opens a Splink linker with the settings it is given over the records it is given. Large data is
    sampled by surname before Splink sees it: every block joins on the surname and no level reads term frequencies,
    so the pairs and their levels are those of the whole data's blocks for the sampled surnames, and Splink prepares
    only the sampled records (at ten million records 5 s, where a condition in the blocking rule took 98 s).
    """
    every = max(1, -(-sum(block.pairs(frame) for block in HOUSEHOLD_BLOCKS) // MAX_PAIRS))
    settings = _level_coded(model.settings(dialect, households=True, hardening=hardening))
    settings["blocking_rules_to_generate_predictions"] = [{"blocking_rule": block.sql()} for block in HOUSEHOLD_BLOCKS]
    by_name = {c["output_column_name"]: c for c in settings["comparisons"]}
    sampled = frame if every == 1 else frame.filter(pl.col("family_name_token") % every == 0)
    linker = open_linker(settings, sampled)
    predictions = linker.inference.predict(warning_mode="never")
    sql = (f"SELECT mw_given_name AS given, mw_nhs_number AS nhs, mw_shared_id AS shared, mw_date_of_birth AS dob, "
           f"count(*) AS n FROM {predictions.physical_name} GROUP BY ALL")
    counts = pl.from_arrow(linker.misc.query_sql(sql).as_pyarrow_table())
    assert isinstance(counts, pl.DataFrame)
    pairs = counts.filter(pl.col("given") == level_code(by_name["given_name"], model.OTHER_FORENAME))
    by_identifier = (pl.col("nhs") < 0) | (pl.col("shared") < 0)
    same_identifier = (pl.col("nhs") == level_code(by_name["nhs_number"], "exact")) | ((
        pl.col("shared") >= level_code(by_name["shared_id"], "one typo apart")) & (pl.col("shared") < 0))
    verdicts = (("NHS number or shared identifier", by_identifier, same_identifier),
                ("date of birth", pl.col("dob") < 0, pl.col("dob") == level_code(by_name["date_of_birth"], "exact")))
    total = int(pairs["n"].sum())
    for judged_by, judged, same in verdicts:
        judged_pairs = pairs.filter(judged)
        n = int(judged_pairs["n"].sum())
        if n >= MIN_JUDGED:
            same_person = int(judged_pairs.filter(same)["n"].sum())
            return HouseholdEvidence(total, judged_by, n, same_person, relatives_present=same_person < n / 2)
    return HouseholdEvidence(total, "too few pairs to judge (relatives assumed)", 0, 0, relatives_present=True)
