"""Demo categories and images: enough disjoint, learnable categories; fresh images never repeat dataset images."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from mindvis.config.data import DemoDataConfig, DemoGodConfig
from mindvis.demo import category_table, generate_category_images, n_categories
from mindvis.demo.images import render_stimuli
from mindvis.errors import ConfigError


def test_default_table_has_at_least_100_distinct_categories_split_train_then_test():
    cfg = DemoDataConfig()
    table = category_table(cfg)
    assert len(table) == n_categories(cfg) >= 100
    assert [c.index for c in table] == list(range(len(table)))
    assert len({c.name for c in table}) == len(table)
    assert len({(c.shape, c.texture, c.hue) for c in table}) == len(table)
    assert len({c.wnid for c in table}) == len(table)
    assert all(c.wnid.startswith("n9") and len(c.wnid) == 9 and c.wnid[1:].isdigit() for c in table)
    splits = [c.split for c in table]
    assert splits == ["train"] * cfg.god.n_train_categories + ["test"] * cfg.god.n_test_categories


def test_too_few_categories_is_a_config_error():
    cfg = DemoDataConfig(god=DemoGodConfig(n_train_categories=50, n_test_categories=10))
    with pytest.raises(ConfigError, match="100"):
        category_table(cfg)


def test_fresh_images_are_deterministic_varied_and_not_the_dataset_images():
    cfg = DemoDataConfig()
    first = generate_category_images(cfg, 3, 4, seed=7, size_px=40)
    assert first.shape == (4, 40, 40, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, generate_category_images(cfg, 3, 4, seed=7, size_px=40))
    assert not np.array_equal(first, generate_category_images(cfg, 3, 4, seed=8, size_px=40))
    assert len({img.tobytes() for img in first}) == 4  # position/scale/colour/background vary within a category
    dataset, _ = render_stimuli(cfg, "GOD", [(3, n) for n in range(4)], 40)
    assert not any(np.array_equal(a, b) for a in first for b in dataset)


def test_unknown_category_is_a_config_error():
    with pytest.raises(ConfigError, match="no such demo category"):
        generate_category_images(DemoDataConfig(), 10_000, 1, seed=0)


def _invariant_features(images: np.ndarray) -> np.ndarray:
    """Translation-invariant cues: grey-level amplitude spectrum and a saturation-weighted colour histogram."""
    x = images.astype(np.float32) / 255.0
    grey = x.mean(-1)
    spectrum = np.abs(np.fft.rfft2(grey - grey.mean(axis=(1, 2), keepdims=True)))[:, :12, :12]
    saturation = x.max(-1) - x.min(-1)
    q = (x * 3.999).astype(int)
    bins = q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]
    hist = np.stack([np.bincount(b.ravel(), weights=s.ravel(), minlength=64) for b, s in zip(bins, saturation)])
    return np.hstack([np.log1p(spectrum.reshape(len(x), -1)), hist / x[0, ..., 0].size * 10])


def test_a_simple_classifier_learns_the_categories_from_fresh_images():
    cfg = DemoDataConfig()
    categories = range(0, n_categories(cfg), 5)
    train = [(_invariant_features(generate_category_images(cfg, c, 10, seed=0, size_px=32)), c) for c in categories]
    test = [(_invariant_features(generate_category_images(cfg, c, 5, seed=1, size_px=32)), c) for c in categories]
    x_train = np.vstack([f for f, _ in train])
    y_train = np.concatenate([[c] * len(f) for f, c in train])
    x_test = np.vstack([f for f, _ in test])
    y_test = np.concatenate([[c] * len(f) for f, c in test])
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    classifier = LogisticRegression(max_iter=2000).fit((x_train - mean) / std, y_train)
    accuracy = classifier.score((x_test - mean) / std, y_test)
    assert accuracy > 0.5, f"held-out accuracy {accuracy:.2f} over {len(categories)} categories"
