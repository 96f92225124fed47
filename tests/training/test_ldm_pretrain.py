"""Demo LDM pretraining and the label2img layout it writes: CompVis keys, round trip, VQ maths, the job, resume."""

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from mlflow import MlflowClient
from torch import nn

import mindvis.config as config_module
import mindvis.training.ldm_pretrain as ldm_pretrain
from mindvis.checkpoints.label2img import (
    load_pretrained_ldm,
    save_label2img,
    to_compvis_state_dict,
)
from mindvis.checkpoints.release_ldm import architecture_from_yaml, unet_from_release, vqvae_from_release
from mindvis.checkpoints.safe_pickle import load_release_checkpoint
from mindvis.demo.images import ATTRIBUTE_SIZES, category_table
from mindvis.errors import CheckpointError
from mindvis.models.ldm import ClassConditionedLdm, build_unet, build_vqvae
from mindvis.training.runner import checkpoint_dir
from mindvis.tracking import open_job_run_for_tests
from mindvis.training.ldm_pretrain import normalize_latent_scale, quantize_with_losses, train_demo_ldm
from tests.stage_b_helpers import TINY_LDM

FIXTURE = Path(__file__).parents[1] / "fixtures" / "release" / "stage_b"


def test_compvis_state_dict_reproduces_the_reference_layout_exactly():
    """The fixture's weights were written by the reference code: converting them to diffusers and back must give
    the same CompVis keys, tensors and schedule buffers."""
    reference = load_release_checkpoint(FIXTURE / "finetuned.pth")["model_state_dict"]
    arch = architecture_from_yaml(FIXTURE / "config.yaml")
    ours = to_compvis_state_dict(unet_from_release(reference, arch), vqvae_from_release(reference, arch), arch,
                                 torch.zeros(3, arch.context_dim))
    expected = {k: v for k, v in reference.items()
                if not k.startswith(("cond_stage_model.", "model.diffusion_model.time_embed_condtion."))}
    assert set(ours) - {"cond_stage_model.embedding.weight"} == set(expected)
    assert all(torch.equal(ours[k], v) for k, v in expected.items())


def test_label2img_directory_round_trips_through_the_release_import(tmp_path):
    torch.manual_seed(0)
    unet, vqvae = build_unet(TINY_LDM), build_vqvae(TINY_LDM)
    classes = torch.randn(7, TINY_LDM.context_dim)
    directory = save_label2img(tmp_path / "ldm", TINY_LDM, unet, vqvae, classes, global_step=12)
    assert sorted(p.name for p in directory.iterdir()) == ["config.yaml", "model.ckpt"]
    assert architecture_from_yaml(directory / "config.yaml") == TINY_LDM
    for source in (directory, directory / "model.ckpt"):  # the directory, or the checkpoint file
        loaded = load_pretrained_ldm(source)
        assert loaded.architecture == TINY_LDM
        for original, copy in ((unet, loaded.unet), (vqvae, loaded.vqvae)):
            state = copy.state_dict()
            assert all(torch.equal(state[k], v) for k, v in original.state_dict().items())
    assert load_pretrained_ldm(directory, image_size=32).architecture.latent_size == 16
    assert torch.equal(load_pretrained_ldm(directory).class_embedding, classes)
    with pytest.raises(CheckpointError, match="not found"):
        load_pretrained_ldm(tmp_path / "nothing")


def test_latent_scale_normalisation_changes_the_scale_not_the_decodes():
    torch.manual_seed(0)
    vqvae = build_vqvae(TINY_LDM).eval()
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        before = vqvae.decode(vqvae.encode(images).latents).sample
        scale = normalize_latent_scale(vqvae, vqvae.encode(images).latents)
        latents = vqvae.encode(images).latents
        after = vqvae.decode(latents).sample
    assert scale > 0 and latents.std().item() == pytest.approx(1.0, rel=1e-4)
    assert torch.allclose(before, after, atol=1e-4)


def test_quantisation_is_straight_through_to_the_nearest_codes():
    torch.manual_seed(0)
    vqvae = build_vqvae(TINY_LDM)
    latents = torch.randn(2, 3, 4, 4, requires_grad=True)
    quantised, codebook, commitment, indices = quantize_with_losses(vqvae, latents)
    codes = vqvae.quantize.embedding.weight[indices].view(2, 4, 4, 3).permute(0, 3, 1, 2)
    assert torch.allclose(quantised, codes)
    assert torch.allclose(codebook, commitment) and codebook > 0  # same distance, different gradient targets
    quantised.sum().backward()
    assert torch.equal(latents.grad, torch.ones_like(latents))  # straight-through estimator


def attribute_misfit(table: torch.Tensor, categories) -> float:
    """Relative residual of the best fit of a class table (n, C) as a sum of one vector per attribute value."""
    design = torch.cat([F.one_hot(torch.tensor([c.attributes[a] for c in categories]), size).double()
                        for a, size in enumerate(ATTRIBUTE_SIZES)], dim=1)  # (n, sum of sizes)
    target = table.double()
    fit = design @ torch.linalg.lstsq(design, target).solution
    return float((target - fit).norm() / target.norm())


def tiny_config(**settings):
    architecture = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(TINY_LDM).items()}
    pretrain = {"images_per_category": 1, "vq_epochs": 1, "unet_epochs": 1, "batch_size": 64, "vq_crop_px": None,
                "sample_classes": 3, **settings}
    return config_module.resolve({"demo": True, "stage_b": {
        "architecture": architecture, "ldm_pretrain": pretrain, "sampling": {"steps": 2}}})


def test_demo_ldm_is_trained_and_written_as_label2img(tmp_path):
    cfg = tiny_config()
    with open_job_run_for_tests(tmp_path / "mlruns") as run:
        run.target = dataclasses.replace(run.target, log_every_n_steps=1)
        summary = train_demo_ldm(cfg.demo_data, cfg.stage_b, cfg.trainer, tmp_path / "ldm", tmp_path / "resume",
                                 run=run)
    assert summary["n_images"] == summary["n_classes"] == 130  # one fresh image of every demo category
    assert (summary["vq_steps"], summary["unet_steps"]) == (3, 3)  # 130 images / batch 64, one epoch each
    assert 0 < summary["codes_used"] <= 16 and summary["latent_scale"] > 0
    # only the finished VQ stays (reused while its settings hold); the UNet's resume state is gone
    assert sorted(p.name for p in (tmp_path / "resume").iterdir()) == ["vq"]
    assert (tmp_path / "resume" / "vq" / ldm_pretrain.VQ_DONE).is_dir()
    assert not checkpoint_dir(tmp_path / "resume" / "vq").exists()
    loaded = load_pretrained_ldm(tmp_path / "ldm")
    assert loaded.architecture == TINY_LDM
    assert load_pretrained_ldm(tmp_path / "ldm").class_embedding.shape == (130, TINY_LDM.context_dim)
    client = MlflowClient(tracking_uri=run.target.uri)
    grids = sorted(a.path for a in client.list_artifacts(run.run_id, "ldm_pretrain"))
    assert grids == ["ldm_pretrain/class_samples.png", "ldm_pretrain/vq_reconstructions.png"]
    assert "unet/loss" in client.get_run(run.run_id).data.metrics


def test_a_finished_vq_phase_is_not_trained_again(tmp_path, monkeypatch):
    cfg = tiny_config()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(ldm_pretrain, "save_label2img", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_demo_ldm(cfg.demo_data, cfg.stage_b, cfg.trainer, tmp_path / "ldm", tmp_path / "resume")
    assert (tmp_path / "resume" / "vq" / ldm_pretrain.VQ_DONE).is_dir() and not (tmp_path / "ldm").exists()
    monkeypatch.undo()
    summary = train_demo_ldm(cfg.demo_data, cfg.stage_b, cfg.trainer, tmp_path / "ldm", tmp_path / "resume")
    assert summary["vq_steps"] is None and summary["unet_steps"] == 3
    # UNet settings keep the finished VQ ...
    unet_changed = tiny_config(unet_lr=1e-4, min_snr_gamma=5.0, ema_decay=0.9, class_embedding="attributes")
    summary = train_demo_ldm(unet_changed.demo_data, unet_changed.stage_b, unet_changed.trainer, tmp_path / "ldm2",
                             tmp_path / "resume")
    assert summary["vq_steps"] is None
    # ... and the attribute-composed class table is written as a plain label2img table, composed
    categories = category_table(cfg.demo_data)
    assert attribute_misfit(load_pretrained_ldm(tmp_path / "ldm2").class_embedding, categories) < 1e-5
    assert attribute_misfit(load_pretrained_ldm(tmp_path / "ldm").class_embedding, categories) > 0.5
    # ... VQ settings discard it
    changed = tiny_config(vq_lr=1e-4)
    summary = train_demo_ldm(changed.demo_data, changed.stage_b, changed.trainer, tmp_path / "ldm3",
                             tmp_path / "resume")
    assert summary["vq_steps"] == 3


def test_the_exported_unet_is_the_moving_average_of_the_trained_one():
    ldm = ClassConditionedLdm(TINY_LDM, build_unet(TINY_LDM), nn.Embedding(3, TINY_LDM.context_dim))
    system = ldm_pretrain.LabelDiffusionSystem(ldm, lr=1e-3, ema_decay=0.9, min_snr_gamma=None)
    system._trainer = SimpleNamespace(global_step=10_000)  # past the warm-up: the decay is ema_decay itself
    before = [p.detach().clone() for p in ldm.parameters()]
    with torch.no_grad():
        for p in ldm.parameters():
            p.add_(1.0)
    system.on_train_batch_end(None, None, 0)
    assert system.exported is system.ema
    for averaged, start in zip(system.ema.parameters(), before, strict=True):
        torch.testing.assert_close(averaged, start + 0.1)
    assert not any(p.requires_grad for p in system.ema.parameters())
    plain = ldm_pretrain.LabelDiffusionSystem(ldm, lr=1e-3, ema_decay=0.0, min_snr_gamma=None)
    assert plain.exported is ldm and plain.ema is None


def test_min_snr_weighting_lowers_only_the_nearly_clean_steps():
    """Min-SNR-gamma scales each sample's eps-MSE by min(SNR, gamma) / SNR: 1 where SNR <= gamma, less above."""
    ldm = ClassConditionedLdm(TINY_LDM, build_unet(TINY_LDM), nn.Embedding(3, TINY_LDM.context_dim))
    latents, labels = torch.randn(8, *ldm.latent_shape), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])

    def loss(gamma):
        torch.manual_seed(0)
        with torch.no_grad():
            return float(ldm.training_loss(latents, labels, gamma))

    snr = ldm.alphas_cumprod / (1 - ldm.alphas_cumprod)
    assert loss(float(snr.max()) * 2) == pytest.approx(loss(None))  # gamma above every SNR: the plain loss
    assert loss(1.0) < loss(None)


def test_the_chroma_loss_sees_colour_but_not_brightness():
    """The VQ's chroma term must penalise a wrong colour and ignore a grey-level offset (the pixel L1's job)."""
    torch.manual_seed(0)
    image = torch.rand(2, 3, 8, 8) * 2 - 1
    brighter = image + 0.3  # same chroma
    recoloured = image + torch.tensor([0.3, -0.15, -0.15]).view(1, 3, 1, 1)  # same grey level, other colour
    assert ldm_pretrain.chroma_l1(brighter, image) == pytest.approx(0.0, abs=1e-6)
    assert ldm_pretrain.chroma_l1(recoloured, image) == pytest.approx(0.2, abs=1e-6)
