"""Demo BOLD5000 files follow the release layout; presentation lists line up with the beta rows."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from mindvis.demo import synthesize

ROIS = ("EarlyVis", "LOC", "OPA", "PPA", "RSC")
NAME_PATTERNS = {
    "COCO": re.compile(r"^COCO_train2014_\d{12}\.jpg$"),
    "ImageNet": re.compile(r"^n\d{8}_\d+\.JPEG$"),
    "Scene": re.compile(r"^[a-z]+\d+\.jpg$"),
}


@pytest.fixture
def bold_files(small_cfg):
    synthesize(small_cfg, ["BOLD5000"])
    return small_cfg, small_cfg.root / "BOLD5000"


def _presented(root, subject):
    """Names in presentation order: sessions sorted, runs sorted (as MinD-Vis and the readers concatenate)."""
    names = []
    for session in sorted((root / "BOLD5000_Stimuli" / "Stimuli_Presentation_Lists" / subject).iterdir()):
        for run in sorted(session.glob("*.txt")):
            names += run.read_text().splitlines()
    return names


def test_beta_files_are_float32_trials_by_voxels_with_one_row_per_presentation(bold_files):
    cfg, root = bold_files
    b = cfg.bold5000
    presented = _presented(root, "CSI1")
    assert len(presented) == b.sessions * b.runs_per_session * b.trials_per_run
    voxels = {"EarlyVis": b.early_vis_voxels, "LOC": b.loc_voxels, "OPA": b.opa_voxels, "PPA": b.ppa_voxels,
              "RSC": b.rsc_voxels}
    folder = root / "BOLD5000_GLMsingle_ROI_betas" / "py"
    assert len(list(folder.glob("*.npy"))) == 10
    for hemisphere in ("LH", "RH"):
        for roi in ROIS:
            betas = np.load(folder / f"CSI1_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_allses_{hemisphere}{roi}.npy")
            assert betas.dtype == np.float32 and betas.shape == (len(presented), voxels[roi])
            assert np.isfinite(betas).all()


def test_rep_prefix_marks_exactly_the_repeated_stimuli(bold_files):
    cfg, root = bold_files
    b = cfg.bold5000
    repeated = (root / "BOLD5000_Stimuli" / "Scene_Stimuli" / "repeated_stimuli_113_list.txt").read_text().split()
    assert len(repeated) == len(set(repeated)) == b.n_repeated_stimuli
    presented = _presented(root, "CSI1")
    counts = Counter(presented)
    for name in repeated:
        assert counts[f"rep_{name}"] == b.repeats_per_stimulus and counts[name] == 0
    once = [name for name in presented if not name.startswith("rep_")]
    assert len(once) == len(set(once)) == len(presented) - b.n_repeated_stimuli * b.repeats_per_stimulus
    assert not set(once) & set(repeated)


def test_every_presented_image_exists_as_a_jpeg_named_like_its_source(bold_files):
    cfg, root = bold_files
    folder = root / "BOLD5000_Stimuli" / "Scene_Stimuli" / "Presented_Stimuli"
    files = {p.name: p for p in folder.rglob("*") if p.is_file()}
    for path in files.values():
        assert NAME_PATTERNS[path.parent.name].match(path.name), path
    for name in {n.removeprefix("rep_") for n in _presented(root, "CSI1")}:
        with Image.open(files[name]) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert image.size == (cfg.bold5000.image_size_px, cfg.bold5000.image_size_px)


def test_repeated_presentations_share_a_response_pattern(small_cfg):
    """Repeats of one image correlate more with each other than with other images (rows follow the lists).

    The noise is lowered so that the few voxels and trials of the small config show it reliably.
    """
    cfg = replace(small_cfg, cortex=replace(small_cfg.cortex, noise_private=1.0, noise_shared=0.5))
    synthesize(cfg, ["BOLD5000"])
    root = cfg.root / "BOLD5000"
    folder = root / "BOLD5000_GLMsingle_ROI_betas" / "py"
    betas = np.hstack([np.load(p) for p in sorted(folder.glob("CSI1_*.npy"))]).astype(np.float64)
    betas = (betas - betas.mean(0)) / betas.std(0)
    presented = np.array(_presented(root, "CSI1"))
    repeated = sorted({n for n in presented if n.startswith("rep_")})
    same, different = [], []
    for i, name in enumerate(repeated):
        rows = betas[presented == name]
        other = betas[presented == repeated[(i + 1) % len(repeated)]]
        corr = np.corrcoef(np.vstack([rows, other]))
        k = len(rows)
        same.append(corr[:k, :k][np.triu_indices(k, 1)].mean())
        different.append(corr[:k, k:].mean())
    assert np.mean(same) > np.mean(different) + 0.15
