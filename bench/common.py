"""Helpers shared by the benchmarks: peak-memory probes, a measured carelink run, and scoring of assignments.

Peak memory is the process's resident-set high-water mark (``VmHWM``), reset before each stage by writing ``5`` to
``/proc/self/clear_refs`` (Linux); where that is not possible it falls back to ``resource.getrusage``, whose peak
covers the whole process life so far. DuckDB runs in-process, so its memory is included.

The high-water mark counts pages the allocator has freed but the kernel has not yet taken back (``LazyFree``:
polars' allocator keeps freed pages for up to 10 s, see ``carelink.ALLOCATOR_SETTINGS``). ``InUsePeak`` samples
``Rss - LazyFree`` from ``/proc/self/smaps_rollup`` whenever resident memory is above the peak so far, at most a
tenth of the time: the memory a stage could not have done without.
"""

from __future__ import annotations

import resource
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import carelink  # noqa: E402, F401  (before polars: carelink.ALLOCATOR_SETTINGS apply only then)

# isort: split
import polars as pl  # noqa: E402

from carelink import pipeline  # noqa: E402
from carelink.config import load_config  # noqa: E402
from carelink.link.evaluate import (  # noqa: E402
    assignment,
    errors_by_case,
    pairwise_scores,
    precision_among,
    read_truth,
)
from carelink.workspace import Workspace  # noqa: E402

CASE_LABELS = ("twin", "jr_sr", "care_home")


def reset_peak_rss() -> bool:
    """Reset the process's peak-RSS counter; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory (MB) since the last reset (or since the process started)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_peak_mb() -> float:
    """Peak RSS (MB) of the largest finished child process so far (Linux reports the largest, not the sum)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def rss_mb() -> float:
    """Current resident memory (MB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class InUsePeak:
    """The peak of resident memory less lazily freed pages (MB), sampled on a thread while the ``with`` block runs
    (``peak_mb`` stays 0 where ``/proc/self/smaps_rollup`` cannot be read).

    Reading ``smaps_rollup`` walks the whole address space: 50 ms at 2.6 GB resident, 150 ms at 10.6 GB. Read ten
    times a second it kept most of a core busy and slowed the stages it measured (2 cores). So the cheap ``VmRSS``
    is read every ``interval`` seconds, and ``smaps_rollup`` only when resident memory is above the in-use peak so
    far (below it, memory in use cannot be either), and then no more than ``duty`` of the time.
    """

    def __init__(self, interval: float = 0.1, duty: float = 0.1) -> None:
        self.interval = interval
        self.duty = duty
        self.peak_mb = 0.0
        self.reads = 0  # of smaps_rollup
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="in-use-peak", daemon=True)

    def __enter__(self) -> InUsePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        next_read = 0.0
        while True:
            if rss_mb() > self.peak_mb and time.perf_counter() >= next_read:
                started = time.perf_counter()
                try:
                    fields = dict(line.split(":", 1) for line in Path("/proc/self/smaps_rollup").read_text()
                                  .splitlines() if line.startswith(("Rss:", "LazyFree:")))
                except OSError:
                    return
                took = time.perf_counter() - started
                next_read = started + took / self.duty
                self.reads += 1
                in_use = (int(fields["Rss"].split()[0]) - int(fields.get("LazyFree", "0 kB").split()[0])) / 1024
                self.peak_mb = max(self.peak_mb, in_use)
            if self._done.wait(self.interval):
                return


@dataclass
class CarelinkRun:
    """A carelink run with per-stage seconds and peak memory."""

    report: pipeline.RunReport
    seconds: float
    peak_mb: dict[str, float] = field(default_factory=dict)
    start_mb: dict[str, float] = field(default_factory=dict)
    #: Peak RSS of the largest worker process a stage started (ingest and pseudonymise run sources in workers).
    worker_peak_mb: dict[str, float] = field(default_factory=dict)
    #: Peak of RSS less lazily freed pages (``InUsePeak``), per stage.
    in_use_peak_mb: dict[str, float] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.report.run.folder


def run_carelink(config_path: Path, workspace: Path) -> CarelinkRun:
    """``carelink.pipeline.run_all`` with the RSS at the start and the peak RSS of each stage recorded (by wrapping
    ``pipeline.run_stage``)."""
    peaks: dict[str, float] = {}
    starts: dict[str, float] = {}
    workers: dict[str, float] = {}
    in_use: dict[str, float] = {}
    original = pipeline.run_stage

    def run_stage(stage: str, *args: Any, **kwargs: Any) -> None:
        starts[stage] = rss_mb()
        reset_peak_rss()
        before = worker_peak_mb()
        sampler = InUsePeak()
        try:
            with sampler:
                original(stage, *args, **kwargs)
        finally:
            peaks[stage] = peak_rss_mb()
            in_use[stage] = sampler.peak_mb
            if worker_peak_mb() > before:
                workers[stage] = worker_peak_mb()

    pipeline.run_stage = run_stage
    try:
        started = time.perf_counter()
        report = pipeline.run_all(load_config(config_path), Workspace(workspace))
        seconds = time.perf_counter() - started
    finally:
        pipeline.run_stage = original
    return CarelinkRun(report, seconds, peaks, starts, workers, in_use)


def read_standardised(run_folder: Path) -> pl.DataFrame:
    """Every source's standardised records (plaintext, after carelink's ingest) of one run."""
    paths = sorted((run_folder / "ingest").glob("*/standardised.parquet"))
    return pl.concat([pl.read_parquet(p) for p in paths], how="vertical")


def carelink_assigned(run_folder: Path, truth: pl.DataFrame, standardised: pl.DataFrame) -> pl.DataFrame:
    """Truth joined to carelink's person map, with each record's standardised NHS number."""
    reid_maps = {p.parent.name: pl.read_parquet(p) for p in sorted((run_folder / "pseudonymise").glob("*/reid_map.parquet"))}
    person_map = pl.read_parquet(run_folder / "link" / "person_map.parquet")
    assigned = assignment(reid_maps, person_map, truth)
    return assigned.join(standardised.select("source", "record_id", "nhs_number"), on=["source", "record_id"], how="left")


def baseline_assigned(clusters: pl.DataFrame, truth: pl.DataFrame, standardised: pl.DataFrame) -> pl.DataFrame:
    """Truth joined to a ``source, record_id, cluster_id`` assignment, in the shape ``evaluate`` expects."""
    assigned = truth.join(clusters, on=["source", "record_id"], how="inner").with_columns(
        pl.col("cluster_id").cast(pl.String).alias("person_id"),
        (pl.col("source") + ":" + pl.col("record_id")).alias("record_token"),
    )
    return assigned.join(standardised.select("source", "record_id", "nhs_number"), on=["source", "record_id"], how="left")


def people_with_two_nhs_numbers(assigned: pl.DataFrame, by: str = "person_id") -> int:
    """How many groups (people, or true entities with ``by="entity_id"``) hold two or more different valid NHS numbers."""
    counts = assigned.filter(pl.col("nhs_number").is_not_null()).group_by(by).agg(pl.col("nhs_number").n_unique().alias("n"))
    return int((counts["n"] > 1).sum())


def largest(assigned: pl.DataFrame, by: str) -> int:
    """The size of the largest group of records sharing ``by``."""
    return int(assigned.group_by(by).len()["len"].max() or 0)


def score(assigned: pl.DataFrame) -> dict[str, Any]:
    """Pairwise scores, precision among the household cases, errors by case, NHS conflicts and cluster sizes."""
    scores: dict[str, Any] = pairwise_scores(assigned)
    scores["people"] = assigned["person_id"].n_unique()
    scores["precision_among"] = {label: precision_among(assigned, label) for label in CASE_LABELS}
    scores["errors_by_case"] = errors_by_case(assigned)
    scores["people_with_two_nhs"] = people_with_two_nhs_numbers(assigned)
    scores["largest_cluster"] = largest(assigned, "person_id")
    return scores


def load_truth(folder: Path) -> pl.DataFrame:
    """The generator's truth file."""
    return read_truth(folder / "truth.csv")
