"""``carelink verify``: check a received export folder against its manifest and the export schemas."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandera.errors
import polars as pl

from carelink.export.publish import MANIFEST, folder_files
from carelink.export.schema import table_schema
from carelink.tables import file_sha256, read_json, read_parquet_metadata

log = logging.getLogger(__name__)
_TABLE_ERRORS = (pandera.errors.SchemaError, pandera.errors.SchemaErrors, pl.exceptions.PolarsError, OSError, ValueError)


def verify_export(folder: Path) -> list[str]:
    """Check an export folder; return the problems found (empty when it verifies).

    Every file the manifest lists must be present with its checksum, no other file may be present, every table
    must pass its schema, and every table must say it was made for the manifest's recipient and purpose.
    """
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return [f"{manifest_path}: missing"]
    try:
        manifest = read_json(manifest_path)
        listed = dict(manifest["files"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return [f"{manifest_path}: not a carelink export manifest"]
    present = folder_files(folder)
    problems = [f"{folder / name}: not in the manifest (unexpected file)" for name in sorted(set(present) - set(listed))]
    for name, expected in sorted(listed.items()):
        path = present.get(name)
        if path is None:
            problems.append(f"{folder / name}: missing")
        elif not isinstance(expected, dict) or file_sha256(path) != expected.get("sha256"):
            problems.append(f"{path}: checksum does not match the manifest")
        elif name.endswith(".parquet"):
            problems += _check_table(path, name, manifest)
    if problems:
        log.warning("verify %s: %d problems", folder, len(problems))
    return problems


def _check_table(path: Path, name: str, manifest: dict) -> list[str]:
    """Schema and provenance problems of one table of the export."""
    schema = table_schema(name)
    if schema is None:
        return [f"{path}: not a table of the export contract"]
    try:
        schema.validate(pl.read_parquet(path))
        meta = read_parquet_metadata(path)
    except _TABLE_ERRORS as exc:
        return [f"{path}: schema check failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"]
    wrong = [key for key in ("recipient", "purpose") if meta.get(key) != manifest.get(key)]
    return [f"{path}: made for another {wrong[0]}"] if wrong else []
