"""Re-identification risk of what leaves the partner, measured on the partner's own data.

- **k-anonymity of the plaintext quasi-identifiers** (age band, postcode district, source kind): how many records
  share each combination; records in classes smaller than ``k`` are at risk of being singled out.
- **Token frequency exposure**: keyed tokens hide values but not how often each value occurs; for every token
  column, how many distinct tokens are unique or rarer than ``k``, and the share of records the most common token
  covers.
- **Frequency-attack self-test** (worst case): an attacker who knows this partner's exact frequency list of names
  lines tokens up with values by rank. A value is re-identified when its frequency is unique among the values (no
  tie to hide in) — the attack then maps it correctly. Deterministic tokens and Bloom filters alike expose this; the
  share reported is the honest worst case an IG officer should weigh.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from carelink.pseudonymise.encodings import factorize

QUASI_IDENTIFIERS = ("age_band", "postcode_district", "source_kind")
DEFAULT_K = 5


def k_anonymity(nodes: pl.DataFrame, columns: tuple[str, ...] = QUASI_IDENTIFIERS, k: int = DEFAULT_K) -> dict[str, Any]:
    """Equivalence-class sizes of the plaintext quasi-identifiers."""
    classes = nodes.group_by(list(columns)).len("size")
    per_record = nodes.select(list(columns)).join(classes, on=list(columns), how="left", nulls_equal=True)["size"]
    bands = {"1": (1, 1), "2-4": (2, 4), "5-9": (5, 9), "10+": (10, None)}
    distribution = {
        name: int(((per_record >= lo) & (per_record <= hi if hi else True)).sum()) for name, (lo, hi) in bands.items()
    }
    return {
        "quasi_identifiers": list(columns),
        "k": k,
        "records": nodes.height,
        "records_unique": distribution["1"],
        "records_below_k": int((per_record < k).sum()),
        "share_below_k": float((per_record < k).mean()) if nodes.height else 0.0,
        "class_size_distribution": distribution,
    }


def token_exposure(nodes: pl.DataFrame, columns: list[str], k: int = DEFAULT_K) -> list[dict[str, Any]]:
    """Per token column: distinct tokens, unique tokens, tokens rarer than k, the top token's share of records."""
    rows = []
    for column in columns:
        counts = nodes[column].drop_nulls().unique_counts()
        present = int(counts.sum())
        rows.append({
            "column": column,
            "distinct": counts.len(),
            "unique": int((counts == 1).sum()),
            "rarer_than_k": int((counts < k).sum()),
            "top_share": float(counts.max() / present) if present else 0.0,
        })
    return rows


def frequency_attack(values: pl.Series, tokens: pl.Series) -> dict[str, Any]:
    """Rank-align tokens with the partner's own value frequencies; count what the alignment gets right."""
    # Values are replaced by integer codes first (one per distinct value): the figures only count.
    pairs = pl.DataFrame({"value": factorize(values).codes, "token": tokens}).drop_nulls()
    if pairs.height == 0:
        return {"distinct_values": 0, "values_reidentified": 0, "share_values": 0.0, "share_records": 0.0}
    value_freq = pairs.group_by("value").len("n")
    token_freq = pairs.group_by("token").len("n")
    # Only frequencies held by exactly one value can be aligned without guessing.
    distinct_freq = value_freq.group_by("n").len("ties").filter(pl.col("ties") == 1).select("n")
    guessed_values = value_freq.join(distinct_freq, on="n")
    guessed_tokens = token_freq.join(distinct_freq, on="n")
    guesses = guessed_values.join(guessed_tokens, on="n")  # token → value guessed by frequency
    truth = pairs.unique(["value", "token"])
    correct = guesses.join(truth, on=["value", "token"])
    records = int(correct["n"].sum()) if correct.height else 0
    return {
        "distinct_values": value_freq.height,
        "values_reidentified": correct.height,
        "share_values": correct.height / value_freq.height,
        "share_records": records / pairs.height,
    }


def assess(standardised: pl.DataFrame, nodes: pl.DataFrame, token_columns: list[str], k: int = DEFAULT_K) -> dict[str, Any]:
    """The whole risk section of the pseudonymisation report."""
    attacks = {
        "family_name": frequency_attack(standardised["family_name"], nodes["family_name_token"]),
        "given_name": frequency_attack(standardised["given_name"], nodes["given_name_token"]),
        # Filters compared as whole values: the attack only needs to know which records share one.
        "family_name_bloom_filter": frequency_attack(standardised["family_name"], factorize(nodes["family_name_bf"]).codes),
    }
    return {
        "k_anonymity": k_anonymity(nodes, k=k),
        "token_exposure": token_exposure(nodes, token_columns, k=k),
        "frequency_attack": attacks,
        "worst_frequency_attack_share_records": max(a["share_records"] for a in attacks.values()),
    }
