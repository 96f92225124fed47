"""Metric functions on hand-made inputs with known answers (no networks; see test_metrics_networks.py for those)."""

from __future__ import annotations

from math import comb

import numpy as np
import pandas as pd
import pytest
import scipy.spatial.distance
import torch
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity

from mindvis.config.evaluation import EvaluationConfig
from mindvis.errors import ConfigError, InputDataError
from mindvis.evaluation.metrics import (
    HIGHER_IS_BETTER,
    METRIC_NAMES,
    as_uint8_images,
    as_uint8_samples,
    correlation_matrix,
    mean_correlation_distance,
    mse_matrix,
    nway_top1,
    nway_top1_accuracy,
    pairwise_identification,
    pcc_matrix,
    pixcorr,
    to_metric_size,
    shuffled_pairing,
    ssim_gray,
    ssim_matrix,
    two_way_identification,
)
from mindvis.evaluation.scoring import chance_levels, evaluate_all, table_aggregates
from mindvis.evaluation.networks import ImageClassifier, MetricNetworks, load_networks
from mindvis.models.image_input import make_preprocess


def smooth_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Distinct, natural-ish images: random low-frequency colour fields, uint8 (n, size, size, 3)."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((n, 3, 4, 4))).float()
    fine = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    noise = torch.from_numpy(rng.normal(0, 0.03, fine.shape)).float()
    return ((fine + noise).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


# ------------------------------------------------------------------------------------------------ inputs

def test_metric_names_are_the_public_metrics_json_keys() -> None:
    assert METRIC_NAMES == ("top1_nway_mean", "top1_nway_max", "pairwise_mse", "pairwise_pcc", "pairwise_ssim",
                            "pixcorr", "ssim", "alexnet2", "alexnet5", "inception", "clip", "effnet_dist",
                            "swav_dist", "fid", "fid64")
    assert [name for name in METRIC_NAMES if not HIGHER_IS_BETTER[name]] == ["effnet_dist", "swav_dist", "fid",
                                                                            "fid64"]


def test_float_images_in_unit_range_are_converted_to_uint8() -> None:
    images = np.array([0.0, 0.5, 1.0]).reshape(1, 1, 3, 1).repeat(3, axis=3)
    assert as_uint8_images(images)[0, 0, :, 0].tolist() == [0, 128, 255]
    assert as_uint8_samples(images).shape == (1, 1, 1, 3, 3)  # a (N, H, W, 3) batch is K = 1


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 8, 8), np.uint8), "wrong shape"),
    (np.zeros((2, 8, 8, 4), np.uint8), "wrong shape"),
    (np.full((2, 8, 8, 3), 1.5), "within \\[0, 1\\]"),
    (np.full((2, 8, 8, 3), np.nan), "finite"),
    (np.zeros((2, 8, 8, 3), np.int64), "dtype"),
])
def test_bad_image_arrays_are_refused_with_a_clear_error(bad: np.ndarray, message: str) -> None:
    with pytest.raises(InputDataError, match=message):
        as_uint8_images(bad)


def test_reconstructions_must_pair_with_ground_truths() -> None:
    with pytest.raises(InputDataError, match="do not pair up"):
        evaluate_all(smooth_images(3)[:, None], smooth_images(4), EvaluationConfig(), networks=MetricNetworks())


# ------------------------------------------------------------------------------------------------ n-way

def test_nway_is_perfect_when_the_true_class_ranks_first_and_zero_when_last() -> None:
    probs = np.array([[0.5, 0.2, 0.2, 0.1], [0.1, 0.3, 0.3, 0.3]])
    accuracy = nway_top1_accuracy(probs, np.array([0, 0]), n_way=3, n_trials=100, rng=np.random.default_rng(0))
    assert accuracy.tolist() == [1.0, 0.0]


def test_nway_accuracy_follows_the_chance_of_drawing_no_higher_ranked_class() -> None:
    n_classes, n_way, outranking = 100, 10, 5
    probs = np.linspace(1.0, 0.01, n_classes)[None]  # class i ranks i-th
    accuracy = nway_top1_accuracy(probs, np.array([outranking]), n_way, n_trials=20000, rng=np.random.default_rng(0))
    # P(no outranking class among the n-1 drawn from the C-1 others)
    expected = comb(n_classes - 1 - outranking, n_way - 1) / comb(n_classes - 1, n_way - 1)
    sd = np.sqrt(expected * (1 - expected) / 20000)
    assert abs(accuracy[0] - expected) < 4 * sd


def test_nway_sampling_agrees_with_literally_drawing_the_classes() -> None:
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(30), size=1)
    true_class = int(np.argsort(probs[0])[-4])  # three classes outrank it
    literal = np.mean([
        probs[0, true_class] > probs[0, rng.choice(np.delete(np.arange(30), true_class), 5, replace=False)].max()
        for _ in range(20000)])
    sampled = nway_top1_accuracy(probs, np.array([true_class]), 6, 20000, np.random.default_rng(1))[0]
    assert sampled == pytest.approx(literal, abs=0.02)


def test_nway_mean_and_max_over_samples() -> None:
    gt_probs = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1]])
    hit, miss = [0.7, 0.1, 0.1, 0.1], [0.0, 0.4, 0.3, 0.3]
    recon_probs = np.array([[hit, miss], [miss, miss]])  # (N=2, K=2, C=4); image 1's class is 1: `miss` hits it
    mean, best = nway_top1(gt_probs, recon_probs, n_way=4, n_trials=50, seed=0)
    assert mean == pytest.approx((1 + 0 + 1 + 1) / 4)
    assert best == pytest.approx(1.0)  # sample set k=0 hits both images


def test_nway_max_is_the_best_sample_set_not_the_best_sample_per_image() -> None:
    """The reference (MinD-Vis get_eval_metric): mean over images per sample index k, then the max over k."""
    gt_probs = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1]])
    first, second = [0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1]
    # image 0 is hit only by its sample 0, image 1 only by its sample 1: every sample set scores 1/2
    recon_probs = np.array([[first, second], [first, second]])
    mean, best = nway_top1(gt_probs, recon_probs, n_way=4, n_trials=50, seed=0)
    assert (mean, best) == (pytest.approx(0.5), pytest.approx(0.5))  # a best sample per image would give 1.0


def test_table_aggregates_take_the_max_over_sample_sets_as_nway_top1() -> None:
    # image 0 is hit only by its sample 0, image 1 only by its sample 1 (the case above, as a per-image table)
    table = pd.DataFrame({"item": [0, 0, 1, 1], "sample": [0, 1, 0, 1], "top1_nway": [1.0, 0.0, 0.0, 1.0],
                          "pixcorr": [0.2, 0.4, 0.6, 0.0]})
    assert table_aggregates(table) == {"pixcorr": pytest.approx(0.3), "top1_nway_mean": 0.5, "top1_nway_max": 0.5}
    table["top1_nway"] = [1.0, 0.0, 1.0, 0.5]  # sample set 0 hits both images
    assert table_aggregates(table)["top1_nway_max"] == 1.0


def test_nway_matches_the_reference_loop_on_random_scores() -> None:
    rng = np.random.default_rng(3)
    gt_probs, recon_probs = rng.dirichlet(np.ones(20), size=12), rng.dirichlet(np.ones(20), size=(12, 4))
    mean, best = nway_top1(gt_probs, recon_probs, n_way=5, n_trials=200, seed=9)
    accuracy = nway_top1_accuracy(recon_probs.reshape(48, 20), np.repeat(gt_probs.argmax(axis=1), 4), 5, 200,
                                  np.random.default_rng(9)).reshape(12, 4)
    res_part = [np.mean(accuracy[:, s]) for s in range(4)]  # the reference: one mean per sample index
    assert (mean, best) == (pytest.approx(np.mean(res_part)), pytest.approx(np.max(res_part)))
    assert best <= accuracy.max(axis=1).mean()


def test_nway_larger_than_the_classifier_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="evaluation.n_way"):
        nway_top1_accuracy(np.ones((1, 5)) / 5, np.array([0]), 6, 10, np.random.default_rng(0))


# ---------------------------------------------------------------------------------- pairwise identification

def test_pairwise_identification_counts_strict_wins_against_other_ground_truths() -> None:
    scores = np.array([[0.9, 0.5, 0.95],
                       [0.1, 0.2, 0.2],   # a tie is not a win
                       [0.3, 0.1, 0.6]])
    assert pairwise_identification(scores, higher_is_better=True).tolist() == [0.5, 0.5, 1.0]
    assert pairwise_identification(scores, higher_is_better=False).tolist() == [0.5, 0.0, 0.0]


def test_pixel_matrices_match_direct_computation() -> None:
    a, b = smooth_images(3, seed=1), smooth_images(4, seed=2)
    af, bf = a.reshape(3, -1).astype(float), b.reshape(4, -1).astype(float)
    np.testing.assert_allclose(mse_matrix(a, b), [[np.mean((x - y) ** 2) for y in bf] for x in af], rtol=1e-9)
    np.testing.assert_allclose(pcc_matrix(a, b), [[np.corrcoef(x, y)[0, 1] for y in bf] for x in af], atol=1e-12)


def test_ssim_matrix_equals_skimage_with_the_reference_arguments() -> None:
    a, b = smooth_images(3, size=24, seed=3), smooth_images(5, size=24, seed=4)
    expected = [[structural_similarity(x, y, data_range=255, channel_axis=-1) for y in b] for x in a]
    np.testing.assert_allclose(ssim_matrix(a, b, batch_size=2), expected, atol=1e-12)


def test_identical_images_are_identified_perfectly_and_shuffled_ones_at_chance() -> None:
    images = smooth_images(60, size=16, seed=6)
    shuffled = images[shuffled_pairing(60, seed=0)]
    for matrix, higher in ((mse_matrix, False), (pcc_matrix, True), (ssim_matrix, True)):
        assert pairwise_identification(matrix(images, images), higher).mean() == 1.0
        assert pairwise_identification(matrix(shuffled, images), higher).mean() == pytest.approx(0.5, abs=0.1)


# ---------------------------------------------------------------------------------------- field suite

def test_pixcorr_and_ssim_are_one_for_identical_images_and_lower_for_others() -> None:
    images, others = smooth_images(4, seed=7), smooth_images(4, seed=8)
    assert pixcorr(images, images, size_px=40) == pytest.approx(1.0)
    assert ssim_gray(images, images, size_px=40) == pytest.approx(1.0)
    assert pixcorr(others, images, size_px=40) < 0.9
    assert ssim_gray(others, images, size_px=40) < 0.9


def test_pixcorr_and_ssim_follow_the_nsd_papers_recipe() -> None:
    a, b = smooth_images(2, seed=9), smooth_images(2, seed=10)
    ra, rb = to_metric_size(a, 50), to_metric_size(b, 50)
    assert ra.shape == (2, 50, 50, 3) and ra.min() >= 0.0 and ra.max() <= 1.0
    expected_corr = np.mean([np.corrcoef(ra[i].ravel(), rb[i].ravel())[0, 1] for i in range(2)])
    expected_ssim = np.mean([structural_similarity(rgb2gray(ra[i]), rgb2gray(rb[i]), gaussian_weights=True,
                                                   sigma=1.5, use_sample_covariance=False, data_range=1.0)
                             for i in range(2)])
    assert pixcorr(a, b, 50) == pytest.approx(expected_corr)
    assert ssim_gray(a, b, 50) == pytest.approx(expected_ssim)


def test_two_way_identification_perfect_for_identical_features_and_chance_for_random_pairs() -> None:
    rng = np.random.default_rng(11)
    features = rng.normal(size=(300, 64))
    assert two_way_identification(features, features) == 1.0
    assert two_way_identification(rng.normal(size=(300, 64)), features) == pytest.approx(0.5, abs=0.03)


def test_two_way_identification_per_reconstruction_or_per_ground_truth() -> None:
    # correlations [i, j] = r(recon_i, gt_j) of these features:
    recon = np.array([[1.0, 0.0, 0.0], [1.0, 0.9, 0.0], [0.0, 0.0, 1.0]])
    gts = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    r = correlation_matrix(recon, gts)
    per_recon = np.mean([np.mean([r[i, j] < r[i, i] for j in range(3) if j != i]) for i in range(3)])
    per_gt = np.mean([np.mean([r[i, j] < r[j, j] for i in range(3) if i != j]) for j in range(3)])
    assert per_recon != per_gt
    assert two_way_identification(recon, gts) == pytest.approx(per_recon)
    assert two_way_identification(recon, gts, per="ground_truth") == pytest.approx(per_gt)


def test_mean_correlation_distance_is_scipys_correlation_distance() -> None:
    rng = np.random.default_rng(12)
    a, b = rng.normal(size=(5, 20)), rng.normal(size=(5, 20))
    expected = np.mean([scipy.spatial.distance.correlation(a[i], b[i]) for i in range(5)])
    assert mean_correlation_distance(a, b) == pytest.approx(expected)
    assert mean_correlation_distance(a, a) == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------------------------ chance

def test_shuffled_pairing_is_a_seeded_derangement() -> None:
    perm = shuffled_pairing(50, seed=3)
    assert sorted(perm.tolist()) == list(range(50))
    assert not np.any(perm == np.arange(50))
    assert np.array_equal(perm, shuffled_pairing(50, seed=3))
    assert not np.array_equal(perm, shuffled_pairing(50, seed=4))


def test_chance_levels_without_networks() -> None:
    gts = smooth_images(12, seed=13)
    cfg = EvaluationConfig(n_way=50, pixel_metric_px=32)
    chance = chance_levels(gts, cfg, networks=MetricNetworks())
    assert chance["top1_nway_mean"] == chance["top1_nway_max"] == pytest.approx(1 / 50)
    for name in ("pairwise_mse", "pairwise_pcc", "pairwise_ssim", "alexnet2", "alexnet5", "inception", "clip"):
        assert chance[name] == 0.5
    shuffled = gts[shuffled_pairing(12, cfg.seed)]
    assert chance["pixcorr"] == pytest.approx(pixcorr(shuffled, gts, 32))
    assert chance["ssim"] == pytest.approx(ssim_gray(shuffled, gts, 32))
    assert "fid" not in chance and "effnet_dist" not in chance  # set metric; network not configured


# ------------------------------------------------------------------------------------------------ evaluate_all

class _ColourClassifier(torch.nn.Module):
    """A fixed 'classifier' over 8 classes: the logits are linear in the mean colour (deterministic, known)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3, 8)
        with torch.no_grad():
            self.head.weight.copy_(torch.from_numpy(np.random.default_rng(0).normal(size=(8, 3)) * 20))
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=(2, 3)))


def test_evaluate_all_without_weights_scores_pixels_and_records_why_the_rest_is_skipped() -> None:
    gts = smooth_images(6, seed=14)
    cfg = EvaluationConfig(pixel_metric_px=32)
    values, skipped = evaluate_all(np.stack([gts, gts], axis=1), gts, cfg)  # weights not configured: nothing loads
    assert set(values) == {"pairwise_mse", "pairwise_pcc", "pairwise_ssim", "pixcorr", "ssim"}
    assert all(values[name] == pytest.approx(1.0) for name in values)
    assert set(values) | set(skipped) == set(METRIC_NAMES)
    assert "evaluation.weights.alexnet is not configured" in skipped["alexnet2"]
    assert "evaluation.weights.classifier" in skipped["top1_nway_max"]


def test_evaluate_all_with_a_given_classifier_scores_nway() -> None:
    gts = smooth_images(5, seed=15)
    classifier = ImageClassifier(_ColourClassifier(), make_preprocess(16, (0.0,) * 3, (1.0,) * 3),
                                 torch.device("cpu"), batch_size=2)
    # 8-way over 8 classes: every trial holds all classes, so a sample hits exactly when its top-1 is the true class.
    cfg = EvaluationConfig(n_way=8, n_trials=20, pixel_metric_px=16)
    recons = np.stack([gts, np.zeros_like(gts)], axis=1)  # sample 0 perfect, sample 1 black
    values, skipped = evaluate_all(recons, gts, cfg, classifier=classifier, networks=load_networks(cfg))
    assert "top1_nway_mean" not in skipped and "top1_nway_max" not in skipped
    true_classes = classifier.probabilities(gts).argmax(axis=1)
    black_class = classifier.probabilities(np.zeros_like(gts[:1]))[0].argmax()
    black_hits = np.mean(true_classes == black_class)
    assert values["top1_nway_mean"] == pytest.approx((1.0 + black_hits) / 2)
    assert values["top1_nway_max"] == 1.0
    assert len(set(true_classes)) > 1  # the test images really fall into different classes


def test_single_test_image_skips_identification_with_a_reason() -> None:
    gts = smooth_images(1, seed=16)
    values, skipped = evaluate_all(gts[:, None], gts, EvaluationConfig(pixel_metric_px=16), networks=MetricNetworks())
    assert skipped["pairwise_ssim"] == "identification needs at least 2 test images"
    assert values["pixcorr"] == pytest.approx(1.0)
