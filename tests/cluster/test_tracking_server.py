"""A workflow stage tracking into a shared `mlflow server` over HTTP (config `tracking.tracking_uri: http://...`),
read back through the server's REST API. Needs no SLURM: runs in `make test`."""

from __future__ import annotations

import pytest

from tests.cluster.conftest import check_tracked_runs, jobs_in_log, running_mlflow_server
from tests.workflow.conftest import smoke_config, snakemake

pytestmark = pytest.mark.slow


def test_jobs_track_parent_and_child_runs_into_an_mlflow_server(tmp_path):
    workdir = tmp_path / "wd"
    workdir.mkdir()
    with running_mlflow_server(tmp_path / "server") as server:
        config = smoke_config(workdir)
        config["tracking"] = {"tracking_uri": server.url}
        run = snakemake(workdir, "--cores", "2", "--until", "preprocess_god", config=config)
        runs = server.search_runs("mindvis")
        jobs = jobs_in_log(run.stdout + run.stderr)
        assert {job.rule for job in jobs} == {"demo_synthesize", "preprocess_god"}
        check_tracked_runs(runs, jobs)

        # Artifacts went through the server into its artifact store, none into the results folder.
        god = next(r for r in runs if r["tags"].get("mindvis.rule") == "preprocess_god")
        assert god["info"]["artifact_uri"].startswith("mlflow-artifacts:"), god["info"]["artifact_uri"]
        listed = server.get("artifacts/list", run_id=god["info"]["run_id"], path="logs")
        assert [f["path"] for f in listed.get("files", [])] == ["logs/sbj_3.log"], listed
        assert any((tmp_path / "server" / "artifacts").rglob("sbj_3.log"))
    results = workdir / "results"
    assert not (results / "mlflow.db").exists() and not (results / "mlartifacts").exists()
