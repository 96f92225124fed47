"""The tracking layer against a real sqlite MLflow store."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from mindvis import tracking


def test_pipeline_parent_and_child_runs(tmp_path):
    target = tracking.target_for(tmp_path / "results")
    parent = tracking.start_pipeline_run(target, {"demo": True, "preprocess": {"image_size": 64}}, commit="abc")
    with tracking.job_run(target, "preprocess_god", {"subject": "sbj_3"}, {"roi": "VC"}, commit="abc") as run:
        run.log_metrics({"n_samples": 12}, step=0)
        run.log_input(pd.DataFrame({"sample_id": [0, 1]}), source=tmp_path, name="GOD/sbj_3", context="training")
        fig, ax = plt.subplots()
        ax.plot([0, 1])
        run.log_figure(fig, "plots/line.png")
        run.log_image(np.zeros((8, 8, 3), np.uint8), "grid.png")
    tracking.end_pipeline_run(target, success=True)

    client = MlflowClient(tracking_uri=target.uri)
    parent_run = client.get_run(parent)
    child = client.get_run(run.run_id)
    assert parent_run.info.status == "FINISHED"
    assert parent_run.data.params["preprocess.image_size"] == "64"
    assert child.info.status == "FINISHED"
    assert child.data.tags["mlflow.parentRunId"] == parent
    assert child.data.params["roi"] == "VC" and child.data.params["wildcards.subject"] == "sbj_3"
    assert child.data.metrics["n_samples"] == 12
    assert child.inputs.dataset_inputs[0].dataset.name == "GOD/sbj_3"
    artifacts = {a.path for a in client.list_artifacts(run.run_id)}
    assert {"grid.png", "plots"} <= artifacts
    assert (tmp_path / "results" / "mlartifacts").is_dir()


def test_failed_job_is_marked_failed_with_reason(tmp_path):
    target = tracking.target_for(tmp_path)
    with pytest.raises(RuntimeError):
        with tracking.job_run(target, "stage_a_pretrain") as run:
            raise RuntimeError("out of memory")
    info = MlflowClient(tracking_uri=target.uri).get_run(run.run_id)
    assert info.info.status == "FAILED"
    assert "out of memory" in info.data.tags["mindvis.error"]


def test_pipeline_failure_closes_parent_failed(tmp_path):
    target = tracking.target_for(tmp_path)
    parent = tracking.start_pipeline_run(target, {}, commit="x")
    tracking.end_pipeline_run(target, success=False)
    assert MlflowClient(tracking_uri=target.uri).get_run(parent).info.status == "FAILED"


def test_flatten_params_dotted_and_truncated():
    flat = tracking.flatten_params({"a": {"b": 1, "c": [1, 2]}, "long": "x" * 10000})
    assert flat["a.b"] == "1" and flat["a.c"] == "[1, 2]"
    assert len(flat["long"]) == tracking.MAX_PARAM_CHARS


def test_new_invocation_marks_the_killed_previous_runs(tmp_path):
    target = tracking.target_for(tmp_path)
    first = tracking.start_pipeline_run(target, {}, commit="x")
    client = MlflowClient(tracking_uri=target.uri)
    orphan = client.create_run(tracking.ensure_experiment(target), tags={"mlflow.parentRunId": first})
    second = tracking.start_pipeline_run(target, {}, commit="x")  # the first invocation was SIGKILLed
    assert client.get_run(orphan.info.run_id).info.status == "KILLED"
    assert client.get_run(first).info.status == "KILLED"
    assert client.get_run(second).info.status == "RUNNING"


def test_ending_the_pipeline_marks_children_left_running_killed(tmp_path):
    target = tracking.target_for(tmp_path)
    parent = tracking.start_pipeline_run(target, {}, commit="x")
    client = MlflowClient(tracking_uri=target.uri)
    preempted = client.create_run(tracking.ensure_experiment(target), tags={"mlflow.parentRunId": parent})
    tracking.end_pipeline_run(target, success=True)
    assert client.get_run(preempted.info.run_id).info.status == "KILLED"
    assert client.get_run(parent).info.status == "FINISHED"
