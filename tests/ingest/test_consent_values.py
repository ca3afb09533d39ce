"""Consent codes as each source spells them, mapped in config; unknown codes refused with file, row and field."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml

from carelink import errors
from carelink.config import load_config
from carelink.ingest.stage import ingest_source

PEOPLE = "id,ndop,scr,scr_date\n1,Opted out,C,2025-01-02\n2,Active,W,2025-03-04\n3,,R,\n4,Y,granted,\n"


def _config(folder: Path, people: str, consent_values: dict) -> Path:
    (folder / "people.csv").write_text(people, encoding="utf-8")
    source = {"name": "council", "kind": "social_care", "path": "people.csv",
              "columns": {"record_id": "id", "ndop_opt_out": "ndop", "shared_care_consent": "scr",
                          "shared_care_consent_date": "scr_date"},
              "consent_values": consent_values}
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"partnership": "t", "reference_date": "2026-11-01", "sources": [source]}))
    return path


MAPPING = {"ndop_opt_out": {"Opted out": True, "Active": False},
           "shared_care_consent": {"C": "granted", "W": "withdrawn", "R": "refused"}}


def test_configured_spellings_map_alongside_the_built_in_ones(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, PEOPLE, MAPPING))
    result = ingest_source(config.sources[0], tmp_path / "out", config.reference_date)
    records = pl.read_parquet(result.folder / "standardised.parquet").sort("record_id")
    assert records["ndop_opt_out"].to_list() == [True, False, None, True]
    assert records["shared_care_consent"].to_list() == ["granted", "withdrawn", "refused", "granted"]


def test_an_unmapped_code_is_an_error_naming_file_row_and_field(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, PEOPLE + "5,Maybe,C,\n", MAPPING))
    with pytest.raises(errors.InputFileError) as raised:
        ingest_source(config.sources[0], tmp_path / "out", config.reference_date)
    assert "people.csv, row 5, field 'ndop': unknown value 'Maybe'" in raised.value.message
    assert raised.value.exit_code == errors.EXIT_INPUT


@pytest.mark.parametrize(("mapping", "key"), [
    ({"ndop_opt_out": {"Opted out": "yes please"}}, "consent_values.ndop_opt_out.Opted out: must be true or false"),
    ({"shared_care_consent": {"C": "maybe"}}, "consent_values.shared_care_consent.C: must be granted"),
    ({"given_name": {"A": True}}, "consent_values.given_name: not a coded consent field"),
])
def test_bad_mappings_name_the_key(tmp_path: Path, mapping: dict, key: str) -> None:
    with pytest.raises(errors.ConfigError, match=key.replace(".", r"\.")):
        load_config(_config(tmp_path, PEOPLE, mapping))
