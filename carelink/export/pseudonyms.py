"""Recipient-keyed person IDs: ``"R"`` + 20 hex digits of HMAC-SHA256 under the recipient's key.

Two recipients get unrelated IDs for the same person; the hub, holding the export key, maps either back to its
registry (:func:`pseudonym_map`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from carelink.keys import Key
from carelink.tables import atomic_path

log = logging.getLogger(__name__)

#: Column of ``keyed_ids`` holding the rank of ``recipient_id``, for sorting by it cheaply.
RANK = "__recipient_rank"
_ID_BYTES = 10  # a recipient ID is "R" + 20 hex digits
_SHA256_BLOCK = 64


def _digests(key: bytes, person_ids: list[str]) -> np.ndarray:
    """The first ``_ID_BYTES`` bytes of HMAC-SHA256(key, person_id) for each ID, one row each (uint8).

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
    return np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(digests), _ID_BYTES)


def _recipient_ids(digests: np.ndarray) -> pl.Series:
    """Recipient IDs from their digests: ``"R"`` + the digest in lower-case hex."""
    array = pa.FixedSizeBinaryArray.from_buffers(pa.binary(_ID_BYTES), len(digests),
                                                 [None, pa.py_buffer(np.ascontiguousarray(digests).tobytes())])
    return "R" + pl.Series(array, dtype=pl.Binary).bin.encode("hex")


def _halves(digests: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each digest as its first 8 bytes and last 2, big-endian numbers (whose order is the digests' order)."""
    return (digests[:, :8].copy().view(">u8").ravel().astype(np.uint64),
            digests[:, 8:].copy().view(">u2").ravel().astype(np.uint16))


def _from_halves(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """``_halves`` undone."""
    return np.hstack([high.astype(">u8").view(np.uint8).reshape(-1, 8), low.astype(">u2").view(np.uint8).reshape(-1, 2)])


def _dense_rank(digests: np.ndarray) -> pl.Series:
    """The dense rank (from 1) of each digest among them: the order of their recipient IDs, as lower-case hex
    keeps the order of bytes. Equal digests share a rank."""
    if not len(digests):
        return pl.Series(dtype=pl.UInt32)
    high, low = _halves(digests)
    order = np.lexsort((low, high))
    high, low = high[order], low[order]
    starts = np.ones(len(order), dtype=bool)
    starts[1:] = (high[1:] != high[:-1]) | (low[1:] != low[:-1])
    rank = np.empty(len(order), dtype=np.uint32)
    rank[order] = np.cumsum(starts)
    return pl.Series(rank)


class RecipientIdStore:
    """Each recipient's digests of every person it has had an ID for, kept at the hub between runs so that a night
    computes HMACs only for people new to the recipient.

    A person's recipient ID is a function of the export key, the recipient and the person's registry ID, so a
    stored digest is either right or detectably not the store's own: each recipient's file (``<recipient>.ids``)
    is a Parquet table of ``person_id`` and digest encrypted and authenticated with AES-256-GCM under a key derived
    from the export key (``Key.storage_key``), its header (format, recipient, key ID, nonce) bound as associated
    data. The store is no weaker than the export key: without it the file tells nothing and cannot be forged. A
    file made under another export key, for another recipient, altered or unreadable is not used (every digest
    computed afresh, and a warning logged where it was altered).
    """

    FORMAT = "carelink-recipient-ids/1"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._loaded: dict[tuple[str, str], pl.DataFrame] = {}

    def digests(self, person_ids: pl.Series, export_key: Key, recipient: str) -> np.ndarray:
        """The digests of the distinct ``person_ids`` (in their order) for ``recipient``: stored where known,
        computed and added to the store for the rest."""
        known = self._load(export_key, recipient)
        found = person_ids.to_frame("person_id").join(known, on="person_id", how="left", maintain_order="left")
        missing = found["high"].is_null()
        digests = _from_halves(found["high"].fill_null(0).to_numpy(), found["low"].fill_null(0).to_numpy())
        fresh = missing.to_numpy()
        if fresh.any():
            new_ids = person_ids.filter(missing)
            digests[fresh] = _digests(export_key.recipient_key(recipient), new_ids.to_list())
            high, low = _halves(digests[fresh])
            self._save(pl.concat([known, pl.DataFrame({"person_id": new_ids, "high": high, "low": low})]),
                       export_key, recipient)
        log.info("recipient IDs for %s: %d people, %d computed, the rest from the store", recipient,
                 person_ids.len(), int(fresh.sum()))
        return digests

    def _path(self, recipient: str) -> Path:
        return self.folder / f"{recipient}.ids"

    def _header(self, export_key: Key, recipient: str, nonce: bytes) -> bytes:
        return json.dumps({"format": self.FORMAT, "recipient": recipient, "export_key_id": export_key.key_id,
                           "nonce": nonce.hex()}, sort_keys=True).encode()

    def _load(self, export_key: Key, recipient: str) -> pl.DataFrame:
        empty = pl.DataFrame(schema={"person_id": pl.String, "high": pl.UInt64, "low": pl.UInt16})
        if (export_key.key_id, recipient) in self._loaded:
            return self._loaded[export_key.key_id, recipient]
        path = self._path(recipient)
        if not path.is_file():
            return empty
        blob = path.read_bytes()
        header, _, ciphertext = blob.partition(b"\n")
        try:
            made = json.loads(header)
            if made.get("format") != self.FORMAT or made.get("recipient") != recipient:
                return empty
            if made.get("export_key_id") != export_key.key_id:
                log.info("%s: made under another export key; recipient IDs computed afresh", path)
                return empty
            nonce = bytes.fromhex(made["nonce"])
            plain = AESGCM(export_key.storage_key(STORE)).decrypt(nonce, ciphertext, header)
            return pl.read_parquet(io.BytesIO(plain)).select(empty.columns).cast(empty.schema)
        except (ValueError, KeyError, TypeError, AttributeError, InvalidTag, pl.exceptions.PolarsError):
            log.warning("%s: altered or unreadable; recipient IDs computed afresh", path)
            return empty

    def _save(self, table: pl.DataFrame, export_key: Key, recipient: str) -> None:
        buffer = io.BytesIO()
        table.write_parquet(buffer, compression="zstd")
        nonce = os.urandom(12)
        header = self._header(export_key, recipient, nonce)
        sealed = AESGCM(export_key.storage_key(STORE)).encrypt(nonce, buffer.getvalue(), header)
        with atomic_path(self._path(recipient)) as tmp:
            tmp.write_bytes(header + b"\n" + sealed)
        self._loaded[export_key.key_id, recipient] = table


#: The name ``RecipientIdStore`` derives its key under (``Key.storage_key``).
STORE = "recipient-ids"


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


def keyed_ids(person_ids: pl.Series, export_key: Key, recipient: str,
              store: RecipientIdStore | None = None) -> pl.DataFrame:
    """``pseudonym_map`` with ``RANK``, the rank of ``recipient_id``: tables sort by the recipient's IDs through
    it, an integer instead of a 21-character string. Rows in the order of the distinct IDs' first appearance.
    With ``store``, digests known from earlier runs are not computed again."""
    distinct = person_ids.unique(maintain_order=True)
    if store is None:
        digests = _digests(export_key.recipient_key(recipient), distinct.to_list())
    else:
        digests = store.digests(distinct, export_key, recipient)
    return pl.DataFrame({"person_id": distinct, "recipient_id": _recipient_ids(digests), RANK: _dense_rank(digests)})
