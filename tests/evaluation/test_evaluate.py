"""The evaluation job end to end on a small synthetic subject: metrics.json layout, perfect reconstructions scoring
perfectly, baselines above chance, per-image table consistent with the aggregates, MLflow logging, bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from mlflow import MlflowClient

from mindvis.config.data import DemoDataConfig
from mindvis.config.evaluation import BaselineConfig, DemoClassifierConfig, EvaluationConfig, MetricWeightsConfig
from mindvis.config.runtime import TrainerConfig
from mindvis.data.contract import PreprocessedSubject, Stimuli, write_subject
from mindvis.errors import InputDataError, WeightsError
from mindvis.evaluation import evaluate as evaluate_module
from mindvis.evaluation.evaluate import EvaluationOutputs, evaluate_subject
from mindvis.evaluation.figures import metrics_chart
from mindvis.evaluation.metrics import METRIC_NAMES
from mindvis.tracking import open_job_run_for_tests
from mindvis.training.demo_classifier import train_demo_classifier

IMAGE_PX = 32
N_TRAIN_STIMULI, N_TEST, TRAIN_REPEATS, K = 48, 8, 2, 2
CFG = EvaluationConfig(n_way=50, n_trials=200, pixel_metric_px=IMAGE_PX, device="cpu", seed=0,
                       baselines=BaselineConfig(pixels_px=8, cv_folds=4))
TOP_LEVEL_KEYS = {"n_way", "n_samples", "n_test", "n_train", "mindvis", "baseline_ridge", "chance", "skipped",
                  "baselines", "higher_is_better", "classifier"}
NETWORK_METRICS = {"alexnet2", "alexnet5", "inception", "clip", "effnet_dist", "swav_dist", "fid", "fid64"}


def smooth_images(n: int, seed: int) -> np.ndarray:
    """Distinct smooth colour images: random 3x3 colour fields, bicubically enlarged."""
    coarse = torch.from_numpy(np.random.default_rng(seed).random((n, 3, 3, 3))).float()
    fine = torch.nn.functional.interpolate(coarse, size=(IMAGE_PX, IMAGE_PX), mode="bicubic", align_corners=False)
    return (fine.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def write_synthetic_subject(directory: Path) -> Path:
    """A GOD-like subject whose voxels are a fixed linear function of the (pooled) stimulus pixels plus noise:
    train = each train stimulus twice; test = each test stimulus averaged over 5 trials, plus its single trials."""
    images = smooth_images(N_TRAIN_STIMULI + N_TEST, seed=1)
    ids = np.array([f"img{i:03d}" for i in range(len(images))])
    train_ids = np.repeat(ids[:N_TRAIN_STIMULI], TRAIN_REPEATS)
    test_ids = ids[N_TRAIN_STIMULI:]
    row_ids = np.concatenate([train_ids, test_ids, np.repeat(test_ids, 2)])
    pooled = torch.nn.functional.avg_pool2d(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255, 4)
    rng = np.random.default_rng(2)
    signal = pooled.flatten(1).numpy() @ rng.normal(size=(3 * 8 * 8, 120))
    index = {sid: i for i, sid in enumerate(ids)}
    fmri = signal[[index[s] for s in row_ids]]
    fmri = (fmri + 0.3 * signal.std() * rng.normal(size=fmri.shape)).astype(np.float32)
    n_train, n_test = len(train_ids), len(test_ids)
    samples = pd.DataFrame({
        "sample_id": np.arange(len(row_ids)),
        "split": ["train"] * n_train + ["test"] * (len(row_ids) - n_train),
        "stimulus_id": row_ids, "category": None,
        "n_averaged": np.array([1] * n_train + [5] * n_test + [1] * 2 * n_test, dtype=np.int32),
        "source": "synthetic"})
    voxels = pd.DataFrame({"roi": ["VC"] * fmri.shape[1], "mean": 0.0, "std": 1.0})
    write_subject(directory, PreprocessedSubject(samples, fmri, voxels, Stimuli(images, ids)))
    return directory


def write_samples(path: Path, subject_images: np.ndarray, recons: np.ndarray | None = None,
                  stimulus_ids: np.ndarray | None = None) -> Path:
    """samples.npz as the generate rule writes it, for the averaged test rows of the synthetic subject."""
    ground_truth = subject_images[N_TRAIN_STIMULI:]
    rows = np.arange(N_TRAIN_STIMULI * TRAIN_REPEATS, N_TRAIN_STIMULI * TRAIN_REPEATS + N_TEST)
    ids = stimulus_ids if stimulus_ids is not None else np.array([f"img{N_TRAIN_STIMULI + i:03d}"
                                                                  for i in range(N_TEST)])
    samples = recons if recons is not None else np.repeat(ground_truth[:, None], K, axis=1)
    np.savez(path, samples=samples, ground_truth=ground_truth, stimulus_id=ids, sample_id=rows)
    return path


def evaluate(samples_npz: Path, subject_dir: Path, out_dir: Path, cfg: EvaluationConfig,
             classifier_path: Path | None = None, run=None) -> dict:
    """evaluate_subject writing the workflow's file names into out_dir, for the subject of write_synthetic_subject."""
    return evaluate_subject(samples_npz, subject_dir, EvaluationOutputs.in_dir(out_dir), cfg, dataset="GOD",
                            subject="sbj_3", classifier_path=classifier_path, run=run)


@pytest.fixture(scope="module")
def subject(tmp_path_factory) -> Path:
    return write_synthetic_subject(tmp_path_factory.mktemp("subject") / "GOD" / "sbj_3")


@pytest.fixture(scope="module")
def subject_images(subject) -> np.ndarray:
    with np.load(subject / "stimuli.npz") as archive:
        return archive["images"]


@pytest.fixture(scope="module")
def demo_classifier(tmp_path_factory) -> Path:
    """A briefly trained demo classifier (the real format; its accuracy does not matter here)."""
    out = tmp_path_factory.mktemp("classifier") / "demo_classifier"
    train_demo_classifier(DemoDataConfig(), IMAGE_PX, out,
                          DemoClassifierConfig(images_per_category=2, epochs=1, width=4, seed=0),
                          TrainerConfig(accelerator="cpu"), out.parent / "resume")
    return out


@pytest.fixture(scope="module")
def perfect(subject, subject_images, demo_classifier, tmp_path_factory) -> tuple[dict, Path]:
    """Evaluation of reconstructions identical to the ground truth, with the demo classifier, into a real run."""
    root = tmp_path_factory.mktemp("perfect")
    npz = write_samples(root / "samples.npz", subject_images)
    with open_job_run_for_tests(root / "mlflow", rule="evaluate") as run:
        document = evaluate(npz, subject, root / "eval", CFG, demo_classifier, run=run)
    return document, root


def test_metrics_json_has_exactly_the_public_layout(perfect):
    document, root = perfect
    on_disk = json.loads((root / "eval" / "metrics.json").read_text())
    assert on_disk == document
    assert set(document) == TOP_LEVEL_KEYS | {"baseline_ridge_retrieval"}
    assert (document["n_way"], document["n_samples"], document["n_test"]) == (50, K, N_TEST)
    assert document["n_train"] == N_TRAIN_STIMULI * TRAIN_REPEATS
    for method in ("mindvis", "baseline_ridge", "baseline_ridge_retrieval"):
        assert set(document[method]) == set(METRIC_NAMES) - NETWORK_METRICS, method
        assert all(isinstance(v, float) for v in document[method].values())
    # chance for every computed metric (FID compares sets: it has none)
    assert set(document["chance"]) == set(document["mindvis"]) - {"fid", "fid64"}
    assert set(document["higher_is_better"]) == set(METRIC_NAMES)


def test_unconfigured_networks_are_listed_as_skipped_with_the_reason(perfect):
    skipped = perfect[0]["skipped"]
    assert set(skipped) == NETWORK_METRICS
    assert "evaluation.weights.alexnet is not configured" in skipped["alexnet2"]
    assert "fid_inception" in skipped["fid"]


def test_reconstructions_equal_to_the_ground_truth_score_perfectly(perfect):
    mindvis = perfect[0]["mindvis"]
    for name in ("top1_nway_mean", "top1_nway_max", "pairwise_mse", "pairwise_pcc", "pairwise_ssim", "pixcorr",
                 "ssim"):
        assert mindvis[name] == pytest.approx(1.0), name


def test_chance_levels(perfect):
    chance = perfect[0]["chance"]
    assert chance["top1_nway_mean"] == pytest.approx(1 / 50) and chance["top1_nway_max"] == pytest.approx(1 / 50)
    assert chance["pairwise_pcc"] == 0.5 and chance["pairwise_ssim"] == 0.5
    assert -0.5 < chance["pixcorr"] < 0.7 and chance["ssim"] < 0.9  # shuffled pairs: far from a perfect 1


def test_ridge_baselines_beat_chance_on_linear_fmri(perfect):
    document = perfect[0]
    ridge, retrieval = document["baseline_ridge"], document["baseline_ridge_retrieval"]
    assert ridge["pairwise_pcc"] > 0.75 and ridge["pixcorr"] > document["chance"]["pixcorr"] + 0.2
    assert retrieval["top1_nway_mean"] > 10 * document["chance"]["top1_nway_mean"]  # the right category, retrieved
    assert "retrieval" in document["baselines"]["baseline_ridge_retrieval"]


def test_per_image_table_matches_the_aggregates(perfect):
    document, root = perfect
    table = pd.read_csv(root / "eval" / "per_image.csv")
    assert list(table.columns[:5]) == ["method", "stimulus_id", "sample_id", "item", "sample"]
    assert (table["method"].value_counts().to_dict()
            == {"mindvis": N_TEST * K, "baseline_ridge": N_TEST, "baseline_ridge_retrieval": N_TEST})
    for method in ("mindvis", "baseline_ridge", "baseline_ridge_retrieval"):
        rows = table[table["method"] == method]
        for name in ("pixcorr", "ssim", "pairwise_mse", "pairwise_pcc", "pairwise_ssim"):
            assert rows[name].mean() == pytest.approx(document[method][name], abs=1e-5), (method, name)
        assert rows["top1_nway"].mean() == pytest.approx(document[method]["top1_nway_mean"], abs=1e-6)
        best = rows.groupby("sample")["top1_nway"].mean().max()  # the best sample set (nway_top1's max)
        assert best == pytest.approx(document[method]["top1_nway_max"], abs=1e-6)
    mindvis = table[table["method"] == "mindvis"]
    assert (mindvis["true_class"] == mindvis["predicted_class"]).all()  # demo class names, identical images


def test_figures_and_mlflow_run(perfect):
    document, root = perfect
    for name in ("comparison.png", "metrics_chart.png"):
        assert (root / "eval" / name).stat().st_size > 1000
    client = MlflowClient(tracking_uri=f"sqlite:///{(root / 'mlflow' / 'mlflow.db').resolve()}")
    run = client.search_runs([client.get_experiment_by_name("mindvis").experiment_id])[0]
    assert run.data.metrics["mindvis/pairwise_pcc"] == pytest.approx(1.0)
    assert run.data.metrics["chance/top1_nway_mean"] == pytest.approx(1 / 50)
    assert run.data.metrics["baseline_ridge/pixcorr"] == pytest.approx(document["baseline_ridge"]["pixcorr"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/metrics.json", "evaluation/per_image.json", "evaluation/comparison.png",
            "evaluation/metrics_chart.png"} <= artifacts


def test_deterministic_and_noisy_samples_score_lower(subject, subject_images, demo_classifier, perfect, tmp_path):
    rng = np.random.default_rng(5)
    truth = subject_images[N_TRAIN_STIMULI:]
    noisy = np.clip(truth[:, None].astype(int) + rng.normal(0, 60, (N_TEST, K, *truth.shape[1:])), 0, 255)
    npz = write_samples(tmp_path / "samples.npz", subject_images, noisy.astype(np.uint8))
    first = evaluate(npz, subject, tmp_path / "a", CFG, demo_classifier)
    second = evaluate(npz, subject, tmp_path / "b", CFG, demo_classifier)
    assert first == second
    assert first["mindvis"]["pixcorr"] < perfect[0]["mindvis"]["pixcorr"]
    assert first["baseline_ridge"] == perfect[0]["baseline_ridge"]  # baselines do not depend on the samples


def test_without_classifier_nway_and_retrieval_are_skipped(subject, subject_images, tmp_path):
    npz = write_samples(tmp_path / "samples.npz", subject_images)
    document = evaluate(npz, subject, tmp_path / "eval", CFG)
    assert "baseline_ridge_retrieval" not in document and document["classifier"] is None
    assert {"top1_nway_mean", "top1_nway_max"} <= set(document["skipped"])
    assert "top1_nway_mean" not in document["mindvis"]
    assert "not computed" in document["baselines"]["baseline_ridge_retrieval"]


def test_outputs_go_to_the_paths_named_and_the_chart_names_the_subject(subject, subject_images, tmp_path,
                                                                        monkeypatch):
    titles = []

    def chart(document, title=""):
        titles.append(title)
        return metrics_chart(document, title)

    monkeypatch.setattr(evaluate_module, "metrics_chart", chart)
    outputs = EvaluationOutputs(metrics=tmp_path / "m" / "scores.json", per_image=tmp_path / "t" / "table.csv",
                                comparison=tmp_path / "f" / "grid.png", chart=tmp_path / "f" / "chart.png")
    document = evaluate_subject(write_samples(tmp_path / "samples.npz", subject_images), subject, outputs, CFG,
                                dataset="BOLD5000", subject="CSI1")
    assert json.loads(outputs.metrics.read_text()) == document
    assert all(path.stat().st_size > 0 for path in (outputs.per_image, outputs.comparison, outputs.chart))
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "f/chart.png", "f/grid.png", "m/scores.json", "samples.npz", "t/table.csv"]  # nothing else, no temp files
    assert titles == ["BOLD5000 CSI1"]  # the arguments, not the subject directory's path (.../GOD/sbj_3)


def test_a_torchvision_classifier_file_is_used_with_the_configured_architecture(subject, subject_images, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "classifier.pth"
    torch.save(torchvision.models.get_model("mobilenet_v3_small", weights=None).state_dict(), path)
    npz = write_samples(tmp_path / "samples.npz", subject_images)
    cfg = replace(CFG, n_way=10, classifier_arch="mobilenet_v3_small")
    document = evaluate(npz, subject, tmp_path / "eval", cfg, path)
    assert document["n_way"] == 10 and "mobilenet_v3_small" in document["classifier"]
    assert "top1_nway_mean" in document["mindvis"] and "baseline_ridge_retrieval" in document


def test_bad_samples_are_refused_with_the_file_named(subject, subject_images, tmp_path):
    wrong_ids = np.array([f"img{i:03d}" for i in range(N_TEST)])  # train stimuli, not the rows' test stimuli
    npz = write_samples(tmp_path / "samples.npz", subject_images, stimulus_ids=wrong_ids)
    with pytest.raises(InputDataError, match="stimulus ids do not match"):
        evaluate(npz, subject, tmp_path / "eval", CFG)
    incomplete = tmp_path / "incomplete.npz"
    np.savez(incomplete, samples=np.zeros((2, 1, 8, 8, 3), np.uint8))
    with pytest.raises(InputDataError, match="lacks required arrays") as error:
        evaluate(incomplete, subject, tmp_path / "eval", CFG)
    assert "incomplete.npz" in str(error.value)
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_missing_weight_file_stops_before_scoring(subject, subject_images, tmp_path):
    npz = write_samples(tmp_path / "samples.npz", subject_images)
    cfg = replace(CFG, weights=MetricWeightsConfig(alexnet=tmp_path / "missing.pth"))
    with pytest.raises(WeightsError, match="weight file not found"):
        evaluate(npz, subject, tmp_path / "eval", cfg)
    assert not (tmp_path / "eval").exists()


@pytest.mark.slow
def test_with_every_metric_network_nothing_is_skipped(subject, subject_images, demo_classifier, full_eval_config,
                                                      tmp_path):
    """All metric networks from real-format weight files (random weights, tests/evaluation/conftest.py)."""
    npz = write_samples(tmp_path / "samples.npz", subject_images)
    cfg = replace(full_eval_config, pixel_metric_px=IMAGE_PX, baselines=CFG.baselines)
    document = evaluate(npz, subject, tmp_path / "eval", cfg, demo_classifier)
    assert document["skipped"] == {}
    for method in ("mindvis", "baseline_ridge", "baseline_ridge_retrieval"):
        assert set(document[method]) == set(METRIC_NAMES), method
    assert document["fid_n_images"] == {"mindvis": N_TEST * K, "baseline_ridge": N_TEST,
                                        "baseline_ridge_retrieval": N_TEST, "ground_truth": N_TEST}
    # the ground truth itself (each image K times) is far closer to the ground truth than blurry ridge images
    assert document["mindvis"]["fid"] < 0.2 * document["baseline_ridge"]["fid"]
    assert document["mindvis"]["alexnet2"] == 1.0 and document["mindvis"]["effnet_dist"] < 1e-2
    assert document["chance"]["effnet_dist"] > 10 * document["mindvis"]["effnet_dist"]
