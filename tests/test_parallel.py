"""Sources in worker processes give the same files as sources in turn; their logs and errors reach this process."""

from __future__ import annotations

import logging
import pickle
import shutil
from pathlib import Path

import pytest

from carelink import parallel
from carelink.config import load_config
from carelink.errors import CarelinkError, ConfigError, InputFileError
from carelink.pipeline import run_all
from carelink.synth import generate_partnership
from carelink.tables import file_sha256
from carelink.workspace import Workspace


def _checksums(run_folder: Path, stage: str) -> dict[str, str]:
    return {str(p.relative_to(run_folder)): file_sha256(p) for p in sorted((run_folder / stage).rglob("*.parquet"))}


def test_workers_write_the_same_files_and_forward_their_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    generate_partnership(tmp_path / "data", people=300, seed=4)
    config = load_config(tmp_path / "data" / "pipeline.yaml")
    serial = run_all(config, Workspace(tmp_path / "serial")).run.folder
    shutil.copytree(tmp_path / "serial" / "keys", tmp_path / "workers" / "keys")  # the same keys
    monkeypatch.setattr(parallel, "MIN_RECORDS_FOR_WORKERS", 0)
    monkeypatch.setenv("CARELINK_WORKERS", "2")
    with caplog.at_level(logging.INFO):
        in_workers = run_all(config, Workspace(tmp_path / "workers")).run.folder
    for stage in ("ingest", "pseudonymise"):
        assert _checksums(in_workers, stage) == _checksums(serial, stage)
    forwarded = [r.getMessage() for r in caplog.records if r.name.startswith("carelink.pseudonymise")]
    assert len([m for m in forwarded if "leak scan passed" in m]) == len(config.sources)


def test_an_error_in_a_worker_is_raised_here_with_its_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generate_partnership(tmp_path / "data", people=50, seed=4)
    config = load_config(tmp_path / "data" / "pipeline.yaml")
    broken = config.sources[1].table.path
    broken.write_bytes(b"\xff\xfe" + broken.read_bytes()[:10])  # not what the config declares
    monkeypatch.setattr(parallel, "MIN_RECORDS_FOR_WORKERS", 0)
    monkeypatch.setenv("CARELINK_WORKERS", "2")
    with pytest.raises(CarelinkError) as raised:
        run_all(config, Workspace(tmp_path / "workspace"))
    assert str(broken) in raised.value.message and raised.value.exit_code == InputFileError.exit_code


@pytest.mark.parametrize("error", [ConfigError("pipeline.yaml", "sources", "missing"),
                                   InputFileError("gp.csv", "bad date", row=3, field="dob")])
def test_errors_survive_pickling(error: CarelinkError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and copy.message == error.message and copy.exit_code == error.exit_code


def test_workers_are_limited_by_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARELINK_WORKERS", "4")
    monkeypatch.setattr(parallel, "_available_memory", lambda: 10_000)
    assert parallel.worker_count([5_000, 3_000, 2_000, 100], bytes_per_record=1) == 2  # 8,000 > 80 % of 10,000
    assert parallel.worker_count([1_000, 1_000, 1_000], bytes_per_record=1) == 3
    assert parallel.worker_count([9_000, 10], bytes_per_record=1) == 1
    monkeypatch.setattr(parallel, "_available_memory", lambda: None)
    assert parallel.worker_count([9_000, 10], bytes_per_record=1) == 2
