"""The workflow through `--profile profiles/slurm` on a real SLURM (the single-node cluster of cluster/start.sh).

Every job that does work must be an sbatch job asking for exactly what config.yaml gives its rule (GPUs only where
gpu > 0), a job preempted mid-run must be requeued by SLURM and rerun, and the jobs must track into a shared
`mlflow server` over HTTP, as on a real site. Run by `make test-cluster`; skipped when no test cluster answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mindvis import plan
from mindvis.config import resolve
from tests.cluster.conftest import (BIN, LocalSlurm, PlannedJob, check_tracked_runs, effective_config,
                                    jobs_in_log, planned_jobs, running_mlflow_server)
from tests.workflow.conftest import ROOT, smoke_config, snakemake

pytestmark = pytest.mark.cluster

RUN_TIMEOUT_S = 1500
PREEMPT_AFTER_S = 2      # a job is requeued once it has been running this long (the snakemake job step is starting)


def fit_to_cluster(entry: dict[str, Any], cluster: LocalSlurm) -> dict[str, Any]:
    """A config `resources` entry made satisfiable on the test node.

    A real site's GPU model and partition names become the test cluster's, sizes are capped at the node's, and the
    account is unset (null: --configfile merges key by key): without accounting the plugin cannot validate one.
    """
    fitted = dict(entry)
    if fitted.get("slurm_account"):
        fitted["slurm_account"] = None
    gpu = min(int(fitted.get("gpu") or 0), cluster.gpus)
    fitted["gpu"] = gpu
    if fitted.get("gpu_model"):
        fitted["gpu_model"] = cluster.gpu_type
    if fitted.get("slurm_partition"):
        fitted["slurm_partition"] = "gpu" if gpu else cluster.default_partition
    for key, limit in (("mem_mb", cluster.mem_mb), ("cpus_per_task", cluster.cpus)):
        if key in fitted:
            fitted[key] = min(int(fitted[key]), limit)
    return fitted


def cluster_config(workdir: Path, cluster: LocalSlurm, tracking_uri: str) -> dict[str, Any]:
    """The smoke config tracking into `tracking_uri`, with every rule's resources fitted to the test node.

    preprocess_god becomes a GPU job with a GPU model in the gpu partition, so both GPU request forms
    (--gpus=N from the training rules' config, --gpus=<model>:N here) are exercised whatever the rules declare.
    """
    config = smoke_config(workdir)
    config["tracking"] = {"tracking_uri": tracking_uri}
    resources = {rule: fit_to_cluster(entry, cluster)
                 for rule, entry in (effective_config(config).get("resources") or {}).items()}
    resources["preprocess_god"] = {"gpu": 1, "gpu_model": cluster.gpu_type, "mem_mb": 1500, "runtime": 12,
                                   "cpus_per_task": 2, "slurm_partition": "gpu"}
    config["resources"] = resources
    return config


def slurm_comment(job: PlannedJob) -> str:
    """The --comment the SLURM executor plugin gives a job: rule name and wildcard values in the job's order."""
    if not job.wildcards:
        return f"rule_{job.rule}"
    return f"rule_{job.rule}_wildcards_" + "_".join(job.wildcards.values()).replace("/", "_")


def slurm_jobs(name_prefix: str) -> list[dict[str, Any]]:
    """Every job the controller still knows (MinJobAge=3600 keeps finished ones) whose name starts with the prefix."""
    out = subprocess.run(["squeue", "--json", "--states=all"], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    return [job for job in json.loads(out)["jobs"] if job["name"].startswith(name_prefix)]


def requeue_first_running(name_prefix: str) -> int | None:
    """Requeue (as a preemption does) one job of ours that has been running PREEMPT_AFTER_S; return its id."""
    now = time.time()
    for job in slurm_jobs(name_prefix):
        if job["job_state"] == "RUNNING" and now - job["start_time"] >= PREEMPT_AFTER_S:
            done = subprocess.run(["scontrol", "requeue", str(job["job_id"])], capture_output=True, text=True)
            if done.returncode == 0:
                return job["job_id"]
    return None


def run_preempting_one_job(workdir: Path, config: dict[str, Any], args: list[str],
                           name_prefix: str) -> tuple[str, int]:
    """Run snakemake with `args` to the end, requeueing the first job seen running; return its log and that job's
    SLURM id."""
    config_file = workdir / "config.test.yaml"
    config_file.write_text(yaml.safe_dump(config))
    cmd = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(config_file), *args]
    log_file = workdir / "snakemake.out"
    preempted = None
    with open(log_file, "w") as log:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
        deadline = time.monotonic() + RUN_TIMEOUT_S
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if preempted is None:
                    preempted = requeue_first_running(name_prefix)
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    output = log_file.read_text()
    assert proc.returncode == 0, f"snakemake --profile profiles/slurm failed ({proc.returncode}):\n{output[-8000:]}"
    assert preempted is not None, f"no job ran {PREEMPT_AFTER_S} s, none could be preempted:\n{output[-3000:]}"
    return output, preempted


def check_sbatch_request(record: dict[str, Any], resources: dict[str, Any], cluster: LocalSlurm) -> None:
    """The job SLURM ran asked for what config gives its rule; it completed."""
    label = f"{record['comment']} (SLURM job {record['job_id']})"
    assert (record["job_state"], record["exit_code"]) == ("COMPLETED", 0), (label, record["job_state"])
    assert record["partition"] == resources.get("slurm_partition", cluster.default_partition), label
    assert record["time_limit"] == resources["runtime"], label        # minutes
    assert record["memory_per_node"] == resources["mem_mb"], label
    assert record["cpus"] == resources["cpus_per_task"], label
    gpu, model = resources.get("gpu", 0), resources.get("gpu_model")
    if gpu:
        assert record["tres_per_job"] == (f"gres:gpu:{model}:{gpu}" if model else f"gres:gpu:{gpu}"), label
    else:
        assert not record["tres_per_job"], f"{label}: a CPU job asked for {record['tres_per_job']}"
    # The cluster's JobRequeue=0: only the profile's slurm-requeue (sbatch --requeue) makes jobs requeueable.
    assert record["requeue"] is True, label


def test_every_job_runs_through_slurm_with_its_configured_resources(slurm_cluster, tmp_path):
    workdir = tmp_path / "wd"
    workdir.mkdir()
    name_prefix = f"mindvistest{os.getpid()}x{int(time.time())}"
    profile_args = ["--profile", str(ROOT / "profiles" / "slurm"), "--slurm-status-command", "squeue",
                    "--slurm-init-seconds-before-status-checks", "2", "--slurm-jobname-prefix", name_prefix]
    with running_mlflow_server(tmp_path / "mlflow") as server:
        config = cluster_config(workdir, slurm_cluster, server.url)
        cfg = resolve(effective_config(config))
        planned = planned_jobs(workdir, config, *profile_args)

        log, preempted = run_preempting_one_job(workdir, config, profile_args, name_prefix)

        executed = jobs_in_log(log)
        assert sorted(job.key for job in executed) == sorted(job.key for job in planned)
        # Jobs without an action (e.g. `all`) run in Snakemake's own process; the check of the MLflow runs below
        # fails if a job that did work is among them.
        jobs = [job for job in executed if not job.local]
        requests = {job.rule: plan.resources(cfg, job.rule) for job in jobs}
        assert any(r["gpu"] for r in requests.values()) and not all(r["gpu"] for r in requests.values()), requests

        records = slurm_jobs(name_prefix)
        by_comment: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            by_comment.setdefault(record["comment"], []).append(record)
        assert len(records) == len(jobs), (sorted(by_comment), [slurm_comment(j) for j in jobs])
        interrupted = set()
        for job in jobs:
            matches = by_comment.get(slurm_comment(job), [])
            assert len(matches) == 1, f"{job}: SLURM jobs {matches}"
            check_sbatch_request(matches[0], requests[job.rule], slurm_cluster)
            if matches[0]["job_id"] == preempted:
                interrupted.add(job.key)
                assert matches[0]["restart_cnt"] == 1, matches[0]
        assert interrupted, f"the preempted job {preempted} is none of the workflow's jobs"

        nothing_left = snakemake(workdir, "-n", config=config)
        assert "Nothing to be done" in nothing_left.stdout + nothing_left.stderr, nothing_left.stdout[-3000:]
        check_tracked_runs(server.search_runs(cfg.tracking.experiment), jobs, interrupted)
