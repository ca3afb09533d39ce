"""Tests for carelink.config: a valid pipeline YAML loads; every error names the file and the key at fault."""

from __future__ import annotations

import datetime as dt
import os
import textwrap
from pathlib import Path

import pytest
import yaml

from carelink.config import ExportConfig, LinkageConfig, TableSpec, load_config
from carelink.errors import EXIT_USAGE, ConfigError


def _source(**overrides) -> dict:
    source = {
        "name": "gp",
        "kind": "health",
        "path": "gp.csv",
        "date_format": ["%d/%m/%Y", "%Y-%m-%d"],
        "columns": {"record_id": "id", "nhs_number": "nhs", "given_name": "first", "family_name": "last"},
    }
    source.update(overrides)
    return source


def _config(**overrides) -> dict:
    config = {"partnership": "leeds", "reference_date": "2026-11-01", "sources": [_source()]}
    config.update(overrides)
    return config


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "gp.csv").write_text("id,nhs,first,last\n", encoding="utf-8")
    (folder / "contacts.csv").write_text("id,when,what\n", encoding="utf-8")
    return folder


def write(folder: Path, data: dict | str) -> Path:
    path = folder / "pipeline.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def load_error(folder: Path, data: dict | str) -> str:
    path = write(folder, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.exit_code == EXIT_USAGE
    message = str(info.value)
    assert message.startswith(str(path.resolve())), message  # every error names the file
    return message


def test_valid_config_loads(folder: Path) -> None:
    data = _config(
        sources=[
            _source(activity={"path": "contacts.csv", "columns": {"record_id": "id", "activity_date": "when",
                                                                  "activity_type": "what"}}),
            {"name": "council_asc", "kind": "social_care", "path": "gp.csv", "encoding": "latin-1", "delimiter": ";",
             "columns": {"record_id": "id"}},
        ],
        exports=[{"recipient": "public-health", "purpose": "research"}, {"recipient": "ics_team"}],
        linkage={"threshold": 0.9},
    )
    config = load_config(write(folder, data))
    assert config.partnership == "leeds"
    assert config.reference_date == dt.date(2026, 11, 1)
    assert config.path == (folder / "pipeline.yaml").resolve()
    assert config.folder == folder.resolve()
    gp, council = config.sources
    assert (gp.name, gp.kind) == ("gp", "health")
    assert gp.table == TableSpec(
        path=(folder / "gp.csv").resolve(), format="csv", encoding="utf-8", delimiter=",",
        date_formats=("%d/%m/%Y", "%Y-%m-%d"),
        columns={"record_id": "id", "nhs_number": "nhs", "given_name": "first", "family_name": "last"},
    )
    assert gp.activity is not None
    assert gp.activity.path == (folder / "contacts.csv").resolve()
    assert gp.activity.date_formats == ("%d/%m/%Y", "%Y-%m-%d")  # inherited from the source
    assert (council.kind, council.table.encoding, council.table.delimiter) == ("social_care", "latin-1", ";")
    assert council.table.date_formats == ("%Y-%m-%d",)
    assert council.activity is None
    assert config.exports == (ExportConfig("public-health", "research"), ExportConfig("ics_team", "planning"))
    assert config.linkage == LinkageConfig(threshold=0.9)
    assert config.source("council_asc") is council
    assert len(config.digest()) == 64
    assert config.digest() == load_config(folder / "pipeline.yaml").digest()


def test_unquoted_yaml_date_and_single_date_format_string(folder: Path) -> None:
    text = textwrap.dedent("""\
        partnership: leeds
        reference_date: 2026-11-01
        sources:
          - name: gp
            path: gp.csv
            date_format: "%d/%m/%Y"
            columns: {record_id: id}
        """)
    config = load_config(write(folder, text))
    assert config.reference_date == dt.date(2026, 11, 1)
    assert config.sources[0].table.date_formats == ("%d/%m/%Y",)
    assert config.sources[0].kind == "health"  # default


def test_unknown_source_name_lookup_names_the_key(folder: Path) -> None:
    config = load_config(write(folder, _config()))
    with pytest.raises(ConfigError, match=r"sources: no source named 'council'"):
        config.source("council")


def test_config_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found") as info:
        load_config(tmp_path / "nope.yaml")
    assert str(tmp_path / "nope.yaml") in str(info.value)


def test_invalid_yaml(folder: Path) -> None:
    assert "not valid YAML" in load_error(folder, "sources: [unclosed\n")


@pytest.mark.parametrize("sources", [None, [], "gp.csv", {"name": "gp"}])
def test_missing_or_empty_sources(folder: Path, sources) -> None:
    data = _config()
    if sources is None:
        del data["sources"]
    else:
        data["sources"] = sources
    message = load_error(folder, data)
    assert ": sources: must be a non-empty list" in message


def test_unknown_top_level_key(folder: Path) -> None:
    message = load_error(folder, _config(partnershp="typo"))
    assert ": partnershp: unknown key" in message


def test_unknown_key_in_a_source(folder: Path) -> None:
    data = _config(sources=[_source(colums={"record_id": "id"})])
    assert ": sources[0].colums: unknown key" in load_error(folder, data)


@pytest.mark.parametrize("section", ["keys", "linkage"])
def test_unknown_key_in_a_section(folder: Path, section: str) -> None:
    assert f": {section}.bogus: unknown key" in load_error(folder, _config(**{section: {"bogus": 1}}))


def test_unknown_key_in_an_export(folder: Path) -> None:
    data = _config(exports=[{"recipient": "ph", "purpose": "planning", "format": "csv"}])
    assert ": exports[0].format: unknown key" in load_error(folder, data)


def test_bad_kind(folder: Path) -> None:
    message = load_error(folder, _config(sources=[_source(kind="hospital")]))
    assert ": sources[0].kind: 'hospital' is not one of health, social_care, voluntary" in message


def test_bad_kind_in_the_second_source_names_its_index(folder: Path) -> None:
    data = _config(sources=[_source(), _source(name="la", kind="council")])
    assert ": sources[1].kind:" in load_error(folder, data)


def test_path_outside_the_config_folder(folder: Path) -> None:
    (folder.parent / "x.csv").write_text("id\n", encoding="utf-8")  # it exists: the refusal is about where it is
    message = load_error(folder, _config(sources=[_source(path="../x.csv")]))
    assert ": sources[0].path: path '../x.csv' points outside the config's folder" in message


def test_absolute_path_outside_the_config_folder(folder: Path) -> None:
    message = load_error(folder, _config(sources=[_source(path="/etc/passwd")]))
    assert ": sources[0].path: path '/etc/passwd' points outside" in message


def test_symlink_escaping_the_config_folder(folder: Path) -> None:
    outside = folder.parent / "other_partner.csv"
    outside.write_text("id\n", encoding="utf-8")
    os.symlink(outside, folder / "innocent.csv")
    message = load_error(folder, _config(sources=[_source(path="innocent.csv")]))
    assert ": sources[0].path: path 'innocent.csv' points outside" in message


def test_path_in_a_subfolder_is_allowed(folder: Path) -> None:
    (folder / "extracts").mkdir()
    (folder / "extracts" / "gp.csv").write_text("id\n", encoding="utf-8")
    config = load_config(write(folder, _config(sources=[_source(path="extracts/../extracts/gp.csv")])))
    assert config.sources[0].table.path == (folder / "extracts" / "gp.csv").resolve()


def test_activity_path_outside_the_config_folder(folder: Path) -> None:
    data = _config(sources=[_source(activity={
        "path": "../contacts.csv", "columns": {"record_id": "id", "activity_date": "when", "activity_type": "what"}})])
    assert ": sources[0].activity.path: path '../contacts.csv' points outside" in load_error(folder, data)


def test_missing_file(folder: Path) -> None:
    message = load_error(folder, _config(sources=[_source(path="missing.csv")]))
    assert ": sources[0].path: file 'missing.csv' does not exist" in message


def test_missing_path(folder: Path) -> None:
    source = _source()
    del source["path"]
    assert ": sources[0].path: must be a path" in load_error(folder, _config(sources=[source]))


def test_missing_key_file(folder: Path) -> None:
    assert ": keys.linkage: file 'linkage.key' does not exist" in load_error(folder, _config(keys={"linkage": "linkage.key"}))


@pytest.mark.parametrize("date_format", ["dd/mm/yyyy", [], ["%d/%m/%Y", 7], "", 5])
def test_bad_date_format(folder: Path, date_format) -> None:
    message = load_error(folder, _config(sources=[_source(date_format=date_format)]))
    assert ": sources[0].date_format: must be a strftime format" in message


def test_bad_reference_date(folder: Path) -> None:
    assert ": reference_date: must be a date such as 2026-11-01" in load_error(folder, _config(reference_date="01/11/2026"))


@pytest.mark.parametrize(
    ("source", "key", "problem"),
    [
        (_source(name="gp surgery"), "sources[0].name", "may hold only letters"),
        (_source(format="xlsx"), "sources[0].format", "'xlsx' is not one of csv, parquet"),
        (_source(encoding="klingon"), "sources[0].encoding", "unknown encoding 'klingon'"),
        (_source(delimiter=";;"), "sources[0].delimiter", "must be a single character"),
        (_source(columns={"record_id": "id", "favourite_colour": "c"}), "sources[0].columns.favourite_colour",
         "not a canonical field"),
        (_source(columns={"nhs_number": "nhs"}), "sources[0].columns.record_id", "is required"),
        (_source(columns={"record_id": "id", "given_name": "id"}), "sources[0].columns",
         "two canonical fields map to the same column"),
        (_source(columns={"record_id": ""}), "sources[0].columns.record_id", "must name a column"),
        (_source(columns=["record_id"]), "sources[0].columns", "expected a mapping"),
        (_source(activity={"path": "contacts.csv", "columns": {"record_id": "id"}}),
         "sources[0].activity.columns.activity_date", "is required"),
    ],
)
def test_source_errors_name_the_key(folder: Path, source: dict, key: str, problem: str) -> None:
    message = load_error(folder, _config(sources=[source]))
    assert f": {key}: {problem}" in message


def test_two_sources_with_one_name(folder: Path) -> None:
    assert ": sources: two sources share a name" in load_error(folder, _config(sources=[_source(), _source()]))


@pytest.mark.parametrize(
    ("section", "key", "problem"),
    [
        ({"linkage": {"threshold": 1.5}}, "linkage.threshold", "must be a number from 0.5 to 0.999999"),
        ({"linkage": {"threshold": True}}, "linkage.threshold", "must be a number"),
        ({"linkage": {"engine": "pandas"}}, "linkage.engine", "'pandas' is not one of duckdb"),
        ({"exports": [{"recipient": "ph team"}]}, "exports[0].recipient", "may hold only letters"),
        ({"exports": [{"recipient": "ph", "purpose": "marketing"}]}, "exports[0].purpose", "'marketing' is not one of"),
        ({"partnership": ""}, "partnership", "must be a non-empty string"),
    ],
)
def test_other_errors_name_the_key(folder: Path, section: dict, key: str, problem: str) -> None:
    message = load_error(folder, _config(**section))
    assert f": {key}: {problem}" in message


def test_upper_case_extension_defaults_to_its_format(folder: Path) -> None:
    # Found while writing these tests: 'GP_EXTRACT.CSV' failed with "format: 'CSV' is not one of csv, parquet".
    (folder / "GP_EXTRACT.CSV").write_text("id\n", encoding="utf-8")
    config = load_config(write(folder, _config(sources=[_source(path="GP_EXTRACT.CSV")])))
    assert config.sources[0].table.format == "csv"


@pytest.mark.parametrize("misplaced", ["kind", "name", "activity"])
def test_unknown_key_in_an_activity_block(folder: Path, misplaced: str) -> None:
    activity = {"path": "contacts.csv", "columns": {"record_id": "id", "activity_date": "when", "activity_type": "what"},
                misplaced: "social_care"}
    message = load_error(folder, _config(sources=[_source(activity=activity)]))
    assert f": sources[0].activity.{misplaced}: unknown key" in message


def test_two_exports_for_one_recipient_and_purpose(folder: Path) -> None:
    data = _config(exports=[{"recipient": "ph", "purpose": "planning"}, {"recipient": "ph"}])
    assert ": exports: two exports share a recipient and purpose" in load_error(folder, data)


def test_legal_basis_only_where_the_purpose_accepts_one(folder: Path) -> None:
    config = load_config(write(folder, _config(exports=[{"recipient": "uni", "purpose": "research",
                                                         "legal_basis": "CAG 21/CAG/0001"}])))
    assert config.exports[0].legal_basis == "CAG 21/CAG/0001"
    data = _config(exports=[{"recipient": "ph", "purpose": "planning", "legal_basis": "CAG 21/CAG/0001"}])
    assert ": exports[0].legal_basis: purpose 'planning' does not accept a legal basis" in load_error(folder, data)


def test_bloom_hardening_is_read_and_checked(folder: Path) -> None:
    assert load_config(write(folder, _config(linkage={"bloom_hardening": "salted"}))).linkage.bloom_hardening == "salted"
    assert load_config(write(folder, _config())).linkage.bloom_hardening == "none"
    message = load_error(folder, _config(linkage={"bloom_hardening": "scrambled"}))
    assert ": linkage.bloom_hardening: 'scrambled' is not one of none, salted, balanced, xor_fold" in message
