"""Helpers to run the real Snakemake CLI on the project's Snakefile in a temporary working directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SMOKE_CONFIG = ROOT / "tests" / "config.smoke.yaml"


def snakemake(workdir: Path, *args: str, config: dict | None = None, timeout: int = 1500,
              check: bool = True) -> subprocess.CompletedProcess:
    """Run `snakemake -s <repo>/Snakefile --directory workdir ...` (with a config file written from `config`)."""
    cmd = [str(Path(sys.executable).with_name("snakemake")), "-s", str(ROOT / "Snakefile"), "--directory",
           str(workdir)]
    if config is not None:
        path = workdir / "config.test.yaml"
        path.write_text(yaml.safe_dump(config))
        cmd += ["--configfile", str(path)]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.run(cmd + list(args), cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return proc


def planned_jobs(workdir: Path, config: dict, *args: str) -> dict[str, int]:
    """{rule: jobs} that `snakemake -n` would run now (rule all left out; {} when nothing is to be done)."""
    proc = snakemake(workdir, "-n", "--quiet", "rules", *args, config=config)
    counts: dict[str, int] = {}
    for line in (proc.stdout + proc.stderr).splitlines():  # the first "job count" table
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            if parts[0] in counts:
                break
            counts[parts[0]] = int(parts[1])
    return {rule: n for rule, n in counts.items() if rule not in ("all", "total")}


def smoke_config(workdir: Path, **overrides) -> dict:
    """The smoke-size config with results and demo data inside `workdir`."""
    config = yaml.safe_load(SMOKE_CONFIG.read_text())
    config["results_root"] = str(workdir / "results")
    config.setdefault("demo_data", {})["root"] = str(workdir / "data" / "demo")
    config.update(overrides)
    return config


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "wd"
    path.mkdir()
    return path
