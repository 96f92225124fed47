"""A killed training job resumes from its last checkpoint when the workflow is rerun (DESIGN.md, "Resume")."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.workflow.conftest import ROOT, smoke_config, snakemake


@pytest.mark.slow
def test_killed_stage_a_pretrain_continues_from_saved_step(workdir):
    config = smoke_config(workdir, datasets=["HCP"])
    config["stage_a"] = {"pretrain": {"epochs": 40, "checkpoint_every_n_steps": 2, "batch_size": 8}}
    snakemake(workdir, "--cores", "2", "--until", "preprocess_hcp", config=config)

    resume_root = workdir / "results" / ".resume" / "stage_a_pretrain"
    resume = resume_root / "checkpoints" / "last.ckpt"
    cmd = [str(Path(sys.executable).with_name("snakemake")), "-s", str(ROOT / "Snakefile"), "--directory",
           str(workdir), "--configfile", str(workdir / "config.test.yaml"), "--cores", "2", "--until",
           "stage_a_pretrain"]
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    deadline = time.time() + 300
    while not resume.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert resume.is_file(), "no resume checkpoint appeared before the job ended"
    time.sleep(2)  # let it train past the checkpoint
    os.killpg(proc.pid, signal.SIGKILL)  # the whole job tree, as a scheduler would on preemption
    proc.wait()
    model = workdir / "results" / "stage_a" / "pretrain" / "model.safetensors"
    assert not model.exists(), "killed too late: training had already finished"

    snakemake(workdir, "--unlock", config=config)
    snakemake(workdir, "--cores", "2", "--rerun-incomplete", "--until", "stage_a_pretrain", config=config)
    summary = json.loads((model.parent / "config.json").read_text())["training"]
    assert summary["resumed_from_step"] >= 2, summary
    assert summary["global_step"] > summary["resumed_from_step"]
    assert not resume_root.exists(), "resume state should be cleared once the job succeeded"

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'results' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("mindvis").experiment_id],
                              "tags.`mindvis.rule` = 'stage_a_pretrain'")
    # the SIGKILLed job could not close its run: the next invocation marks it KILLED
    assert sorted(r.info.status for r in runs) == ["FINISHED", "KILLED"]
