"""Report summary: the metrics table over every evaluated subject and the training curves from a real sqlite MLflow
store; and a real `snakemake --report` build with the report/ captions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from mindvis import tracking
from mindvis.errors import InputDataError
from mindvis.evaluation.report import latest_training_runs, summarize_results

REPO = Path(__file__).resolve().parents[2]


def metrics_document(pixcorr: float, with_retrieval: bool) -> dict:
    """A metrics.json in the evaluate rule's layout."""
    document = {
        "n_way": 50, "n_samples": 2, "n_test": 30, "n_train": 800,
        "mindvis": {"top1_nway_mean": 0.3, "top1_nway_max": 0.4, "pairwise_pcc": 0.8, "pixcorr": pixcorr},
        "baseline_ridge": {"top1_nway_mean": 0.1, "top1_nway_max": 0.1, "pairwise_pcc": 0.85, "pixcorr": 0.2},
        "chance": {"top1_nway_mean": 0.02, "top1_nway_max": 0.02, "pairwise_pcc": 0.5, "pixcorr": 0.01},
        "skipped": {"clip": "evaluation.weights.clip is not configured (no clip weight file)"},
        "baselines": {}, "higher_is_better": {}, "classifier": "demo classifier (130 classes)",
    }
    if with_retrieval:
        document["baseline_ridge_retrieval"] = {"top1_nway_mean": 0.5, "top1_nway_max": 0.5, "pairwise_pcc": 0.7,
                                                "pixcorr": 0.1}
    return document


def log_curve(run: tracking.JobRun, name: str, values: list[float]) -> None:
    for step, value in enumerate(values):
        run.log_metrics({name: value}, step=step * 10)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    for dataset, subject, pixcorr, retrieval in (("GOD", "sbj_3", 0.35, True), ("BOLD5000", "CSI1", 0.15, False)):
        folder = root / "eval" / dataset / subject
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(metrics_document(pixcorr, retrieval)))
    target = tracking.target_for(root)
    tracking.start_pipeline_run(target, {}, commit="test")
    with tracking.job_run(target, "stage_a_pretrain") as old:
        log_curve(old, "train/loss", [9.0, 8.0])  # superseded by the later run of the same job
    with tracking.job_run(target, "stage_a_pretrain") as run:
        log_curve(run, "train/loss", [1.0, 0.5, 0.2, 0.05])
        log_curve(run, "train/lr", [0.1, 0.2, 0.3, 0.4])  # a schedule, not a curve
        run.log_metrics({"seconds": 12.0})
    with tracking.job_run(target, "stage_b_finetune", {"dataset": "GOD", "subject": "sbj_3"}) as run:
        log_curve(run, "train/loss", [0.9, 0.7, 0.6])
        log_curve(run, "val/pixel_corr", [0.1, 0.2, 0.25])
    with pytest.raises(RuntimeError), tracking.job_run(target, "stage_b_finetune",
                                                       {"dataset": "BOLD5000", "subject": "CSI1"}) as run:
        log_curve(run, "train/loss", [5.0, 4.0])
        raise RuntimeError("killed")  # a FAILED run is not shown
    with tracking.job_run(target, "evaluate", {"dataset": "GOD", "subject": "sbj_3"}) as run:
        run.log_metrics({"mindvis/pixcorr": 0.35})  # not a training job
    tracking.end_pipeline_run(target, success=True)
    summarize_results(root)
    return root


def test_latest_finished_training_runs_only(results):
    target = tracking.target_for(results)
    runs = latest_training_runs(target.uri, "mindvis")
    assert [r.info.run_name for r in runs] == ["stage_a_pretrain", "stage_b_finetune[dataset=GOD,subject=sbj_3]"]
    assert runs[0].data.metrics["train/loss"] == pytest.approx(0.05)


def test_only_the_given_metrics_files_and_their_subjects_curves_are_summarised(results, tmp_path):
    root = tmp_path / "results"
    shutil.copytree(results, root)  # the store's artifact root stays the fixture's; only runs are read here
    shutil.rmtree(root / "report")
    god = root / "eval" / "GOD" / "sbj_3" / "metrics.json"
    summarize_results(root, metrics_files=[god])  # BOLD5000 CSI1 was dropped from the config; its file remains
    table = pd.read_csv(root / "report" / "metrics_table.csv")
    assert set(table["subject"]) == {"sbj_3"}
    assert "CSI1" not in (root / "report" / "metrics_table.html").read_text()
    target = tracking.target_for(root)
    names = [r.info.run_name for r in latest_training_runs(target.uri, "mindvis", {("GOD", "sbj_3")})]
    assert names == ["stage_a_pretrain", "stage_b_finetune[dataset=GOD,subject=sbj_3]"]
    assert latest_training_runs(target.uri, "mindvis", {("BOLD5000", "CSI1")})[-1].info.run_name == "stage_a_pretrain"


def test_metrics_table_csv_lists_every_subject_and_method(results):
    table = pd.read_csv(results / "report" / "metrics_table.csv")
    assert list(table.columns[:6]) == ["dataset", "subject", "method", "n_way", "n_test", "n_samples"]
    methods = table.groupby(["dataset", "subject"])["method"].apply(list).to_dict()
    assert methods == {("BOLD5000", "CSI1"): ["mindvis", "baseline_ridge", "chance"],
                       ("GOD", "sbj_3"): ["mindvis", "baseline_ridge", "baseline_ridge_retrieval", "chance"]}
    god = table[(table["subject"] == "sbj_3") & (table["method"] == "mindvis")].iloc[0]
    assert god["pixcorr"] == pytest.approx(0.35) and god["n_samples"] == 2
    assert "clip" not in table.columns  # no subject has it


def test_metrics_table_html_marks_the_best_method_and_lists_skipped(results):
    page = (results / "report" / "metrics_table.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<tr") == 1 + 7
    assert "<td><b>0.350</b></td>" in page  # MinD-Vis has the best pixcorr of sbj_3
    assert "<td><b>0.850</b></td>" in page  # the ridge baseline has the best pairwise_pcc
    assert "<td><b>0.020</b></td>" not in page  # chance is never "best"
    assert "clip (evaluation.weights.clip is not configured" in page and "50-way" in page


def test_training_curves_png(results):
    with Image.open(results / "report" / "training_curves.png") as image:
        width, height = image.size
    assert width > 600 and height > 200


def test_without_store_or_results_the_files_still_appear(tmp_path):
    written = summarize_results(tmp_path)
    assert all(path.is_file() for path in written.values())
    assert not (tmp_path / "mlflow.db").exists()  # no empty store created as a side effect


def test_unreadable_metrics_are_named(tmp_path):
    folder = tmp_path / "eval" / "GOD" / "sbj_1"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text("{not json")
    with pytest.raises(InputDataError, match="cannot read evaluation results") as error:
        summarize_results(tmp_path)
    assert "sbj_1" in str(error.value)


SNAKEFILE = """
report: "report/workflow.rst"

rule all:
    input:
        "out/report/metrics_table.html",
        "out/report/training_curves.png",
        expand("out/eval/{dataset}/{subject}/comparison.png", zip, dataset=["GOD"], subject=["sbj_3"]),

rule report_summary:
    input:
        table="given/metrics_table.html",
        curves="given/training_curves.png",
    output:
        table=report("out/report/metrics_table.html", caption="report/captions/metrics_table.rst",
                     category="2. Metrics"),
        curves=report("out/report/training_curves.png", caption="report/captions/training_curves.rst",
                      category="3. Training"),
    shell:
        "cp {input.table} {output.table} && cp {input.curves} {output.curves}"

rule evaluate:
    input:
        "given/training_curves.png",
    output:
        report("out/eval/{dataset}/{subject}/comparison.png", caption="report/captions/comparison.rst",
               category="1. Reconstructions", subcategory="{dataset} {subject}"),
    shell:
        "cp {input} {output}"
"""


def test_snakemake_report_builds_with_the_captions(results, tmp_path):
    """The report/ captions render (Jinja + reStructuredText) in a real `snakemake --report` build."""
    shutil.copytree(REPO / "report", tmp_path / "report")
    (tmp_path / "given").mkdir()
    for name in ("metrics_table.html", "training_curves.png"):
        shutil.copy(results / "report" / name, tmp_path / "given" / name)
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "config.yaml").write_text("demo: true\n")
    snakemake = [sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "config.yaml"]
    subprocess.run(snakemake, cwd=tmp_path, check=True, capture_output=True)
    built = subprocess.run([*snakemake, "--report", "report.html"], cwd=tmp_path, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    page = (tmp_path / "report.html").read_text()
    assert "mindvis: decoding images from fMRI" in page and "embedded synthetic demo data" in page
    assert "MinD-Vis against the ridge baselines for GOD sbj_3" in page
    assert "2. Metrics" in page and "3. Training" in page


def test_ceilings_are_shaded_rows_that_never_win(tmp_path):
    document = metrics_document(0.3, with_retrieval=False)
    document["ceilings"] = {"ground_truth": {"pixcorr": 1.0, "top1_nway_mean": 1.0, "n_images": 30},
                            "first_stage": {"pixcorr": 0.9, "top1_nway_mean": 0.6, "n_images": 30},
                            "mindvis": {"pixcorr": 0.3, "top1_nway_mean": 0.3, "n_images": 30},
                            "skipped": {"class_conditioned": "no LDM class index"}}
    folder = tmp_path / "eval" / "GOD" / "sbj_3"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(document))
    summarize_results(tmp_path, tracking_uri=None)
    table = pd.read_csv(tmp_path / "report" / "metrics_table.csv")
    assert table["method"].tolist() == ["mindvis", "baseline_ridge", "chance", "ceiling:ground_truth",
                                        "ceiling:first_stage"]
    html = (tmp_path / "report" / "metrics_table.html").read_text()
    assert html.count("class='ceiling'") == 2 and "(b) LDM first stage" in html
    assert "<b>1.000</b>" not in html  # a ceiling is a reference line, not the best method
    assert "not computed: no LDM class index" in html


def test_nsd_subjects_get_the_nsd_papers_table(tmp_path):
    document = metrics_document(0.3, with_retrieval=False)
    document["mindvis"] |= {"ssim": 0.41, "alexnet2": 0.961, "clip": 0.93, "swav_dist": 0.344}
    for dataset, subject in (("NSD", "subj01"), ("GOD", "sbj_3")):
        folder = tmp_path / "eval" / dataset / subject
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps(document))
    summarize_results(tmp_path, tracking_uri=None)
    html = (tmp_path / "report" / "metrics_table.html").read_text()
    nsd_table = html.split("NSD papers' layout")[1]
    headers = [cell.split(" ")[0] for cell in nsd_table.split("<th>")[3:]]
    assert headers == ["PixCorr", "SSIM", "Alex(2)", "Alex(5)", "Incep", "CLIP", "Eff", "SwAV"]
    assert "<td>subj01</td><td>MinD-Vis</td><td>0.300</td><td>0.410</td><td>96.1%</td><td>&ndash;</td>" in nsd_table
    assert "sbj_3" not in nsd_table  # GOD stays in the main table only
