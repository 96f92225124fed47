"""The workflow as users see it before running anything: DAG, lint, config validation."""

from tests.workflow.conftest import ROOT, smoke_config, snakemake

PUBLIC_RULES = ["demo_synthesize", "preprocess_hcp", "preprocess_god", "preprocess_bold5000"]


def test_dry_run_on_a_fresh_checkout_lists_every_stage(workdir):
    proc = snakemake(workdir, "-n", config=smoke_config(workdir))
    for rule in PUBLIC_RULES:
        assert rule in proc.stdout
    assert not (workdir / "results").exists(), "a dry run must not write results (nor the MLflow store)"


def test_lint_is_clean():
    proc = snakemake(ROOT, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_unknown_config_key_fails_at_start_with_its_path(workdir):
    config = smoke_config(workdir)
    config["preprocess"] = {"hcp": {"window_frame": 10}}
    proc = snakemake(workdir, "-n", config=config, check=False)
    assert proc.returncode != 0
    assert "preprocess.hcp" in proc.stdout + proc.stderr and "window_frame" in proc.stdout + proc.stderr


def test_wrong_type_fails_with_key_path_and_expectation(workdir):
    config = smoke_config(workdir)
    config["preprocess"] = {"hcp": {"window_frames": "ten"}}
    proc = snakemake(workdir, "-n", config=config, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "preprocess.hcp.window_frames" in output and "integer" in output
