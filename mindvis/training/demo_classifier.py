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
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from mindvis.checkpoints.own_format import save_own_format
from mindvis.config.data import DemoDataConfig
from mindvis.config.evaluation import DemoClassifierConfig
from mindvis.config.runtime import TrainerConfig
from mindvis.demo.images import category_table, generate_category_images
from mindvis.demo.pretrained import classifier_recipe
from mindvis.errors import ConfigError
from mindvis.models.classifier import DEMO_CLASSIFIER_KIND, DemoClassifierArchitecture, DemoClassifierNet
from mindvis.models.image_input import IMAGENET_MEAN, IMAGENET_STD, make_preprocess
from mindvis.training.runner import FitPlan, train

log = logging.getLogger(__name__)

N_WAY_MAX = 50  # the reference's n: the demo uses min(50, number of categories)
MAX_EPOCHS = 999  # image seeds are seed * 1000 + epoch; 999 is the validation set's
VALIDATION_EPOCH = 999


def fresh_images(demo_cfg: DemoDataConfig, n_per_category: int, image_seed: int, image_size: int
                 ) -> TensorDataset:
    """Fresh images of every category: uint8 (C * n, S, S, 3) with their category index (C * n,) int64."""
    n_classes = len(category_table(demo_cfg))
    images = np.concatenate([generate_category_images(demo_cfg, c, n_per_category, image_seed, image_size)
                             for c in range(n_classes)])
    labels = np.repeat(np.arange(n_classes, dtype=np.int64), n_per_category)
    return TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The sample order of `epoch` (0-based): the epoch-th permutation of range(n) drawn from a generator seeded
    with `seed`. Computed from scratch, so a resumed run sees the same order as an uninterrupted one."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epoch):
        torch.randperm(n, generator=generator)
    return torch.randperm(n, generator=generator).tolist()


class FreshCategoryImages(pl.LightningDataModule):
    """New images of every demo category for each epoch (image seed `seed * 1000 + epoch`, in `epoch_order`), and
    one fixed validation set of further fresh images."""

    def __init__(self, demo_cfg: DemoDataConfig, settings: DemoClassifierConfig, image_size: int) -> None:
        super().__init__()
        self.demo_cfg, self.settings, self.image_size = demo_cfg, settings, image_size
        self.val_set = fresh_images(demo_cfg, settings.val_images_per_category,
                                    settings.seed * 1000 + VALIDATION_EPOCH, image_size)

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        images = fresh_images(self.demo_cfg, self.settings.images_per_category, self.settings.seed * 1000 + epoch,
                              self.image_size)
        order = epoch_order(len(images), self.settings.seed, epoch)
        return DataLoader(images, batch_size=self.settings.batch_size, sampler=order, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=4 * self.settings.batch_size)


class ClassifierSystem(pl.LightningModule):
    """Cross-entropy training of a DemoClassifierNet on uint8 (B, S, S, 3) batches: AdamW with a one-cycle schedule
    over `total_steps`; validation logs top-1 `val/accuracy` and `val/top5`."""

    def __init__(self, model: DemoClassifierNet, settings: DemoClassifierConfig, image_size: int, total_steps: int
                 ) -> None:
        super().__init__()
        self.model, self.settings, self.total_steps = model, settings, total_steps
        self.preprocess = make_preprocess(image_size, IMAGENET_MEAN, IMAGENET_STD)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.preprocess(images.permute(0, 3, 1, 2)))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss = F.cross_entropy(self(images), labels)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(labels))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        best5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        self.log_dict({"val/accuracy": (best5[:, 0] == labels).float().mean(),
                       "val/top5": (best5 == labels[:, None]).any(dim=1).float().mean()},
                      prog_bar=True, batch_size=len(labels))

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.settings.learning_rate,
                                      weight_decay=self.settings.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, self.settings.learning_rate,
                                                       total_steps=self.total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def _check(settings: DemoClassifierConfig, image_size: int) -> None:
    if not 1 <= settings.epochs <= MAX_EPOCHS:
        raise ConfigError("demo classifier epochs out of range", path="evaluation.demo_classifier.epochs",
                          value=settings.epochs, expected=f"1..{MAX_EPOCHS}")
    if image_size < 8:
        raise ConfigError("the demo classifier needs images of at least 8 px", path="preprocess.image_size",
                          value=image_size, expected=">= 8")


def train_demo_classifier(demo_cfg: DemoDataConfig, image_size: int, out_dir: str | os.PathLike[str],
                          settings: DemoClassifierConfig, trainer_cfg: TrainerConfig,
                          resume_dir: str | os.PathLike[str], run: Any = None) -> dict[str, Any]:
    """Train the demo's stand-in for the n-way classifier and write it to `out_dir` (own format, atomically).

    Every epoch draws `settings.images_per_category` new images of every demo category (the demo's categories,
    train and test; fresh images, never the datasets' stimuli); accuracy is measured after each epoch on
    `settings.val_images_per_category` further fresh images per category. AdamW with a one-cycle schedule.

    Args:
        demo_cfg: the demo data config (its seed and category counts define the categories).
        image_size: side in px of the images the classifier is trained on and will see (preprocess.image_size).
        out_dir: receives model.safetensors + config.json.
        settings: the `evaluation.demo_classifier` section (its seed fixes initialisation, batch order and images).
        trainer_cfg: accelerator / precision (one device: a small job).
        resume_dir: resume state, outside the job's declared outputs.
        run: optional mindvis.tracking.JobRun: per-epoch train/loss, val/accuracy, val/top5; final summary.
    config.json records the recipe (mindvis.demo.pretrained.classifier_recipe), which tells whether a shipped
    classifier fits a config.
    Returns:
        summary: n_classes, n_way, n_train_images (over all epochs), val_accuracy, val_top5, chance, epochs,
        image_size, seconds (and the run's steps).
    """
    _check(settings, image_size)
    trainer_cfg = replace(trainer_cfg, devices=1, num_nodes=1, strategy="auto")
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    classes = category_table(demo_cfg)
    arch = DemoClassifierArchitecture(num_classes=len(classes), width=settings.width)
    steps_per_epoch = max(1, len(classes) * settings.images_per_category // settings.batch_size)
    system = ClassifierSystem(DemoClassifierNet(arch), settings, image_size, settings.epochs * steps_per_epoch)
    data = FreshCategoryImages(demo_cfg, settings, image_size)
    log.info("demo classifier: %d categories, %d fresh images per category and epoch, %d epochs, %d px",
             len(classes), settings.images_per_category, settings.epochs, image_size)
    job = {"stage": "demo_classifier", "demo": asdict(demo_cfg), "image_size": image_size,
           "settings": asdict(settings), "trainer": asdict(trainer_cfg)}
    plan = FitPlan(epochs=settings.epochs, resume_dir=Path(resume_dir), job=job, has_validation=True,
                   checkpoint_every_n_steps=steps_per_epoch, fresh_data_every_epoch=True,
                   report_metrics=("val/accuracy", "val/top5"))
    sizes = {"n_classes": len(classes), "n_way": min(N_WAY_MAX, len(classes)),
             "n_train_images": settings.epochs * steps_per_epoch * settings.batch_size,
             "n_val_images": len(data.val_set), "chance": 1.0 / len(classes), "image_size": image_size}

    def export(summary: dict[str, Any]) -> None:
        document = {
            "architecture": asdict(arch),
            "preprocess": {"input_px": image_size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "classes": [{"index": c.index, "wnid": c.wnid, "name": c.name, "split": c.split} for c in classes],
            "training": {**summary, **asdict(settings)},
            "recipe": classifier_recipe(demo_cfg, image_size, settings),
        }
        save_own_format(out_dir, system.model.state_dict(), DEMO_CLASSIFIER_KIND, document)
        log.info("demo classifier: %.1f%% top-1 on fresh images (chance %.1f%%) after %.0f s; written to %s",
                 100 * summary["val_accuracy"], 100 * summary["chance"], summary["seconds"], out_dir)

    return train(system, data, plan, trainer_cfg, run, sizes=sizes, export=export)
