"""Ridge baselines: closed-form correctness, CV choice of alpha, and beating chance when fMRI is linear in pixels."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

from mindvis.config.evaluation import BaselineConfig, EvaluationConfig
from mindvis.errors import InputDataError
from mindvis.evaluation.baselines import fit_ridge, ridge_pixel_baseline, ridge_retrieval_baseline
from mindvis.evaluation.scoring import chance_levels, evaluate_all
from mindvis.evaluation.networks import MetricNetworks

IMAGE_PX = 24
CFG = EvaluationConfig(pixel_metric_px=IMAGE_PX, seed=0, baselines=BaselineConfig(pixels_px=8, cv_folds=4))


def smooth_images(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((n, 3, 3, 3))).float()
    fine = torch.nn.functional.interpolate(coarse, size=(IMAGE_PX, IMAGE_PX), mode="bicubic", align_corners=False)
    return (fine.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def linear_fmri(images: np.ndarray, n_voxels: int = 150, noise: float = 0.1, seed: int = 1) -> np.ndarray:
    """Voxels = a fixed random linear function of the (8x8-pooled) pixels + noise: what a linear decoder can invert."""
    pooled = torch.nn.functional.avg_pool2d(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255, 3)
    pixels = pooled.flatten(1).numpy()  # (N, 3 * 8 * 8)
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(pixels.shape[1], n_voxels))  # the same "brain" for train and test: fixed seed
    signal = pixels @ mixing
    return signal + noise * signal.std() * np.random.default_rng(seed + 100 + len(images)).normal(size=signal.shape)


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    train_images, test_images = smooth_images(300, seed=2), smooth_images(30, seed=3)
    return {"train_images": train_images, "test_images": test_images,
            "train_fmri": linear_fmri(train_images), "test_fmri": linear_fmri(test_images)}


@pytest.mark.parametrize("n_samples, n_voxels", [(80, 30), (25, 60)])  # more samples / more voxels than the other
def test_closed_form_equals_sklearn_ridge_on_standardised_voxels(n_samples: int, n_voxels: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_samples, n_voxels)) * rng.uniform(0.5, 3, n_voxels) + 5
    y = rng.normal(size=(n_samples, 4))
    fit = fit_ridge(x, y, alphas=(7.0,), cv_folds=3, seed=0)
    x_std = (x - x.mean(0)) / x.std(0)
    reference = Ridge(alpha=7.0).fit(x_std, y)
    np.testing.assert_allclose(fit.weights, reference.coef_.T, rtol=1e-7, atol=1e-10)
    x_new = rng.normal(size=(5, n_voxels))
    np.testing.assert_allclose(fit.predict(x_new), reference.predict((x_new - x.mean(0)) / x.std(0)), rtol=1e-7)


def test_cross_validation_picks_little_shrinkage_for_signal_and_much_for_noise() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 20))
    alphas = (1e-2, 1e1, 1e5)
    assert fit_ridge(x, x @ rng.normal(size=(20, 3)), alphas, 5, seed=0).alpha == 1e-2
    noise_fit = fit_ridge(x, rng.normal(size=(200, 3)), alphas, 5, seed=0)
    assert noise_fit.alpha == 1e5
    assert set(noise_fit.cv_mse) == set(alphas)


def test_grouped_folds_keep_repeats_of_a_stimulus_together() -> None:
    rng = np.random.default_rng(2)
    # 40 stimuli shown 3 times each; the target is pure per-stimulus noise that only memorising repeats can fit.
    stimulus = np.repeat(np.arange(40), 3)
    x = rng.normal(size=(40, 200))[stimulus] + 0.01 * rng.normal(size=(120, 200))
    y = rng.normal(size=(40, 2))[stimulus]
    alphas = (1e-3, 1e6)
    assert fit_ridge(x, y, alphas, 4, seed=0).alpha == 1e-3  # leaky folds: memorising looks good
    assert fit_ridge(x, y, alphas, 4, seed=0, groups=stimulus).alpha == 1e6  # honest folds: nothing to learn


def test_pixel_baseline_beats_chance_on_linear_fmri(data: dict[str, np.ndarray]) -> None:
    recons = ridge_pixel_baseline(data["train_fmri"], data["train_images"], data["test_fmri"], CFG)
    assert recons.shape == (30, 1, IMAGE_PX, IMAGE_PX, 3) and recons.dtype == np.uint8
    values, _ = evaluate_all(recons, data["test_images"], CFG, networks=MetricNetworks())
    chance = chance_levels(data["test_images"], CFG, networks=MetricNetworks())
    assert values["pixcorr"] > chance["pixcorr"] + 0.3
    assert values["ssim"] > chance["ssim"]
    for name in ("pairwise_mse", "pairwise_pcc", "pairwise_ssim"):
        assert values[name] > 0.8, name
    again = ridge_pixel_baseline(data["train_fmri"], data["train_images"], data["test_fmri"], CFG)
    assert np.array_equal(recons, again)  # deterministic


def test_retrieval_baseline_finds_the_seen_image_when_it_is_a_candidate(data: dict[str, np.ndarray]) -> None:
    projection = np.random.default_rng(4).normal(size=(IMAGE_PX * IMAGE_PX * 3, 64))

    def features(images: np.ndarray) -> np.ndarray:  # a fixed linear "network"
        return (images.reshape(len(images), -1) / 255.0) @ projection

    candidates = np.concatenate([data["train_images"], data["test_images"]])
    recons = ridge_retrieval_baseline(data["train_fmri"], data["train_images"], data["test_fmri"], features, CFG,
                                      candidate_images=candidates)
    assert recons.shape == (30, 1, IMAGE_PX, IMAGE_PX, 3)
    exact = np.mean([np.array_equal(recons[i, 0], data["test_images"][i]) for i in range(30)])
    assert exact > 0.8


def test_retrieval_defaults_to_the_distinct_training_stimuli(data: dict[str, np.ndarray]) -> None:
    stimulus = np.repeat(np.arange(50), 2)  # every stimulus twice, as repeated presentations
    train_images = data["train_images"][:50][stimulus]
    train_fmri = linear_fmri(train_images)
    retrieved_from = []

    def features(images: np.ndarray) -> np.ndarray:
        retrieved_from.append(len(images))
        return images.reshape(len(images), -1)[:, ::7] / 255.0

    recons = ridge_retrieval_baseline(train_fmri, train_images, data["test_fmri"], features, CFG, groups=stimulus)
    assert retrieved_from == [100, 50]  # features of the training rows, then of the 50 distinct candidates
    train_set = {image.tobytes() for image in train_images}
    assert all(recon[0].tobytes() in train_set for recon in recons)
    values, _ = evaluate_all(recons, data["test_images"], CFG, networks=MetricNetworks())
    assert values["pairwise_pcc"] > 0.6  # the nearest seen image is more like the truth than others are


@pytest.mark.parametrize("change, message", [
    ({"train_fmri": np.zeros((10, 150))}, "rows do not match"),
    ({"test_fmri": np.zeros((30, 149))}, "different voxel count"),
    ({"test_fmri": np.full((30, 150), np.nan)}, "finite"),
])
def test_bad_inputs_are_refused(data: dict[str, np.ndarray], change: dict[str, np.ndarray], message: str) -> None:
    args = {k: data[k] for k in ("train_fmri", "train_images", "test_fmri")} | change
    with pytest.raises(InputDataError, match=message):
        ridge_pixel_baseline(args["train_fmri"], args["train_images"], args["test_fmri"], CFG)


def test_too_few_training_samples_for_cross_validation(data: dict[str, np.ndarray]) -> None:
    cfg = replace(CFG, baselines=replace(CFG.baselines, cv_folds=2))
    with pytest.raises(InputDataError, match="cross-validate"):
        ridge_pixel_baseline(data["train_fmri"][:1], data["train_images"][:1], data["test_fmri"], cfg)
