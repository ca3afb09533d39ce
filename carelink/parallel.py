"""Per-source work of one stage in worker processes, one source at a time each, in the order given.

Ingest and pseudonymise treat each source on its own (at a partnership's own site they run on different machines),
and keyed hashing holds Python's interpreter lock, so on a machine with cores to spare the sources go to worker
processes. On two cores they gain little (one source's work already keeps about two cores busy), so by default there
is one worker per two cores. Workers are started fresh (``spawn``: nothing, no key material included, is
inherited from this process), each opens what it needs itself (a key from the workspace by its file), log records
come back to this process's handlers, and an error is raised here as the same ``CarelinkError``. Small inputs stay
in this process, where starting workers would cost more than it saves.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

log = logging.getLogger(__name__)
Result = TypeVar("Result")
#: Fewest records (over all sources) worth starting worker processes for.
MIN_RECORDS_FOR_WORKERS = 200_000


def worker_count(sizes: Sequence[int], bytes_per_record: int) -> int:
    """Workers for tasks of ``sizes`` records: ``CARELINK_WORKERS`` if set, else one per two cores (a source's work
    already keeps about two cores busy: polars, and the Bloom filters on a second thread), at most four, and no
    more than the largest sources, one per worker, fit into the memory available (``bytes_per_record`` each)."""
    configured = os.environ.get("CARELINK_WORKERS")
    count = int(configured) if configured and configured.isdigit() else min((os.cpu_count() or 1) // 2, 4)
    count = max(1, min(count, len(sizes)))
    available = _available_memory()
    largest = sorted(sizes, reverse=True)
    while count > 1 and available is not None and sum(largest[:count]) * bytes_per_record > 0.8 * available:
        count -= 1
    return count


def _available_memory() -> int | None:
    """Bytes of memory available now (Linux ``MemAvailable``), or None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def for_each_source(function: Callable[..., Result], tasks: Sequence[tuple[Any, ...]], description: str,
                    sizes: Sequence[int], bytes_per_record: int) -> list[Result]:
    """``function(*task)`` for every task, in order; in worker processes when the tasks' ``sizes`` (records) make
    it worth it and memory allows (``bytes_per_record``: the stage's peak memory per record of one source).

    ``function`` must be importable (module level) and its tasks and results picklable.
    """
    workers = worker_count(sizes, bytes_per_record)
    bar = tqdm(total=len(tasks), desc=description, unit="source", disable=not sys.stderr.isatty(), leave=False)
    with bar:
        if workers == 1 or sum(sizes) < MIN_RECORDS_FOR_WORKERS:
            results = []
            for task in tasks:
                results.append(function(*task))
                bar.update()
            return results
        log.info("%s: %d sources in %d worker processes", description, len(tasks), workers)
        return _in_workers(function, tasks, workers, bar)


def _in_workers(function: Callable[..., Result], tasks: Sequence[tuple[Any, ...]], workers: int,
                bar: tqdm) -> list[Result]:
    context = multiprocessing.get_context("spawn")
    records: Any = context.Queue()
    root = logging.getLogger()
    listener = logging.handlers.QueueListener(records, *root.handlers, respect_handler_level=True)
    listener.start()
    try:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                 initargs=(records, root.getEffectiveLevel(), _logger_levels())) as pool:
            futures = {pool.submit(function, *task): i for i, task in enumerate(tasks)}
            results: list[Any] = [None] * len(tasks)
            try:
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.update()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
            return results
    finally:
        listener.stop()


def _logger_levels() -> dict[str, int]:
    """Levels set on named loggers here (the CLI quietens some libraries), for the workers to apply too."""
    return {name: logger.level for name, logger in logging.Logger.manager.loggerDict.items()
            if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET}


def _start_worker(records: Any, level: int, levels: dict[str, int]) -> None:
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(records)]
    root.setLevel(level)
    for name, named_level in levels.items():
        logging.getLogger(name).setLevel(named_level)
