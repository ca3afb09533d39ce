"""Tampering and secrets: altered deliveries are refused; logs never hold key material, passphrases or identifiers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from carelink import errors
from carelink.cli import main
from carelink.synth import generate_partnership

PASSPHRASE = "Tr0ub4dor&3-never-in-a-log"


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("integrity")
    generate_partnership(root / "data", people=300, seed=13)
    env = {**os.environ, "CARELINK_PASSPHRASE": PASSPHRASE}
    command = [sys.executable, "-m", "carelink.cli", "--verbose", "--json-logs", "run",
               str(root / "data" / "pipeline.yaml"), "--workspace", str(root / "ws"),
               "--truth", str(root / "data" / "truth.csv")]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return {"root": root, "stdout": completed.stdout, "stderr": completed.stderr}


def _identifiers(data: Path) -> set[str]:
    values: set[str] = set()
    gp = pl.read_csv(data / "gp.csv", infer_schema=False)
    values |= {v for v in gp["nhs_no"].drop_nulls().str.replace_all(r"\D", "").to_list() if len(v) == 10}
    values |= {v.upper() for v in gp["surname"].drop_nulls().to_list() if len(v) >= 7}
    values |= set(gp["patient_id"].drop_nulls().to_list())
    values |= set(gp["postcode"].drop_nulls().to_list())
    return values


def test_logs_hold_no_passphrase_key_material_or_identifier(logged_run: dict) -> None:
    logs = logged_run["stdout"] + logged_run["stderr"]
    lines = [line for line in logged_run["stderr"].splitlines() if line.strip()]
    assert lines and all(json.loads(line)["level"] for line in lines)  # JSON lines, one event each
    assert "link:" in logs and "ingest gp" in logs  # the verbose run did log its steps
    assert PASSPHRASE not in logs
    for key_file in (logged_run["root"] / "ws" / "keys").glob("*.key"):
        document = json.loads(key_file.read_text())
        for secret in (document["ciphertext"], document["nonce"], document["kdf"]["salt"]):
            assert secret not in logs
    generated = (logged_run["root"] / "ws" / "keys" / "passphrase")
    assert not generated.exists()  # the passphrase came from the environment
    leaked = {value for value in _identifiers(logged_run["root"] / "data") if value.upper() in logs.upper()}
    assert not leaked, sorted(leaked)[:5]


def test_an_altered_delivery_is_refused(logged_run: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARELINK_PASSPHRASE", PASSPHRASE)
    workspace = logged_run["root"] / "ws"
    run_folder = next(p for p in (workspace / "runs").iterdir() if p.is_dir())
    nodes = run_folder / "pseudonymise" / "voluntary" / "nodes.parquet"
    frame = pl.read_parquet(nodes)
    frame.with_columns(pl.col("age_band").reverse()).write_parquet(nodes)  # someone edits a delivered file
    result = CliRunner().invoke(main, ["link", str(logged_run["root"] / "data" / "pipeline.yaml"),
                                       "--workspace", str(workspace)])
    assert result.exit_code == errors.EXIT_INTEGRITY, result.output
    assert "voluntary/nodes.parquet: checksum does not match manifest.json" in result.output
    assert re.fullmatch(r"error: [^\n]+\n", result.output)
