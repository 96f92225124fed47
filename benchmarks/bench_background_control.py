"""Can Stage B teach the demo LDM to draw a stimulus' background, even from perfect information? Prints one JSON object.

PixCorr compares pixels, and on the demo images most pixels are background: a low-saturation colour drawn at random
per image (uniform, gradient or blotchy), independent of the category. A class-conditioned LDM takes that colour from
its starting noise, never from its context. MinD-Vis' Stage B trains the fMRI conditioning and the UNet's
cross-attention layers only (the rest of the UNet stays frozen), so it can only raise PixCorr above the
class-conditioned ceiling if those layers can learn to draw the background from the context.

This benchmark asks that question with an oracle in place of the fMRI: the context is the image's true class token
plus a learned linear map of its *ground-truth* background (a 3 x 3 grid of mean colours, 27 numbers). The map (from
zero) and the cross-attention layers (at `--unet-lr`, far above Stage B's demo rate 1e-5) are trained with Stage B's
loss (eps-MSE) on fresh images of the training categories. Held-out fresh images are then sampled twice from the same
starting noise: with their own grid (`oracle`) and with the training set's mean grid (`no_information`). If the
oracle arm's channel-mean correlation and PixCorr stay at the other arm's, Stage B cannot teach the LDM the
background within this budget, however good an fMRI decoder of it is. `--unet-part all` (every UNet weight
trainable: not MinD-Vis) is the control that tells the trainable set apart from the loss and the budget.

Usage:
    .venv/bin/python benchmarks/bench_background_control.py [--ldm demo/pretrained/ldm] [--config config.yaml]
        [--steps 1000] [--unet-lr 1e-3] [--map-lr 1e-3] [--unet-part cross_attention|all] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from diffusers import VQModel
from torch import nn

from mindvis.checkpoints.label2img import load_pretrained_ldm
from mindvis.config import load
from mindvis.config.data import DemoDataConfig
from mindvis.demo.images import category_table, generate_category_images
from mindvis.evaluation.metrics import pixcorr
from mindvis.models.sampling import LatentImagePipeline, initial_latent, to_model_range, to_uint8
from mindvis.models.ldm import ClassConditionedLdm, is_cross_attention
from mindvis.training.ldm_pretrain import encode_images

BATCH_SIZE = 8
TRAIN_SEED, HELD_OUT_SEED, NOISE_SEED = 11, 12, 1
GRID = 3  # background descriptor: GRID x GRID mean colours


def background_grid(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> (N, GRID * GRID * 3) mean colours of a GRID x GRID grid, in the model range [-1, 1]."""
    return nn.functional.adaptive_avg_pool2d(to_model_range(images), GRID).flatten(1)


def fresh_images(demo: DemoDataConfig, categories: list[int], per_category: int, seed: int, size: int,
                 ) -> tuple[np.ndarray, torch.Tensor]:
    """Fresh demo images (never a dataset's) of `categories`: uint8 (N, S, S, 3) and their class ids (N,)."""
    images = np.concatenate([generate_category_images(demo, c, per_category, seed, size) for c in categories])
    return images, torch.tensor(np.repeat(categories, per_category))


def channel_mean_correlation(samples: np.ndarray, truth: np.ndarray) -> float:
    """Correlation over images between a sample's and its ground truth's mean colour, averaged over R, G, B."""
    s, t = samples.mean(axis=(1, 2)), truth.mean(axis=(1, 2))
    return float(np.mean([np.corrcoef(s[:, c], t[:, c])[0, 1] for c in range(3)]))


@torch.no_grad()
def sample(model: ClassConditionedLdm, vqvae: VQModel, context: torch.Tensor) -> np.ndarray:
    """One DDIM-20 sample per context row (N, 1, C), from the noise of item = row (same noise in every arm)."""
    x_t = torch.stack([initial_latent(NOISE_SEED, row, 0, model.latent_shape) for row in range(len(context))])
    time_cond = context.new_zeros(len(context), model.architecture.time_embed_dim)
    latents = LatentImagePipeline.with_sampler(model, vqvae, "ddim").denoise(x_t, context, time_cond, 20)
    return to_uint8(vqvae.decode(latents).sample)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ldm", default="demo/pretrained/ldm")
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--unet-lr", type=float, default=1e-3)
    parser.add_argument("--map-lr", type=float, default=1e-3, help="rate of the background -> context map")
    parser.add_argument("--unet-part", choices=("cross_attention", "all"), default="cross_attention",
                        help="UNet parameters trained: MinD-Vis' set, or every one (a control that is not MinD-Vis)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load(args.config)
    pretrained = load_pretrained_ldm(args.ldm)
    size = pretrained.architecture.image_size
    model = pretrained.class_conditioned()
    train_categories = [c.index for c in category_table(cfg.demo_data) if c.split == "train"]
    train_images, train_labels = fresh_images(cfg.demo_data, train_categories, 8, TRAIN_SEED, size)
    held_images, held_labels = fresh_images(cfg.demo_data, train_categories[::4], 1, HELD_OUT_SEED, size)
    train_latents = encode_images(pretrained.vqvae, train_images)
    train_grid, held_grid = background_grid(train_images), background_grid(held_images)

    background_map = nn.Linear(train_grid.shape[1], pretrained.class_embedding.shape[1])
    nn.init.zeros_(background_map.weight)
    nn.init.zeros_(background_map.bias)

    def context(labels: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        return model.condition(labels)[0] + background_map(grid)[:, None, :]

    model.eval()
    class_only = sample(model, pretrained.vqvae, model.condition(held_labels)[0])
    for name, param in model.named_parameters():  # the class table stays fixed
        param.requires_grad_(name.startswith("unet.") and (args.unet_part == "all" or is_cross_attention(name)))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": background_map.parameters(), "lr": args.map_lr},
                                   {"params": trainable, "lr": args.unet_lr}], weight_decay=0.01)
    started = time.perf_counter()
    model.train()
    for _ in range(args.steps):
        rows = torch.randint(0, len(train_latents), (BATCH_SIZE,))
        latents, noise = train_latents[rows], torch.randn(BATCH_SIZE, *train_latents.shape[1:])
        t = torch.randint(0, pretrained.architecture.num_train_timesteps, (BATCH_SIZE,))
        x_t = model.add_noise(latents, noise, t)
        time_cond = x_t.new_zeros(BATCH_SIZE, pretrained.architecture.time_embed_dim)
        loss = (model.denoise(x_t, t, context(train_labels[rows], train_grid[rows]), time_cond) - noise).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - started
    model.eval()
    with torch.no_grad():
        arms = {"class_only_before_training": class_only,
                "oracle": sample(model, pretrained.vqvae, context(held_labels, held_grid)),
                "no_information": sample(model, pretrained.vqvae,
                                         context(held_labels, train_grid.mean(0, keepdim=True).expand_as(held_grid)))}
    print(json.dumps({
        "ldm": args.ldm, "train_images": len(train_images), "held_out_images": len(held_images),
        "steps": args.steps, "batch_size": BATCH_SIZE,
        "unet_part": args.unet_part, "unet_lr": args.unet_lr, "map_lr": args.map_lr,
        "pixcorr": {arm: round(pixcorr(images, held_images, size), 3) for arm, images in arms.items()},
        "channel_mean_correlation": {arm: round(channel_mean_correlation(images, held_images), 3)
                                     for arm, images in arms.items()},
        "train_seconds": round(seconds, 1), "machine": f"{platform.machine()}, {args.threads} threads, CPU",
    }, indent=1))


if __name__ == "__main__":
    main()
