"""The masked brain model: masking, loss, padding, and the reference implementation's numbers."""

from pathlib import Path

import numpy as np
import pytest
import torch

from mindvis.errors import ConfigError
from mindvis.models.mbm import (
    MaskedBrainModel,
    MbmArchitecture,
    architecture_from_state_dict,
    pad_voxels,
    padded_voxel_count,
    sincos_positions,
    voxel_index,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "release" / "stage_a"


def tiny_model(num_voxels: int = 64, patch_size: int = 8, seed: int = 0) -> MaskedBrainModel:
    torch.manual_seed(seed)
    arch = MbmArchitecture(num_voxels=num_voxels, patch_size=patch_size, embed_dim=32, depth=2, num_heads=4,
                           mlp_ratio=1.0, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    return MaskedBrainModel(arch)


@pytest.fixture(scope="module")
def reference():
    """The fixture's reference model (MAEforFMRI weights) and the outputs the reference code computed."""
    state = torch.load(FIXTURES / "model_state_dict.pt", weights_only=True)
    model = MaskedBrainModel(architecture_from_state_dict(state, num_heads=4, decoder_num_heads=4))
    model.load_state_dict(state, strict=True)
    expected = dict(np.load(FIXTURES / "expected.npz"))
    return model.eval(), expected


@pytest.mark.parametrize("mask_ratio", [0.0, 0.5, 0.75, 0.9])
def test_random_masking_keeps_the_right_count_and_restores_order(mask_ratio):
    tokens = torch.randn(3, 10, 4)
    kept, mask, ids_restore = MaskedBrainModel.random_masking(tokens, mask_ratio)
    n_keep = int(10 * (1 - mask_ratio))
    assert kept.shape == (3, n_keep, 4)
    assert torch.equal(mask.sum(dim=1), torch.full((3,), float(10 - n_keep)))
    # putting the kept tokens back (zeros for the removed ones) through ids_restore gives the original order
    shuffled = torch.cat([kept, torch.zeros(3, 10 - n_keep, 4)], dim=1)
    restored = torch.gather(shuffled, 1, ids_restore.unsqueeze(-1).expand(-1, -1, 4))
    keep = mask == 0
    assert torch.equal(restored[keep], tokens[keep])
    assert torch.all(restored[~keep] == 0)


def test_random_masking_with_explicit_noise_keeps_the_lowest_scores():
    tokens = torch.arange(6, dtype=torch.float32).reshape(1, 6, 1)
    noise = torch.tensor([[0.9, 0.1, 0.5, 0.3, 0.8, 0.2]])
    kept, mask, _ = MaskedBrainModel.random_masking(tokens, 0.5, noise)
    assert kept.flatten().tolist() == [1.0, 5.0, 3.0]  # ascending noise order
    assert mask.tolist() == [[1.0, 0.0, 1.0, 0.0, 1.0, 0.0]]


def test_loss_covers_removed_patches_only():
    model = tiny_model()
    voxels = torch.randn(2, 1, 64)
    pred = torch.zeros(2, 8, 8)
    mask = torch.zeros(2, 8)
    mask[:, :3] = 1  # patches 0-2 removed
    loss = model.forward_loss(voxels, pred, mask)
    changed_kept = voxels.clone()
    changed_kept[..., 3 * 8:] += 100.0  # only kept patches change
    assert model.forward_loss(changed_kept, pred, mask) == loss
    expected = (voxels[..., : 3 * 8] ** 2).mean()
    torch.testing.assert_close(loss, expected)
    assert model.forward_loss(voxels, pred, torch.zeros(2, 8)) == 0


def test_forward_shapes_and_padding_of_short_vectors():
    model = tiny_model()
    out = model(torch.randn(5, 50), mask_ratio=0.75)  # 50 voxels -> wrap-padded to 64
    assert out.pred.shape == (5, 8, 8) and out.mask.shape == (5, 8) and out.loss.ndim == 0
    assert model.encoder()(torch.randn(5, 1, 64)).shape == (5, 8, 32)


def test_voxel_index_reproduces_the_reference_two_stage_wrap_padding():
    # 20 voxels, patch 16: first padded to 32 with voxels 0..11, then that vector wrapped to 48
    index = voxel_index(20, 48, 16)
    assert index[:20].tolist() == list(range(20))
    assert index[20:32].tolist() == list(range(12))
    assert index[32:48].tolist() == list(range(16))
    assert voxel_index(20, 16, 16).tolist() == list(range(16))  # cut
    assert padded_voxel_count(4183, 16) == 4192 and padded_voxel_count(4643, 16) == 4656
    assert padded_voxel_count(32, 16) == 48  # the reference always appends: a whole patch when divisible
    fmri = torch.arange(20.0).reshape(1, 20)
    assert torch.equal(pad_voxels(fmri, 48, 16)[0, 0], fmri[0, torch.tensor(index)])


def test_sincos_positions_are_fixed_and_zero_for_cls():
    table = sincos_positions(num_patches=10, dim=8)
    assert table.shape == (1, 11, 8)
    assert torch.all(table[0, 0] == 0)
    position, i = 3, 1
    assert table[0, 1 + position, i].item() == pytest.approx(np.sin(position / 10000 ** (i / 4)), abs=1e-7)
    assert table[0, 1 + position, 4 + i].item() == pytest.approx(np.cos(position / 10000 ** (i / 4)), abs=1e-7)
    model = tiny_model()
    assert "pos_embed" not in dict(model.named_parameters())  # not trained


def test_invalid_sizes_are_config_errors():
    with pytest.raises(ConfigError, match="num_heads"):
        MbmArchitecture(num_voxels=64, patch_size=8, embed_dim=30, num_heads=4)
    with pytest.raises(ConfigError, match="multiple of patch_size"):
        MbmArchitecture(num_voxels=60, patch_size=8)


def test_tiny_model_overfits_one_batch():
    """With a fixed mask, a tiny model memorises the removed patches of one batch of noise."""
    model = tiny_model(seed=1)
    batch = torch.randn(4, 1, 64, generator=torch.Generator().manual_seed(0))
    noise = torch.rand(4, 8, generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = model(batch, 0.5, noise).loss.item()
    for _ in range(200):
        optimizer.zero_grad()
        loss = model(batch, 0.5, noise).loss
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.01 * first


def test_matches_reference_masked_autoencoder_for_fixed_noise(reference):
    model, expected = reference
    x = torch.from_numpy(expected["input_fmri"])
    noise = torch.from_numpy(expected["mae_noise"])
    with torch.no_grad():
        latent, mask, ids_restore = model.forward_encoder(x, 0.75, noise)
        out = model(x, 0.75, noise)
    assert torch.equal(ids_restore, torch.from_numpy(expected["mae_ids_restore"]))
    assert torch.equal(mask, torch.from_numpy(expected["mae_mask"]))
    np.testing.assert_allclose(latent.numpy(), expected["mae_latent_masked"], atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(out.pred.numpy(), expected["mae_pred"], atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(out.loss.item(), expected["mae_loss"], rtol=1e-5)
    np.testing.assert_array_equal(model.patchify(x).numpy(), expected["patchify_input"])


def test_default_noise_is_drawn_like_the_reference(reference):
    """The reference draws torch.rand(N, L) right after its seed; so must the default path."""
    model, expected = reference
    torch.manual_seed(777)
    with torch.no_grad():
        out = model(torch.from_numpy(expected["input_fmri"]), mask_ratio=0.75)
    assert torch.equal(out.mask, torch.from_numpy(expected["mae_mask"]))
    np.testing.assert_allclose(out.loss.item(), expected["mae_loss"], rtol=1e-5)


def test_matches_reference_without_masking_and_encoder_view(reference):
    model, expected = reference
    x = torch.from_numpy(expected["input_fmri"])
    with torch.no_grad():
        latent, _, ids_restore = model.forward_encoder(x, 0.0, torch.from_numpy(expected["mae_noise_ratio0"]))
        tokens = model.encoder()(x)
    assert torch.equal(ids_restore, torch.from_numpy(expected["mae_ids_restore_ratio0"]))
    np.testing.assert_allclose(latent.numpy(), expected["mae_latent_ratio0_shuffled"], atol=1e-5, rtol=1e-4)
    assert tokens.shape == (3, 128, 64)
    np.testing.assert_allclose(tokens.numpy(), expected["fmri_encoder_latent"], atol=1e-5, rtol=1e-4)
