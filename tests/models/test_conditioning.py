"""Conditioning stage shapes: encoder tokens -> 77-token context -> time-embedding offset."""

import torch

from mindvis.models.conditioning import CONTEXT_TOKENS, FmriConditioner, TimeConditioningHead, TokenMapper
from mindvis.models.mbm import FmriEncoder, MbmArchitecture


def test_token_mapper_halves_tokens_then_maps_to_77_context_tokens():
    mapper = TokenMapper(num_tokens=64, token_dim=48, context_dim=32)
    first, second = mapper.channel_mapper
    assert (first.in_channels, first.out_channels, first.kernel_size) == (64, 32, (1,))
    assert (second.in_channels, second.out_channels) == (32, CONTEXT_TOKENS)
    assert mapper(torch.randn(3, 64, 48)).shape == (3, 77, 32)


def test_token_mapper_paper_sizes_round_down_odd_token_counts():
    mapper = TokenMapper(num_tokens=291, token_dim=1024, context_dim=512)  # 4656 voxels / 16
    assert mapper.channel_mapper[0].out_channels == 145
    assert mapper.dim_mapper.weight.shape == (512, 1024)


def test_time_head_returns_flat_offsets_per_sample():
    head = TimeConditioningHead(context_dim=32, time_embed_dim=128)
    assert [layer.out_channels for layer in head.token_reducer] == [38, 1]
    out = head(torch.randn(4, 77, 32))
    assert out.shape == (4, 128)  # flat: a (N, 1, E) tensor would broadcast against (N, E) to (N, N, E)


def test_conditioner_maps_raw_fmri_to_context():
    encoder = FmriEncoder(MbmArchitecture(num_voxels=256, embed_dim=32, depth=1, num_heads=2,
                                          decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2))
    conditioner = FmriConditioner(encoder, TokenMapper(encoder.num_patches, encoder.embed_dim, context_dim=40))
    fmri = torch.randn(2, 250)  # the encoder wrap-pads the 250 real voxels to its 256 inputs
    assert conditioner(fmri).shape == (2, 77, 40)
