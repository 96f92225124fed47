"""The fMRI conditioning stage of the DC-LDM ("double conditioning", MinD-Vis Stage B).

fMRI (N, V) -> fMRI encoder tokens (N, L, D) -> token mapper -> cross-attention context (N, 77, C); the context
also feeds a small head whose output is added to the UNet's timestep embedding. 77 is the context length the
reference fixes (it borrowed the CLIP text length); L and D come from the Stage-A encoder, C is the UNet's
cross-attention width.
"""

from __future__ import annotations

import torch
from torch import nn

CONTEXT_TOKENS = 77


class TokenMapper(nn.Module):
    """Map encoder tokens (N, L, D) to a cross-attention context (N, 77, C).

    Two 1x1 Conv1d over the token axis mix the L tokens into L // 2 and then 77 tokens (no nonlinearity between
    them, as the reference), then a Linear maps each token from D to C dims.
    """

    def __init__(self, num_tokens: int, token_dim: int, context_dim: int) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.token_dim = token_dim
        self.context_dim = context_dim
        self.channel_mapper = nn.Sequential(
            nn.Conv1d(num_tokens, num_tokens // 2, kernel_size=1),
            nn.Conv1d(num_tokens // 2, CONTEXT_TOKENS, kernel_size=1),
        )
        self.dim_mapper = nn.Linear(token_dim, context_dim)

    @torch.no_grad()
    def start_at(self, vector: torch.Tensor, fmri_scale: float = 0.1) -> None:
        """Re-initialise so that every context token starts at `vector` (C,) plus a small fMRI-dependent part.

        The 77 output rows of the second token mix are made identical (their mean), so all tokens start equal, as a
        label2img class context (one token) is; the D -> C map keeps `fmri_scale` of its random weights and takes
        `vector` as its bias. A pretrained class-conditioned UNet then starts on familiar ground (an average class)
        instead of 77 unrelated random tokens, which it renders as blobs.
        """
        mix = self.channel_mapper[1]
        mix.weight.copy_(mix.weight.mean(0, keepdim=True).expand_as(mix.weight))
        mix.bias.fill_(float(mix.bias.mean()))
        self.dim_mapper.weight.mul_(fmri_scale)
        self.dim_mapper.bias.copy_(vector)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (N, L, D) -> context (N, 77, C)."""
        mixed = self.channel_mapper(tokens)  # (N, 77, D): Conv1d treats the token axis as channels
        return self.dim_mapper(mixed)


class FmriConditioner(nn.Module):
    """The trainable conditioning stage: an fMRI encoder followed by a TokenMapper.

    Args:
        encoder: maps fMRI (N, V) to tokens (N, L, D) (the Stage-A encoder without its cls token).
        mapper: maps those tokens to the context (N, 77, C); its L and D must match the encoder's.
    """

    def __init__(self, encoder: nn.Module, mapper: TokenMapper) -> None:
        super().__init__()
        self.encoder = encoder
        self.mapper = mapper

    def forward(self, fmri: torch.Tensor) -> torch.Tensor:
        """fmri (N, V) -> context (N, 77, C)."""
        return self.mapper(self.encoder(fmri))


class TimeConditioningHead(nn.Module):
    """Second conditioning path: context (N, 77, C) -> (N, E), added to the UNet timestep embedding (width E).

    Conv1d 77 -> 38 -> 1 over the token axis, then Linear C -> E (no nonlinearities, as the reference). The
    output is flattened to (N, E) because diffusers adds `class_labels` to the (N, E) timestep embedding and a
    (N, 1, E) tensor would broadcast to (N, N, E).
    """

    def __init__(self, context_dim: int, time_embed_dim: int) -> None:
        super().__init__()
        self.token_reducer = nn.Sequential(
            nn.Conv1d(CONTEXT_TOKENS, CONTEXT_TOKENS // 2, kernel_size=1),
            nn.Conv1d(CONTEXT_TOKENS // 2, 1, kernel_size=1),
        )
        self.projection = nn.Linear(context_dim, time_embed_dim)

    @torch.no_grad()
    def start_silent(self) -> None:
        """Zero the output projection: the head adds nothing to the timestep embedding until training moves it, so
        the pretrained UNet's time embedding (which never saw such an input) starts undisturbed."""
        self.projection.weight.zero_()
        self.projection.bias.zero_()

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """context (N, 77, C) -> time conditioning (N, E)."""
        pooled = self.token_reducer(context)  # (N, 1, C)
        return self.projection(pooled).flatten(1)
