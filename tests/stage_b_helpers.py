"""Tiny inputs for Stage-B tests: a task subject in the contract layout, a label2img LDM and a Stage-A2 model."""

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mindvis.checkpoints.label2img import save_label2img
from mindvis.checkpoints.stage_a import save_mbm
from mindvis.config.stage_b import LdmArchitecture
from mindvis.data.contract import PreprocessedSubject, Stimuli, write_subject
from mindvis.models.ldm import build_unet, build_vqvae
from mindvis.models.mbm import MaskedBrainModel, MbmArchitecture

# The label2img structure at the smallest size GroupNorm(32) allows: 16 px images -> VQ-f2 latents 3x8x8,
# a two-level UNet with cross-attention at downsample 2.
TINY_LDM = LdmArchitecture(image_size=16, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                           attention_resolutions=(2,), context_dim=32, vq_channels=32, vq_channel_mult=(1, 2),
                           vq_num_res_blocks=1, vq_num_embeddings=16)
ENCODER_VOXELS = 64  # 4 tokens of 16 voxels


def write_task_subject(root: Path, dataset: str = "GOD", subject: str = "sbj_3", n_voxels: int = 50,
                       n_train: int = 24, n_test: int = 3, repeats: int = 2, image_px: int = 16, seed: int = 0,
                       test_ids: list[str] | None = None) -> Path:
    """A contract directory: `n_train` train rows (one image each), then per test image one averaged row
    (n_averaged = repeats) and `repeats` single-trial rows. Images are random uint8 (image_px x image_px).
    `test_ids` names the test stimuli (default test_00, test_01, ...; n_test is then their number)."""
    rng = np.random.default_rng(seed)
    train_ids = [f"train_{i:03d}" for i in range(n_train)]
    test_ids = test_ids or [f"test_{i:02d}" for i in range(n_test)]
    rows = ([("train", s, 1) for s in train_ids] + [("test", s, repeats) for s in test_ids]
            + [("test", s, 1) for s in test_ids for _ in range(repeats)])
    split, stimulus_id, n_averaged = zip(*rows, strict=True)
    samples = pd.DataFrame({"sample_id": np.arange(len(rows)), "split": split, "stimulus_id": stimulus_id,
                            "category": None, "n_averaged": n_averaged, "source": "synthetic"})
    fmri = rng.normal(size=(len(rows), n_voxels)).astype(np.float32)
    voxels = pd.DataFrame({"roi": ["VC"] * n_voxels, "mean": 0.0, "std": 1.0})
    ids = np.array(train_ids + test_ids)
    images = rng.integers(0, 256, size=(len(ids), image_px, image_px, 3), dtype=np.uint8)
    out = root / "preprocessed" / dataset / subject
    write_subject(out, PreprocessedSubject(samples, fmri, voxels, Stimuli(images, ids)))
    return out


def write_pretrained_ldm(directory: Path, arch: LdmArchitecture = TINY_LDM, n_classes: int = 5, seed: int = 0
                         ) -> Path:
    """A label2img directory (model.ckpt + config.yaml) with random weights."""
    torch.manual_seed(seed)
    classes = torch.randn(n_classes, arch.context_dim)
    return save_label2img(directory, arch, build_unet(arch), build_vqvae(arch), classes)


def write_stage_a2(directory: Path, num_voxels: int = ENCODER_VOXELS, seed: int = 0) -> Path:
    """A Stage-A model in the own format (what stage_a_finetune writes), tiny."""
    torch.manual_seed(seed)
    arch = MbmArchitecture(num_voxels=num_voxels, patch_size=16, embed_dim=32, depth=1, num_heads=2,
                           decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
    save_mbm(MaskedBrainModel(arch), directory)
    return directory
