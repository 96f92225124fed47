"""The workflow through `--profile profiles/slurm` on a real SLURM (the single-node cluster of cluster/start.sh).

Every job that does work must be an sbatch job asking for exactly what config.yaml gives its rule (GPUs only where
gpu > 0), a job preempted mid-run must be requeued by SLURM and rerun, and the jobs must track into a shared
`mlflow server` over HTTP, as on a real site; training jobs are configured for DDP on 2 CPU processes. Run by
`make test-cluster`; skipped when no test cluster answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import permutations
from pathlib import Path
from typing import Any

import pytest
import yaml

from mindvis import plan
from mindvis.config import Config, resolve
from tests.cluster.conftest import (BIN, LocalSlurm, MlflowServer, PlannedJob, check_tracked_runs,
                                    effective_config, jobs_in_log, planned_jobs, running_mlflow_server)
from tests.workflow.conftest import ROOT, smoke_config, snakemake

pytestmark = pytest.mark.cluster

RUN_TIMEOUT_S = 1500
DDP_PROCESSES = 2


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


def comments_of(run: dict[str, Any]) -> set[str]:
    """The SLURM comments a job's MLflow child run can correspond to (tags keep no wildcard order: all orders)."""
    wildcards = [(k.removeprefix("mindvis.wildcard."), v) for k, v in run["tags"].items()
                 if k.startswith("mindvis.wildcard.")]
    return {slurm_comment(PlannedJob(run["tags"]["mindvis.rule"], dict(order))) for order in permutations(wildcards)}


def open_job_comments(server: MlflowServer, experiment: str) -> set[str]:
    """SLURM comments of the jobs whose MLflow run is open, i.e. that are mid-work."""
    try:
        runs = server.search_runs(experiment)
    except urllib.error.HTTPError:   # the experiment does not exist yet
        return set()
    return {comment for run in runs if run["tags"].get("mindvis.kind") == "job" and run["info"]["status"] == "RUNNING"
            for comment in comments_of(run)}


def requeue_a_job_mid_run(server: MlflowServer, experiment: str, name_prefix: str) -> int | None:
    """Requeue (as a preemption does) one of our jobs that is running and has opened its MLflow run; return its id."""
    working = open_job_comments(server, experiment)
    for job in slurm_jobs(name_prefix):
        if job["job_state"] == "RUNNING" and job["comment"] in working:
            done = subprocess.run(["scontrol", "requeue", str(job["job_id"])], capture_output=True, text=True)
            if done.returncode == 0:
                return job["job_id"]
    return None


def run_preempting_one_job(workdir: Path, config: dict[str, Any], args: list[str], name_prefix: str,
                           server: MlflowServer, experiment: str) -> tuple[str, int]:
    """Run snakemake with `args` to the end, preempting the first job caught mid-work; return the Snakemake log and
    the preempted job's SLURM id."""
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
                    preempted = requeue_a_job_mid_run(server, experiment, name_prefix)
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    output = log_file.read_text()
    assert time.monotonic() < deadline, f"snakemake did not finish within {RUN_TIMEOUT_S} s:\n{output[-3000:]}"
    assert proc.returncode == 0, f"snakemake --profile profiles/slurm failed ({proc.returncode}):\n{output[-8000:]}"
    assert preempted is not None, f"no job was caught mid-work, none could be preempted:\n{output[-3000:]}"
    return output, preempted


def check_sbatch_request(record: dict[str, Any], resources: dict[str, Any], cluster: LocalSlurm) -> None:
    """The job SLURM ran asked for the `resources` of its Snakemake job; it completed."""
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


@dataclass(frozen=True)
class PipelineRun:
    """One run of the workflow through the profile, and what SLURM and the tracking server recorded of it."""

    workdir: Path
    config: dict[str, Any]
    cfg: Config
    planned: list[PlannedJob]
    executed: list[PlannedJob]
    records: list[dict[str, Any]]
    preempted: int
    runs: list[dict[str, Any]]

    @property
    def jobs(self) -> list[PlannedJob]:
        """Jobs that did work. Jobs without an action (e.g. `all`) run in Snakemake's own process: the MLflow check
        fails if a job that did work is among those."""
        return [job for job in self.executed if not job.local]

    def record(self, job: PlannedJob) -> dict[str, Any]:
        matches = [r for r in self.records if r["comment"] == slurm_comment(job)]
        assert len(matches) == 1, f"{job}: SLURM jobs {matches}"
        return matches[0]


@pytest.fixture(scope="module")
def pipeline(slurm_cluster, tmp_path_factory) -> Iterator[PipelineRun]:
    """The smoke workflow through --profile profiles/slurm, tracking into an mlflow server, one job preempted;
    training jobs train with DDP on 2 CPU processes (trainer.devices: 2)."""
    root = tmp_path_factory.mktemp("slurm")
    workdir = root / "wd"
    workdir.mkdir()
    name_prefix = f"mindvistest{os.getpid()}x{int(time.time())}"
    profile_args = ["--profile", str(ROOT / "profiles" / "slurm"), "--slurm-status-command", "squeue",
                    "--slurm-init-seconds-before-status-checks", "2", "--slurm-jobname-prefix", name_prefix,
                    "--slurm-keep-successful-logs"]
    with running_mlflow_server(root / "mlflow") as server:
        config = cluster_config(workdir, slurm_cluster, server.url)
        config["trainer"] = {"accelerator": "cpu", "devices": DDP_PROCESSES, "strategy": "ddp"}
        cfg = resolve(effective_config(config))
        planned = planned_jobs(workdir, config, *profile_args)
        log, preempted = run_preempting_one_job(workdir, config, profile_args, name_prefix, server,
                                                cfg.tracking.experiment)
        yield PipelineRun(workdir, config, cfg, planned, jobs_in_log(log), slurm_jobs(name_prefix), preempted,
                          server.search_runs(cfg.tracking.experiment))


def test_every_planned_job_ran_as_one_slurm_job(pipeline):
    assert sorted(job.key for job in pipeline.executed) == sorted(job.key for job in pipeline.planned)
    assert sorted(r["comment"] for r in pipeline.records) == sorted(slurm_comment(j) for j in pipeline.jobs)


def test_each_job_asked_slurm_for_its_declared_resources_and_those_come_from_config(pipeline, slurm_cluster):
    for job in pipeline.jobs:
        configured = plan.resources(pipeline.cfg, job.rule)
        declared = job.resources
        for key in ("mem_mb", "runtime", "cpus_per_task", "gpu_model", "slurm_partition"):
            assert declared.get(key) == configured.get(key), (job, key, declared, configured)
        # Training rules may ask for trainer.devices GPUs, but GPUs only where config gives the rule some.
        assert (declared.get("gpu", 0) > 0) == (configured["gpu"] > 0), (job, declared, configured)
        check_sbatch_request(pipeline.record(job), declared, slurm_cluster)
    gpu_jobs = [job for job in pipeline.jobs if job.resources.get("gpu", 0) > 0]
    assert 0 < len(gpu_jobs) < len(pipeline.jobs), "the test needs both GPU and CPU jobs"
    assert any(job.resources.get("gpu_model") for job in gpu_jobs), "the test needs a job with a GPU model"


def test_a_job_preempted_mid_work_is_requeued_and_rerun(pipeline):
    record = next(r for r in pipeline.records if r["job_id"] == pipeline.preempted)
    assert (record["restart_cnt"], record["job_state"]) == (1, "COMPLETED"), record
    attempts = [run["info"]["status"] for run in pipeline.runs
                if run["tags"].get("mindvis.kind") == "job" and record["comment"] in comments_of(run)]
    assert sorted(attempts).count("FINISHED") == 1 and len(attempts) == 2, attempts


def test_outputs_are_complete_and_every_job_is_tracked_on_the_server(pipeline):
    nothing_left = snakemake(pipeline.workdir, "-n", config=pipeline.config)
    assert "Nothing to be done" in nothing_left.stdout + nothing_left.stderr, nothing_left.stdout[-3000:]
    interrupted = {job.key for job in pipeline.jobs if pipeline.record(job)["job_id"] == pipeline.preempted}
    check_tracked_runs(pipeline.runs, pipeline.jobs, interrupted)


def test_training_jobs_use_all_configured_devices(pipeline):
    training = [job for job in pipeline.jobs if job.rule == "stage_a_pretrain"]
    assert training, "no stage_a_pretrain job in the pipeline"
    for job in training:
        record = pipeline.record(job)
        slurm_log = Path(record["standard_output"].replace("%j", str(record["job_id"]))).read_text(errors="replace")
        assert f"Starting with {DDP_PROCESSES} processes" in slurm_log, slurm_log[-3000:]


def test_srun_launcher_trains_one_model_on_one_task_per_process(slurm_cluster, tmp_path):
    """trainer.launcher: srun (the multi-node path): the job asks SLURM for one task per process, srun starts them,
    Lightning's SLURM environment joins them into one DDP world, and only rank 0 writes the model and tracks."""
    workdir = tmp_path / "wd"
    workdir.mkdir()
    config = smoke_config(workdir, datasets=["HCP"])
    config["trainer"] = {"accelerator": "cpu", "devices": DDP_PROCESSES, "strategy": "ddp", "launcher": "srun"}
    config["tracking"] = {"log_every_n_steps": 1}
    config["stage_a"] = {"pretrain": {"epochs": 3, "batch_size": 8}}
    config["resources"] = {rule: fit_to_cluster(entry, slurm_cluster)
                           for rule, entry in (effective_config(config).get("resources") or {}).items()}
    config["resources"]["stage_a_pretrain"]["gpu"] = 0
    args = ["--profile", str(ROOT / "profiles" / "slurm"), "--slurm-status-command", "squeue",
            "--slurm-init-seconds-before-status-checks", "2", "--slurm-keep-successful-logs"]
    snakemake(workdir, *args, "--until", "stage_a_pretrain", config=config, timeout=RUN_TIMEOUT_S)

    logs = sorted((workdir / ".snakemake" / "slurm_logs" / "rule_stage_a_pretrain").rglob("*.log"))
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    assert f"starting {DDP_PROCESSES} training processes: srun" in text, text[-3000:]
    assert f"MEMBER: 2/{DDP_PROCESSES}" in text, text[-3000:]
    assert (workdir / "results" / "stage_a" / "pretrain" / "model.safetensors").is_file()

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'results' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("mindvis").experiment_id],
                              "tags.`mindvis.rule` = 'stage_a_pretrain'")
    assert [r.info.status for r in runs] == ["FINISHED"]
    history = client.get_metric_history(runs[0].info.run_id, "train/loss")
    assert history and len({m.step for m in history}) == len(history), "a rank other than 0 logged too"
