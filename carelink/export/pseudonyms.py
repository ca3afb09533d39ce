"""Recipient-keyed person IDs: ``"R"`` + 20 hex digits of HMAC-SHA256 under the recipient's key.

Two recipients get unrelated IDs for the same person; the hub, holding the export key, maps either back to its
registry (:func:`pseudonym_map`).
"""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl

from carelink.keys import Key

#: Column of ``keyed_ids`` holding the rank of ``recipient_id``, for sorting by it cheaply.
RANK = "__recipient_rank"
_ID_BYTES = 10  # a recipient ID is "R" + 20 hex digits
_SHA256_BLOCK = 64


def _digests(key: bytes, person_ids: list[str]) -> list[bytes]:
    """The first ``_ID_BYTES`` bytes of HMAC-SHA256(key, person_id), for each ID.

    The HMAC is built as RFC 2104 defines it from two SHA-256 states keyed once and copied per ID: the bytes of
    ``hmac.digest`` at under half its cost per ID.
    """
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    digests = []
    for person_id in person_ids:
        state = inner.copy()
        state.update(person_id.encode())
        digest = outer.copy()
        digest.update(state.digest())
        digests.append(digest.digest()[:_ID_BYTES])
    return digests


def _recipient_ids(digests: list[bytes]) -> pl.Series:
    """Recipient IDs from their digests: ``"R"`` + the digest in lower-case hex."""
    return "R" + pl.Series(digests, dtype=pl.Binary).bin.encode("hex")


def _dense_rank(digests: list[bytes]) -> pl.Series:
    """The dense rank (from 1) of each digest among them: the order of their recipient IDs, as lower-case hex
    keeps the order of bytes. Equal digests share a rank."""
    if not digests:
        return pl.Series(dtype=pl.UInt32)
    grid = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(digests), _ID_BYTES)
    high = grid[:, :8].copy().view(">u8").ravel()
    low = grid[:, 8:].copy().view(">u2").ravel()
    order = np.lexsort((low, high))
    high, low = high[order], low[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (high[1:] != high[:-1]) | (low[1:] != low[:-1])
    rank = np.empty(len(order), dtype=np.uint32)
    rank[order] = np.cumsum(starts)
    return pl.Series(rank)


def recipient_pseudonyms(person_ids: pl.Series, export_key: Key, recipient: str) -> pl.Series:
    """Recipient-keyed person IDs: the same person has unrelated IDs for two recipients."""
    distinct = person_ids.unique()
    pseudonyms = _recipient_ids(_digests(export_key.recipient_key(recipient), distinct.to_list()))
    return person_ids.replace_strict(distinct, pseudonyms, return_dtype=pl.String)


def pseudonym_map(person_ids: pl.Series, export_key: Key, recipient: str) -> pl.DataFrame:
    """Registry ``person_id`` → the recipient's ``recipient_id``, for the distinct IDs given.

    This is how the hub maps a recipient's IDs back to its registry (and so between two recipients); recipients,
    without the export key, cannot.
    """
    return keyed_ids(person_ids.unique().sort(), export_key, recipient).drop(RANK)


def keyed_ids(person_ids: pl.Series, export_key: Key, recipient: str) -> pl.DataFrame:
    """``pseudonym_map`` with ``RANK``, the rank of ``recipient_id``: tables sort by the recipient's IDs through
    it, an integer instead of a 21-character string. Rows in the order of the distinct IDs' first appearance."""
    distinct = person_ids.unique(maintain_order=True)
    digests = _digests(export_key.recipient_key(recipient), distinct.to_list())
    return pl.DataFrame({"person_id": distinct, "recipient_id": _recipient_ids(digests), RANK: _dense_rank(digests)})
