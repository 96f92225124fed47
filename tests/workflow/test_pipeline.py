"""The whole workflow at smoke size, as `make demo` runs it: every stage, every output, MLflow runs, the report."""

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from mindvis import plan
from mindvis.config import resolve
from mindvis.tracking import flatten_params
from tests.workflow.conftest import planned_jobs, smoke_config, snakemake

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
                 "stage_a_finetune", "ldm_pretrain", "demo_classifier", "stage_b_finetune", "generate", "ceilings",
                 "evaluate", "report_summary"):
        assert f"rule {rule}:" in proc.stdout + proc.stderr, rule
    for dataset, subject in (("GOD", "sbj_3"), ("BOLD5000", "CSI1")):
        folder = results / "eval" / dataset / subject
        metrics = json.loads((folder / "metrics.json").read_text())
        assert METRIC_KEYS <= set(metrics)
        assert metrics["n_samples"] == 2 and metrics["n_test"] > 0
        assert {"top1_nway_mean", "pixcorr", "ssim", "pairwise_ssim"} <= set(metrics["mindvis"])
        assert "clip" in metrics["skipped"], "unconfigured networks are reported as skipped"
        ceilings = metrics["ceilings"]  # the demo LDM knows every demo category: all four stages
        assert list(ceilings) == ["ground_truth", "first_stage", "class_conditioned", "mindvis", "skipped"]
        covered = ceilings["class_conditioned"]["n_images"]  # BOLD5000's COCO / scene images have no category
        assert covered == metrics["n_test"] if dataset == "GOD" else 0 < covered < metrics["n_test"]
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


# ------------------------------------------------------------------ reruns: exactly the jobs whose values changed

TRAINED_AFTER_PREPROCESSING = {"stage_a_pretrain": 1, "stage_a_finetune": 2, "stage_b_finetune": 2, "generate": 2,
                               "ceilings": 2, "evaluate": 2, "report_summary": 1}


@pytest.mark.slow
def test_an_hcp_window_change_reruns_preprocess_hcp_and_everything_after_it(pipeline):
    workdir, config, _ = pipeline
    changed = copy.deepcopy(config)
    changed["preprocess"] = {"hcp": {"window_frames": 8}}
    assert planned_jobs(workdir, changed) == {"preprocess_hcp": 2, **TRAINED_AFTER_PREPROCESSING}


@pytest.mark.slow
def test_command_line_values_rerun_the_jobs_that_read_them(pipeline):
    workdir, config, _ = pipeline
    assert planned_jobs(workdir, config, "--config", "evaluation={n_trials: 50}") == {"evaluate": 2,
                                                                                        "report_summary": 1}
    assert planned_jobs(workdir, config, "--config", "seed=1") == {"generate": 2, "ceilings": 2, "evaluate": 2,
                                                                   "report_summary": 1}
    assert planned_jobs(workdir, config, "--config", "seed=2022", "demo=True", "demo=true") == {}


@pytest.mark.slow
def test_resources_tracking_and_unread_values_rerun_nothing(pipeline):
    workdir, config, _ = pipeline
    changed = copy.deepcopy(config)
    changed["resources"] = {"default": {"gpu": 0, "mem_mb": 2000, "runtime": 5, "cpus_per_task": 2},
                            "evaluate": {"gpu": 0, "mem_mb": 999}}
    changed["tracking"] = {"log_every_n_steps": 3}
    changed["data_root"] = str(workdir / "elsewhere")  # read only with demo: false
    changed.setdefault("stage_a", {})["pretrained"] = None  # the default, spelled out
    assert planned_jobs(workdir, changed) == {}


@pytest.mark.slow
def test_each_job_logged_exactly_the_config_values_it_was_given(pipeline, tmp_path):
    workdir, _, _ = pipeline
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'results' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("mindvis").experiment_id])
    parent = next(r for r in runs if r.data.tags.get("mindvis.kind") == "pipeline")
    logged_config = client.download_artifacts(parent.info.run_id, "config.json", str(tmp_path))
    cfg = resolve(json.loads(Path(logged_config).read_text()))  # the workflow's resolved config
    config_keys = set(flatten_params(cfg.as_dict()))
    for run in (r for r in runs if r.data.tags.get("mindvis.kind") == "job"):
        rule = run.data.tags["mindvis.rule"]
        expected = flatten_params(plan.job_params(cfg, rule))
        # other params are what the job found (counts, sizes, the classifier used), never config keys
        logged = {k: v for k, v in run.data.params.items() if k in config_keys}
        assert logged == expected, rule


@pytest.mark.slow
def test_a_changed_run_uses_the_new_values_and_the_report_shows_only_configured_subjects(pipeline):
    """Last in this module: it changes the finished run."""
    workdir, config, _ = pipeline
    changed = copy.deepcopy(config)
    changed["datasets"] = ["HCP", "GOD"]  # BOLD5000 CSI1 removed: its results stay on disk
    changed["evaluation"] = {**changed.get("evaluation", {}), "n_trials": 50}
    assert planned_jobs(workdir, changed) == {"evaluate": 1, "report_summary": 1}
    snakemake(workdir, "--cores", "2", config=changed)
    assert planned_jobs(workdir, changed) == {}
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'results' / 'mlflow.db'}")
    latest = client.search_runs([client.get_experiment_by_name("mindvis").experiment_id],
                                "tags.`mindvis.rule` = 'evaluate'", order_by=["attributes.start_time DESC"])[0]
    assert latest.data.params["evaluation.n_trials"] == "50"
    table = pd.read_csv(workdir / "results" / "report" / "metrics_table.csv")
    assert set(table["dataset"]) == {"GOD"}
    assert (workdir / "results" / "eval" / "BOLD5000" / "CSI1" / "metrics.json").is_file()
