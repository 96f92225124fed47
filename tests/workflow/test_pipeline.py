"""The whole workflow at smoke size, as `make demo` runs it: every stage, every output, MLflow runs, the report."""

import json

import numpy as np
import pytest
from mlflow import MlflowClient

from tests.workflow.conftest import smoke_config, snakemake

METRIC_KEYS = {"n_way", "n_samples", "n_test", "mindvis", "baseline_ridge", "chance", "skipped"}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pipeline")
    config = smoke_config(workdir)
    proc = snakemake(workdir, "--cores", "2", config=config)
    return workdir, config, proc


@pytest.mark.slow
def test_every_stage_ran_once_and_wrote_its_outputs(pipeline):
    workdir, _, proc = pipeline
    results = workdir / "results"
    for rule in ("demo_synthesize", "preprocess_hcp", "preprocess_god", "preprocess_bold5000", "stage_a_pretrain",
                 "stage_a_finetune", "ldm_pretrain", "demo_classifier", "stage_b_finetune", "generate", "evaluate",
                 "report_summary"):
        assert f"rule {rule}:" in proc.stdout + proc.stderr, rule
    for dataset, subject in (("GOD", "sbj_3"), ("BOLD5000", "CSI1")):
        folder = results / "eval" / dataset / subject
        metrics = json.loads((folder / "metrics.json").read_text())
        assert METRIC_KEYS <= set(metrics)
        assert metrics["n_samples"] == 2 and metrics["n_test"] > 0
        assert {"top1_nway_mean", "pixcorr", "ssim", "pairwise_ssim"} <= set(metrics["mindvis"])
        assert "clip" in metrics["skipped"], "unconfigured networks are reported as skipped"
        samples = np.load(folder / "samples.npz")
        assert samples["samples"].shape[:2] == (metrics["n_test"], 2)
        assert (folder / "grid.png").is_file() and any((folder / "samples").iterdir())
    assert (results / "report" / "metrics_table.html").is_file()


@pytest.mark.slow
def test_mlflow_has_one_finished_parent_and_a_finished_child_per_job(pipeline):
    workdir, _, proc = pipeline
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'results' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mindvis")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("mindvis.kind") == "pipeline"]
    children = [r for r in runs if r.data.tags.get("mindvis.kind") == "job"]
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert children and {c.info.status for c in children} == {"FINISHED"}
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    n_jobs = (proc.stdout + proc.stderr).count("Finished jobid") - 1  # minus rule all (not a job script)
    assert len(children) == n_jobs - 1  # report_summary reads MLflow but logs no run of its own
    stage_b = [c for c in children if c.data.tags["mindvis.rule"] == "stage_b_finetune"]
    assert stage_b and all(client.list_artifacts(c.info.run_id) for c in stage_b)


@pytest.mark.slow
def test_rerun_has_nothing_to_do_and_the_report_builds(pipeline):
    workdir, config, _ = pipeline
    proc = snakemake(workdir, "-n", config=config)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    snakemake(workdir, "--report", str(workdir / "report.html"), config=config)
    html = (workdir / "report.html").read_text(errors="ignore")
    assert "metrics_table" in html and "grid.png" in html
