"""DC-LDM assembly on diffusers: the CompVis recipe, the frozen/trainable split, the training objective."""

import dataclasses

import pytest
import torch

from mindvis.config.stage_b import LdmArchitecture
from mindvis.errors import ConfigError
from mindvis.models.ldm import (
    AttributeEmbedding,
    SAMPLERS,
    FmriLDM,
    assemble_fmri_ldm,
    build_unet,
    build_vqvae,
    make_sampler,
    unet_config,
)
from mindvis.models.mbm import FmriEncoder, MbmArchitecture

# A tiny LDM of the label2img structure: 32 px images, VQ-f4 latents 3x8x8, two UNet levels, attention at ds 2.
TINY = LdmArchitecture(image_size=32, model_channels=32, channel_mult=(1, 2), attention_resolutions=(2,),
                       context_dim=32, vq_channels=32, vq_channel_mult=(1, 1, 1), vq_num_res_blocks=1,
                       vq_num_embeddings=64)
VOXELS = 128


def tiny_model(seed: int = 0) -> FmriLDM:
    torch.manual_seed(seed)
    encoder = FmriEncoder(MbmArchitecture(num_voxels=VOXELS, embed_dim=32, depth=1, num_heads=2,
                                          decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2))
    return assemble_fmri_ldm(TINY, build_unet(TINY), build_vqvae(TINY), encoder)


def test_paper_unet_recipe_matches_label2img():
    config = unet_config(LdmArchitecture())  # the paper defaults = CompVis cin256-v2
    assert config["block_out_channels"] == (192, 384, 576, 960)
    assert config["down_block_types"] == ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                          "CrossAttnDownBlock2D")
    assert config["up_block_types"] == ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                                        "UpBlock2D")
    assert config["attention_head_dim"] == 1 and config["cross_attention_dim"] == 512
    assert config["sample_size"] == 64 and not config["use_linear_projection"]
    assert LdmArchitecture().time_embed_dim == 768


def test_architecture_errors_name_the_problem():
    with pytest.raises(ConfigError, match="multiples of 32"):
        build_unet(dataclasses.replace(TINY, model_channels=48, channel_mult=(1, 3)))  # 144 % 32 != 0
    with pytest.raises(ConfigError, match="image size"):
        build_vqvae(dataclasses.replace(TINY, image_size=36))


def test_shapes_of_encode_decode_and_noise_prediction():
    model = tiny_model().eval()
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        latents = model.encode(images)
        assert latents.shape == (2, *model.latent_shape) == (2, 3, 8, 8)
        assert model.decode(latents).shape == images.shape
        assert not torch.equal(model.decode(latents), model.decode(latents, quantize=False))
        assert model.codebook_indices(latents).shape == (2, 8, 8)
        context, time_cond = model.condition(torch.randn(2, VOXELS))
        assert context.shape == (2, 77, 32) and time_cond.shape == (2, 128)
        eps = model.predict_noise(latents, torch.tensor([3, 900]), torch.randn(2, VOXELS))
    assert eps.shape == latents.shape


def test_time_conditioning_changes_the_noise_prediction():
    model = tiny_model().eval()
    x_t, t = torch.randn(1, 3, 8, 8), torch.tensor([500])
    context, time_cond = model.condition(torch.randn(1, VOXELS))
    with torch.no_grad():
        assert not torch.allclose(model.denoise(x_t, t, context, time_cond),
                                  model.denoise(x_t, t, context, torch.zeros_like(time_cond)))


def test_trainable_split_is_conditioning_time_head_and_cross_attention():
    model = tiny_model()
    names = model.apply_trainable_split()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(names) == trainable
    assert {n for n in trainable if n.startswith("conditioner.")} == {
        n for n, _ in model.named_parameters() if n.startswith("conditioner.")}
    assert {n for n in trainable if n.startswith("time_head.")} == {
        n for n, _ in model.named_parameters() if n.startswith("time_head.")}
    unet_trainable = sorted(n for n in trainable if n.startswith("unet."))
    # transformer blocks: 2 down (level 1) + 1 mid + 3 up = 6, each with q, k, v, out w+b, norm2 w+b
    assert len(unet_trainable) == 6 * 7
    assert all(".attn2." in n or ".norm2." in n for n in unet_trainable)
    assert not any("resnets" in n for n in unet_trainable)  # ResNet norm2 stays frozen
    assert not any(n.startswith("vqvae.") for n in trainable)


def test_one_training_step_changes_only_trainable_parameters():
    model = tiny_model().train()
    model.apply_trainable_split()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    loss = model.training_loss(torch.rand(2, 3, 32, 32) * 2 - 1, torch.randn(2, VOXELS), generator=generator)
    loss.backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert changed and changed <= trainable
    assert {n for n in changed if n.startswith("unet.")}  # cross-attention got gradients too
    assert all(p.grad is None for p in model.vqvae.parameters())


def test_training_on_a_fixed_batch_reduces_the_loss():
    model = tiny_model().train()
    model.apply_trainable_split()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    images, fmri = torch.rand(4, 3, 32, 32) * 2 - 1, torch.randn(4, VOXELS)
    noise, t = torch.randn(4, 3, 8, 8), torch.tensor([50, 300, 600, 900])
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = model.training_loss(images, fmri, noise=noise, t=t)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_training_loss_is_reproducible_with_a_generator():
    model = tiny_model().eval()
    images, fmri = torch.rand(2, 3, 32, 32) * 2 - 1, torch.randn(2, VOXELS)
    with torch.no_grad():
        first = model.training_loss(images, fmri, generator=torch.Generator().manual_seed(7))
        again = model.training_loss(images, fmri, generator=torch.Generator().manual_seed(7))
        other = model.training_loss(images, fmri, generator=torch.Generator().manual_seed(8))
    assert first == again and first != other


def test_add_noise_follows_the_compvis_schedule():
    model = tiny_model()
    latents, noise = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    x0 = model.add_noise(latents, noise, torch.tensor([0, 0]))
    assert torch.allclose(x0, latents * (1 - 0.0015) ** 0.5 + noise * 0.0015**0.5, atol=1e-6)
    late = model.add_noise(latents, noise, torch.tensor([999, 999]))
    assert torch.corrcoef(torch.stack([late.flatten(), noise.flatten()]))[0, 1] > 0.99


@pytest.mark.parametrize("name", SAMPLERS)
def test_samplers_share_the_training_schedule(name):
    sampler = make_sampler(name, TINY)
    assert sampler.config.beta_schedule == "scaled_linear"
    assert sampler.config.beta_start == 0.0015 and sampler.config.beta_end == 0.0195
    sampler.set_timesteps(10)
    assert 0 < int(sampler.timesteps.min()) and int(sampler.timesteps.max()) < 1000


def test_unknown_sampler_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown sampler") as err:
        make_sampler("euler", TINY)
    assert "plms" in str(err.value)


def test_the_fmri_reaches_the_noise_prediction_once_trained():
    """Two fMRI patterns paired with two different images: after training, the noise of each image is predicted
    better with its own fMRI than with the other's, so the conditioning path carries the fMRI to the UNet's output.
    (The UNet is trained whole here because a random UNet cannot denoise; Stage B starts from a pretrained one.)"""
    model = tiny_model().train()
    trained = [p for name, p in model.named_parameters() if not name.startswith("vqvae.")]
    for parameter in model.vqvae.parameters():
        parameter.requires_grad_(False)
    optimizer = torch.optim.AdamW(trained, lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    images = torch.zeros(2, 3, 32, 32)
    images[0, 0], images[1, 2] = 0.8, 0.8  # a red and a blue field ...
    images[0, :, 8:24, 8:24] = -0.8        # ... the red one with a dark square
    fmri = torch.randn(2, VOXELS, generator=generator)
    for _ in range(250):
        optimizer.zero_grad()
        model.training_loss(images.repeat(4, 1, 1, 1), fmri.repeat(4, 1), generator=generator).backward()
        optimizer.step()

    model.eval()
    probe = torch.Generator().manual_seed(1)
    noise, t = torch.randn(16, 3, 8, 8, generator=probe), torch.randint(100, 900, (16,), generator=probe)
    with torch.no_grad():
        own = model.training_loss(images.repeat(8, 1, 1, 1), fmri.repeat(8, 1), noise=noise, t=t)
        swapped = model.training_loss(images.repeat(8, 1, 1, 1), fmri.flip(0).repeat(8, 1), noise=noise, t=t)
    assert swapped > 1.5 * own


def test_attribute_embedding_leaves_attributes_out_only_in_training():
    """Training contexts are sums over random subsets of a class's attribute vectors; evaluation uses them all."""
    torch.manual_seed(0)
    attributes = torch.tensor([[0, 1], [1, 0]])
    embedding = AttributeEmbedding(attributes, (2, 2), dim=4, dropout=0.5)
    labels = torch.tensor([0, 1] * 200)
    parts = [table(attributes[labels, a]) for a, table in enumerate(embedding.tables)]
    subsets = {"none": torch.zeros_like(parts[0]), "first": parts[0], "second": parts[1], "both": parts[0] + parts[1]}
    with torch.no_grad():
        drawn = embedding.train()(labels)
        matches = [{name for name, value in subsets.items() if torch.allclose(drawn[row], value[row])}
                   for row in range(len(labels))]
        assert all(matches)  # every training context is the sum of a subset of its class's attribute vectors
        assert set().union(*matches) == set(subsets)  # and every subset occurs
        assert torch.equal(embedding.eval()(labels), embedding.weight[labels])
        assert torch.allclose(embedding.weight[labels], subsets["both"])
