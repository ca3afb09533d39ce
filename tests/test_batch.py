"""Nightly operation: a failed or killed run never replaces the last good output; the next run succeeds."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from carelink import pipeline
from carelink.config import load_config
from carelink.pipeline import run_all
from carelink.synth import generate_partnership
from carelink.workspace import Workspace


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("batch")
    generate_partnership(root / "data", people=400, seed=21)
    return root / "data" / "pipeline.yaml"


def _checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("failing_stage", pipeline.STAGES)
def test_a_failure_in_any_stage_leaves_the_current_run_untouched(data: Path, tmp_path: Path, failing_stage: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(data)
    workspace = Workspace(tmp_path / "ws")
    good = run_all(config, workspace)
    before = _checksums(good.run.folder)
    real_run_stage = pipeline.run_stage

    def crashing(stage: str, *args, **kwargs) -> None:
        if stage == failing_stage:
            raise KeyboardInterrupt(f"simulated crash in {stage}")
        real_run_stage(stage, *args, **kwargs)

    monkeypatch.setattr(pipeline, "run_stage", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_all(config, workspace)
    monkeypatch.setattr(pipeline, "run_stage", real_run_stage)
    assert workspace.current_run().run_id == good.run.run_id
    assert _checksums(good.run.folder) == before
    failed = workspace.latest_run()
    assert failed.run_id != good.run.run_id
    assert json.loads((failed.folder / "manifest.json").read_text())["status"] == "failed"
    assert not (workspace.root / ".lock").exists()
    after = run_all(config, workspace)
    assert workspace.current_run().run_id == after.run.run_id


def test_a_killed_run_leaves_the_last_good_output_and_the_next_run_recovers(data: Path, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    command = [sys.executable, "-m", "carelink.cli", "run", str(data), "--workspace", str(workspace)]
    env = {**os.environ, "CARELINK_PASSPHRASE": "batch-test-passphrase"}
    subprocess.run(command, check=True, env=env, capture_output=True)
    good = Workspace(workspace).current_run()
    before = _checksums(good.folder)
    victim = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((workspace / "runs").iterdir())) < 2:
        time.sleep(0.05)
    time.sleep(0.3)  # the new run has started writing
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert Workspace(workspace).current_run().run_id == good.run_id
    assert _checksums(good.folder) == before
    assert (workspace / ".lock").exists()  # the killed run could not clean up: the next run must recover
    recovered = subprocess.run(command, env=env, capture_output=True, text=True)
    assert recovered.returncode == 0, recovered.stderr
    assert "stale lock" in recovered.stderr
    assert Workspace(workspace).current_run().run_id != good.run_id


def test_rerunning_the_same_inputs_gives_byte_identical_exports(data: Path, tmp_path: Path) -> None:
    config = load_config(data)
    workspace = Workspace(tmp_path / "ws")
    first, second = run_all(config, workspace), run_all(config, workspace)
    for old, new in zip(first.exports, second.exports, strict=True):
        old_files = {k: v for k, v in _checksums(old.folder).items() if k.endswith(".parquet")}
        assert old_files and old_files == {k: v for k, v in _checksums(new.folder).items() if k.endswith(".parquet")}
