"""Hardened Bloom-filter encodings: ways to make a bigram filter harder to attack, each at a cost in accuracy.

A plain keyed filter is deterministic per value, so frequent names give frequent filters (a frequency attack), and
its bit patterns repeat across records that share bigrams (pattern mining). The options, all keyed by the field's
key so every partner builds the same filters:

- ``"salted"``: each bigram's bits are chosen by HMAC under a key derived from the field key and a stable
  per-record attribute (the salt, e.g. year of birth): the same name in two salt groups gives unrelated filters, so
  frequencies split by salt and patterns do not carry across groups. Cost: a true pair whose salt differs (a typo in
  the year) no longer scores as similar.
- ``"balanced"``: the filter followed by its bitwise complement, bits permuted by a keyed permutation. Every filter
  has the same number of set bits (its length), which hides how long the value is; the length doubles, and Dice of
  two balanced filters is ``1 - hamming / bits``, so unrelated values score far higher than with plain filters.
- ``"xor_fold"``: the filter's first half XOR its second half. Halves the length and breaks the one-to-one link
  between a bit and a bigram; costs some separation between similar and dissimilar values.

``bench/bloom_hardening.py`` measures what each costs on FEBRL4 (5,000 true pairs against 50,000 random pairs).
In short: XOR-folding keeps the ranking (AUC within ±0.003) at half the length but lifts unrelated pairs' Dice
(names 0.23 → 0.33); salting by year of birth costs true pairs whose year differs (surname AUC 0.935 → 0.920,
address 0.9999 → 0.965) and is the only one that defeats the frequency attack; balancing keeps the ranking but moves
every Dice up (random pairs ≈ 0.7), so thresholds tuned on plain filters no longer apply. None is free, so the
default stays "none".
"""

from __future__ import annotations

import hmac

import numpy as np

from carelink.errors import ConfigError

HARDENINGS = ("none", "salted", "balanced", "xor_fold")
_SALT_INFO = b"carelink/bloom/salt/"
_PERMUTATION_INFO = b"carelink/bloom/balanced-permutation"


def check(hardening: str) -> str:
    """``hardening`` if it is one of ``HARDENINGS``; a ``ConfigError`` naming the choices otherwise."""
    if hardening not in HARDENINGS:
        raise ConfigError(None, "bloom_hardening", f"must be one of {', '.join(HARDENINGS)}, not {hardening!r}")
    return hardening


def output_bits(bits: int, hardening: str) -> int:
    """Stored filter length for a ``bits``-bit filter under ``hardening``."""
    check(hardening)
    return {"balanced": 2 * bits, "xor_fold": bits // 2}.get(hardening, bits)


def salt_key(field_key: bytes, salt: str) -> bytes:
    """The key a salt group's bigrams are hashed under: HMAC-SHA256(field key, info ‖ salt)."""
    return hmac.digest(field_key, _SALT_INFO + salt.encode("utf-8"), "sha256")


def permutation(field_key: bytes, bits: int) -> np.ndarray:
    """A keyed permutation of ``bits`` positions: positions ordered by HMAC of their index under a key derived
    from the field key (independent of numpy's random streams, so stable across versions and machines)."""
    key = hmac.digest(field_key, _PERMUTATION_INFO, "sha256")
    scores = [hmac.digest(key, i.to_bytes(4, "big"), "sha256")[:8] for i in range(bits)]
    return np.array(sorted(range(bits), key=lambda i: (scores[i], i)), dtype=np.int64)


def transform(filters: np.ndarray, hardening: str, perm: np.ndarray | None = None) -> np.ndarray:
    """Apply a whole-filter hardening to a (values × words) uint64 array of plain (or salted) filters."""
    if hardening in ("none", "salted"):
        return filters
    if hardening == "xor_fold":
        return xor_fold(filters)
    if perm is None:
        raise ValueError("balanced hardening needs the keyed permutation")
    return balance(filters, perm)


def xor_fold(filters: np.ndarray) -> np.ndarray:
    """Each filter's first half XOR its second half (word ``i`` of the result is word ``i`` XOR word ``i + w/2``)."""
    half = filters.shape[1] // 2
    return filters[:, :half] ^ filters[:, half:]


_BALANCE_BLOCK = 16384


def balance(filters: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Each filter followed by its complement, then bit ``j`` of the result is bit ``perm[j]`` of that."""
    rows, words = filters.shape
    out = np.empty((rows, 2 * words), dtype=np.uint64)
    for start in range(0, rows, _BALANCE_BLOCK):
        block = np.ascontiguousarray(filters[start : start + _BALANCE_BLOCK], dtype="<u8")
        bits = np.unpackbits(block.view(np.uint8), axis=1, bitorder="little")
        both = np.concatenate([bits, 1 - bits], axis=1)[:, perm]
        packed = np.packbits(both, axis=1, bitorder="little")
        out[start : start + len(block)] = np.ascontiguousarray(packed).view("<u8").reshape(len(block), 2 * words)
    return out
