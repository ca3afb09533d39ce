"""Carry last night's standardised values forward: a row whose mapped values are as they were in the previous run
keeps its standardised values, so a night standardises afresh only its new and changed rows.

A standardised row is a function of the row's mapped raw values, the source's table settings, the reference date and
the code. Of its columns only the dates depend on the reference date (``DATED``); they are parsed afresh for every
row each night. The rest is carried when everything else is unchanged: the previous run's fingerprint file was made
with tonight's fingerprint (carelink, polars and schema versions, source and table settings) and names the SHA-256
of the standardised file beside it, which still matches. A row is unchanged when its record ID and a 64-bit hash of
its mapped raw values equal those of a previous row: paired on the record ID, a changed row could only be carried
if its new values hashed to its own old values' hash (a chance of 2^-64 per changed row).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from carelink import __version__
from carelink.config import SourceConfig, TableSpec
from carelink.ingest.readers import ROW
from carelink.tables import file_sha256, read_parquet_metadata, write_parquet

log = logging.getLogger(__name__)

#: The ingest file of each standardised row's raw-value hash, in the same row order.
FINGERPRINTS = "row_fingerprints.parquet"
#: The column of a row's 64-bit hash of its mapped raw values.
RAW_HASH = "raw_hash"
#: Standardised columns that depend on the reference date, parsed afresh for every row each night.
DATED = ("date_of_birth", "date_of_birth_status", "ndop_opt_out_date", "type1_opt_out_date",
         "shared_care_consent_date", "research_consent_date")


def raw_hash(spec: TableSpec) -> pl.Expr:
    """A 64-bit hash of a raw row's mapped values (in canonical-field order), as ``RAW_HASH``."""
    return pl.struct([pl.col(spec.columns[name]) for name in sorted(spec.columns)]).hash(seed=0).alias(RAW_HASH)


def fingerprint(source: SourceConfig, schema_version: str) -> str:
    """What a standardised row depends on besides its raw values and the reference date."""
    settings = {k: v for k, v in asdict(source.table).items() if k != "path"}
    made = {"carelink": __version__, "polars": pl.__version__, "schema": schema_version, "source": source.name,
            "kind": source.kind, "table": settings}
    return hashlib.sha256(json.dumps(made, sort_keys=True, default=str).encode()).hexdigest()


def write_fingerprints(hashes: pl.Series, folder: Path, standardised: Path, made: str) -> None:
    """Write tonight's row hashes beside ``standardised`` (after it is written), naming its SHA-256."""
    write_parquet(hashes.to_frame(RAW_HASH), folder / FINGERPRINTS,
                  {"fingerprint": made, "standardised_sha256": file_sha256(standardised)})


@dataclass(frozen=True)
class PreviousRecords:
    """The previous run's standardised values of a source, keyed by record ID and raw-value hash."""

    values: pl.DataFrame  # record_id, RAW_HASH and the carried columns

    @classmethod
    def load(cls, folder: Path, made: str, carried: list[str]) -> PreviousRecords | None:
        """The previous run's rows in ``folder`` if they may be carried from (else None, with the reason logged)."""
        standardised, hashes = folder / "standardised.parquet", folder / FINGERPRINTS
        if not standardised.is_file() or not hashes.is_file():
            return None
        meta = read_parquet_metadata(hashes)
        if meta.get("fingerprint") != made:
            log.info("%s: made by another version or with other settings; every row standardised afresh", folder)
            return None
        if meta.get("standardised_sha256") != file_sha256(standardised):
            log.warning("%s: standardised.parquet differs from the file its fingerprints were made for; "
                        "every row standardised afresh", folder)
            return None
        values = pl.read_parquet(standardised, columns=["record_id", *carried])
        row_hashes = pl.read_parquet(hashes)[RAW_HASH]
        if row_hashes.len() != values.height:
            log.warning("%s: fingerprints do not match its standardised rows; every row standardised afresh", folder)
            return None
        return cls(values.with_columns(row_hashes))

    def carried(self, keys: pl.DataFrame) -> pl.DataFrame:
        """The previous values of the rows in ``keys`` (``ROW``, record_id, RAW_HASH) that are unchanged, with
        their ``ROW``, in ``ROW`` order."""
        # joined on the hash alone, the record IDs compared after: a third of the time of joining on both
        paired = keys.join(self.values, on=RAW_HASH, how="inner", suffix="_previous")
        return (paired.filter(pl.col("record_id") == pl.col("record_id_previous"))
                .drop(RAW_HASH, "record_id_previous").sort(ROW))
