"""Stage A under DDP: two CPU processes (gloo) train one model; the ranks end with the same weights, and only rank 0
writes checkpoints, the model and MLflow runs. No SLURM needed: runs in `make test`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from mindvis.checkpoints import load_mbm
from mindvis.data.contract import PreprocessedSubject, write_subject
from mindvis.tracking import target_for

pytestmark = pytest.mark.slow

JOB_SCRIPT = Path(__file__).with_name("ddp_stage_a_job.py")


def write_hcp_subject(results_root: Path, subject: str, n_samples: int, n_voxels: int, seed: int) -> Path:
    """A preprocessed HCP subject (contract layout) of smooth random fMRI rows, all in the `pretrain` split."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 4 * np.pi, n_voxels)
    basis = np.stack([np.sin(k * t) for k in (1, 2, 3)])
    fmri = (rng.normal(size=(n_samples, 3)) @ basis + 0.1 * rng.normal(size=(n_samples, n_voxels))).astype(np.float32)
    samples = pd.DataFrame({"sample_id": np.arange(n_samples), "split": "pretrain", "stimulus_id": None,
                            "category": None, "n_averaged": 1, "source": "synthetic"})
    voxels = pd.DataFrame({"roi": ["V1"] * n_voxels, "mean": 0.0, "std": 1.0})
    return write_subject(results_root / "preprocessed" / "HCP" / subject,
                         PreprocessedSubject(samples, fmri, voxels, None))


@pytest.fixture(scope="module")
def ddp_job(tmp_path_factory) -> tuple[Path, Path]:
    """Run the 2-process Stage A job once for this module; return (results_root, report_dir)."""
    root = tmp_path_factory.mktemp("ddp")
    results, reports = root / "results", root / "reports"
    reports.mkdir()
    subjects = [write_hcp_subject(results, s, 40, 150, i) for i, s in enumerate(["100206", "100307"])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.run([sys.executable, str(JOB_SCRIPT), str(results), str(reports), *map(str, subjects)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return results, reports


def test_both_ranks_train_the_same_weights(ddp_job):
    _, reports = ddp_job
    ranks = [json.loads((reports / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["global_step"] == ranks[1]["global_step"] > 0
    assert ranks[0]["weights"] == ranks[1]["weights"], "the two processes ended with different weights"


def test_only_rank_zero_writes_checkpoints_and_the_model(ddp_job):
    results, reports = ddp_job
    writes = [json.loads(line) for line in (reports / "writes.jsonl").read_text().splitlines()]
    assert {w["what"] for w in writes} == {"checkpoint", "model"}
    assert {w["rank"] for w in writes} == {0}, [w for w in writes if w["rank"] != 0]
    assert [w["what"] for w in writes].count("model") == 1
    out = results / "stage_a" / "pretrain"
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert load_mbm(out).arch.num_voxels >= 150


def test_one_mlflow_run_per_job_from_rank_zero(ddp_job):
    results, _ = ddp_job
    client = MlflowClient(tracking_uri=target_for(results).uri)
    experiment = client.get_experiment_by_name("mindvis")
    runs = client.search_runs([experiment.experiment_id])
    assert [(r.data.tags["mindvis.rule"], r.info.status) for r in runs] == [("stage_a_pretrain", "FINISHED")]
    history = client.get_metric_history(runs[0].info.run_id, "train/loss")
    assert history and len({m.step for m in history}) == len(history), "train/loss logged twice per step"
