"""Cost of the network-free parts of evaluation at the reference's sizes (GOD: 50 test images x 5 samples, 256 px).

- pairwise SSIM: mindvis.evaluation.metrics.ssim_matrix vs. skimage's structural_similarity pair by pair (the
  reference's loop), per pair, on the same images, and the largest difference between the two;
- evaluate_all without metric networks (pairwise MSE/PCC/SSIM, PixCorr, SSIM at 425 px);
- n-way top-1 protocol (1000 classes, 50-way, 1000 trials) on given probabilities;
- FID maths on 250 x 2048-d features;
- ridge baselines on GOD-like sizes (1200 train rows x 4466 voxels -> 32x32 RGB; retrieval on 1000-d features).
Prints JSON. Random images/data: the costs do not depend on content.

    python benchmarks/bench_metrics.py [--n-images 50] [--samples 5] [--image-px 256] [--ssim-pairs 40]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
from skimage.metrics import structural_similarity

from mindvis.config.evaluation import EvaluationConfig
from mindvis.evaluation.baselines import ridge_pixel_baseline, ridge_retrieval_baseline
from mindvis.evaluation.fid import frechet_distance
from mindvis.evaluation.metrics import nway_top1, ssim_matrix
from mindvis.evaluation.networks import MetricNetworks
from mindvis.evaluation.scoring import evaluate_all


def timed(fn, *args, **kwargs) -> tuple[object, float]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=50)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--image-px", type=int, default=256)
    parser.add_argument("--ssim-pairs", type=int, default=40, help="pairs timed with skimage (it is slow)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n, k, px = args.n_images, args.samples, args.image_px
    gts = rng.integers(0, 256, (n, px, px, 3), dtype=np.uint8)
    recons = np.clip(gts[:, None] + rng.normal(0, 30, (n, k, px, px, 3)), 0, 255).astype(np.uint8)
    figures: dict[str, object] = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                                  "n_images": n, "samples": k, "image_px": px}

    side = max(1, int(np.sqrt(args.ssim_pairs)))
    ours, ours_s = timed(ssim_matrix, recons[:side, 0], gts[:side])
    start = time.perf_counter()
    skimage_values = [[structural_similarity(r, g, data_range=255, channel_axis=-1) for g in gts[:side]]
                      for r in recons[:side, 0]]
    skimage_s = time.perf_counter() - start
    figures["ssim_ms_per_pair"] = {"mindvis": 1e3 * ours_s / side**2, "skimage": 1e3 * skimage_s / side**2,
                                   "max_abs_difference": float(np.abs(ours - np.array(skimage_values)).max())}

    cfg = EvaluationConfig(device="cpu")
    _, evaluate_s = timed(evaluate_all, recons, gts, cfg, networks=MetricNetworks())
    figures["evaluate_all_pixel_metrics_s"] = evaluate_s

    probabilities = rng.dirichlet(np.ones(1000), size=(n, k))
    _, nway_s = timed(nway_top1, probabilities[:, 0], probabilities, 50, 1000, 0)
    figures["nway_top1_s"] = nway_s

    features = rng.normal(size=(n * k, 2048))
    _, fid_s = timed(frechet_distance, features, features[:n] + 0.1)
    figures["fid_2048d_s"] = fid_s

    train_fmri = rng.normal(size=(1200, 4466)).astype(np.float32)
    train_images = rng.integers(0, 256, (1200, px, px, 3), dtype=np.uint8)
    test_fmri = rng.normal(size=(n, 4466)).astype(np.float32)
    _, pixel_s = timed(ridge_pixel_baseline, train_fmri, train_images, test_fmri, cfg)
    projection = rng.normal(size=(48, 1000))

    def features_of(images: np.ndarray) -> np.ndarray:  # stands in for the classifier's logits (1000-d)
        return images[:, ::32, ::32].reshape(len(images), -1)[:, :48] @ projection

    _, retrieval_s = timed(ridge_retrieval_baseline, train_fmri, train_images, test_fmri, features_of, cfg)
    figures["ridge_pixel_baseline_s"] = pixel_s
    figures["ridge_retrieval_baseline_s_excluding_network"] = retrieval_s
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
