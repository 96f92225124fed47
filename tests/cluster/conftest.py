"""Shared pieces of the cluster tests: a real `mlflow server`, the REST view of its runs, the local test SLURM cluster,
and what Snakemake plans to run (read from its dry run)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.workflow.conftest import ROOT, snakemake

BIN = Path(sys.executable).parent
TEST_CLUSTER_NAME = "mindvis-test"   # ClusterName in cluster/slurm.conf.in
SERVER_START_TIMEOUT_S = 180


# --- MLflow tracking server ---------------------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class MlflowServer:
    """A running `mlflow server`, read through its REST API (as a user's script or the UI would)."""

    url: str
    log_file: Path

    def post(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.url}/api/2.0/mlflow/{endpoint}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def get(self, endpoint: str, **query: str) -> dict[str, Any]:
        url = f"{self.url}/api/2.0/mlflow/{endpoint}?" + "&".join(f"{k}={v}" for k, v in query.items())
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.loads(response.read())

    def search_runs(self, experiment: str) -> list[dict[str, Any]]:
        """Every run of `experiment` (POST runs/search, all pages), each with its tags as a plain dict."""
        experiment_id = self.get("experiments/get-by-name", experiment_name=experiment)["experiment"]["experiment_id"]
        runs: list[dict[str, Any]] = []
        token = None
        while True:
            body = {"experiment_ids": [experiment_id], "max_results": 500, **({"page_token": token} if token else {})}
            page = self.post("runs/search", body)
            runs += page.get("runs", [])
            token = page.get("next_page_token")
            if not token:
                break
        for run in runs:
            run["tags"] = {tag["key"]: tag["value"] for tag in run.get("data", {}).get("tags", [])}
        return runs


@contextlib.contextmanager
def running_mlflow_server(directory: Path) -> Iterator[MlflowServer]:
    """Start `mlflow server` (sqlite backend, served artifacts) on a free port of 127.0.0.1; stop it on exit."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_file = directory / "server.log"
    cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{directory / 'mlflow.db'}",
           "--artifacts-destination", str(directory / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    with open(log_file, "w") as log:
        # Own session: the server forks uvicorn workers; stopping the group stops exactly those.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = MlflowServer(f"http://127.0.0.1:{port}", log_file)
    try:
        _wait_until_healthy(server, proc)
        yield server
    finally:
        _stop_group(proc)


def _wait_until_healthy(server: MlflowServer, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow server exited ({proc.returncode}):\n{server.log_file.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.5)
    raise AssertionError(f"mlflow server not up after {SERVER_START_TIMEOUT_S} s:\n"
                         f"{server.log_file.read_text()[-3000:]}")


def _stop_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# --- what Snakemake plans ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlannedJob:
    """A job as Snakemake announces it: rule, wildcards, whether it ran in Snakemake's process, its resources."""

    rule: str
    wildcards: dict[str, str] = field(default_factory=dict)
    local: bool = False
    resources: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return self.rule, tuple(sorted(self.wildcards.items()))


_JOB_HEADER = re.compile(r"^(local)?rule (\w+):$")
_WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")
_RESOURCES = re.compile(r"^\s+resources: (.*)$")


def _pairs(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(", "))


def _value(text: str) -> Any:
    return int(text) if text.lstrip("-").isdigit() else text


def jobs_in_log(text: str) -> list[PlannedJob]:
    """The jobs a Snakemake log announces ("rule X:" / "localrule X:" blocks with their wildcards line).

    A dry run announces every job as "rule"; a real run says "localrule" for jobs it ran in its own process.
    """
    jobs: list[PlannedJob] = []
    for line in text.splitlines():
        if header := _JOB_HEADER.match(line):
            jobs.append(PlannedJob(header.group(2), {}, header.group(1) is not None))
        elif (wildcards := _WILDCARDS.match(line)) and jobs:
            jobs[-1] = replace(jobs[-1], wildcards=_pairs(wildcards.group(1)))
        elif (resources := _RESOURCES.match(line)) and jobs:
            jobs[-1] = replace(jobs[-1], resources={k: _value(v) for k, v in _pairs(resources.group(1)).items()})
    assert jobs, f"no jobs announced in the Snakemake log:\n{text[-3000:]}"
    return jobs


def planned_jobs(workdir: Path, config: dict[str, Any], *args: str) -> list[PlannedJob]:
    """The jobs a run with `args` (e.g. a profile, --until) would execute, from `snakemake -n`."""
    proc = snakemake(workdir, "-n", *args, config=config)
    return jobs_in_log(proc.stdout + proc.stderr)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`, nested mappings merged key by key (how Snakemake layers --configfile)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def effective_config(test_config: dict[str, Any]) -> dict[str, Any]:
    """The raw config a workflow run sees: the repository's config.yaml overlaid with the test's --configfile."""
    return deep_merge(yaml.safe_load((ROOT / "config.yaml").read_text()), test_config)


def check_tracked_runs(runs: list[dict[str, Any]], jobs: list[PlannedJob],
                       interrupted: set[tuple] = frozenset()) -> None:
    """One FINISHED pipeline run; under it exactly one FINISHED child run per job of `jobs`, found by its tags.

    Jobs in `interrupted` (keys of requeued jobs) may also have earlier, unfinished attempts.
    """
    parents = [r for r in runs if r["tags"].get("mindvis.kind") == "pipeline"]
    assert len(parents) == 1, [r["info"]["run_name"] for r in parents]
    parent = parents[0]
    assert parent["info"]["status"] == "FINISHED", parent["info"]
    children = [r for r in runs if r["tags"].get("mindvis.kind") == "job"]
    assert all(r["tags"].get("mlflow.parentRunId") == parent["info"]["run_id"] for r in children)

    def key(run: dict[str, Any]) -> tuple:
        wildcards = {k.removeprefix("mindvis.wildcard."): v for k, v in run["tags"].items()
                     if k.startswith("mindvis.wildcard.")}
        return PlannedJob(run["tags"]["mindvis.rule"], wildcards).key

    finished = sorted(key(r) for r in children if r["info"]["status"] == "FINISHED")
    expected = sorted(job.key for job in jobs)
    assert finished == expected, f"FINISHED child runs {finished} != jobs {expected}"
    unfinished = {key(r): r["info"]["status"] for r in children if r["info"]["status"] != "FINISHED"}
    assert set(unfinished) <= set(interrupted), f"unfinished child runs of jobs that were not interrupted: {unfinished}"


# --- the local test SLURM cluster (cluster/start.sh) ---------------------------------------------------------------

def _slurm_unavailable_reason() -> str | None:
    """Why the SLURM tests cannot run here, or None. Fast when there is no controller."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm not installed (make test-cluster installs it)"
    if shutil.which("scontrol") is None:
        return "no SLURM client commands (make test-cluster installs SLURM and starts a local cluster)"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        return "no SLURM controller answers `scontrol ping` within 5 s"
    if ping.returncode != 0 or "UP" not in ping.stdout:
        return f"no SLURM controller answers: {(ping.stdout + ping.stderr).strip()[:200]}"
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=10).stdout
    if not re.search(rf"^ClusterName\s*=\s*{TEST_CLUSTER_NAME}$", config, re.M):
        return f"the controller is not the local test cluster '{TEST_CLUSTER_NAME}' (cluster/start.sh)"
    return None


@dataclass(frozen=True)
class LocalSlurm:
    """The node of the local test cluster: partitions and fake GPUs as SLURM reports them."""

    default_partition: str
    partitions: tuple[str, ...]
    gpu_type: str
    gpus: int
    cpus: int
    mem_mb: int


@pytest.fixture(scope="session")
def slurm_cluster() -> LocalSlurm:
    """The running test cluster; skips (or fails, when MINDVIS_REQUIRE_SLURM=1 as in `make test-cluster`)."""
    reason = _slurm_unavailable_reason()
    if reason is not None:
        if os.environ.get("MINDVIS_REQUIRE_SLURM") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    rows = subprocess.run(["sinfo", "-h", "-N", "-o", "%P %G %c %m"], capture_output=True, text=True,
                          check=True).stdout.split("\n")
    partitions, gres, cpus, mem_mb = [], "", 0, 0
    for row in filter(None, rows):
        partition, gres, cpus_text, mem_text = row.split()
        partitions.append(partition)
        cpus, mem_mb = int(cpus_text), int(mem_text)
    default = next(p.rstrip("*") for p in partitions if p.endswith("*"))
    _, gpu_type, gpus = gres.split(":")[:3]    # gpu:<type>:<count>
    return LocalSlurm(default, tuple(p.rstrip("*") for p in partitions), gpu_type, int(gpus.split("(")[0]),
                       cpus, mem_mb)
