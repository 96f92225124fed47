"""Stage A training-step throughput and peak memory: mindvis vs the MinD-Vis reference's training setup.

One training step = masked forward + loss, backward, gradient-norm clipping (0.8), AdamW step, as both trainers do.
Variants (each measured in its own subprocess, so peak memory is per variant):

- reference_setup: what the reference trainer runs on this device. CPU: fp32 (its torch.cuda.amp autocast and
  GradScaler are inactive off-GPU) and PyTorch's default AdamW, a per-parameter loop for CPU tensors.
  CUDA: fp16 autocast + GradScaler and the default (foreach) AdamW.
- mindvis_fp32: fp32 with the fused AdamW kernel (one pass over all parameters).
- mindvis_bf16: bf16 autocast + fused AdamW (precision `auto` on GPU; `bf16-mixed` on CPUs with bf16 units).
- mindvis_bf16_compiled (--compile): the same under torch.compile.

--profile adds, per variant, where a step's time goes (measured with module hooks inside extra training steps):
forward/backward of the encoder and decoder attention and MLP sublayers, the rest of forward + backward, and
clipping + optimizer; plus the optimizer alone (per-parameter loop vs fused).
Prints JSON. Reference figure from the brief: ~3 s/step (2.7 samples/s) at paper preset, batch 8, fp32, this CPU.

    python benchmarks/bench_stage_a.py --preset paper --batch 8 --steps 5 --device cpu [--profile] [--compile]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import nn

from mindvis.config.stage_a import STAGE_A_PRESETS
from mindvis.models.mbm import FeedForward, MaskedBrainModel, MbmArchitecture, SelfAttention, count_parameters
from mindvis.training.common import make_adamw, weight_decay_groups

VARIANTS = ("reference_setup", "mindvis_fp32", "mindvis_bf16", "mindvis_bf16_compiled")
PAPER_NUM_VOXELS = 4656  # the released checkpoints' input length (HCP mixed with GOD)
REFERENCE_REPORTED = {"s_per_step": 3.0, "samples_per_s": 2.7,
                      "setting": "MinD-Vis reference trainer, paper preset, batch 8, fp32, the project's 2-core CPU"}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast_for(variant: str, device: torch.device):
    if variant == "reference_setup":
        return torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else nullcontext()
    if variant.startswith("mindvis_bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def make_optimizer(variant: str, model: nn.Module) -> torch.optim.Optimizer:
    groups = weight_decay_groups(model, 0.05)
    if variant == "reference_setup":  # no foreach/fused argument, as the reference: PyTorch picks per device
        return torch.optim.AdamW(groups, lr=2.5e-4, betas=(0.9, 0.95))
    return make_adamw(groups, lr=2.5e-4)


def training_step_fn(variant: str, model: MaskedBrainModel, device: torch.device) -> Callable[[torch.Tensor], float]:
    """One full training step for `variant`; returns the loss."""
    optimizer = make_optimizer(variant, model)
    scaler = torch.amp.GradScaler("cuda") if variant == "reference_setup" and device.type == "cuda" else None
    forward = torch.compile(model) if variant.endswith("_compiled") else model

    def step(batch: torch.Tensor) -> float:
        with autocast_for(variant, device):
            loss = forward(batch, 0.75).loss
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.8)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.8)
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure_variant(args: argparse.Namespace) -> dict:
    """Time `args.steps` training steps (after `args.warmup` untimed ones) of one variant in this process."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    arch = MbmArchitecture(num_voxels=args.num_voxels, **STAGE_A_PRESETS[args.preset]["model"])
    model = MaskedBrainModel(arch).to(device).train()
    batch = torch.randn(args.batch, 1, arch.num_voxels, device=device)
    step = training_step_fn(args.variant, model, device)
    for _ in range(args.warmup):
        step(batch)
    synchronize(device)
    times = []
    for _ in range(args.steps):
        started = time.perf_counter()
        loss = step(batch)
        synchronize(device)
        times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    result = {"s_per_step": round(seconds, 4), "samples_per_s": round(args.batch / seconds, 3),
              "step_times_s": [round(t, 4) for t in times], "peak_memory_mb": round(peak_memory_mb(device), 1),
              "final_loss": round(loss, 4), "parameters": count_parameters(model)}
    if args.profile and not args.variant.endswith("_compiled"):  # hooks do not survive compilation
        result["profile"] = profiled_steps(args.variant, model, batch, device, max(1, args.steps))
    return result


class StepProfiler:
    """Wall time of a training step by part, measured inside real steps with module hooks.

    Forward and backward of every attention and MLP sublayer are timed separately for the encoder (`blocks.*`) and
    the decoder (`decoder_blocks.*`); the optimizer part is gradient clipping + AdamW step; `rest` is everything
    else of forward + backward (patch embedding, masking, LayerNorms, residual adds, loss).
    """

    def __init__(self, model: MaskedBrainModel, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}
        self._started: dict[int, float] = {}
        for name, module in model.named_modules():
            if isinstance(module, (SelfAttention, FeedForward)):
                part = ("decoder" if name.startswith("decoder") else "encoder") + (
                    "_attention" if isinstance(module, SelfAttention) else "_mlp")
                module.register_forward_pre_hook(self._start_hook(module))
                module.register_forward_hook(self._stop_hook(module, f"{part}_forward_s"))
                module.register_full_backward_pre_hook(self._start_hook(module))
                module.register_full_backward_hook(self._stop_hook(module, f"{part}_backward_s"))

    def _now(self) -> float:
        synchronize(self.device)
        return time.perf_counter()

    def _start_hook(self, module: nn.Module):
        def hook(*_):
            self._started[id(module)] = self._now()
        return hook

    def _stop_hook(self, module: nn.Module, key: str):
        def hook(*_):
            self.seconds[key] = self.seconds.get(key, 0.0) + self._now() - self._started.pop(id(module))
        return hook

    def add(self, key: str, seconds: float) -> None:
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds


def profiled_steps(variant: str, model: MaskedBrainModel, batch: torch.Tensor, device: torch.device, steps: int
                   ) -> dict[str, float]:
    """Mean seconds per part over `steps` hooked training steps (separate from the timed ones)."""
    profiler = StepProfiler(model, device)
    optimizer = make_optimizer(variant, model)
    scaler = torch.amp.GradScaler("cuda") if variant == "reference_setup" and device.type == "cuda" else None
    for _ in range(steps):
        started = profiler._now()
        with autocast_for(variant, device):
            loss = model(batch, 0.75).loss
        forward_done = profiler._now()
        (scaler.scale(loss) if scaler is not None else loss).backward()
        backward_done = profiler._now()
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.8)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        profiler.add("forward_s", forward_done - started)
        profiler.add("backward_s", backward_done - forward_done)
        profiler.add("clip_and_optimizer_s", profiler._now() - backward_done)
    parts = {key: value / steps for key, value in profiler.seconds.items()}
    sublayers = sum(v for k, v in parts.items() if k.startswith(("encoder_", "decoder_")))
    parts["rest_of_forward_backward_s"] = parts["forward_s"] + parts["backward_s"] - sublayers
    parts["step_s"] = parts["forward_s"] + parts["backward_s"] + parts["clip_and_optimizer_s"]
    return {key: round(value, 4) for key, value in sorted(parts.items())}


def optimizer_alone(args: argparse.Namespace) -> dict[str, float]:
    """Clip + AdamW step on the full parameter set: PyTorch's per-parameter loop vs the fused kernel."""
    device = torch.device(args.device)
    arch = MbmArchitecture(num_voxels=args.num_voxels, **STAGE_A_PRESETS[args.preset]["model"])
    model = MaskedBrainModel(arch).to(device)
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter) * 1e-3
    result = {}
    for name, variant in (("adamw_per_parameter_loop", "reference_setup"), ("adamw_fused", "mindvis_fp32")):
        optimizer = make_optimizer(variant, model)
        optimizer.step()  # allocates the moment buffers
        synchronize(device)
        started = time.perf_counter()
        for _ in range(max(1, args.steps)):
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.8)
            optimizer.step()
        synchronize(device)
        result[name] = round((time.perf_counter() - started) / max(1, args.steps), 4)
    return result


def run_variant_subprocess(args: argparse.Namespace, variant: str) -> dict:
    command = [sys.executable, __file__, "--variant", variant, "--preset", args.preset, "--batch", str(args.batch),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device,
               "--num-voxels", str(args.num_voxels)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.profile:
        command.append("--profile")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"rc {done.returncode}"}
    return json.loads(done.stdout)


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="paper", choices=("paper", "demo"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant (median reported)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure all variants this many times, interleaved; keep each one's fastest round "
                             "(robust to other load on a shared machine)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-voxels", type=int, default=PAPER_NUM_VOXELS)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = PyTorch's default)")
    parser.add_argument("--compile", action="store_true", help="also measure the torch.compile'd bf16 variant")
    parser.add_argument("--profile", action="store_true", help="add the per-component breakdown")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # internal: one variant, JSON out
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.variant:
        print(json.dumps(measure_variant(args)))
        return

    load_before = os.getloadavg()
    variants = [v for v in VARIANTS if args.compile or not v.endswith("_compiled")]
    rounds: dict[str, list[dict]] = {variant: [] for variant in variants}
    for _ in range(max(1, args.rounds)):
        for variant in variants:
            rounds[variant].append(run_variant_subprocess(args, variant))
    results = {variant: min(runs, key=lambda r: r.get("s_per_step", float("inf"))) for variant, runs in rounds.items()}
    baseline = results["reference_setup"].get("s_per_step")
    report = {
        "benchmark": "stage_a_training_step", "preset": args.preset, "batch": args.batch, "steps": args.steps,
        "rounds": args.rounds,
        "num_voxels": args.num_voxels, "device": args.device,
        "device_name": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else cpu_name(),
        "cpu_count": os.cpu_count(), "torch_threads": args.threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "variants": results,
        "speedup_vs_reference_setup": {
            v: round(baseline / r["s_per_step"], 2) for v, r in results.items() if baseline and "s_per_step" in r},
        "reference_reported": REFERENCE_REPORTED if args.device == "cpu" and args.preset == "paper" else None,
    }
    if args.profile:
        report["optimizer_alone_s"] = optimizer_alone(args)
    report["load_average_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
