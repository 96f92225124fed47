"""Demo only: a small CNN that plays the ImageNet classifier's part in the n-way top-1 metric (`demo_classifier` rule).

The MinD-Vis n-way metric needs an image classifier whose classes cover the stimuli (the reference: an ImageNet
ViT-H/14). The demo's stimuli come from procedural categories (mindvis.demo.images), so the demo trains its own
classifier over every demo category, on images generated afresh for it (new images every epoch, never the GOD /
BOLD5000 stimuli themselves), and reports its accuracy on further fresh images.

Saved in mindvis's own format (a directory, see mindvis.checkpoints.own_format) with `kind: demo_classifier`:
    model.safetensors  the DemoClassifierNet state dict
    config.json        architecture (num_classes, width), preprocess (input_px, mean, std: what the network
                       expects after uint8 RGB images are resized to input_px), classes (index, wnid, name,
                       split of each output), training summary
`mindvis.evaluation.demo_classifier.load_demo_classifier` turns it into the `ImageClassifier` the metrics take, with
the same preprocessing the training used; the network itself is mindvis.models.classifier.DemoClassifierNet.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mindvis.checkpoints.own_format import save_own_format
from mindvis.config.data import DemoDataConfig
from mindvis.config.evaluation import DemoClassifierConfig
from mindvis.demo.images import category_table, generate_category_images
from mindvis.demo.pretrained import classifier_recipe
from mindvis.errors import ConfigError
from mindvis.devices import resolve_device
from mindvis.models.classifier import DEMO_CLASSIFIER_KIND, DemoClassifierArchitecture, DemoClassifierNet
from mindvis.models.image_input import IMAGENET_MEAN, IMAGENET_STD, make_preprocess

log = logging.getLogger(__name__)

N_WAY_MAX = 50  # the reference's n: the demo uses min(50, number of categories)
MAX_EPOCHS = 999  # image seeds are seed * 1000 + epoch; 999 is the validation set's
VALIDATION_EPOCH = 999


def _fresh_set(demo_cfg: DemoDataConfig, n_per_category: int, image_seed: int, image_size: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Fresh images of every category: uint8 (C * n, S, S, 3) and their category index (C * n,) int64."""
    n_classes = len(category_table(demo_cfg))
    images = np.concatenate([generate_category_images(demo_cfg, c, n_per_category, image_seed, image_size)
                             for c in range(n_classes)])
    return images, np.repeat(np.arange(n_classes, dtype=np.int64), n_per_category)


def _as_batch(images: np.ndarray, preprocess: Any, device: torch.device) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> the network's input (B, 3, S, S) on `device`."""
    return preprocess(torch.from_numpy(images).permute(0, 3, 1, 2).to(device))


@torch.no_grad()
def _accuracy(model: DemoClassifierNet, images: np.ndarray, labels: np.ndarray, preprocess: Any,
              device: torch.device, batch_size: int) -> tuple[float, float]:
    """(top-1, top-5) accuracy of `model` on uint8 images with category labels."""
    model.eval()
    top1 = top5 = 0
    for start in range(0, len(images), batch_size):
        logits = model(_as_batch(images[start:start + batch_size], preprocess, device))
        best5 = logits.topk(min(5, logits.shape[1]), dim=1).indices.cpu()
        truth = torch.from_numpy(labels[start:start + batch_size])
        top1 += int((best5[:, 0] == truth).sum())
        top5 += int((best5 == truth[:, None]).any(dim=1).sum())
    return top1 / len(images), top5 / len(images)


def train_demo_classifier(demo_cfg: DemoDataConfig, image_size: int, out_dir: str | os.PathLike[str],
                          settings: DemoClassifierConfig, device: str | torch.device = "auto",
                          run: Any = None) -> dict[str, Any]:
    """Train the demo's stand-in for the n-way classifier and write it to `out_dir` (own format, atomically).

    Every epoch draws `settings.images_per_category` new images of every demo category (the demo's categories,
    train and test; fresh images, never the datasets' stimuli); accuracy is measured after each epoch on
    `settings.val_images_per_category` further fresh images per category. AdamW with a one-cycle schedule.

    Args:
        demo_cfg: the demo data config (its seed and category counts define the categories).
        image_size: side in px of the images the classifier is trained on and will see (preprocess.image_size).
        out_dir: receives model.safetensors + config.json.
        settings: the `evaluation.demo_classifier` section (its seed fixes initialisation, batch order and images).
        device: "auto" (CUDA when available, else CPU), "cpu", "cuda", ...
        run: optional mindvis.tracking.JobRun: per-epoch train/loss, val/accuracy, val/top5; final summary.
    config.json records the recipe (mindvis.demo.pretrained.classifier_recipe), which tells whether a shipped
    classifier fits a config.
    Returns:
        summary: n_classes, n_way, n_train_images (over all epochs), val_accuracy, val_top5, chance, epochs,
        seconds.
    """
    seed, epochs, batch_size = settings.seed, settings.epochs, settings.batch_size
    images_per_category, learning_rate = settings.images_per_category, settings.learning_rate
    if not 1 <= epochs <= MAX_EPOCHS:
        raise ConfigError("demo classifier epochs out of range", path="evaluation.demo_classifier.epochs",
                          value=epochs, expected=f"1..{MAX_EPOCHS}")
    if image_size < 8:
        raise ConfigError("the demo classifier needs images of at least 8 px", path="preprocess.image_size",
                          value=image_size, expected=">= 8")
    device = resolve_device(str(device))
    torch.manual_seed(seed)
    classes = category_table(demo_cfg)
    arch = DemoClassifierArchitecture(num_classes=len(classes), width=settings.width)
    model = DemoClassifierNet(arch).to(device)
    preprocess = make_preprocess(image_size, IMAGENET_MEAN, IMAGENET_STD)
    val_images, val_labels = _fresh_set(demo_cfg, settings.val_images_per_category, seed * 1000 + VALIDATION_EPOCH,
                                        image_size)
    steps_per_epoch = max(1, len(classes) * images_per_category // batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, learning_rate, total_steps=epochs * steps_per_epoch)
    order_rng = torch.Generator().manual_seed(seed)
    log.info("demo classifier: %d categories, %d fresh images per category and epoch, %d epochs, %d px, on %s",
             len(classes), images_per_category, epochs, image_size, device)

    started = time.perf_counter()
    val_accuracy = val_top5 = 0.0
    step = 0
    for epoch in tqdm(range(epochs), desc="demo classifier", unit="epoch"):
        images, labels = _fresh_set(demo_cfg, images_per_category, seed * 1000 + epoch, image_size)
        order = torch.randperm(len(images), generator=order_rng).numpy()
        model.train()
        losses = []
        for batch in range(steps_per_epoch):
            rows = order[batch * batch_size:(batch + 1) * batch_size]
            logits = model(_as_batch(images[rows], preprocess, device))
            loss = F.cross_entropy(logits, torch.from_numpy(labels[rows]).to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            step += 1
        val_accuracy, val_top5 = _accuracy(model, val_images, val_labels, preprocess, device, 4 * batch_size)
        log.info("epoch %d: train loss %.3f, fresh-image accuracy %.3f (top-5 %.3f)", epoch, np.mean(losses),
                 val_accuracy, val_top5)
        if run is not None:
            run.log_metrics({"train/loss": float(np.mean(losses)), "val/accuracy": val_accuracy,
                             "val/top5": val_top5}, step=step)
    seconds = time.perf_counter() - started

    summary = {"n_classes": len(classes), "n_way": min(N_WAY_MAX, len(classes)),
               "n_train_images": epochs * steps_per_epoch * batch_size, "n_val_images": len(val_images),
               "val_accuracy": val_accuracy, "val_top5": val_top5, "chance": 1.0 / len(classes), "epochs": epochs,
               "image_size": image_size, "seconds": round(seconds, 2)}
    document = {
        "architecture": asdict(arch),
        "preprocess": {"input_px": image_size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "classes": [{"index": c.index, "wnid": c.wnid, "name": c.name, "split": c.split} for c in classes],
        "training": {**summary, **asdict(settings)},
        "recipe": classifier_recipe(demo_cfg, image_size, settings),
    }
    save_own_format(out_dir, model.to("cpu").state_dict(), DEMO_CLASSIFIER_KIND, document)
    if run is not None:
        run.log_params({f"demo_classifier.{k}": v for k, v in asdict(settings).items()}
                       | {"demo_classifier.image_size": image_size})
        run.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float))}, step=step)
    log.info("demo classifier: %.1f%% top-1 on fresh images (chance %.1f%%) after %.0f s; written to %s",
             100 * val_accuracy, 100 * summary["chance"], seconds, out_dir)
    return summary
