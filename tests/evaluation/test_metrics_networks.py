"""evaluate_all and chance_levels end to end with every metric network loaded from real-format weight files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest
import torch

from mindvis.config.evaluation import EvaluationConfig, MetricWeightsConfig
from mindvis.evaluation.metrics import METRIC_NAMES
from mindvis.evaluation.scoring import chance_levels, evaluate_all
from mindvis.evaluation.networks import MetricNetworks, load_networks
from mindvis.models.image_input import IMAGENET_MEAN, IMAGENET_STD, make_preprocess

N_IMAGES = 5


def smooth_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((n, 3, 4, 4))).float()
    fine = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return (fine.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


GTS = smooth_images(N_IMAGES, seed=1)
UNRELATED = smooth_images(N_IMAGES, seed=2)
_NOISE = np.random.default_rng(0).normal(size=GTS.shape)
RECONSTRUCTIONS = {  # name -> (N, K, H, W, 3)
    "identical": GTS[:, None],
    "unrelated": UNRELATED[:, None],
    "blend": (0.75 * GTS + 0.25 * UNRELATED).round().astype(np.uint8)[:, None],  # mostly the right image
    "light_noise": np.clip(GTS + 8 * _NOISE, 0, 255).astype(np.uint8)[:, None],
    "heavy_noise": np.clip(GTS + 60 * _NOISE, 0, 255).astype(np.uint8)[:, None],
}
RECONSTRUCTIONS["blend_then_unrelated"] = np.concatenate([RECONSTRUCTIONS["blend"], UNRELATED[:, None]], axis=1)


@pytest.fixture(scope="module")
def networks(full_eval_config: EvaluationConfig) -> MetricNetworks:
    """The networks as loaded from their files, with smaller input resolutions than the papers' (224-342 px) to
    keep CPU tests fast; the papers' preprocessing itself is tested in test_networks.py."""
    loaded = load_networks(full_eval_config)
    for network, size_px in ((loaded.alexnet, 64), (loaded.effnet, 64), (loaded.swav, 64)):
        network.preprocess = make_preprocess(size_px, IMAGENET_MEAN, IMAGENET_STD)
    for network in (loaded.inception, loaded.fid_inception):
        network.preprocess = make_preprocess(80, (0.5,) * 3, (0.5,) * 3)  # [-1, 1]; Inception needs >= 75 px
    return loaded


@pytest.fixture(scope="module")
def scores(full_eval_config: EvaluationConfig,
           networks: MetricNetworks) -> Callable[[str], tuple[dict[str, float], dict[str, str]]]:
    """evaluate_all of RECONSTRUCTIONS[name] against GTS, computed once per name."""
    cache: dict[str, tuple[dict[str, float], dict[str, str]]] = {}

    def score(name: str) -> tuple[dict[str, float], dict[str, str]]:
        if name not in cache:
            cache[name] = evaluate_all(RECONSTRUCTIONS[name], GTS, full_eval_config, networks=networks)
        return cache[name]

    return score


def test_identical_reconstructions_score_perfectly_on_every_metric(scores: Callable) -> None:
    values, skipped = scores("identical")
    assert skipped == {}
    assert set(values) == set(METRIC_NAMES) | {"fid_n_images", "fid64_n_images"}
    for name in ("top1_nway_mean", "top1_nway_max", "pairwise_mse", "pairwise_pcc", "pairwise_ssim", "pixcorr",
                 "ssim", "alexnet2", "alexnet5", "inception", "clip"):
        assert values[name] == pytest.approx(1.0), name
    for name in ("effnet_dist", "swav_dist"):
        assert values[name] == pytest.approx(0.0, abs=1e-6), name
    assert values["fid_n_images"] == values["fid64_n_images"] == N_IMAGES
    # FID of a set with itself is 0 up to float32 feature rounding; of other images it is clearly positive.
    unrelated, _ = scores("unrelated")
    for name in ("fid", "fid64"):
        assert 0.0 <= values[name] <= 1e-6 * unrelated[name], name


def test_worse_reconstructions_score_worse(scores: Callable) -> None:
    near, _ = scores("blend")
    far, _ = scores("unrelated")
    # Pixel metrics and a shallow feature layer only: deep randomly initialised networks are chaotic (a blend can
    # decorrelate from its source more than an unrelated image does), so their perceptual ordering is not testable.
    for name in ("pixcorr", "ssim", "pairwise_pcc", "pairwise_ssim", "alexnet2"):
        assert near[name] > far[name], name


def test_fid_grows_with_the_distribution_shift(scores: Callable) -> None:
    light, _ = scores("light_noise")
    heavy, _ = scores("heavy_noise")
    for name in ("fid", "fid64"):
        assert 0.0 < light[name] < heavy[name], name


def test_samples_are_averaged_and_the_best_sample_counts_for_nway_max(scores: Callable) -> None:
    both, _ = scores("blend_then_unrelated")
    first, _ = scores("blend")
    second, _ = scores("unrelated")
    for name in ("pairwise_pcc", "pairwise_ssim", "pixcorr", "ssim", "alexnet5", "inception", "clip", "effnet_dist",
                 "swav_dist"):
        # (features of a batch of 2N images vs. N: float32 convolution results differ in the last digits)
        assert both[name] == pytest.approx((first[name] + second[name]) / 2, rel=1e-4), name
    # n-way trials are random draws: the same protocol, other draws.
    assert both["top1_nway_mean"] == pytest.approx((first["top1_nway_mean"] + second["top1_nway_mean"]) / 2,
                                                   abs=0.03)
    assert both["top1_nway_max"] >= max(first["top1_nway_max"], second["top1_nway_max"])
    assert both["fid_n_images"] == 2 * N_IMAGES  # all generated samples against the N ground truths


def test_unconfigured_networks_are_skipped_and_the_rest_is_scored(full_eval_config: EvaluationConfig) -> None:
    weights = full_eval_config.weights
    cfg = replace(full_eval_config, weights=MetricWeightsConfig(alexnet=weights.alexnet, classifier=weights.classifier))
    gts = GTS[:3]
    values, skipped = evaluate_all(gts[:, None], gts, cfg)  # loads its own networks, at the papers' sizes
    assert set(skipped) == {"inception", "clip", "effnet_dist", "swav_dist", "fid", "fid64"}
    assert "evaluation.weights.clip" in skipped["clip"]
    assert values["alexnet2"] == values["alexnet5"] == values["top1_nway_max"] == pytest.approx(1.0)


def test_chance_levels_with_networks(full_eval_config: EvaluationConfig, networks: MetricNetworks,
                                     scores: Callable) -> None:
    chance = chance_levels(GTS, full_eval_config, networks=networks)
    assert chance["top1_nway_mean"] == pytest.approx(1 / full_eval_config.n_way)
    assert chance["clip"] == 0.5
    identical, _ = scores("identical")
    for name in ("effnet_dist", "swav_dist"):
        assert identical[name] < chance[name], name
    assert identical["pixcorr"] > chance["pixcorr"]
