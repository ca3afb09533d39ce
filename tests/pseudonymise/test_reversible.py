"""Reversible tokens: sealed with AES-SIV at the partner, opened only with the linkage key by `carelink reidentify`."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import yaml
from click.testing import CliRunner

from carelink import errors
from carelink.cli import main
from carelink.config import load_config
from carelink.keys import Key
from carelink.pipeline import run_all
from carelink.pseudonymise.reversible import seal, unseal
from carelink.synth import generate_partnership
from carelink.workspace import Workspace

KEY = Key.from_secret_for_tests("linkage", b"r" * 32)


def test_seal_is_deterministic_field_bound_and_reversible() -> None:
    values = pl.Series(["RX0001", None, "RX0001", "RX0002"])
    sealed = seal(values, KEY, "record_id")
    assert sealed[0] == sealed[2] and sealed[0] != sealed[3] and sealed[1] is None
    assert "RX0001" not in "".join(sealed.drop_nulls().to_list())
    assert unseal(sealed, KEY, "record_id").to_list() == values.to_list()
    with pytest.raises(errors.KeyFileError):
        unseal(sealed, KEY, "nhs_number")  # sealed as one field, cannot be opened as another
    with pytest.raises(errors.KeyFileError):
        unseal(sealed, Key.from_secret_for_tests("linkage", b"s" * 32), "record_id")


@pytest.fixture(scope="module")
def sealed_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("reversible")
    generate_partnership(root / "data", people=300, seed=8)
    config_path = root / "data" / "pipeline.yaml"
    config = yaml.safe_load(config_path.read_text())
    acute = next(s for s in config["sources"] if s["name"] == "acute")
    acute["reversible"] = ["record_id"]
    config_path.write_text(yaml.safe_dump(config))
    workspace = Workspace(root / "ws")
    report = run_all(load_config(config_path), workspace)
    return {"root": root, "report": report, "workspace": workspace}


def test_direct_care_record_map_carries_sealed_ids_and_reidentify_opens_them(sealed_run: dict) -> None:
    report, workspace = sealed_run["report"], sealed_run["workspace"]
    direct = next(e.folder for e in report.exports if e.purpose == "direct_care")
    record_map = pl.read_parquet(direct / "record_map.parquet")
    acute_rows = record_map.filter(pl.col("source") == "acute")
    assert acute_rows["record_id_sealed"].is_not_null().all()
    assert record_map.filter(pl.col("source") != "acute")["record_id_sealed"].is_null().all()
    reid = pl.read_parquet(report.run.pseudonymise / "acute" / "reid_map.parquet")
    assert not set(reid["record_id"]) & set(acute_rows["record_id_sealed"])
    out = sealed_run["root"] / "opened.parquet"
    result = CliRunner().invoke(main, ["reidentify", str(direct / "record_map.parquet"), "--key",
                                       str(workspace.keys / "linkage.key"), "--passphrase-file",
                                       str(workspace.keys / "passphrase"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    opened = pl.read_parquet(out).filter(pl.col("source") == "acute").join(reid, on="record_token")
    assert opened.height == acute_rows.height
    assert (opened["record_id"] == opened["record_id_right"]).all()
    report_json = (report.run.pseudonymise / "acute" / "pseudonymisation_report.json").read_text()
    assert "reversible token" in report_json and "AES-SIV" in report_json


def test_reidentify_refuses_another_key(sealed_run: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARELINK_PASSPHRASE", "another passphrase entirely")
    other = tmp_path / "other.key"
    assert CliRunner().invoke(main, ["keys", "new", str(other)]).exit_code == 0
    direct = next(e.folder for e in sealed_run["report"].exports if e.purpose == "direct_care")
    result = CliRunner().invoke(main, ["reidentify", str(direct / "record_map.parquet"), "--key", str(other),
                                       "--out", str(tmp_path / "x.parquet")])
    assert result.exit_code == errors.EXIT_KEY
    assert "was not sealed with key" in result.output
    assert not (tmp_path / "x.parquet").exists()


def test_reversible_field_must_be_mapped(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id\n1\n")
    (tmp_path / "p.yaml").write_text("partnership: x\nsources:\n  - name: a\n    path: a.csv\n"
                                     "    columns: {record_id: id}\n    reversible: [nhs_number]\n")
    with pytest.raises(errors.ConfigError, match=r"sources\[0\]\.reversible: nhs_number is not mapped"):
        load_config(tmp_path / "p.yaml")
