"""Calibration of the default demo: decoding pixels from the demo GOD subject is possible but far from perfect.

A plain ridge regression from z-scored fMRI (VC) to 16x16 grey images, fitted on the training trials with alpha chosen
by 5-fold cross-validation, must identify the averaged test rows' images in 70-95% of 2-way comparisons (the
defaults aim at ~80-85%). Only the raw files the demo wrote are read.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from mindvis.config.data import DemoDataConfig
from mindvis.demo import synthesize

ALPHAS = np.logspace(1, 5, 9)
PIXELS = 16


def _grey_pixels(images: np.ndarray) -> np.ndarray:
    """(n, PIXELS*PIXELS) grey values of uint8 (n, H, W, 3) images, box-downsampled."""
    return np.stack([np.asarray(Image.fromarray(image).convert("L").resize((PIXELS, PIXELS), Image.BOX),
                                dtype=np.float64).ravel() for image in images])


def _cross_validated_alpha(gram: np.ndarray, y: np.ndarray, folds: int = 5) -> float:
    """Ridge alpha with the least held-out squared error (dual form: `gram` = X X^T of the training rows)."""
    fold = np.arange(len(gram)) % folds
    error = np.zeros(len(ALPHAS))
    for k in range(folds):
        fit, held = fold != k, fold == k
        eigenvalues, eigenvectors = np.linalg.eigh(gram[np.ix_(fit, fit)])
        y_mean = y[fit].mean(0)
        projected = eigenvectors.T @ (y[fit] - y_mean)
        cross = gram[np.ix_(held, fit)] @ eigenvectors
        for i, alpha in enumerate(ALPHAS):
            predicted = cross @ (projected / (eigenvalues + alpha)[:, None]) + y_mean
            error[i] += ((predicted - y[held]) ** 2).sum()
    return float(ALPHAS[np.argmin(error)])


def two_way_identification(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Fraction of (i, j != i) pairs where prediction i correlates more with image i than with image j."""
    n = len(predicted)
    corr = np.corrcoef(predicted, actual)[:n, n:]
    wins = corr.diagonal()[:, None] > corr
    return float(wins[~np.eye(n, dtype=bool)].mean())


def ridge_identification(root) -> float:
    folder = root / "Kamitani" / "npz"
    with np.load(folder / "sbj_3.npz") as subject, np.load(folder / "images_256.npz") as images:
        vc = subject["VC"]
        train = subject["arr_0"][:, vc].astype(np.float64)
        test = subject["arr_2"][:, vc].astype(np.float64)
        y_train = _grey_pixels(images["train_images"][subject["arr_3"]])
        y_test = _grey_pixels(images["test_images"])
    mean, std = train.mean(0), train.std(0)
    x_train, x_test = (train - mean) / std, (test - mean) / std
    gram = x_train @ x_train.T  # fewer trials than voxels: solve ridge in its dual form
    alpha = _cross_validated_alpha(gram, y_train)
    y_mean = y_train.mean(0)
    dual = np.linalg.solve(gram + alpha * np.eye(len(gram)), y_train - y_mean)
    return two_way_identification(x_test @ x_train.T @ dual + y_mean, y_test)


def test_two_way_identification_is_exact_for_perfect_predictions_and_half_for_random_ones():
    rng = np.random.default_rng(0)
    actual = rng.normal(size=(30, 64))
    assert two_way_identification(actual, actual) == 1.0
    assert 0.35 < two_way_identification(rng.normal(size=(30, 64)), actual) < 0.65


def test_default_demo_god_subject_is_decodable_within_the_calibration_band(tmp_path):
    cfg = replace(DemoDataConfig(), root=tmp_path / "demo")
    synthesize(cfg, ["GOD"])
    accuracy = ridge_identification(cfg.root)
    assert 0.70 <= accuracy <= 0.95, f"2-way identification {accuracy:.3f}"


@pytest.mark.parametrize("noise_private", [0.5, 12.0])
def test_the_noise_knob_moves_decoding_accuracy(tmp_path, noise_private):
    """Guards the band test against passing for a reason other than the noise level."""
    cfg = DemoDataConfig(root=tmp_path / "demo")
    cfg = replace(cfg, god=replace(cfg.god, image_size_px=64), cortex=replace(cfg.cortex, noise_private=noise_private))
    synthesize(cfg, ["GOD"])
    accuracy = ridge_identification(cfg.root)
    if noise_private < 1:
        assert accuracy > 0.9
    else:
        assert accuracy < 0.75
