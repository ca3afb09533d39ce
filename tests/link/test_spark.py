"""The Spark backend links with the same model and gives the same people as DuckDB."""

from __future__ import annotations

import shutil

import polars as pl
import pytest

pytest.importorskip("pyspark")

from carelink.config import load_config  # noqa: E402
from carelink.link.stage import link  # noqa: E402
from carelink.pipeline import run_all  # noqa: E402
from carelink.synth import generate_partnership  # noqa: E402
from carelink.workspace import Workspace  # noqa: E402


@pytest.mark.spark
@pytest.mark.slow
def test_spark_and_duckdb_assign_the_same_people(tmp_path) -> None:
    generate_partnership(tmp_path / "data", people=300, seed=9)
    config = load_config(tmp_path / "data" / "pipeline.yaml")
    workspace = Workspace(tmp_path / "ws")
    duck = run_all(config, workspace)  # trains the model on DuckDB
    folders = [duck.run.pseudonymise / s.name for s in config.sources]
    spark_config = type(config.linkage)(**{**config.linkage.__dict__, "engine": "spark"})
    out = tmp_path / "spark_link"
    result = link(folders, out, workspace.state, spark_config, run_id="spark", incremental=False)
    assert not result.trained  # the DuckDB-trained model was loaded and scored on Spark
    ours = pl.read_parquet(duck.run.link / "person_map.parquet").select("record_token", "person_id")
    theirs = pl.read_parquet(out / "person_map.parquet").select("record_token", "person_id")
    same = ours.join(theirs, on="record_token", suffix="_spark").filter(pl.col("person_id") == pl.col("person_id_spark"))
    assert same.height / ours.height >= 0.999
    edges_duck = pl.read_parquet(duck.run.link / "edges.parquet").height
    edges_spark = pl.read_parquet(out / "edges.parquet").height
    assert edges_spark == edges_duck
    shutil.rmtree(out)
