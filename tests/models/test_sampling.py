"""Image generation: every sampler runs, seeds fix the images independently of batching, bad input is refused."""

from pathlib import Path

import numpy as np
import pytest
import torch

from mindvis.checkpoints import load_stage_b
from mindvis.errors import ConfigError, InputDataError
from mindvis.models.sampling import generate, initial_latent, to_uint8

FIXTURE = Path(__file__).parents[1] / "fixtures" / "release" / "stage_b"


@pytest.fixture(scope="module")
def model():
    # the reference fixture (tiny random weights) at its 64 px / 3x16x16 latent size
    return load_stage_b(FIXTURE / "finetuned.pth", config_yaml=FIXTURE / "config.yaml")


@pytest.fixture(scope="module")
def fmri():
    with np.load(FIXTURE / "expected.npz") as archive:
        return archive["fmri"][:, 0]  # (2, 1024)


@pytest.fixture(scope="module")
def images_per_sampler(model, fmri):
    return {name: generate(model, fmri, n_samples=2, scheduler=name, steps=4, seed=3, batch_size=4, progress=False)
            for name in ("plms", "ddim", "dpmpp")}


def test_every_sampler_gives_valid_uint8_images(images_per_sampler):
    for name, images in images_per_sampler.items():
        assert images.shape == (2, 2, 64, 64, 3) and images.dtype == np.uint8, name
        assert images.std() > 1, f"{name}: images are flat"
        assert not np.array_equal(images[0, 0], images[0, 1]), f"{name}: samples of one fMRI are identical"


def test_samplers_give_different_images(images_per_sampler):
    plms, ddim, dpmpp = (images_per_sampler[k].astype(int) for k in ("plms", "ddim", "dpmpp"))
    assert np.abs(plms - ddim).mean() > 0.5 and np.abs(ddim - dpmpp).mean() > 0.5


def test_same_seed_gives_the_same_images_whatever_the_batch_size(model, fmri, images_per_sampler):
    one_by_one = generate(model, fmri, n_samples=2, scheduler="ddim", steps=4, seed=3, batch_size=1, progress=False)
    difference = np.abs(one_by_one.astype(int) - images_per_sampler["ddim"])
    # batched and single convolutions round differently in float32: at most one grey level, on very few pixels
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3
    other_seed = generate(model, fmri, n_samples=2, scheduler="ddim", steps=4, seed=4, batch_size=4, progress=False)
    assert np.abs(other_seed.astype(int) - images_per_sampler["ddim"]).mean() > 0.5


def test_initial_noise_depends_on_seed_item_and_sample_only():
    shape = (3, 4, 4)
    assert torch.equal(initial_latent(1, 2, 3, shape), initial_latent(1, 2, 3, shape))
    others = [initial_latent(1, 3, 2, shape), initial_latent(2, 2, 3, shape), initial_latent(1, 2, 4, shape)]
    assert all(not torch.equal(initial_latent(1, 2, 3, shape), other) for other in others)


def test_generation_restores_the_model_mode(model, fmri):
    model.train()
    try:
        generate(model, fmri[:1], n_samples=1, scheduler="dpmpp", steps=2, progress=False)
        assert model.training
    finally:
        model.eval()


def test_to_uint8_clamps_and_rounds():
    decoded = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert to_uint8(decoded)[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]


def test_bad_requests_are_refused(model, fmri):
    with pytest.raises(ConfigError, match="unknown sampler"):
        generate(model, fmri, scheduler="euler", progress=False)
    with pytest.raises(ConfigError, match="positive"):
        generate(model, fmri, n_samples=0, progress=False)
    with pytest.raises(InputDataError, match=r"\(N, V\)"):
        generate(model, fmri[0], progress=False)
    broken = fmri.copy()
    broken[1, 5] = np.nan
    with pytest.raises(InputDataError, match="NaN"):
        generate(model, broken, progress=False)
