"""SC-MBM: masked brain modeling of fMRI voxel vectors (MinD-Vis Stage A).

One fMRI sample is a 1-D vector of voxel values. It is cut into L = num_voxels / patch_size patches, each embedded
into a D-wide token by a strided Conv1d; a cls token and fixed 1-D sin-cos positions are added; a random 75% of the
tokens are removed (MAE-style, per sample), the rest go through a pre-norm transformer encoder; a light decoder gets
the encoded tokens back in place, fills the removed places with a learned mask token and predicts every patch's
voxel values. The loss is the mean squared error over the removed patches only.

State-dict key names are exactly those of the reference implementation's `MAEforFMRI` (and of its Stage-B
`fmri_encoder` for `FmriEncoder`), so released weights load without renaming:

    patch_embed.proj.{weight,bias}   cls_token   pos_embed   mask_token   decoder_pos_embed
    blocks.<i>.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.{weight,bias}   norm.{weight,bias}
    decoder_embed.*   decoder_blocks.<i>.*   decoder_norm.*   decoder_pred.*

`pos_embed` and `decoder_pos_embed` are persistent buffers here (the reference stores them as frozen parameters;
the state dict is the same).

Shapes: N batch, V voxels (= num_voxels at the model input), L = V / patch_size patches, p = patch_size,
D encoder width, Dd decoder width, K = int(L * (1 - mask_ratio)) kept patches.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from mindvis.errors import CheckpointError, ConfigError


@dataclass(frozen=True)
class MbmArchitecture:
    """Sizes of a masked brain model; `num_voxels` is the (padded) input length and must be a multiple of the patch."""

    num_voxels: int
    patch_size: int = 16
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 1.0
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16

    def __post_init__(self) -> None:
        problems = []
        if self.num_voxels <= 0 or self.patch_size <= 0 or self.num_voxels % self.patch_size:
            problems.append(f"num_voxels {self.num_voxels} is not a positive multiple of patch_size {self.patch_size}")
        for width, heads, name in ((self.embed_dim, self.num_heads, "embed_dim"),
                                   (self.decoder_embed_dim, self.decoder_num_heads, "decoder_embed_dim")):
            if heads <= 0 or width % heads or width % 2:
                problems.append(f"{name} {width} must be even and divisible by its number of heads {heads}")
        if self.depth < 1 or self.decoder_depth < 1 or self.mlp_ratio <= 0:
            problems.append("depths must be >= 1 and mlp_ratio > 0")
        if problems:
            raise ConfigError("invalid masked brain model sizes", value=asdict(self), expected="; ".join(problems),
                              hint="check stage_a.model in config.yaml (or the checkpoint's config)")

    @property
    def num_patches(self) -> int:
        return self.num_voxels // self.patch_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class MbmOutput(NamedTuple):
    """What one masked-modeling pass returns.

    loss: scalar, MSE over removed patches. pred: (N, L, p) predicted voxel values of every patch.
    mask: (N, L) float, 1 = removed (the loss covers these), 0 = kept. ids_restore: (N, L) int64, the position
    of each original patch in the shuffled order (argsort of the shuffle).
    """

    loss: torch.Tensor
    pred: torch.Tensor
    mask: torch.Tensor
    ids_restore: torch.Tensor


def padded_voxel_count(n_voxels: int, patch_size: int) -> int:
    """Length of a vector of `n_voxels` after the reference's padding to the patch size.

    The reference always appends `patch_size - n_voxels % patch_size` voxels, i.e. a whole extra patch when the
    count is already a multiple (HCP V1-V4: 4183 -> 4192). Mixed with GOD training fMRI, the reference then
    wrap-pads every sample to the longest such GOD vector: 4656 voxels (291 patches) in the released checkpoints.
    """
    return n_voxels + patch_size - n_voxels % patch_size


@functools.lru_cache(maxsize=64)
def voxel_index(n_voxels: int, num_voxels: int, patch_size: int) -> np.ndarray:
    """Which voxel of a length-`n_voxels` vector feeds each of a model's `num_voxels` inputs (int64, read-only).

    Reproduces the reference's two wrap-paddings: the vector is first wrap-padded to `padded_voxel_count`, then that
    padded vector is wrap-padded (or cut) to `num_voxels` (what mixing HCP with longer GOD vectors, or tuning a
    checkpoint on another subject, does). `vector[voxel_index(...)]` is the model input.
    """
    if n_voxels < 1 or num_voxels < 1:
        raise ValueError(f"voxel counts must be positive, got {n_voxels} -> {num_voxels}")
    patch_padded = np.arange(padded_voxel_count(n_voxels, patch_size)) % n_voxels
    index = patch_padded[np.arange(num_voxels) % len(patch_padded)]
    index.setflags(write=False)
    return index


def pad_voxels(fmri: torch.Tensor, num_voxels: int, patch_size: int) -> torch.Tensor:
    """fMRI (N, V) or (N, 1, V) -> (N, 1, num_voxels): wrap-padded or cut as the reference (see voxel_index).

    A vector already `num_voxels` long is returned unchanged (its padding is assumed done).
    """
    if fmri.ndim == 2:
        fmri = fmri.unsqueeze(1)
    if fmri.ndim != 3 or fmri.shape[1] != 1:
        raise ValueError(f"fMRI must be (N, V) or (N, 1, V), got {tuple(fmri.shape)}")
    if fmri.shape[-1] == num_voxels:
        return fmri
    index = torch.tensor(voxel_index(fmri.shape[-1], num_voxels, patch_size), device=fmri.device)
    return fmri.index_select(-1, index)


def sincos_positions(num_patches: int, dim: int) -> torch.Tensor:
    """Fixed 1-D sin-cos position table (1, 1 + num_patches, dim), float32; row 0 (the cls token) is zero.

    Position l gets [sin(l * w_0..w_{dim/2-1}), cos(l * w_0..)] with w_i = 10000 ** (-i / (dim / 2)), computed in
    float64 as the reference.
    """
    frequencies = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = torch.arange(num_patches, dtype=torch.float64)[:, None] * frequencies[None, :]  # (L, dim/2)
    table = torch.cat([torch.zeros(1, dim, dtype=torch.float64), torch.cat([angles.sin(), angles.cos()], dim=1)])
    return table.float().unsqueeze(0)


class PatchEmbed1D(nn.Module):
    """(N, 1, V) voxels -> (N, L, D) tokens: one linear map per non-overlapping patch of `patch_size` voxels."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv1d(1, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, voxels: torch.Tensor) -> torch.Tensor:
        return rearrange(self.proj(voxels), "n d l -> n l d")


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (PyTorch's fused scaled-dot-product kernel)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # qkv features are laid out [q | k | v], each head's channels contiguous: (N, T, 3*D) -> 3 x (N, H, T, D/H)
        q, k, v = rearrange(self.qkv(tokens), "n t (three h c) -> three n h t c", three=3, h=self.num_heads)
        attended = F.scaled_dot_product_attention(q, k, v)
        return self.proj(rearrange(attended, "n h t c -> n t (h c)"))


class FeedForward(nn.Module):
    """Linear -> GELU (exact) -> Linear, hidden width int(dim * mlp_ratio)."""

    def __init__(self, dim: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(tokens)))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then + mlp(norm2(x)). (N, T, D) -> (N, T, D)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, mlp_ratio)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens + self.attn(self.norm1(tokens))
        return tokens + self.mlp(self.norm2(tokens))


def _init_weights(module: nn.Module) -> None:
    """MAE initialisation: xavier-uniform linear maps with zero bias, N(0, 0.02) patch embedding, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv1d):
        nn.init.normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class MaskedBrainModel(nn.Module):
    """The SC-MBM masked autoencoder over fMRI voxel vectors (see module docstring)."""

    def __init__(self, arch: MbmArchitecture) -> None:
        super().__init__()
        self.arch = arch
        d, dd, n_patches = arch.embed_dim, arch.decoder_embed_dim, arch.num_patches
        # encoder
        self.patch_embed = PatchEmbed1D(arch.patch_size, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.register_buffer("pos_embed", sincos_positions(n_patches, d))  # (1, 1+L, D), not trained
        self.blocks = nn.ModuleList(TransformerBlock(d, arch.num_heads, arch.mlp_ratio) for _ in range(arch.depth))
        self.norm = nn.LayerNorm(d)
        # decoder
        self.decoder_embed = nn.Linear(d, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.register_buffer("decoder_pos_embed", sincos_positions(n_patches, dd))  # (1, 1+L, Dd)
        self.decoder_blocks = nn.ModuleList(
            TransformerBlock(dd, arch.decoder_num_heads, arch.mlp_ratio) for _ in range(arch.decoder_depth))
        self.decoder_norm = nn.LayerNorm(dd)
        self.decoder_pred = nn.Linear(dd, arch.patch_size)

        self.apply(_init_weights)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    # -- voxel vectors <-> patches ------------------------------------------------------------------------------
    def pad_voxels(self, fmri: torch.Tensor) -> torch.Tensor:
        """(N, V) or (N, 1, V) of any V -> (N, 1, num_voxels), wrap-padded or cut as the reference."""
        return pad_voxels(fmri, self.arch.num_voxels, self.arch.patch_size)

    def patchify(self, voxels: torch.Tensor) -> torch.Tensor:
        """(N, 1, V) -> (N, L, p)."""
        return rearrange(voxels, "n 1 (l p) -> n l p", p=self.arch.patch_size)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, L, p) -> (N, 1, V)."""
        return rearrange(patches, "n l p -> n 1 (l p)")

    # -- masking ------------------------------------------------------------------------------------------------
    @staticmethod
    def random_masking(tokens: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keep a random int(L * (1 - mask_ratio)) tokens per sample.

        Args:
            tokens: (N, L, D).
            mask_ratio: fraction of tokens to remove, in [0, 1).
            noise: (N, L) scores in [0, 1]; the K lowest of each row are kept. Default: torch.rand (global RNG).
        Returns:
            kept (N, K, D) in ascending-noise order, mask (N, L) float (1 = removed), ids_restore (N, L) int64.
        """
        n, length, dim = tokens.shape
        n_keep = int(length * (1 - mask_ratio))
        if noise is None:
            noise = torch.rand(n, length, device=tokens.device)
        ids_shuffle = torch.argsort(noise, dim=1)  # ascending: the first n_keep are kept
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :n_keep]
        kept = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))
        mask = torch.ones(n, length, device=tokens.device, dtype=tokens.dtype)
        mask[:, :n_keep] = 0
        mask = torch.gather(mask, 1, ids_restore)  # back to the original patch order
        return kept, mask, ids_restore

    # -- encoder / decoder --------------------------------------------------------------------------------------
    def forward_encoder(self, voxels: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N, 1, V) -> latent (N, 1 + K, D) with the cls token first, mask (N, L), ids_restore (N, L)."""
        tokens = self.patch_embed(voxels) + self.pos_embed[:, 1:, :]  # (N, L, D)
        tokens, mask, ids_restore = self.random_masking(tokens, mask_ratio, noise)  # (N, K, D)
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(tokens.shape[0], -1, -1)  # (N, 1, D)
        tokens = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent (N, 1 + K, D), ids_restore (N, L) -> predicted patches (N, L, p)."""
        tokens = self.decoder_embed(latent)  # (N, 1 + K, Dd)
        n, length, width = tokens.shape[0], ids_restore.shape[1], tokens.shape[2]
        fillers = self.mask_token.expand(n, length + 1 - tokens.shape[1], -1)  # (N, L - K, Dd)
        shuffled = torch.cat([tokens[:, 1:, :], fillers], dim=1)  # (N, L, Dd) in shuffled order
        ordered = torch.gather(shuffled, 1, ids_restore.unsqueeze(-1).expand(-1, -1, width))
        tokens = torch.cat([tokens[:, :1, :], ordered], dim=1) + self.decoder_pos_embed  # (N, 1 + L, Dd)
        for block in self.decoder_blocks:
            tokens = block(tokens)
        return self.decoder_pred(self.decoder_norm(tokens))[:, 1:, :]  # drop cls: (N, L, p)

    def forward_loss(self, voxels: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over removed patches of the per-patch MSE (targets not normalised). 0 when nothing is removed."""
        per_patch = ((pred - self.patchify(voxels)) ** 2).mean(dim=-1)  # (N, L)
        removed = mask.sum()
        if removed == 0:
            return (per_patch * mask).sum()
        return (per_patch * mask).sum() / removed

    def forward(self, fmri: torch.Tensor, mask_ratio: float = 0.75, noise: torch.Tensor | None = None) -> MbmOutput:
        """fMRI (N, V) or (N, 1, V) (padded/cut to num_voxels here) -> MbmOutput(loss, pred, mask, ids_restore)."""
        voxels = self.pad_voxels(fmri)
        latent, mask, ids_restore = self.forward_encoder(voxels, mask_ratio, noise)
        pred = self.forward_decoder(latent, ids_restore)
        return MbmOutput(self.forward_loss(voxels, pred, mask), pred, mask, ids_restore)

    @torch.no_grad()
    def reconstruct(self, fmri: torch.Tensor, mask_ratio: float = 0.75, noise: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(padded input (N, V), reconstruction (N, V), removed-voxel mask (N, V) bool) for plots and metrics."""
        voxels = self.pad_voxels(fmri)
        out = self.forward(voxels, mask_ratio, noise)
        removed = out.mask.bool().unsqueeze(-1).expand(-1, -1, self.arch.patch_size)
        return voxels[:, 0], self.unpatchify(out.pred)[:, 0], rearrange(removed, "n l p -> n (l p)")

    def encoder(self) -> FmriEncoder:
        """The Stage-B view of this model's encoder, sharing its weights."""
        return FmriEncoder.from_mbm(self)


class FmriEncoder(nn.Module):
    """fMRI (N, V) or (N, 1, V) -> tokens (N, L, D): patch embedding + positions, encoder blocks, final LayerNorm.

    No cls token and no masking: the conditioning input of Stage B (the reference `fmri_encoder` with
    global_pool=False). Its state-dict keys are the reference's without `mask_token` (unused); `cls_token` is kept
    as a buffer so the weights round-trip, but takes no part in forward (nor in training).
    """

    def __init__(self, arch: MbmArchitecture, shared_from: MaskedBrainModel | None = None) -> None:
        super().__init__()
        self.arch = arch
        if shared_from is not None:  # the masked model's own modules: one set of weights, two views
            self.patch_embed, self.blocks, self.norm = shared_from.patch_embed, shared_from.blocks, shared_from.norm
        else:
            self.patch_embed = PatchEmbed1D(arch.patch_size, arch.embed_dim)
            self.blocks = nn.ModuleList(
                TransformerBlock(arch.embed_dim, arch.num_heads, arch.mlp_ratio) for _ in range(arch.depth))
            self.norm = nn.LayerNorm(arch.embed_dim)
            self.apply(_init_weights)
        self.register_buffer("cls_token", torch.zeros(1, 1, arch.embed_dim))
        self.register_buffer("pos_embed", sincos_positions(arch.num_patches, arch.embed_dim))

    @classmethod
    def from_mbm(cls, model: MaskedBrainModel) -> FmriEncoder:
        """Encoder sharing `model`'s patch embedding, blocks and norm (positions and cls token copied)."""
        encoder = cls(model.arch, shared_from=model)
        encoder.pos_embed.copy_(model.pos_embed)
        encoder.cls_token.copy_(model.cls_token.detach())
        return encoder

    @property
    def num_patches(self) -> int:
        return self.arch.num_patches

    @property
    def embed_dim(self) -> int:
        return self.arch.embed_dim

    def forward(self, fmri: torch.Tensor) -> torch.Tensor:
        voxels = pad_voxels(fmri, self.arch.num_voxels, self.arch.patch_size)  # (N, 1, V)
        tokens = self.patch_embed(voxels) + self.pos_embed[:, 1:, :]  # (N, L, D)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)


def architecture_from_state_dict(state: dict[str, torch.Tensor], patch_size: int | None = None,
                                 num_heads: int | None = None, decoder_num_heads: int | None = None,
                                 where: str = "<state dict>") -> MbmArchitecture:
    """Infer a model's sizes from its weights (MAEforFMRI / fmri_encoder key names).

    Widths, depths, patch size and mlp ratio are read off weight shapes; head counts cannot be, so they must be
    given (from the checkpoint's config).
    """

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise CheckpointError("checkpoint lacks a masked-brain-model weight", path=where, value=key,
                                  expected="MinD-Vis MAEforFMRI / fmri_encoder keys (patch_embed.proj.weight, ...)",
                                  hint="is this a Stage A checkpoint? see mindvis.checkpoints.load_mbm")
        return tuple(state[key].shape)

    embed_dim, _, patch = shape("patch_embed.proj.weight")
    if patch_size is not None and patch_size != patch:
        raise CheckpointError("patch size in config and weights disagree", path=where, value=patch_size,
                              expected=f"{patch} (patch_embed.proj.weight {shape('patch_embed.proj.weight')})")
    num_patches = shape("pos_embed")[1] - 1
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    hidden = shape("blocks.0.mlp.fc1.weight")[0]
    mlp_ratio = hidden / embed_dim
    if int(embed_dim * mlp_ratio) != hidden:  # float round-off: the block computes int(dim * ratio)
        mlp_ratio = (hidden + 0.5) / embed_dim
    if num_heads is None:
        raise CheckpointError("number of attention heads unknown", path=where,
                              expected="a config with num_heads next to the weights",
                              hint="pass num_heads explicitly; it cannot be read from weight shapes")
    decoder: dict[str, int] = {}  # encoder-only weights keep the default decoder sizes (never loaded)
    if "decoder_embed.weight" in state:
        decoder = {
            "decoder_embed_dim": shape("decoder_embed.weight")[0],
            "decoder_depth": 1 + max(int(k.split(".")[1]) for k in state if k.startswith("decoder_blocks.")),
            "decoder_num_heads": decoder_num_heads or num_heads,
        }
    return MbmArchitecture(num_voxels=num_patches * patch, patch_size=patch, embed_dim=embed_dim, depth=depth,
                           num_heads=num_heads, mlp_ratio=mlp_ratio, **decoder)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

