"""The pseudonymise stage, run at the partner: standardised records → nodes, activity, re-identification map, report.

Only ``nodes.parquet`` and ``activity.parquet`` go to the linkage hub; ``reid_map.parquet`` (record id ↔ record
token) and the report stay with the partner. The stage refuses to finish if the leak scan finds any identifier.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from carelink import __version__
from carelink.errors import DataQualityError, InputFileError, IntegrityError
from carelink.keys import Key
from carelink.pseudonymise import hardening, leakscan, risk
from carelink.pseudonymise.carry import PreviousDelivery, carry_forward
from carelink.pseudonymise.features import (
    FEATURES,
    FEATURES_SHA256,
    NODE_INPUTS,
    PASSED_THROUGH,
    build_nodes,
    dated_columns,
    feature_algorithm,
)
from carelink.pseudonymise.report import write_report
from carelink.pseudonymise.reversible import ALGORITHM as SIV
from carelink.pseudonymise.reversible import SUFFIX, seal
from carelink.pseudonymise.schema import SCHEMA_VERSION, NodeRecord
from carelink.tables import file_sha256, read_json, read_parquet_metadata, write_json, write_parquet

log = logging.getLogger(__name__)
#: Node and activity columns whose values come from a fixed vocabulary (see ``leakscan.scan``).
CATEGORICAL = ("source", "source_kind", "nhs_number_status", "age_band", "shared_care_consent")


@dataclass(frozen=True)
class PseudonymiseResult:
    """What pseudonymise wrote for one source."""

    source: str
    records: int
    activity_rows: int
    leak_scan_passed: bool
    folder: Path
    records_carried: int = 0  # node rows carried unchanged from the previous run


def pseudonymise_source(ingest_folder: Path, out_folder: Path, key: Key, *, partnership: str, source_kind: str,
                        reference_date: dt.date, config_sha256: str = "",
                        reversible: tuple[str, ...] = (), bloom_hardening: str = "none",
                        previous: PreviousDelivery | None = None) -> PseudonymiseResult:
    """Pseudonymise one source's standardised records (``ingest_folder``) into ``out_folder``.

    With ``previous`` (the last run's records of this source), records unchanged since then keep their node rows
    (``carry.carry_forward``) and only new and changed records are pseudonymised afresh: the same files either way.

    Fields in ``reversible`` are also sealed with AES-SIV (``<field>_sealed``) for ``carelink reidentify``.
    ``bloom_hardening`` (``hardening.HARDENINGS``) applies to every Bloom-filter column; every partner of a
    partnership must use the same, and it is recorded in the delivery's metadata when it is not "none".
    """
    hardening.check(bloom_hardening)
    standardised_path = ingest_folder / "standardised.parquet"
    if not standardised_path.is_file():
        raise InputFileError(standardised_path, "not found: run ingest first")
    standardised = pl.read_parquet(standardised_path)
    source = read_parquet_metadata(standardised_path).get("source", ingest_folder.name)
    # Independent steps overlap: the leak scan's identifier spellings are computed while the tokens are (HMAC holds
    # the interpreter, polars does not), and the schema check, the risk figures and the writing of the files run
    # beside the leak scan. The files are written to a staging folder beside (not inside) the delivery folder and
    # moved into it only once every check has passed, so what is published, and when a failure stops the stage, is as
    # if run in order; unchecked files never appear in the folder that goes to the hub.
    out_folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_folder.name}.staging-", dir=out_folder.parent))
    meta = {"schema_version": SCHEMA_VERSION, "source": source, "source_kind": source_kind,
            "partnership": partnership, "linkage_key_id": key.key_id, "carelink_version": __version__,
            "features_sha256": FEATURES_SHA256}
    if bloom_hardening != "none":
        meta["bloom_hardening"] = bloom_hardening

    def build(frame: pl.DataFrame) -> pl.DataFrame:
        nodes = build_nodes(frame, key, reference_date, source_kind, bloom_hardening=bloom_hardening)
        return nodes.with_columns(seal(frame[field].cast(pl.String), key, field) for field in reversible)

    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="pseudonymise") as pool:
        spellings = pool.submit(leakscan.identifier_spellings, standardised)
        carried = carry_forward(standardised, previous, meta, sorted({*NODE_INPUTS, *reversible}), build,
                                lambda frame: dated_columns(frame, key, reference_date), verify_delivery)
        nodes = carried.nodes
        validated = pool.submit(NodeRecord.validate, nodes)
        risks = pool.submit(risk.assess, standardised, nodes, [f.column for f in FEATURES if f.method == "keyed token"])
        reid_map = pl.DataFrame({"record_id": standardised["record_id"], "record_token": nodes["record_token"]})
        activity = _activity(ingest_folder / "activity.parquet", reid_map)
        tables = {"nodes.parquet": (nodes, meta), "activity.parquet": (activity, meta),
                  "reid_map.parquet": (reid_map, meta | {"stays_at_partner": True})}
        staged = {name: staging / name for name in tables}
        writes = [pool.submit(write_parquet, frame, staged[name], table_meta)
                  for name, (frame, table_meta) in tables.items()]
        try:
            scan = leakscan.scan_with({"nodes": nodes, "activity": activity}, standardised, spellings.result(),
                                      CATEGORICAL, aligned=("nodes",), aligned_rows=carried.fresh_rows)
            validated.result()
            if reid_map["record_token"].n_unique() != reid_map.height:
                raise DataQualityError(f"{standardised_path}: two records share a record token (duplicate record ids?)")
            report = _report(meta, standardised, nodes, activity, scan, _inputs(ingest_folder))
            report["config_sha256"] = config_sha256
            report["counts"]["records_carried"] = carried.carried
            report["risk"] = risks.result()
            write_report(report, out_folder)
            if not scan.passed:
                raise DataQualityError(f"{out_folder}: leak scan found identifier values in {scan.leaks[0]['table']}."
                                       f"{scan.leaks[0]['column']}; nothing was published")
            for write in writes:
                write.result()
        except BaseException:
            wait(writes)
            shutil.rmtree(staging, ignore_errors=True)
            raise
    for name, path in staged.items():
        os.replace(path, out_folder / name)
    staging.rmdir()
    write_delivery_manifest(out_folder, meta, nodes.height)
    log.info("pseudonymise %s: %d records (%d carried from the previous run), %d activity rows, leak scan passed",
             source, nodes.height, carried.carried, activity.height)
    return PseudonymiseResult(source, nodes.height, activity.height, scan.passed, out_folder, carried.carried)


DELIVERY_FILES = ("nodes.parquet", "activity.parquet")


def write_delivery_manifest(folder: Path, meta: dict, records: int) -> None:
    """``manifest.json`` of what goes to the hub: checksums the hub verifies before linking."""
    files = {name: file_sha256(folder / name) for name in DELIVERY_FILES}
    write_json({**meta, "records": records, "files_sha256": files}, folder / "manifest.json")


def verify_delivery(folder: Path) -> dict:
    """Check a source's delivery against its manifest; raise ``IntegrityError`` naming the file that differs."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise IntegrityError(f"{manifest_path}: missing; a delivery without its manifest cannot be trusted")
    manifest = read_json(manifest_path)
    for name, expected in manifest.get("files_sha256", {}).items():
        path = folder / name
        if not path.is_file() or file_sha256(path) != expected:
            raise IntegrityError(f"{path}: checksum does not match {manifest_path.name} (altered or incomplete "
                                 "delivery); ask the partner to send it again")
    return manifest


def _activity(path: Path, reid_map: pl.DataFrame) -> pl.DataFrame:
    schema = {"record_token": pl.String, "source": pl.String, "activity_date": pl.Date, "activity_type": pl.String}
    if not path.is_file():
        return pl.DataFrame(schema=schema)
    activity = pl.read_parquet(path)
    return activity.join(reid_map, on="record_id", how="inner").select(list(schema))


def _inputs(ingest_folder: Path) -> dict[str, str]:
    """Checksums of the raw extract (as ingest read it) and of the standardised file."""
    inputs = {}
    validation = ingest_folder / "validation.json"
    if validation.is_file():
        raw = read_json(validation)["input"]
        inputs[raw["path"]] = raw["sha256"]
    for name in ("standardised.parquet", "activity.parquet"):
        if (ingest_folder / name).is_file():
            inputs[name] = file_sha256(ingest_folder / name)
    return inputs


def _report(meta: dict, standardised: pl.DataFrame, nodes: pl.DataFrame, activity: pl.DataFrame,
            scan: leakscan.LeakScanResult, inputs: dict[str, str]) -> dict:
    fields = [
        {"column": f.column, "from": f.source_field, "method": f.method,
         "algorithm": feature_algorithm(f, meta.get("bloom_hardening", "none")),
         "key_id": meta["linkage_key_id"] if f.method in ("keyed token", "encoding") else None,
         "reversible": "no (one-way)" if f.method != "generalised" else "not applicable",
         "non_null_out": int(nodes[f.column].is_not_null().sum())}
        for f in FEATURES
    ]
    fields.append({"column": "record_token", "from": "record_id", "method": "keyed token",
                   "algorithm": "HMAC-SHA256 (HKDF per-field key), 128-bit, of source and record id",
                   "key_id": meta["linkage_key_id"],
                   "reversible": "by this partner only, through reid_map.parquet (never leaves the partner)",
                   "non_null_out": nodes.height})
    fields += [{"column": column, "from": column[: -len(SUFFIX)], "method": "reversible token", "algorithm": SIV,
                "key_id": meta["linkage_key_id"],
                "reversible": "by holders of the linkage key (partners), with carelink reidentify, for direct care",
                "non_null_out": int(nodes[column].is_not_null().sum())}
               for column in nodes.columns if column.endswith(SUFFIX)]
    fields += [{"column": name, "from": name, "method": "passed through", "algorithm": "consent field, unchanged",
                "key_id": None, "reversible": "not applicable", "non_null_out": int(nodes[name].is_not_null().sum())}
               for name in PASSED_THROUGH]
    dropped = sorted({"given_name", "family_name", "date_of_birth", "nhs_number", "shared_id", "postcode", "address",
                      "sex", "record_id"})
    return {
        **meta,
        "inputs_sha256": inputs,
        "counts": {"records_in": standardised.height, "records_out": nodes.height, "activity_rows_out": activity.height},
        "dropped_plaintext_fields": dropped,
        "fields": fields,
        "nhs_number_status": dict(sorted(standardised.group_by("nhs_number_status").len().iter_rows())),
        # Valid numbers in the 999 000 0000-999 999 9999 test range: synthetic or test records, still linked.
        "nhs_number_test_range": int(standardised["nhs_number"].str.starts_with("999").sum()),
        "leak_scan": scan.to_dict(),
    }
