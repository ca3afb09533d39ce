"""Reversible tokens: deterministic authenticated encryption (AES-SIV, RFC 5297) of a field the configuration
marks reversible, so a holder of the linkage key — a partner, for direct care — can turn it back into the value
with ``carelink reidentify``. The hub, which never holds the linkage key, cannot.

The key is derived from the linkage key per field (HKDF, info ``carelink/reversible/<field>``), separate from the
field's HMAC token key; the field name is bound as associated data, so a value sealed as one field cannot be opened
as another.
"""

from __future__ import annotations

import base64
from pathlib import Path

import polars as pl
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from carelink.errors import InputFileError, KeyFileError
from carelink.keys import Key
from carelink.tables import write_parquet

#: Fields a source may mark reversible.
REVERSIBLE_FIELDS = ("record_id", "nhs_number", "shared_id")
SUFFIX = "_sealed"
ALGORITHM = "AES-SIV (RFC 5297), 512-bit HKDF per-field key, field name as associated data"


def seal(series: pl.Series, key: Key, field: str) -> pl.Series:
    """Sealed (encrypted) values of a string column as URL-safe base64; null stays null."""
    cipher = AESSIV(key.reversible_key(field))
    associated = [field.encode()]
    return series.map_elements(
        lambda v: base64.urlsafe_b64encode(cipher.encrypt(v.encode("utf-8"), associated)).decode("ascii"),
        return_dtype=pl.String, skip_nulls=True,
    ).alias(field + SUFFIX)


def unseal(series: pl.Series, key: Key, field: str) -> pl.Series:
    """The plaintext values of a sealed column; raises ``KeyFileError`` when the key is not the one that sealed."""
    cipher = AESSIV(key.reversible_key(field))
    associated = [field.encode()]

    def open_one(token: str) -> str:
        try:
            return cipher.decrypt(base64.urlsafe_b64decode(token.encode("ascii")), associated).decode("utf-8")
        except (InvalidTag, ValueError):
            raise KeyFileError(f"a {field} value was not sealed with key {key.key_id} (or was altered)") from None

    return series.map_elements(open_one, return_dtype=pl.String, skip_nulls=True).alias(field)


def reidentify_file(path: Path, key: Key, out: Path) -> dict[str, int]:
    """Add the plaintext of every sealed column of a Parquet file; write the result to ``out``."""
    if not path.is_file():
        raise InputFileError(path, "file not found")
    frame = pl.read_parquet(path)
    sealed = [c for c in frame.columns if c.endswith(SUFFIX) and c[: -len(SUFFIX)] in REVERSIBLE_FIELDS]
    if not sealed:
        raise InputFileError(path, f"no sealed column (one of {', '.join(f + SUFFIX for f in REVERSIBLE_FIELDS)})")
    opened = [unseal(frame[column], key, column[: -len(SUFFIX)]) for column in sealed]
    write_parquet(frame.with_columns(opened), out, {"reidentified_with_key": key.key_id})
    return {column: int(frame[column].is_not_null().sum()) for column in sealed}
