"""Real-data mode (`demo: false`) on raw files in the datasets' own formats, written at tiny size by the demo writers.

Stages run without the files of later stages (no LDM for preprocessing and Stage A); the whole chain runs with a
tiny label2img LDM in the CompVis layout; a MinD-Vis finetuned.pth only generates and evaluates.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mindvis.config.data import DemoBold5000Config, DemoDataConfig, DemoGodConfig, DemoHcpConfig
from mindvis.preprocess import hcp
from mindvis.demo import synthesize
from tests.stage_b_helpers import write_pretrained_ldm
from tests.workflow.conftest import SMOKE_CONFIG, planned_jobs, snakemake

RELEASE = Path(__file__).resolve().parents[1] / "fixtures" / "release" / "stage_b"
PREPROCESSING = ("preprocess_hcp", "preprocess_god", "preprocess_bold5000")
CURRENT_HCP_NAME = "rfMRI_REST1_LR_Atlas_MSMAll_hp2000_clean_rclean_tclean.dtseries.nii"


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """data_root with one subject per dataset in the real layouts (HCP under today's file name), and a label2img."""
    root = tmp_path_factory.mktemp("raw")
    demo = DemoDataConfig(
        root=root, hcp_subjects=("100206",), god_subjects=("sbj_3",), bold5000_subjects=("CSI1",),
        god=DemoGodConfig(n_train_categories=97, images_per_train_category=1, n_test_categories=3, test_repeats=2,
                          image_size_px=32, v1_voxels=40, v2_voxels=30, v3_voxels=30, v4_voxels=20, loc_voxels=20,
                          ffa_voxels=10, ppa_voxels=10, hvc_other_voxels=10),
        bold5000=DemoBold5000Config(sessions=1, runs_per_session=2, trials_per_run=12, n_repeated_stimuli=3,
                                    repeats_per_stimulus=2, image_size_px=32, early_vis_voxels=20, loc_voxels=10,
                                    opa_voxels=5, ppa_voxels=5, rsc_voxels=5),
        hcp=DemoHcpConfig(frames=20))
    synthesize(demo, ["HCP", "GOD", "BOLD5000"])
    s1200 = hcp.run_path(root, "100206", "REST1_LR")
    s1200.rename(s1200.with_name(CURRENT_HCP_NAME))  # the current HCP release's name
    write_pretrained_ldm(root / "pretrains" / "ldm" / "label2img")
    return root


def real_config(workdir: Path, raw: Path, **stage_b) -> dict:
    """demo: false on `raw`, demo-sized models (preset demo), smallest schedules; `stage_b` keys added."""
    return {
        "demo": False, "preset": "demo", "data_root": str(raw), "results_root": str(workdir / "results"),
        "datasets": ["HCP", "GOD", "BOLD5000"],  # NSD's release format: tests/preprocess/test_nsd.py
        "preprocess": {"image_size": 16, "hcp": {"window_frames": 5}},
        "stage_a": {"pretrain": {"epochs": 1, "batch_size": 16, "checkpoint_every_n_steps": 5},
                    "finetune": {"epochs": 1, "checkpoint_every_n_steps": 5}},
        "stage_b": {"training": {"epochs": 1, "batch_size": {"GOD": 16, "BOLD5000": 8}, "val_items": 1,
                                 "val_every_n_epochs": 1, "val_steps": 2, "checkpoint_every_n_steps": 5},
                    "sampling": {"scheduler": "ddim", "steps": 2, "n_samples": 1}, **stage_b},
        "evaluation": {"n_trials": 10, "pixel_metric_px": 16},
        "resources": yaml.safe_load(SMOKE_CONFIG.read_text())["resources"],
    }


@pytest.fixture(scope="module")
def staged(raw, tmp_path_factory) -> dict:
    """One results_root taken through the stages: without an LDM as far as that goes, then with one."""
    workdir = tmp_path_factory.mktemp("real")
    no_ldm = real_config(workdir, raw)
    steps = {
        "dry_run": snakemake(workdir, "-n", config=no_ldm),
        "refused": snakemake(workdir, "--cores", "2", config=no_ldm, check=False),
    }
    steps["nothing_written"] = not (workdir / "results" / "preprocessed").exists()
    steps["preprocessing"] = snakemake(workdir, "--cores", "2", "--until", *PREPROCESSING, config=no_ldm)
    steps["stage_a"] = snakemake(workdir, "--cores", "2", "--until", "stage_a_pretrain", config=no_ldm)
    with_ldm = real_config(workdir, raw, pretrained_ldm=str(raw / "pretrains" / "ldm" / "label2img"))
    steps["whole"] = snakemake(workdir, "--cores", "2", config=with_ldm)
    return {"workdir": workdir, "config": with_ldm, **steps}


def _ran(proc) -> set[str]:
    text = proc.stdout + proc.stderr
    return {line.split()[-1].rstrip(":") for line in text.splitlines() if line.startswith(("rule ", "localrule "))}


@pytest.mark.slow
def test_without_an_ldm_the_workflow_names_the_key_before_any_work(staged):
    dry = staged["dry_run"].stdout + staged["dry_run"].stderr
    assert "stage_b_finetune cannot run: stage_b.pretrained_ldm" in dry
    refused = staged["refused"].stdout + staged["refused"].stderr
    assert staged["refused"].returncode != 0
    assert "stage_b.pretrained_ldm" in refused and "Stage B needs a pretrained latent diffusion model" in refused
    assert "Finished jobid" not in refused and staged["nothing_written"]


@pytest.mark.slow
def test_preprocessing_and_stage_a_run_without_an_ldm(staged):
    results = staged["workdir"] / "results"
    assert _ran(staged["preprocessing"]) == set(PREPROCESSING)
    for dataset, subject in (("HCP", "100206"), ("GOD", "sbj_3"), ("BOLD5000", "CSI1")):
        assert (results / "preprocessed" / dataset / subject / "fmri.npy").is_file()
    samples = (results / "preprocessed" / "HCP" / "100206" / "samples.parquet")
    assert CURRENT_HCP_NAME.encode() in samples.read_bytes()  # read from the current release's file name
    assert _ran(staged["stage_a"]) == {"stage_a_pretrain"}
    assert (results / "stage_a" / "pretrain" / "model.safetensors").is_file()


@pytest.mark.slow
def test_the_whole_chain_runs_on_real_formats_with_a_label2img_ldm(staged):
    results = staged["workdir"] / "results"
    assert _ran(staged["whole"]) == {"stage_a_finetune", "stage_b_finetune", "generate", "ceilings", "evaluate",
                                     "report_summary", "all"}
    for dataset, subject in (("GOD", "sbj_3"), ("BOLD5000", "CSI1")):
        metrics = json.loads((results / "eval" / dataset / subject / "metrics.json").read_text())
        assert metrics["n_test"] == 3 and metrics["n_samples"] == 1
        assert {"pixcorr", "ssim", "pairwise_pcc"} <= set(metrics["mindvis"])
        assert "top1_nway_mean" in metrics["skipped"]  # no classifier weights configured on real data
        assert metrics["ceilings"]["first_stage"]["n_images"] == 3
        assert "evaluation.ldm_class_index" in metrics["ceilings"]["skipped"]["class_conditioned"]
    assert planned_jobs(staged["workdir"], staged["config"]) == {}


@pytest.mark.slow
def test_command_line_demo_false_selects_the_real_data(raw, tmp_path):
    demo_file = {**real_config(tmp_path, raw), "demo": True}
    assert "demo_synthesize" in planned_jobs(tmp_path, demo_file, "--until", "preprocess_god")
    planned = planned_jobs(tmp_path, demo_file, "--until", "preprocess_god", "--config", "demo=false", "seed=1",
                           "evaluation={n_trials: 500}")
    assert planned == {"preprocess_god": 1}


@pytest.mark.slow
def test_a_released_finetuned_model_only_generates_and_evaluates(raw, tmp_path):
    config = real_config(tmp_path, raw, finetuned=str(RELEASE / "finetuned.pth"))
    config["datasets"] = ["GOD"]
    proc = snakemake(tmp_path, "--cores", "2", config=config)
    assert _ran(proc) == {"preprocess_god", "generate", "ceilings", "evaluate", "report_summary", "all"}
    metrics = json.loads((tmp_path / "results" / "eval" / "GOD" / "sbj_3" / "metrics.json").read_text())
    assert metrics["n_test"] == 3 and "pixcorr" in metrics["mindvis"]
    assert "no pretrained LDM" in metrics["ceilings"]["skipped"]["class_conditioned"]
