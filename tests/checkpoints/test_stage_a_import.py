"""Stage A checkpoint import: release layouts (built here and the reference fixtures) and the own format."""

import json
import shutil
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from mindvis.checkpoints import load_fmri_encoder, load_mbm, read_stage_a_weights, save_fmri_encoder, save_mbm
from mindvis.errors import CheckpointError
from mindvis.models.mbm import MaskedBrainModel, MbmArchitecture

FIXTURES = Path(__file__).parents[1] / "fixtures" / "release"
ARCH = MbmArchitecture(num_voxels=96, patch_size=16, embed_dim=24, depth=2, num_heads=3, mlp_ratio=2.0,
                       decoder_embed_dim=12, decoder_depth=1, decoder_num_heads=2)


def trained_looking_model(seed: int = 0) -> MaskedBrainModel:
    torch.manual_seed(seed)
    model = MaskedBrainModel(ARCH)
    with torch.no_grad():  # move every weight away from its initial value
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model.eval()


def outputs(model, x, noise):
    with torch.no_grad():
        return model(x, 0.75, noise), model.encoder()(x)


def test_release_stage_a_layout_round_trips(tmp_path, reference_config):
    model = trained_looking_model()
    optimizer = torch.optim.AdamW(model.parameters())
    config = reference_config.Config_MBM_fMRI(embed_dim=24, depth=2, num_heads=3, decoder_embed_dim=12,
                                              decoder_num_heads=2, num_voxels=96)
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 7, "scaler": {},
                "config": config}, path)
    loaded = load_mbm(path)
    assert loaded.arch == ARCH
    x, noise = torch.randn(2, 1, 96), torch.rand(2, 6)
    (expected, tokens), (got, got_tokens) = outputs(model, x, noise), outputs(loaded, x, noise)
    assert torch.equal(expected.pred, got.pred) and torch.equal(tokens, got_tokens)
    encoder = load_fmri_encoder(path)
    with torch.no_grad():
        assert torch.equal(encoder(x[:, 0]), tokens)


def test_fmri_encoder_metafile_and_finetuned_layouts(tmp_path, reference_config):
    model = trained_looking_model(1)
    stage_a = reference_config.Config_MBM_fMRI(num_heads=3, decoder_num_heads=2)
    torch.save({"model": model.state_dict(), "config": stage_a}, tmp_path / "fmri_encoder.pth")
    state = OrderedDict((f"cond_stage_model.mae.{k}", v) for k, v in model.state_dict().items()
                        if not k.startswith("decoder") and k != "mask_token")
    state["cond_stage_model.mae.mask_token"] = torch.zeros(1, 1, 24)
    state["model.diffusion_model.out.0.weight"] = torch.ones(3)
    generative = reference_config.Config_Generative_Model(patch_size=16, pretrain_mbm_path="pretrains/fmri_encoder.pth")
    torch.save({"model_state_dict": state, "config": generative, "state": torch.get_rng_state()},
               tmp_path / "finetuned.pth")
    x = torch.randn(3, 96)
    with torch.no_grad():
        want = model.encoder()(x)
        for name in ("fmri_encoder.pth", "finetuned.pth"):
            assert torch.equal(load_fmri_encoder(tmp_path / name)(x), want), name
    # without the metafile the head count is unknown: it must be given
    (tmp_path / "fmri_encoder.pth").unlink()
    with pytest.raises(CheckpointError, match="heads"):
        load_fmri_encoder(tmp_path / "finetuned.pth")
    with torch.no_grad():
        assert torch.equal(load_fmri_encoder(tmp_path / "finetuned.pth", num_heads=3)(x), want)
    with pytest.raises(CheckpointError, match="load_fmri_encoder"):
        load_mbm(tmp_path / "finetuned.pth", num_heads=3)


def test_reference_fixture_numbers():
    expected = dict(np.load(FIXTURES / "stage_a" / "expected.npz"))
    x = torch.from_numpy(expected["input_fmri"])
    model = load_mbm(FIXTURES / "stage_a" / "checkpoint.pth")
    with torch.no_grad():
        out = model(x, 0.75, torch.from_numpy(expected["mae_noise"]))
        tokens = load_fmri_encoder(FIXTURES / "stage_a" / "checkpoint.pth")(x)
    np.testing.assert_allclose(out.pred.numpy(), expected["mae_pred"], atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(out.loss.item(), expected["mae_loss"], rtol=1e-5)
    np.testing.assert_allclose(tokens.numpy(), expected["fmri_encoder_latent"], atol=1e-5, rtol=1e-4)


def test_stage_b_fixture_encoder_tokens():
    expected = dict(np.load(FIXTURES / "stage_b" / "expected.npz"))
    encoder = load_fmri_encoder(FIXTURES / "stage_b" / "finetuned.pth")
    assert (encoder.num_patches, encoder.embed_dim, encoder.arch.num_heads) == (64, 64, 4)
    with torch.no_grad():
        tokens = encoder(torch.from_numpy(expected["fmri"]))
    np.testing.assert_allclose(tokens.numpy(), expected["mae_tokens"], atol=1e-5, rtol=1e-4)


def test_own_format_round_trip(tmp_path):
    model = trained_looking_model(2)
    save_mbm(model, tmp_path / "mbm", extra={"source": "test"})
    assert sorted(p.name for p in (tmp_path / "mbm").iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_mbm(tmp_path / "mbm" / "model.safetensors")
    assert loaded.arch == ARCH
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    save_fmri_encoder(model.encoder(), tmp_path / "encoder")
    x = torch.randn(2, 96)
    with torch.no_grad():
        assert torch.equal(load_fmri_encoder(tmp_path / "encoder")(x), model.encoder()(x))
    with pytest.raises(CheckpointError, match="only an fMRI encoder"):
        load_mbm(tmp_path / "encoder")


def test_encoder_for_another_voxel_count_resamples_positions():
    encoder = load_fmri_encoder(FIXTURES / "stage_a" / "checkpoint.pth", num_voxels=1024)
    assert encoder.pos_embed.shape == (1, 65, 64)
    assert encoder(torch.randn(2, 1000)).shape == (2, 64, 64)


def test_unknown_layout_and_shape_mismatch_are_clear_errors(tmp_path):
    torch.save({"weights": {"a": 1}}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match="unknown checkpoint layout") as error:
        read_stage_a_weights(tmp_path / "odd.pth")
    assert "weights" in str(error.value)

    save_mbm(trained_looking_model(), tmp_path / "mbm")
    document = json.loads((tmp_path / "mbm" / "config.json").read_text())
    document["architecture"]["mlp_ratio"] = 1.0
    (tmp_path / "mbm" / "config.json").write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="wrong shape") as error:
        load_mbm(tmp_path / "mbm")
    assert "blocks.0.mlp.fc1" in str(error.value)

    shutil.rmtree(tmp_path / "mbm")
    (tmp_path / "mbm").mkdir()
    (tmp_path / "mbm" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError):
        load_mbm(tmp_path / "mbm")
