"""Stage-B (DC-LDM) throughput: training step and image generation per sampler, demo and paper sizes. Prints JSON.

Each preset runs in its own process so its peak memory (max RSS, and peak CUDA allocation on GPU) is its own.
Weights are random (speed does not depend on them); the fMRI encoder has the Stage-A preset's sizes with
4656 voxels (291 tokens, the released GOD checkpoints) for paper and 1024 voxels (64 tokens) for demo.

- train: samples/s of one optimisation step (forward + backward + AdamW on the Stage-B trainable split, fp32),
  after one warm-up step; the fastest of a few steps (the least disturbed on a shared machine).
- generation: images/s per sampler at its default step count (plms 250, ddim 50, dpmpp 25), including
  conditioning and VQ decoding. It is extrapolated from two short runs (s1 < s2 steps): per model evaluation
  cost = (T2 - T1) / (evals2 - evals1), fixed cost = T1 - evals1 * that; on demo sizes the full run is also timed
  directly (`measured_images_per_s`) to check the extrapolation. Demo timings are the fastest of 3 repeats.

Usage: python benchmarks/bench_stage_b.py [--presets demo paper] [--device cpu] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import sys
import time

import numpy as np
import torch

VOXELS = {"demo": 1024, "paper": 4656}


def build_model(preset: str):
    from mindvis.config import resolve
    from mindvis.models.ldm import assemble_fmri_ldm, build_unet, build_vqvae
    from mindvis.config.stage_a import STAGE_A_PRESETS
    from mindvis.models.mbm import FmriEncoder, MbmArchitecture

    cfg = resolve({"preset": preset})
    arch = cfg.stage_b.architecture
    torch.manual_seed(0)
    encoder = FmriEncoder(MbmArchitecture(num_voxels=VOXELS[preset], **STAGE_A_PRESETS[preset]["model"]))
    return assemble_fmri_ldm(arch, build_unet(arch), build_vqvae(arch), encoder)


def timed(fn, repeats: int = 1) -> float:
    """Fastest of `repeats` wall-clock runs of fn() (the least disturbed by other load on a shared machine)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def bench_training(model, batch: int, steps: int, device: torch.device) -> dict:
    size = model.architecture.image_size
    model.train()
    trainable = model.apply_trainable_split()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=5.3e-5)
    generator = torch.Generator().manual_seed(0)
    images = (torch.rand(batch, 3, size, size, generator=generator) * 2 - 1).to(device)
    fmri = torch.randn(batch, model.conditioner.encoder.arch.num_voxels, generator=generator).to(device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = model.training_loss(images, fmri, generator=generator)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.5)
        optimizer.step()

    step()  # warm-up (allocations, optimizer state)
    seconds = timed(step, repeats=steps)
    return {"batch_size": batch, "timed_steps": steps, "seconds_per_step": seconds,
            "samples_per_s": batch / seconds, "trainable_tensors": len(trainable),
            "trainable_params": sum(p.numel() for p in params)}


def bench_generation(model, n_images: int, short_steps: tuple[int, int], direct: bool, device: str,
                     repeats: int) -> dict:
    from mindvis.config.stage_b import DEFAULT_SAMPLER_STEPS
    from mindvis.models.sampling import generate
    from mindvis.models.ldm import make_sampler

    voxels = model.conditioner.encoder.arch.num_voxels
    fmri = np.random.default_rng(0).standard_normal((1, voxels)).astype(np.float32)

    def evaluations(name: str, steps: int) -> int:
        sampler = make_sampler(name, model.architecture)
        sampler.set_timesteps(steps)
        return len(sampler.timesteps)

    def run(name: str, steps: int) -> float:
        return timed(lambda: generate(model, fmri, n_samples=n_images, scheduler=name, steps=steps,
                                      batch_size=n_images, device=device, progress=False), repeats)

    results = {}
    run("ddim", 1)  # warm-up
    for name, default_steps in DEFAULT_SAMPLER_STEPS.items():
        s1, s2 = short_steps
        e1, e2, e_full = evaluations(name, s1), evaluations(name, s2), evaluations(name, default_steps)
        t1, t2 = run(name, s1), run(name, s2)
        per_eval = (t2 - t1) / (e2 - e1)
        fixed = max(t1 - e1 * per_eval, 0.0)
        estimate = fixed + e_full * per_eval
        entry = {"steps": default_steps, "model_evaluations": e_full, "batch_size": n_images,
                 "seconds_per_evaluation": per_eval, "fixed_seconds": fixed,
                 "images_per_s": n_images / estimate, "seconds_per_image": estimate / n_images,
                 "extrapolated_from_steps": list(short_steps)}
        if direct:
            entry["measured_images_per_s"] = n_images / run(name, default_steps)
        results[name] = entry
    return results


def bench_preset(preset: str, device_name: str, threads: int, train_batch: int, train_steps: int,
                 gen_images: int, short_steps: tuple[int, int], direct: bool, repeats: int, queue) -> None:
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    model = build_model(preset).to(device)
    counts = {part: sum(p.numel() for p in getattr(model, part).parameters())
              for part in ("unet", "vqvae", "conditioner", "time_head")}
    arch = model.architecture
    result = {"image_size": arch.image_size, "latent_shape": list(model.latent_shape),
              "encoder_tokens": model.conditioner.mapper.num_tokens, "params": counts,
              "train": bench_training(model, train_batch, train_steps, device)}
    model.eval()
    with torch.no_grad():
        result["generation"] = bench_generation(model, gen_images, short_steps, direct, device_name, repeats)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    queue.put(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["demo", "paper"], choices=["demo", "paper"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a busy 2-core machine 2 threads contend and run slower)")
    parser.add_argument("--paper-train-batch", type=int, default=1, help="reference: 5 (GPU)")
    parser.add_argument("--paper-gen-images", type=int, default=1, help="reference: 5 per fMRI")
    args = parser.parse_args()

    plans = {
        "demo": dict(train_batch=5, train_steps=5, gen_images=5, short_steps=(5, 25), direct=True, repeats=3),
        "paper": dict(train_batch=args.paper_train_batch, train_steps=2, gen_images=args.paper_gen_images,
                      short_steps=(1, 3), direct=args.device != "cpu", repeats=1),
    }
    context = multiprocessing.get_context("spawn")
    report = {"machine": {"platform": platform.platform(), "cpus": multiprocessing.cpu_count(),
                          "torch_threads": args.threads, "device": args.device, "torch": torch.__version__,
                          "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None},
              "precision": "fp32", "presets": {}}
    for preset in args.presets:
        queue = context.Queue()
        worker = context.Process(target=bench_preset, args=(preset, args.device, args.threads),
                                 kwargs={**plans[preset], "queue": queue})
        worker.start()
        report["presets"][preset] = queue.get()
        worker.join()
        print(f"{preset} done", file=sys.stderr)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
