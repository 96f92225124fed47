"""Fréchet distance maths and the TF-compatible FID Inception."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
import torchvision

from mindvis.evaluation import fid
from mindvis.evaluation.fid import FID_INCEPTION_CLASSES, build_fid_inception, frechet_distance, trace_sqrt_product


def _textbook_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The usual formula with scipy's sqrtm (fine for well-conditioned, full-rank covariances)."""
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    diff = a.mean(0) - b.mean(0)
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))


def test_one_dimensional_gaussians_have_the_closed_form_distance() -> None:
    # mean 1, var 2 versus mean 2, var 8: (1-2)^2 + 2 + 8 - 2*sqrt(16) = 3
    assert frechet_distance(np.array([[0.0], [2.0]]), np.array([[0.0], [4.0]])) == pytest.approx(3.0)


def test_matches_the_textbook_formula_on_full_rank_features() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6))
    b = rng.normal(loc=0.5, scale=1.5, size=(300, 6)) @ rng.normal(size=(6, 6))
    assert frechet_distance(a, b) == pytest.approx(_textbook_fid(a, b), rel=1e-6)


def test_identical_sets_are_at_zero_even_with_rank_deficient_covariance() -> None:
    features = np.random.default_rng(1).normal(size=(20, 2048)).astype(np.float32)  # rank 19 << 2048
    different = np.random.default_rng(2).normal(size=(20, 2048))
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(features, different) > 100.0


def test_trace_term_is_the_same_through_the_gram_and_the_covariance_route() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(12, 5)), rng.normal(size=(9, 5)) @ rng.normal(size=(5, 5))
    covariance_route = trace_sqrt_product(a, b)  # 12 * 9 > 5^2
    gram_route = trace_sqrt_product(np.pad(a, ((0, 0), (0, 6))), np.pad(b, ((0, 0), (0, 6))))  # 108 <= 11^2
    assert gram_route == pytest.approx(covariance_route, rel=1e-9)
    assert covariance_route == pytest.approx(np.trace(scipy.linalg.sqrtm(a.T @ a @ b.T @ b).real), rel=1e-6)


def test_rejects_sets_too_small_or_of_different_widths() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(np.zeros((3, 4)), np.zeros((3, 5)))


def test_fid_inception_has_pytorch_fids_layout() -> None:
    model = build_fid_inception()
    state = model.state_dict()
    assert state["fc.weight"].shape == (FID_INCEPTION_CLASSES, 2048)
    assert not any(key.startswith("AuxLogits.") for key in state)
    reference = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=FID_INCEPTION_CLASSES,
                                                init_weights=False).state_dict()
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in reference.items()}


# Blocks the TF graph pools differently, with their input channel counts.
_REWIRED_BLOCKS = {"Mixed_5b": 192, "Mixed_5c": 256, "Mixed_5d": 288, "Mixed_6b": 768, "Mixed_6c": 768,
                   "Mixed_6d": 768, "Mixed_6e": 768, "Mixed_7b": 1280, "Mixed_7c": 2048}


def test_fid_inception_differs_from_torchvision_only_in_side_branch_pooling(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    tf_model = build_fid_inception().eval()
    tv_model = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=FID_INCEPTION_CLASSES,
                                               init_weights=False).eval()
    tv_model.load_state_dict(tf_model.state_dict())
    inputs = {name: torch.randn(1, channels, 9, 9) for name, channels in _REWIRED_BLOCKS.items()}
    with torch.no_grad():
        for name, x in inputs.items():
            # TF pooling changes border pixels (average over real pixels) or everything (max pooling).
            assert not torch.allclose(getattr(tf_model, name)(x), getattr(tv_model, name)(x), atol=1e-4), name
        # With torchvision's pooling swapped in, the rewired blocks compute exactly torchvision's forward.
        torchvision_pool = lambda t: torch.nn.functional.avg_pool2d(t, 3, stride=1, padding=1)  # noqa: E731
        monkeypatch.setattr(fid, "_average_pool_excluding_padding", torchvision_pool)
        monkeypatch.setattr(fid, "_max_pool_same", torchvision_pool)
        for name, x in inputs.items():
            torch.testing.assert_close(getattr(tf_model, name)(x), getattr(tv_model, name)(x), msg=name)


def test_fid_features_match_pytorch_fid_on_the_same_random_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """mindvis' FID Inception + input pipeline against pytorch-fid's own network and resizing, with the weights
    pytorch-fid would download replaced by one random state given to both (nothing is downloaded)."""
    import pytorch_fid.inception

    from mindvis.evaluation.networks import InceptionPools, fid_preprocess

    torch.manual_seed(0)
    ours = build_fid_inception()
    state = ours.state_dict()
    for key in state:  # BatchNorm statistics away from (0, 1), so that they take part in the comparison
        if key.endswith("running_mean"):
            state[key].normal_(0.0, 0.1)
        elif key.endswith("running_var"):
            state[key].uniform_(0.5, 1.5)
    ours.load_state_dict(state)
    monkeypatch.setattr(pytorch_fid.inception, "load_state_dict_from_url", lambda *args, **kwargs: state)
    theirs = pytorch_fid.inception.InceptionV3([0, 3], resize_input=True, normalize_input=True).eval()
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8))
    batch = images.permute(0, 3, 1, 2)  # (B, 3, H, W) uint8
    with torch.no_grad():
        mine = InceptionPools(ours.eval())(fid_preprocess(batch))
        pool64, pool2048 = theirs(batch.float() / 255.0)  # pytorch-fid takes [0, 1] and resizes/rescales itself
    torch.testing.assert_close(mine["pool64"], pool64.mean(dim=(2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mine["pool2048"], pool2048.flatten(1), rtol=1e-4, atol=1e-5)
