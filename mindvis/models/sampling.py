"""Image generation from a conditioned LDM (fMRI for MinD-Vis, class labels for the demo LDM): seeded, batched,
PLMS / DDIM / DPM-Solver++.

As the reference: no classifier-free guidance, deterministic samplers (DDIM eta 0), the VQ decoder quantizes the
final latents, images are clamp((x + 1) / 2, 0, 1). Every generated image starts from its own Gaussian latent,
drawn from a generator seeded by (seed, fMRI index, sample index), so the same seed gives the same images whatever
the batch size or device.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from diffusers import SchedulerMixin, VQModel
from tqdm.auto import tqdm

from mindvis.config.stage_b import DEFAULT_SAMPLER_STEPS
from mindvis.errors import ConfigError, InputDataError
from mindvis.models.ldm import SAMPLERS, ConditionedLdm, FmriLDM, make_sampler

log = logging.getLogger(__name__)


def initial_latent(seed: int, item: int, sample: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The starting noise x_T (c, h, w) of sample `sample` of fMRI row `item`: float32 N(0, 1) on CPU."""
    state = np.random.SeedSequence([seed, item, sample]).generate_state(2, dtype=np.uint32)
    generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    return torch.randn(shape, generator=generator)


class LatentImagePipeline:
    """Images from a conditioned LDM: condition -> starting noise -> denoise -> decode -> uint8, in one place.

    Diffusers style: model parts plus an injected scheduler. Generation (FmriLDM, fMRI rows), Stage B validation,
    the ceilings and the demo LDM's grids (ClassConditionedLdm, class labels) all sample through it.

    Args:
        model: a ConditionedLdm; it runs on the device its parameters are on.
        vqvae: the first stage that decodes its latents (snapping them to the codebook, as the reference); moved to
            the model's device when images are made.
        scheduler: a diffusers scheduler; every denoising run uses a fresh copy built `from_config` (PNDM keeps the
            previous noise predictions of the run it is in).
    """

    def __init__(self, model: ConditionedLdm, vqvae: VQModel, scheduler: SchedulerMixin) -> None:
        self.model = model
        self.vqvae = vqvae
        self.scheduler = scheduler

    @classmethod
    def with_sampler(cls, model: ConditionedLdm, vqvae: VQModel, sampler: str) -> LatentImagePipeline:
        """A pipeline with one of SAMPLERS ("plms", "ddim", "dpmpp") on the model's noise schedule."""
        return cls(model, vqvae, make_sampler(sampler, model.architecture))

    def _fresh_scheduler(self, steps: int, device: torch.device | None = None) -> SchedulerMixin:
        scheduler = type(self.scheduler).from_config(self.scheduler.config)
        scheduler.set_timesteps(steps, device=device)
        return scheduler

    def evaluations(self, steps: int) -> int:
        """Model evaluations of one denoising run of `steps` steps (PLMS: steps + 1)."""
        return len(self._fresh_scheduler(steps).timesteps)

    @torch.no_grad()
    def denoise(self, x_t: torch.Tensor, context: torch.Tensor, time_cond: torch.Tensor, steps: int,
                on_step: Callable[[], None] | None = None) -> torch.Tensor:
        """Run the sampler from x_T (N, c, h, w) to x_0 with fixed conditioning (context, time_cond).

        `on_step` is called after each model evaluation (for progress bars).
        """
        scheduler = self._fresh_scheduler(steps, x_t.device)
        x_t = x_t * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            eps = self.model.denoise(scheduler.scale_model_input(x_t, t), t, context, time_cond)
            x_t = scheduler.step(eps, t, x_t).prev_sample
            if on_step is not None:
                on_step()
        return x_t

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor, items: Sequence[int], n_samples: int, steps: int, seed: int,
                 batch_size: int, on_step: Callable[[], None] | None = None) -> np.ndarray:
        """`n_samples` images of each input row (fMRI rows or class labels, whatever the model conditions on).

        Args:
            inputs: (M, ...) one conditioning input per row.
            items: (M,) the noise item of each row: sample k starts from `initial_latent(seed, items[i], k)`, so
                the images do not depend on `batch_size` or the device.
            batch_size: latents denoised together.
        Returns:
            uint8 (M, n_samples, H, W, 3).
        """
        device = next(self.model.parameters()).device
        self.vqvae.to(device)
        jobs = [(row, k) for row in range(len(inputs)) for k in range(n_samples)]
        chunks = []
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start:start + batch_size]
            rows = torch.tensor([row for row, _ in chunk])
            context, time_cond = self.model.condition(inputs[rows].to(device))
            x_t = torch.stack([initial_latent(seed, int(items[row]), k, self.model.latent_shape) for row, k in chunk])
            latents = self.denoise(x_t.to(device), context, time_cond, steps, on_step)
            chunks.append(to_uint8(self.vqvae.decode(latents).sample))
        images = np.concatenate(chunks)
        return images.reshape(len(inputs), n_samples, *images.shape[1:])


def to_model_range(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [-1, 1], what the VQ first stage encodes (inverse of to_uint8)."""
    return torch.as_tensor(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Decoder output (N, 3, H, W) in about [-1, 1] -> uint8 (N, H, W, 3), rounded to the nearest level."""
    scaled = ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0) * 255.0
    return scaled.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _check_fmri(fmri: np.ndarray | torch.Tensor) -> torch.Tensor:
    fmri = torch.as_tensor(fmri)
    if fmri.ndim != 2 or fmri.shape[0] == 0 or not torch.is_floating_point(fmri):
        raise InputDataError("fMRI for generation must be a non-empty float (N, V) array", value=tuple(fmri.shape),
                             expected="(n_samples, n_voxels) float32, rows as in fmri.npy")
    if not torch.isfinite(fmri).all():
        raise InputDataError("fMRI for generation contains NaN/inf", value=int((~torch.isfinite(fmri)).sum()),
                             expected="finite values", hint="check the preprocessed fmri.npy")
    return fmri.float()


def generate(model: FmriLDM, fmri: np.ndarray | torch.Tensor, n_samples: int = 5, scheduler: str = "plms",
             steps: int | None = None, seed: int = 2022, batch_size: int = 5, device: str | torch.device = "cpu",
             progress: bool = True) -> np.ndarray:
    """Generate `n_samples` images for every fMRI row.

    Args:
        model: a DC-LDM (moved to `device` for the call and back afterwards; its train/eval mode is restored).
        fmri: (N, V) float32, one row per fMRI sample (the encoder pads/cuts V to its input length).
        n_samples: K images per row.
        scheduler: "plms" (reference), "ddim" (eta 0) or "dpmpp" (DPM-Solver++ 2M).
        steps: denoising steps; None = 250 (plms), 50 (ddim), 25 (dpmpp).
        seed: images depend only on (seed, row, sample index), not on batch_size or device.
        batch_size: latents denoised together (memory knob).
        device: where to run.
        progress: show a tqdm bar over model evaluations.
    Returns:
        uint8 (N, K, H, W, 3) at the model's image size.
    """
    if scheduler not in SAMPLERS:
        raise ConfigError("unknown sampler", path="stage_b.sampling.scheduler", value=scheduler,
                          expected=f"one of {list(SAMPLERS)}")
    if n_samples < 1 or batch_size < 1 or (steps is not None and steps < 1):
        raise ConfigError("n_samples, batch_size and steps must be positive", path="stage_b.sampling",
                          value={"n_samples": n_samples, "batch_size": batch_size, "steps": steps})
    steps = steps if steps is not None else DEFAULT_SAMPLER_STEPS[scheduler]
    fmri = _check_fmri(fmri)
    was_training = model.training
    original_device = next(model.parameters()).device
    model.eval().to(torch.device(device))
    pipeline = LatentImagePipeline.with_sampler(model, model.vqvae, scheduler)
    n_batches = -(-fmri.shape[0] * n_samples // batch_size)
    try:
        with tqdm(total=n_batches * pipeline.evaluations(steps), unit="step", disable=not progress,
                  desc=f"generate {fmri.shape[0] * n_samples} images ({scheduler}, {steps} steps)") as bar:
            images = pipeline(fmri, range(fmri.shape[0]), n_samples, steps, seed, batch_size,
                              on_step=lambda: bar.update(1))
    finally:
        model.to(original_device).train(was_training)
    log.info("generated %d images (%d fMRI x %d) with %s, %d steps", fmri.shape[0] * n_samples, fmri.shape[0],
             n_samples, scheduler, steps)
    return images
