"""The benchmarks' in-use memory sampler reads the costly ``smaps_rollup`` only while memory is above its peak."""

import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import common  # noqa: E402
from common import InUsePeak, rss_mb  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc/self/smaps_rollup").is_file(), reason="needs Linux /proc")


def test_the_peak_covers_a_block_of_memory_held_while_sampling():
    before = rss_mb()
    with InUsePeak(interval=0.01) as sampler:
        held = np.ones(200 * 2**20 // 8)  # 200 MB, touched
        time.sleep(0.3)
        del held
    assert sampler.peak_mb >= before + 150


def test_smaps_rollup_is_read_again_only_when_resident_memory_rises_above_the_peak(monkeypatch):
    resident = [1.0]  # MB, far below what this process has in use: after one read, the peak is above it
    monkeypatch.setattr(common, "rss_mb", lambda: resident[0])
    with InUsePeak(interval=0.005, duty=1.0) as sampler:
        time.sleep(0.3)  # dozens of samples of VmRSS
        reads = sampler.reads
        resident[0] = 1e9
        time.sleep(0.1)
    assert reads == 1
    assert sampler.reads > 1


def test_reads_take_no_more_than_their_duty_of_the_time(monkeypatch):
    monkeypatch.setattr(common, "rss_mb", lambda: 1e9)  # always above the peak: a read whenever the duty allows
    started = time.perf_counter()
    with InUsePeak(interval=0.001, duty=0.1) as sampler:
        time.sleep(0.5)
    one_read = _seconds_per_read()
    assert sampler.reads <= 2 + (time.perf_counter() - started) * 0.1 / one_read * 3


def _seconds_per_read() -> float:
    started = time.perf_counter()
    for _ in range(20):
        Path("/proc/self/smaps_rollup").read_text()
    return (time.perf_counter() - started) / 20
