"""The Splink model carelink links with: comparisons designed for pseudonymised features.

Every comparison works on keyed tokens (equality) or Bloom filters (Dice similarity in SQL); no plaintext is needed.
Design choices that matter for integrated-care data:

- NHS number: agreement is near-decisive; two *different valid* numbers are strong evidence against; a missing,
  mistyped or placeholder number is null (ingest nulls it) and contributes nothing. Its m-probabilities are fixed
  rather than learned, because EM on blocks full of relatives learns too weak a disagreement penalty.
- Residence: postcode and address form *one* comparison, so a shared household is not counted twice, with
  term-frequency adjustment on the postcode unit so a care home's postcode carries little weight.
- Names: exact, nickname-canonical, Dice-close and phonetic levels. Forename and surname swapped (both, or one name
  in the other's field) are levels of the forename comparison only, so a swap is not counted twice.
- Date of birth: exact, day/month swapped, two of three parts, year only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from carelink.pseudonymise.encodings import bloom_layouts

#: Node columns the model reads, besides the record token and source.
MODEL_COLUMNS = (
    "nhs_number_token", "shared_id_token", "shared_id_near_tokens", "given_name_token", "given_first_token", "given_middle_token", "given_nickname_tokens", "given_near_tokens", "given_reach_tokens", "given_canonical_token", "given_phonetic_token",
    "given_name_bf", "given_prefix_token", "family_name_token", "family_prefix_token", "family_phonetic_token", "family_name_bf", "given_as_name_token",
    "family_as_name_token", "dob_token", "dob_swapped_token", "dob_year_token", "dob_month_token", "dob_day_token",
    "sex_token", "postcode_unit_token", "postcode_sector_token", "postcode_district_token", "premises_token", "address_bf",
)
#: Columns with term-frequency adjustments (their tables must be computed before incremental scoring).
TF_COLUMNS = ("given_name_token", "family_name_token", "postcode_unit_token")
#: Popcount columns added before linking so Dice needs one bit_count per word, not three.
BLOOM_COLUMNS = ("given_name_bf", "family_name_bf", "address_bf")


def _dice_sql(column: str, threshold: float, dialect: str, hardening: str) -> str:
    """SQL: Dice(l.column, r.column) >= threshold, from word-wise popcounts (as many words as ``hardening`` stores)."""
    count = bloom_layouts(hardening)[column].words
    if dialect == "spark":
        words = [f"bit_count({column}_l[{i}] & {column}_r[{i}])" for i in range(count)]
    else:
        words = [f"CAST(bit_count({column}_l[{i + 1}] & {column}_r[{i + 1}]) AS INTEGER)" for i in range(count)]
    common = " + ".join(words)
    return f"(2 * ({common}) >= {threshold} * ({column}_bits_l + {column}_bits_r))"


def _overlap(column: str, dialect: str) -> str:
    """SQL: the two records' token lists share at least one token."""
    return _overlap_of(column, column, dialect)


def _overlap_of(left: str, right: str, dialect: str) -> str:
    """SQL: the left record's ``left`` token list and the right record's ``right`` list share a token."""
    function = "arrays_overlap" if dialect == "spark" else "list_has_any"
    return f"{function}({left}_l, {right}_r)"


def _level(sql: str, label: str, **extra: Any) -> dict[str, Any]:
    return {"sql_condition": sql, "label_for_charts": label, **extra}


def _null(*columns: str) -> dict[str, Any]:
    sql = " OR ".join(f"{c}_{side} IS NULL" for c in columns for side in ("l", "r"))
    return _level(sql, "null", is_null_level=True)


def _eq(column: str, other: str | None = None) -> str:
    return f"{column}_l = {other or column}_r"


#: Weight of the two household levels (log2 m/u, fixed rather than learned): see ``comparisons``.
HOUSEHOLD_WEIGHT = -24.0
#: Labels of the household levels: a model either has both or neither.
OTHER_FORENAME = "other forename, same surname and residence or birth date"
OTHER_BIRTH_DATE = "other date, same name and residence"


def _fixed(sql: str, label: str, weight: float) -> dict[str, Any]:
    """A level whose weight is set, not estimated."""
    u = 0.5
    return _level(sql, label, m_probability=u * 2**weight, u_probability=u, fix_m_probability=True,
                  fix_u_probability=True)


def comparisons(dialect: str = "duckdb", households: bool = True, hardening: str = "none") -> list[dict[str, Any]]:
    """The comparison definitions, as Splink settings dictionaries.

    Two levels encode what Fellegi–Sunter's independence assumption gets wrong inside a household. Relatives share a
    surname and an address (twins a date of birth too; a parent and child of the same name the whole name), so the
    surname, address and date-of-birth agreements the other comparisons reward are counted as if they were
    independent coincidences, ~20–30 bits of evidence that a twin or a Jr/Sr pair has not earned. Records that
    agree on surname and residence but whose forenames do not correspond at any level above, and records of the same
    name and residence whose dates of birth disagree, are what relatives look like; the fixed ``HOUSEHOLD_WEIGHT``
    cancels that shared evidence and adds the disagreement's own (~6 bits), so only an NHS number can join them.
    Without ``households`` (data in which such pairs are shown to be the same person, see ``link.households``)
    the two levels are left out and those pairs fall to the ordinary levels below. ``hardening`` is the sources'
    Bloom-filter hardening, which sets the filters' length.
    """
    def _dice_at_least(column: str, threshold: float, dialect: str) -> str:
        return _dice_sql(column, threshold, dialect, hardening)

    address_close = f"(address_bf_l IS NOT NULL AND address_bf_r IS NOT NULL AND {_dice_at_least('address_bf', 0.8, dialect)})"
    same_residence = f"({_eq('postcode_unit_token')} OR {address_close})"
    same_household = f"({_eq('family_name_token')} AND {same_residence})"
    # NHS number and date of birth that agree decide on their own; an agreeing NHS number without the date of birth
    # may be a relative's number typed onto the record, so the level stands.
    relatives = (f"({_eq('family_name_token')} AND ({same_residence} OR {_eq('dob_token')}) "
                 f"AND NOT coalesce({_eq('nhs_number_token')} AND {_eq('dob_token')}, false))")
    same_forename = f"({_eq('given_name_token')} OR {_eq('given_first_token')} OR {_overlap('given_nickname_tokens', dialect)})"
    one_typo = " OR ".join(_overlap_of(a, b, dialect) for a, b in (("given_near_tokens", "given_near_tokens"),
                           ("given_near_tokens", "given_reach_tokens"), ("given_reach_tokens", "given_near_tokens")))
    middle = f"({_eq('given_middle_token', 'given_first_token')} OR {_eq('given_first_token', 'given_middle_token')})"
    swapped = f"({_eq('given_as_name_token', 'family_as_name_token')} AND {_eq('family_as_name_token', 'given_as_name_token')})"
    crossed = f"({_eq('given_as_name_token', 'family_as_name_token')} OR {_eq('family_as_name_token', 'given_as_name_token')})"
    nhs = {
        "output_column_name": "nhs_number",
        "comparison_levels": [
            _null("nhs_number_token"),
            _level(_eq("nhs_number_token"), "exact", m_probability=0.995, fix_m_probability=True),
            _level("ELSE", "different valid numbers", m_probability=0.005, fix_m_probability=True),
        ],
    }
    shared_id = {
        "output_column_name": "shared_id",
        "comparison_levels": [
            _null("shared_id_token"),
            _level(_eq("shared_id_token"), "exact"),
            _level(_overlap("shared_id_near_tokens", dialect), "one typo apart"),
            _level("ELSE", "different"),
        ],
    }
    given = {
        "output_column_name": "given_name",
        "comparison_levels": [
            _null("given_name_token"),
            _level(_eq("given_name_token"), "exact", tf_adjustment_column="given_name_token", tf_adjustment_weight=0.5),
            _level(f"{_eq('given_first_token')} OR {_overlap('given_nickname_tokens', dialect)}", "first name or nickname"),
            _level(f"{_dice_at_least('given_name_bf', 0.8, dialect)} OR {one_typo}", "one typo apart or dice >= 0.8"),
            _level(swapped, "swapped with surname"),
            _level(crossed, "one name in the other's field"),
            _level(middle, "known by a middle name"),
            *([_fixed(relatives, OTHER_FORENAME, HOUSEHOLD_WEIGHT)] if households else []),
            _level(_eq("given_phonetic_token"), "phonetic"),
            _level(_dice_at_least("given_name_bf", 0.6, dialect), "dice >= 0.6"),
            _level("ELSE", "different"),
        ],
    }
    family = {
        "output_column_name": "family_name",
        "comparison_levels": [
            _null("family_name_token"),
            _level(_eq("family_name_token"), "exact", tf_adjustment_column="family_name_token", tf_adjustment_weight=0.5),
            _level(_dice_at_least("family_name_bf", 0.8, dialect), "dice >= 0.8"),
            _level(_eq("family_phonetic_token"), "phonetic"),
            _level(_dice_at_least("family_name_bf", 0.6, dialect), "dice >= 0.6"),
            _level("ELSE", "different"),
        ],
    }
    two_of_three = " OR ".join(
        f"({_eq(a)} AND {_eq(b)})"
        for a, b in (("dob_year_token", "dob_month_token"), ("dob_year_token", "dob_day_token"),
                     ("dob_month_token", "dob_day_token"))
    )
    dob = {
        "output_column_name": "date_of_birth",
        "comparison_levels": [
            _null("dob_token"),
            _level(_eq("dob_token"), "exact"),
            _level(f"{_eq('dob_token', 'dob_swapped_token')} OR {_eq('dob_swapped_token', 'dob_token')}", "day/month swapped"),
            _level(two_of_three, "two of year, month, day"),
            *([_fixed(f"({same_forename} AND {same_household})", OTHER_BIRTH_DATE, HOUSEHOLD_WEIGHT)]
              if households else []),
            _level(_eq("dob_year_token"), "year"),
            _level("ELSE", "different"),
        ],
    }
    residence_null = (
        "(postcode_unit_token_l IS NULL AND address_bf_l IS NULL) OR (postcode_unit_token_r IS NULL AND address_bf_r IS NULL)"
    )
    residence = {
        "output_column_name": "residence",
        "comparison_levels": [
            _level(residence_null, "null", is_null_level=True),
            _level(f"{_eq('postcode_unit_token')} AND {address_close}", "same postcode and address",
                   tf_adjustment_column="postcode_unit_token", tf_adjustment_weight=1.0),
            _level(_eq("postcode_unit_token"), "same postcode", tf_adjustment_column="postcode_unit_token",
                   tf_adjustment_weight=1.0),
            _level(address_close, "same address, other postcode"),
            _level(f"(address_bf_l IS NOT NULL AND address_bf_r IS NOT NULL AND "
                   f"{_dice_at_least('address_bf', 0.6, dialect)})", "similar address, other postcode"),
            _level(_eq("postcode_sector_token"), "same sector"),
            _level(_eq("postcode_district_token"), "same district"),
            _level("ELSE", "different"),
        ],
    }
    sex = {
        "output_column_name": "sex",
        "comparison_levels": [_null("sex_token"), _level(_eq("sex_token"), "same"), _level("ELSE", "different")],
    }
    return [nhs, shared_id, given, family, dob, residence, sex]


@dataclass(frozen=True)
class Block:
    """An equi-join blocking rule: ``left[i]`` of one record equals ``right[i]`` of the other."""

    left: tuple[str, ...]
    right: tuple[str, ...] | None = None
    #: Narrower rules that replace this one where it would compare too many pairs (``blocking.choose_rules``).
    narrowed: tuple[Block, ...] = ()

    @property
    def right_columns(self) -> tuple[str, ...]:
        return self.right or self.left

    def sql(self) -> str:
        return " AND ".join(f"l.{a} = r.{b}" for a, b in zip(self.left, self.right_columns, strict=True))

    def blocks(self, frame: pl.DataFrame, side: str = "left") -> pl.DataFrame:
        """The rule's blocks on one side (``left`` or ``right``) of ``frame``: each block's key (ascending) and
        how many records it holds.

        Keys are sorted and counted in runs (a third faster than grouping at ten million records). Blocks of several
        columns are keyed by a 64-bit hash of their values; two blocks sharing a hash, about one chance in 10^5 at
        that size, would only add their cross pairs to the count.
        """
        columns = self.left if side == "left" else self.right_columns
        keys = frame.lazy().select(columns).drop_nulls()
        if len(columns) > 1:  # the same field names both sides, so equal values hash alike
            keys = keys.select(pl.struct(pl.col(c).alias(n) for c, n in zip(columns, self.left, strict=True)).hash())
        runs = keys.select(pl.first().alias("key").sort().rle()).unnest(pl.first())
        return runs.select(pl.col("value").alias("key"), pl.col("len").cast(pl.Int64).alias("records")).collect()

    def pairs(self, frame: pl.DataFrame) -> int:
        """How many record pairs this rule generates on ``frame`` (before de-duplication across rules)."""
        left = self.blocks(frame)
        if self.right is None:
            return int((left["records"] * (left["records"] - 1) // 2).sum())
        right = self.blocks(frame, "right")
        return int(left.join(right, on="key").select(pl.col("records") * pl.col("records_right")).sum().item() or 0)


BLOCKING_RULES = (
    Block(("nhs_number_token",)),
    Block(("shared_id_token",)),
    Block(("given_phonetic_token", "family_phonetic_token"), narrowed=(
        Block(("given_phonetic_token", "family_phonetic_token", "dob_year_token"), narrowed=(
            Block(("given_phonetic_token", "family_phonetic_token", "dob_year_token", "dob_month_token")),
            Block(("given_phonetic_token", "family_phonetic_token", "dob_year_token", "postcode_district_token")),
            Block(("given_phonetic_token", "family_phonetic_token", "dob_year_token", "dob_day_token")))),
        Block(("given_phonetic_token", "family_phonetic_token", "postcode_district_token"), narrowed=(
            Block(("given_phonetic_token", "family_phonetic_token", "postcode_sector_token")),
            Block(("given_phonetic_token", "family_phonetic_token", "postcode_district_token", "dob_month_token")),
            Block(("given_phonetic_token", "family_phonetic_token", "postcode_district_token", "dob_day_token")))))),
    Block(("dob_token", "family_phonetic_token"), narrowed=(
        Block(("dob_token", "family_phonetic_token", "given_prefix_token")),
        Block(("dob_token", "family_phonetic_token", "postcode_district_token")))),
    Block(("dob_token", "given_canonical_token"), narrowed=(
        Block(("dob_token", "given_canonical_token", "postcode_district_token")),
        Block(("dob_token", "given_canonical_token", "family_prefix_token")))),
    Block(("dob_token", "postcode_unit_token")),
    Block(("postcode_unit_token", "given_canonical_token")),
    Block(("family_name_token", "given_canonical_token", "dob_year_token"), narrowed=(
        Block(("family_name_token", "given_canonical_token", "dob_year_token", "postcode_district_token")),
        Block(("family_name_token", "given_canonical_token", "dob_year_token", "dob_month_token")))),
    Block(("dob_token", "family_phonetic_token"), ("dob_swapped_token", "family_phonetic_token")),
    Block(("dob_swapped_token", "family_phonetic_token"), ("dob_token", "family_phonetic_token")),
    # Splink scores each pair once, one way round: a rule joining different columns needs its mirror too.
    Block(("given_as_name_token", "dob_token"), ("family_as_name_token", "dob_token")),
    Block(("family_as_name_token", "dob_token"), ("given_as_name_token", "dob_token")),
    Block(("given_as_name_token", "family_as_name_token"), ("family_as_name_token", "given_as_name_token"), narrowed=(
        Block(("given_as_name_token", "family_as_name_token", "dob_year_token"),
              ("family_as_name_token", "given_as_name_token", "dob_year_token")),)),
    Block(("premises_token",), narrowed=(
        Block(("premises_token", "family_prefix_token")), Block(("premises_token", "given_prefix_token")),
        Block(("premises_token", "dob_year_token")))),
    Block(("dob_token", "given_prefix_token"), narrowed=(
        Block(("dob_token", "given_prefix_token", "postcode_district_token")),)),
    Block(("dob_token", "family_prefix_token"), narrowed=(
        Block(("dob_token", "family_prefix_token", "postcode_district_token")),)),
    Block(("family_prefix_token", "given_prefix_token", "dob_year_token"), narrowed=(
        Block(("family_prefix_token", "given_prefix_token", "dob_year_token", "postcode_district_token")),
        Block(("family_prefix_token", "given_prefix_token", "dob_year_token", "dob_month_token")))),
    Block(("family_phonetic_token", "dob_month_token", "dob_day_token"), narrowed=(
        Block(("family_phonetic_token", "given_prefix_token", "dob_month_token", "dob_day_token")),)),
    Block(("given_phonetic_token", "dob_month_token", "dob_day_token"), narrowed=(
        Block(("given_phonetic_token", "family_prefix_token", "dob_month_token", "dob_day_token")),)),
)

#: Deterministic rules for the prior: NHS number and date of birth, or full name and date of birth.
DETERMINISTIC_RULES = (
    Block(("nhs_number_token", "dob_token")),
    Block(("shared_id_token", "dob_token")),
    Block(("given_name_token", "family_name_token", "dob_token")),
)
#: EM training blocks; each leaves different comparisons free to be estimated. Splink estimates a comparison only in
#: blocks that use none of its columns, and the forename comparison's household level reads the surname, residence,
#: birth-date and NHS-number tokens: the first block joins on the birth date's parts (the same pairs as the whole
#: date), so the forename is estimated there rather than left on Splink's defaults.
EM_BLOCKS = (
    Block(("dob_year_token", "dob_month_token", "dob_day_token")),
    Block(("postcode_unit_token", "given_first_token")),
    Block(("nhs_number_token",)),
    Block(("shared_id_token",)),
    Block(("family_name_token", "given_first_token")),
)


def has_household_levels(settings: dict[str, Any]) -> bool:
    """Whether a (stored) model was built with the household levels."""
    return any(level.get("label_for_charts") == OTHER_FORENAME
               for comparison in settings["comparisons"] for level in comparison["comparison_levels"])


def with_blocking(settings: dict[str, Any], rules: tuple[Block, ...]) -> dict[str, Any]:
    """``settings`` predicting with ``rules``."""
    return {**settings, "blocking_rules_to_generate_predictions": [{"blocking_rule": rule.sql()} for rule in rules]}


def settings(dialect: str = "duckdb", households: bool = True, hardening: str = "none") -> dict[str, Any]:
    """The full Splink settings dictionary (untrained)."""
    return {
        "link_type": "dedupe_only",
        "unique_id_column_name": "record_token",
        "source_dataset_column_name": "source",
        "probability_two_random_records_match": 1e-5,
        "comparisons": comparisons(dialect, households, hardening),
        "blocking_rules_to_generate_predictions": [{"blocking_rule": rule.sql()} for rule in BLOCKING_RULES],
        "retain_matching_columns": False,
        "retain_intermediate_calculation_columns": True,
        "additional_columns_to_retain": [],
        "max_iterations": 20,
        "em_convergence": 0.0001,
    }
