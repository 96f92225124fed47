"""The imported MinD-Vis Stage-B fixture reproduces the reference implementation's outputs (expected.npz).

The fixture was made by running the public MinD-Vis code with tiny random weights; tolerances follow its MANIFEST:
1e-4 for context / eps / latents, 1e-3 for decoded images and the PLMS run, VQ codes exact, loss rtol 1e-4.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from mindvis.checkpoints import load_stage_b
from mindvis.models.sampling import LatentImagePipeline
from mindvis.models.ldm import alphas_cumprod, make_sampler

FIXTURE = Path(__file__).parents[1] / "fixtures" / "release" / "stage_b"


@pytest.fixture(scope="module")
def model():
    return load_stage_b(FIXTURE / "finetuned.pth", config_yaml=FIXTURE / "config.yaml")


@pytest.fixture(scope="module")
def expected():
    with np.load(FIXTURE / "expected.npz") as archive:
        return {key: torch.from_numpy(archive[key]) for key in archive.files}


def close(actual: torch.Tensor, reference: torch.Tensor, atol: float) -> None:
    assert actual.shape == reference.shape
    error = (actual - reference).abs().max().item()
    assert error <= atol, f"max abs error {error:.3g} > {atol}"


@torch.no_grad()
def test_conditioning_matches(model, expected):
    close(model.conditioner.encoder(expected["fmri"]), expected["mae_tokens"], 1e-4)
    context, time_cond = model.condition(expected["fmri"])
    close(context, expected["context"], 1e-4)
    close(time_cond, expected["time_cond"].squeeze(1), 1e-4)


@torch.no_grad()
def test_timestep_embedding_and_its_sum_with_time_conditioning_match(model, expected):
    sinusoid = model.unet.time_proj(expected["timesteps"])
    close(sinusoid, expected["t_sinusoid"], 1e-4)
    t_emb = model.unet.time_embedding(sinusoid)
    close(t_emb, expected["t_emb"], 1e-4)
    close(t_emb + model.time_head(expected["context"]), expected["emb_total"], 1e-4)


@torch.no_grad()
def test_noise_prediction_matches(model, expected):
    eps = model.predict_noise(expected["x_t"], expected["timesteps"], expected["fmri"])
    close(eps, expected["eps"], 1e-4)


@torch.no_grad()
def test_first_stage_matches(model, expected):
    close(model.encode(expected["image"]), expected["image_latent"], 1e-4)
    close(model.decode(expected["image_latent_scaled"]), expected["image_recon"], 1e-3)
    close(model.decode(expected["z"]), expected["z_decoded"], 1e-3)
    close(model.decode(expected["z"], quantize=False), expected["z_decoded_noquant"], 1e-3)
    assert torch.equal(model.codebook_indices(expected["z"]), expected["z_vq_indices"])


def test_schedule_matches(model, expected):
    close(alphas_cumprod(model.architecture), expected["alphas_cumprod"], 1e-6)
    sampler = make_sampler("plms", model.architecture)
    close(sampler.betas, expected["betas"], 1e-7)
    close(sampler.alphas_cumprod, expected["alphas_cumprod"], 1e-5)


@torch.no_grad()
def test_training_loss_with_fixed_noise_matches(model, expected):
    model.train()
    try:
        x_noisy = model.add_noise(expected["image_latent_scaled"], expected["loss_noise"], expected["timesteps"])
        close(x_noisy, expected["loss_x_noisy"], 1e-4)
        loss = model.training_loss(expected["image"], expected["fmri"], noise=expected["loss_noise"],
                                   t=expected["timesteps"])
    finally:
        model.eval()
    assert loss.item() == pytest.approx(expected["loss"].item(), rel=1e-4)


@torch.no_grad()
def test_five_step_plms_run_matches(model, expected):
    sampler = make_sampler("plms", model.architecture)
    sampler.set_timesteps(5)
    # diffusers evaluates the first PLMS step twice (the reference's pseudo improved Euler) at the same t
    assert list(dict.fromkeys(sampler.timesteps.tolist())) == expected["plms_timesteps"].tolist()
    context, time_cond = model.condition(expected["fmri"])
    latents = LatentImagePipeline.with_sampler(model, model.vqvae, "plms").denoise(expected["plms_x_T"], context,
                                                                                 time_cond, steps=5)
    close(latents, expected["plms_latent"], 1e-3)
    image = ((model.decode(latents) + 1) / 2).clamp(0, 1)
    close(image, expected["plms_image"], 1e-3)
