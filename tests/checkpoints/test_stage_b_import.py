"""Stage-B checkpoints: MinD-Vis finetuned.pth and label2img imports, the own format, refusals and bad files."""

import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel, VQModel

from mindvis.checkpoints import (
    load_fmri_encoder,
    load_label2img,
    load_release_checkpoint,
    load_stage_b,
    save_stage_b,
)
from mindvis.checkpoints.release_ldm import architecture_from_yaml, infer_architecture
from mindvis.errors import CheckpointError, UnsafePickleError

FIXTURE = Path(__file__).parents[1] / "fixtures" / "release" / "stage_b"


class RunsAShellCommand:
    """Unpickling this calls os.system(command): what a hostile checkpoint would do."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.fixture(scope="module")
def expected():
    with np.load(FIXTURE / "expected.npz") as archive:
        return {key: torch.from_numpy(archive[key]) for key in archive.files}


@pytest.fixture(scope="module")
def finetuned_state():
    return load_release_checkpoint(FIXTURE / "finetuned.pth")["model_state_dict"]


@pytest.fixture(scope="module")
def imported():
    return load_stage_b(FIXTURE / "finetuned.pth", config_yaml=FIXTURE / "config.yaml")


def label2img_layout(finetuned_state) -> dict:
    """The pretrained-LDM checkpoint of the release layout: no fMRI stage, no time head, a class embedder."""
    state = OrderedDict((k, v) for k, v in finetuned_state.items()
                        if not k.startswith(("cond_stage_model.", "model.diffusion_model.time_embed_condtion.")))
    state["cond_stage_model.embedding.weight"] = torch.randn(1001, 32)
    return {"state_dict": state}


def test_finetuned_sizes_are_inferred_from_weights_as_in_the_ldm_config(finetuned_state):
    inferred = infer_architecture(finetuned_state, image_size=64)
    assert inferred == architecture_from_yaml(FIXTURE / "config.yaml")
    assert (inferred.model_channels, inferred.channel_mult, inferred.attention_resolutions) == (32, (1, 2), (2,))
    assert (inferred.vq_channel_mult, inferred.vq_num_embeddings, inferred.latent_size) == ((1, 2, 2), 256, 16)


def test_finetuned_loads_without_any_extra_file(expected):
    model = load_stage_b(FIXTURE / "finetuned.pth")
    assert not model.training
    # no LDM config in the file: image size from the pickled Config_Generative_Model (img_size 256)
    assert model.architecture.image_size == 256 and model.latent_shape == (3, 64, 64)
    assert model.conditioner.encoder.arch.num_heads == 4  # from fmri_encoder.pth beside it (release layout)
    with torch.no_grad():
        eps = model.predict_noise(expected["x_t"], expected["timesteps"], expected["fmri"])
    assert (eps - expected["eps"]).abs().max() < 1e-4


def test_image_size_can_be_overridden():
    assert load_stage_b(FIXTURE / "finetuned.pth", image_size=64).latent_shape == (3, 16, 16)


def test_label2img_layout_loads_as_diffusers_modules(tmp_path, finetuned_state, expected):
    path = tmp_path / "model.ckpt"
    torch.save(label2img_layout(finetuned_state), path)
    for config_yaml in (FIXTURE / "config.yaml", None):
        pretrained = load_label2img(path, config_yaml)
        assert isinstance(pretrained.unet, UNet2DConditionModel) and isinstance(pretrained.vqvae, VQModel)
        assert pretrained.unet.config.class_embed_type == "identity"
        with torch.no_grad():
            latents = pretrained.vqvae.encode(expected["image"]).latents
            eps = pretrained.unet(expected["x_t"], expected["timesteps"], encoder_hidden_states=expected["context"],
                                  class_labels=expected["time_cond"].squeeze(1)).sample
        assert (latents - expected["image_latent"]).abs().max() < 1e-4
        assert (eps - expected["eps"]).abs().max() < 1e-4  # same UNet weights as the fine-tuned fixture
    assert load_label2img(path, FIXTURE / "config.yaml").architecture.image_size == 64


def test_label2img_with_missing_unet_weight_is_refused(tmp_path, finetuned_state):
    checkpoint = label2img_layout(finetuned_state)
    del checkpoint["state_dict"]["model.diffusion_model.output_blocks.2.1.proj_out.weight"]
    torch.save(checkpoint, tmp_path / "model.ckpt")
    with pytest.raises(CheckpointError, match="do not fit") as err:
        load_label2img(tmp_path / "model.ckpt", FIXTURE / "config.yaml")
    assert "model.ckpt" in str(err.value) and "up_blocks.0.attentions.2.proj_out.weight" in str(err.value)


def test_config_yaml_that_does_not_fit_the_weights_is_refused(tmp_path, finetuned_state):
    torch.save(label2img_layout(finetuned_state), tmp_path / "model.ckpt")
    wrong = (FIXTURE / "config.yaml").read_text().replace("context_dim: 32", "context_dim: 64")
    (tmp_path / "config.yaml").write_text(wrong)
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_label2img(tmp_path / "model.ckpt", tmp_path / "config.yaml")


def test_unreadable_config_yaml_is_a_checkpoint_error(tmp_path):
    (tmp_path / "config.yaml").write_text("model: {params: {}}\n")
    with pytest.raises(CheckpointError, match="cannot read the LDM config") as err:
        architecture_from_yaml(tmp_path / "config.yaml")
    assert "config.yaml" in str(err.value)


def test_stage_b_result_loaded_as_label2img_names_the_layout():
    with pytest.raises(CheckpointError, match="state_dict"):
        load_label2img(FIXTURE / "finetuned.pth")


@pytest.mark.parametrize("loader", [load_stage_b, load_label2img])
def test_pickled_code_is_refused_and_not_run(tmp_path, finetuned_state, loader):
    marker = tmp_path / "pwned"
    payload = {"model_state_dict": OrderedDict(w=torch.zeros(1)), "state_dict": OrderedDict(w=torch.zeros(1)),
               "config": RunsAShellCommand(f"touch {marker}")}
    torch.save(payload, tmp_path / "finetuned.pth")
    with pytest.raises(UnsafePickleError, match="allow-list") as err:
        loader(tmp_path / "finetuned.pth")
    assert "system" in str(err.value)
    assert not marker.exists()


def test_own_format_round_trip(tmp_path, imported, expected):
    directory = save_stage_b(imported, tmp_path / "stage_b", metadata={"source": "finetuned.pth"})
    assert sorted(p.name for p in directory.iterdir()) == [
        "conditioning.safetensors", "encoder", "stage_b.json", "unet", "vqvae"]
    assert json.loads((directory / "stage_b.json").read_text())["metadata"] == {"source": "finetuned.pth"}
    loaded = load_stage_b(directory)
    assert loaded.architecture == imported.architecture
    with torch.no_grad():
        eps = loaded.predict_noise(expected["x_t"], expected["timesteps"], expected["fmri"])
    assert (eps - expected["eps"]).abs().max() < 1e-4
    # each part is usable on its own: diffusers reads unet/ and vqvae/, the Stage-A loader reads encoder/
    unet = UNet2DConditionModel.from_pretrained(directory / "unet", low_cpu_mem_usage=False)
    assert unet.config.cross_attention_dim == 32
    assert load_fmri_encoder(directory / "encoder").arch == imported.conditioner.encoder.arch


def test_own_format_with_damaged_files_is_refused(tmp_path, imported):
    directory = save_stage_b(imported, tmp_path / "stage_b")
    (directory / "conditioning.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="cannot load the Stage-B weights"):
        load_stage_b(directory)
    (directory / "stage_b.json").write_text('{"format": "something-else", "version": 1}')
    with pytest.raises(CheckpointError, match="unknown Stage-B checkpoint format"):
        load_stage_b(directory)


def test_directory_that_is_not_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not a Stage-B checkpoint") as err:
        load_stage_b(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_stage_b(tmp_path / "finetuned.pth")
