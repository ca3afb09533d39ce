"""The command line: every command runs through CliRunner; errors are one line with their exit code."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from carelink import errors
from carelink.cli import main


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    result = CliRunner().invoke(main, ["synth", "--people", "300", "--seed", "5", "--out", str(root / "data")])
    assert result.exit_code == 0, result.output
    assert "records of 300 people" in result.output
    return root


def test_run_prints_summary_and_evaluate_scores(demo: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["run", str(demo / "data" / "pipeline.yaml"), "--workspace", str(demo / "ws"),
                                  "--truth", str(demo / "data" / "truth.csv")])
    assert result.exit_code == 0, result.output
    for text in ("people found", "people by number of sources", "quarantined", "F1"):
        assert text in result.output
    scores = runner.invoke(main, ["evaluate", "--workspace", str(demo / "ws"), "--truth", str(demo / "data" / "truth.csv"),
                                  "--json"])
    assert scores.exit_code == 0, scores.output
    figures = json.loads(scores.output)
    assert figures["f1"] >= 0.9
    text = runner.invoke(main, ["evaluate", "--workspace", str(demo / "ws"), "--truth", str(demo / "data" / "truth.csv")])
    assert "errors by case" in text.output and "pairwise precision among people with a twin record" in text.output
    assert set(figures["errors_by_case"]["(all)"]) == {"false_links", "missed_links"}
    assert figures["errors_by_case"]["(all)"]["missed_links"] == figures["missed_links"]
    assert "cluster level" in text.output and "across thresholds" in text.output
    assert 0.9 <= figures["cluster_level"]["f1"] <= 1
    assert [row["threshold"] for row in figures["across_thresholds"]] == [0.5, 0.8, 0.9, 0.95, 0.99, 0.999]
    truth = pl.read_csv(demo / "data" / "truth.csv", infer_schema=False)
    pairs = truth.join(truth, on="entity_id", suffix="_r").filter(pl.col("record_id") < pl.col("record_id_r")).head(20)
    strangers = truth.head(10).with_columns(truth.tail(10)["source"].alias("source_r"),
                                            truth.tail(10)["record_id"].alias("record_id_r"))
    labels = pl.concat([
        pairs.select((pl.col("source") + ":" + pl.col("record_id")).alias("record_l"),
                     (pl.col("source_r") + ":" + pl.col("record_id_r")).alias("record_r"), pl.lit("1").alias("match")),
        strangers.select((pl.col("source") + ":" + pl.col("record_id")).alias("record_l"),
                         (pl.col("source_r") + ":" + pl.col("record_id_r")).alias("record_r"), pl.lit("no").alias("match")),
    ])
    labels.write_csv(demo / "labels.csv")
    labelled = runner.invoke(main, ["evaluate", "--workspace", str(demo / "ws"), "--labels", str(demo / "labels.csv"),
                                    "--json"])
    assert labelled.exit_code == 0, labelled.output
    on_labels = json.loads(labelled.output)
    assert on_labels["pairs_scored"] == 30 and on_labels["precision"] >= 0.9 and on_labels["recall"] >= 0.9
    history = runner.invoke(main, ["history", "P000000001", "--workspace", str(demo / "ws")])
    assert history.exit_code == 0 and "created      P000000001" in history.output
    unknown = runner.invoke(main, ["history", "P999999999", "--workspace", str(demo / "ws")])
    assert unknown.exit_code == errors.EXIT_USAGE
    run_folder = next((demo / "ws" / "runs").iterdir())
    edge = pl.read_parquet(run_folder / "link" / "edges.parquet").sort("match_weight").row(0, named=True)
    explained = runner.invoke(main, ["explain", edge["record_token_l"], edge["record_token_r"], "--workspace",
                                     str(demo / "ws"), "--json"])
    assert explained.exit_code == 0, explained.output
    parts = json.loads(explained.output)
    assert parts["match_weight"] == pytest.approx(edge["match_weight"], abs=1e-6)
    total = parts["prior_weight"] + sum((c["match_weight"] or 0) + (c["term_frequency_adjustment"] or 0)
                                        for c in parts["comparisons"])
    assert total == pytest.approx(parts["match_weight"], abs=1e-6)
    person = runner.invoke(main, ["explain", "--person", "P000000001", "--workspace", str(demo / "ws")])
    assert person.exit_code == 0 and person.output.startswith("P000000001:")
    gate = runner.invoke(main, ["report", "--workspace", str(demo / "ws"), "--check", "--max-below-k", "1"])
    assert gate.exit_code == 0, gate.output
    assert "leak scan passed" in gate.output and "check passed" in gate.output
    strict = runner.invoke(main, ["report", "--workspace", str(demo / "ws"), "--check", "--max-reidentified", "0"])
    assert strict.exit_code == errors.EXIT_DATA_QUALITY
    assert "frequency attack would re-identify" in strict.output
    page = next((demo / "ws" / "runs").glob("*/pseudonymise/gp/pseudonymisation_report.html")).read_text()
    assert "Leak scan passed" in page and "Frequency-attack self-test" in page
    status = runner.invoke(main, ["status", "--workspace", str(demo / "ws")])
    assert status.exit_code == 0 and "succeeded" in status.output and status.output.startswith("*")


def test_single_stage_commands_continue_one_run(demo: Path) -> None:
    runner = CliRunner()
    config = str(demo / "data" / "pipeline.yaml")
    workspace = str(demo / "stages")
    outputs = []
    for stage in ("ingest", "pseudonymise", "link", "export"):
        result = runner.invoke(main, [stage, config, "--workspace", workspace])
        assert result.exit_code == 0, result.output
        outputs.append(result.output.split("(run ")[1])
    assert len(set(outputs)) == 1  # all four stages worked on the same run
    trained = runner.invoke(main, ["train", config, "--workspace", workspace])
    assert trained.exit_code == 0, trained.output
    assert "model written to" in trained.output
    relinked = runner.invoke(main, ["link", config, "--workspace", workspace])
    assert relinked.exit_code == 0, relinked.output
    assert "model loaded" in relinked.output
    run_id = outputs[0].strip(")\n")
    assert (demo / "stages" / "current").read_text().strip() == run_id
    export_dir = next((demo / "stages" / "runs" / run_id / "export").glob("*/*"))
    verified = runner.invoke(main, ["verify", str(export_dir)])
    assert verified.exit_code == 0, verified.output


def test_verify_detects_a_tampered_file(demo: Path) -> None:
    runner = CliRunner()
    runner.invoke(main, ["run", str(demo / "data" / "pipeline.yaml"), "--workspace", str(demo / "tamper")])
    export_dir = next((demo / "tamper" / "runs").glob("*/export/*/*"))
    person = export_dir / "person.parquet"
    person.write_bytes(person.read_bytes() + b"x")
    result = runner.invoke(main, ["verify", str(export_dir)])
    assert result.exit_code == errors.EXIT_INTEGRITY
    assert "checksum" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["run", "missing.yaml", "--workspace", "ws"], errors.EXIT_USAGE, "config file not found"),
        (["evaluate", "--workspace", "nowhere", "--truth", "t.csv"], errors.EXIT_USAGE, "no run"),
        (["keys", "show", "absent.key"], errors.EXIT_KEY, "absent.key"),
    ],
)
def test_errors_are_one_line_with_exit_code(tmp_path: Path, args: list[str], code: int, text: str) -> None:
    os.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, result.output
    assert text in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_bad_config_names_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id\n1\n")
    config = tmp_path / "pipeline.yaml"
    config.write_text("partnership: x\nsources:\n  - name: a\n    kind: hospital\n    path: a.csv\n"
                      "    columns: {record_id: id}\n")
    result = CliRunner().invoke(main, ["run", str(config), "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == errors.EXIT_USAGE
    assert "pipeline.yaml: sources[0].kind" in result.output


def test_keys_new_show_and_wrong_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setenv("CARELINK_PASSPHRASE", "correct horse battery staple")
    key_path = tmp_path / "linkage.key"
    created = runner.invoke(main, ["keys", "new", str(key_path)])
    assert created.exit_code == 0, created.output
    assert oct(key_path.stat().st_mode & 0o777) == "0o600"
    shown = runner.invoke(main, ["keys", "show", str(key_path)])
    assert "key_id: clk-" in shown.output
    monkeypatch.setenv("CARELINK_PASSPHRASE", "Zq9-not-the-passphrase")
    rotated = runner.invoke(main, ["keys", "rotate", str(key_path)])
    assert rotated.exit_code == errors.EXIT_KEY
    assert "wrong passphrase" in rotated.output
    assert "Zq9" not in rotated.output and "correct horse" not in rotated.output


def test_locked_workspace_is_refused(demo: Path) -> None:
    workspace = demo / "locked"
    workspace.mkdir()
    (workspace / ".lock").write_text(json.dumps({"pid": 1, "host": "another-host", "since": "2026-11-23T00:00:00"}))
    result = CliRunner().invoke(main, ["run", str(demo / "data" / "pipeline.yaml"), "--workspace", str(workspace)])
    assert result.exit_code == errors.EXIT_LOCKED
    assert "locked by process 1 on another-host" in result.output


def test_every_command_has_help_with_an_example() -> None:
    runner = CliRunner()
    commands = ["synth", "run", "ingest", "pseudonymise", "link", "export", "evaluate", "verify", "status",
                "history", "train", "explain", "keys new", "keys show", "keys rotate"]
    for command in commands:
        result = runner.invoke(main, [*command.split(), "--help"])
        assert result.exit_code == 0, command
        assert "Example:" in result.output, command
