"""Measurement helpers the preprocessing benchmarks share (bench_hcp, bench_nsd): page-cache eviction, alternating
timed trials of two contenders, and peak memory of a job run in a fresh Python process."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

# Prefixed to the code a child process runs. VmHWM (Linux) is the RSS high-water mark of the process's own address
# space; getrusage's ru_maxrss would also count the parent's RSS inherited at fork/exec.
HIGH_WATER_KB = '''
def high_water_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
'''


def run_child(code: str, *args: object) -> dict:
    """Run `code` (which may call high_water_kb()) in a fresh interpreter with `args` as sys.argv[1:]; return the
    JSON document it prints last."""
    result = subprocess.run([sys.executable, "-c", HIGH_WATER_KB + code, *map(str, args)],
                            check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def evict_from_page_cache(path: Path) -> None:
    """Ask the kernel to drop `path`'s cached pages (advisory; works for clean pages of files we can open)."""
    with open(path, "rb") as stream:
        os.fsync(stream.fileno())
        os.posix_fadvise(stream.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def alternating_medians(baseline: Callable[[], float], contender: Callable[[], float], repeats: int,
                        cold: bool, path: Path) -> tuple[float, float]:
    """Median seconds of (baseline, contender) over `repeats` alternating trials, each measuring itself; with `cold`
    the pages of `path` are dropped from the page cache before every trial."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for measure, series in zip((baseline, contender), times, strict=True):
            if cold:
                evict_from_page_cache(path)
            series.append(measure())
    return statistics.median(times[0]), statistics.median(times[1])
