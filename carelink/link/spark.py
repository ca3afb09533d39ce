"""The Splink Spark backend, for partnerships that outgrow one machine (``engine: spark`` / ``--engine spark``).

Same model, same comparisons (the SQL has a Spark dialect), same Parquet in and out; only the pairwise scoring runs
on Spark. Locally it starts ``local[2]``; on a cluster, ``spark-submit`` (or Databricks) provides the session and
``CARELINK_SPARK_MASTER`` is left unset. pyspark is an optional extra: ``pip install carelink[spark]``.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from carelink.errors import ConfigError


def spark_session() -> Any:
    """The active Spark session, or a local one tuned for a small machine."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError(None, "linkage.engine", "spark needs pyspark: pip install 'carelink[spark]'") from None
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    from splink.backends.spark import similarity_jar_location

    builder = (
        SparkSession.builder.appName("carelink")
        .master(os.environ.get("CARELINK_SPARK_MASTER", "local[2]"))
        .config("spark.jars", similarity_jar_location())
        .config("spark.sql.shuffle.partitions", os.environ.get("CARELINK_SPARK_PARTITIONS", "8"))
        .config("spark.default.parallelism", "8")
        .config("spark.driver.memory", os.environ.get("CARELINK_SPARK_DRIVER_MEMORY", "4g"))
        .config("spark.ui.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
    )
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    session.sparkContext.setCheckpointDir(tempfile.mkdtemp(prefix="carelink-spark-"))
    return session


def spark_api() -> Any:
    """A Splink ``SparkAPI`` over the session."""
    from splink import SparkAPI

    return SparkAPI(spark_session=spark_session(), break_lineage_method="parquet")
