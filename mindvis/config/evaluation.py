"""Config section for evaluation: metric networks (local weight files only), metric protocol knobs, ridge baselines.

Nothing is ever downloaded: every network metric reads a weight file named here. A metric whose file is not
configured (null) is skipped and recorded as such in metrics.json; a configured file that is missing or does not
fit its architecture stops the workflow before generation starts (mindvis.evaluation.networks.check_weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class MetricWeightsConfig:
    """Local weight files of the metric networks (null = the metrics that need it are skipped).

    torchvision state dicts (e.g. the files torchvision itself caches, `alexnet-owt-7be5be79.pth`) unless noted.
    """

    alexnet: Path | None = field(default=None, metadata={
        "description": "torchvision alexnet state dict (alexnet2 / alexnet5 two-way identification)"})
    inception: Path | None = field(default=None, metadata={
        "description": "torchvision inception_v3 state dict (inception two-way identification; also FID when "
                       "fid_inception is null)"})
    fid_inception: Path | None = field(default=None, metadata={
        "description": "pytorch-fid's pt_inception-2015-12-05 state dict: the standard FID network (fid, fid64); "
                       "null = use `inception` (FID values then not comparable with published ones)"})
    clip: Path | None = field(default=None, metadata={
        "description": "open_clip checkpoint file of `clip_arch` (e.g. open_clip_pytorch_model.bin)"})
    effnet: Path | None = field(default=None, metadata={
        "description": "torchvision efficientnet_b1 state dict (effnet_dist)"})
    swav: Path | None = field(default=None, metadata={
        "description": "SwAV ResNet-50 trunk: a torchvision resnet50 state dict without fc, or SwAV's own "
                       "release file (module. prefix, projection head and prototypes are ignored)"})
    classifier: Path | None = field(default=None, metadata={
        "description": "torchvision state dict of `classifier_arch`, the ImageNet classifier of the n-way metric"})


@dataclass(frozen=True)
class BaselineConfig:
    """Ridge-regression baselines fitted on the training split (see mindvis.evaluation.baselines)."""

    pixels_px: int = field(default=32, metadata={
        "minimum": 2, "description": "side of the RGB images the pixel ridge predicts (upsampled afterwards)"})
    alphas: tuple[float, ...] = field(default=(1e-1, 1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6), metadata={
        "minItems": 1, "description": "ridge penalties tried; the best by cross-validation on the train split wins"})
    cv_folds: int = field(default=5, metadata={"minimum": 2})


@dataclass(frozen=True)
class DemoClassifierConfig:
    """Demo only: training of the small CNN that plays the ImageNet classifier's part in the n-way metric.

    Every epoch draws new images of every demo category (never the datasets' stimuli); AdamW with a one-cycle
    learning-rate schedule. The default demo reads the shipped classifier made with these values
    (mindvis.demo.pretrained); other values make the demo_classifier rule train one.
    """

    images_per_category: int = field(default=24, metadata={
        "minimum": 1, "description": "fresh training images per category and epoch"})
    val_images_per_category: int = field(default=4, metadata={"minimum": 1})
    epochs: int = field(default=30, metadata={"minimum": 1, "maximum": 998})
    batch_size: int = field(default=64, metadata={"minimum": 1})
    learning_rate: float = field(default=3e-3, metadata={"exclusiveMinimum": 0})
    weight_decay: float = field(default=0.05, metadata={"minimum": 0})
    width: int = field(default=48, metadata={"minimum": 1, "description": "channels after the stem (doubled twice)"})
    seed: int = field(default=2022, metadata={"minimum": 0})


@dataclass(frozen=True)
class EvaluationConfig:
    """How reconstructions are scored (MinD-Vis n-way / pairwise protocol and the NSD papers' metric suite)."""

    weights: MetricWeightsConfig = MetricWeightsConfig()
    classifier_arch: str = field(default="vit_h_14", metadata={
        "description": "torchvision architecture of weights.classifier (the reference: vit_h_14, SWAG 518 px)"})
    clip_arch: str = field(default="ViT-L-14-quickgelu", metadata={
        "description": "open_clip architecture of weights.clip: ViT-L-14-quickgelu for OpenAI's weights (the "
                       "papers'), ViT-L-14 for LAION's"})
    n_way: int = field(default=50, metadata={
        "minimum": 2, "description": "classes per n-way trial (the reference code: 50; its paper text: 100)"})
    n_trials: int = field(default=1000, metadata={"minimum": 1})
    pixel_metric_px: int | None = field(default=425, metadata={
        "minimum": 8, "description": "side images are resized to for pixcorr and ssim; null = preset (paper 425 as "
                                     "the NSD papers, demo 64 = the demo stimuli's own size)"})
    batch_size: int = field(default=16, metadata={"minimum": 1, "description": "images per network forward pass"})
    device: str = field(default="auto", metadata={
        "description": "torch device for metric networks: auto (cuda if available, else cpu), cpu, cuda, cuda:1..."})
    seed: int = 2022
    ldm_class_index: str | None = field(default=None, metadata={
        "description": "class -> wnid list of the pretrained LDM's classes (imagenet_class_index.json form) for "
                       "the class-conditioned ceiling; null = class_index.json beside the LDM's model.ckpt if any "
                       "(the demo LDM writes one)"})
    baselines: BaselineConfig = BaselineConfig()
    demo_classifier: DemoClassifierConfig = DemoClassifierConfig()


# Values filling keys left null in config.yaml (mindvis.config presets). Upsampling 64 px demo images to 425 px
# would only cost time: the demo scores pixel metrics at the stimuli's own size.
EVALUATION_PRESETS: dict[str, dict] = {"paper": {"pixel_metric_px": 425}, "demo": {"pixel_metric_px": 64}}
