"""Demo BOLD5000 files in the layout of the official release (GLMsingle ROI betas + stimuli + presentation lists).

Under `BOLD5000/`:
- `BOLD5000_GLMsingle_ROI_betas/py/CSI<n>_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_allses_<LH|RH><ROI>.npy`: float32
  (n_trials, n_voxels of the ROI), one row per trial in presentation order (sessions, then runs, then trials).
  ROIs EarlyVis, LOC, OPA, PPA, RSC per hemisphere; a hemisphere's early voxels see the opposite visual half-field.
- `BOLD5000_Stimuli/Scene_Stimuli/Presented_Stimuli/{COCO,ImageNet,Scene}/<image>`: the stimulus images (JPEG), named
  as the release names them (`COCO_train2014_000000123456.jpg`, `n01440764_10026.JPEG`, `<scene word><k>.jpg`).
- `BOLD5000_Stimuli/Scene_Stimuli/repeated_stimuli_113_list.txt`: the repeated (test) images, one name per line.
- `BOLD5000_Stimuli/Stimuli_Presentation_Lists/CSI<n>/CSI<n>_sess<NN>/CSI_sess<NN>_run<NN>.txt`: the images of one
  run in presentation order, one per line; presentations of repeated images carry a `rep_` prefix.
Every subject sees the same stimuli (as CSI1-3 did), in its own order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mindvis.config.data import DemoDataConfig
from mindvis.demo import cortex as vc
from mindvis.demo.images import Category, category_table, render_stimuli
from mindvis.demo.streams import stream
from mindvis.errors import ConfigError
from mindvis.io import atomic_path

log = logging.getLogger(__name__)

ROIS = ("EarlyVis", "LOC", "OPA", "PPA", "RSC")
HEMISPHERES = ("LH", "RH")
BETAS_DIR = Path("BOLD5000") / "BOLD5000_GLMsingle_ROI_betas" / "py"
STIMULI_DIR = Path("BOLD5000") / "BOLD5000_Stimuli"
PRESENTED_DIR = STIMULI_DIR / "Scene_Stimuli" / "Presented_Stimuli"
REPEATED_LIST = STIMULI_DIR / "Scene_Stimuli" / "repeated_stimuli_113_list.txt"
LISTS_DIR = STIMULI_DIR / "Stimuli_Presentation_Lists"
SOURCES = ("COCO", "ImageNet", "Scene")
SOURCE_PROBABILITIES = (0.4, 0.4, 0.2)  # BOLD5000: ~2000 COCO, ~1900 ImageNet, 1000 Scene images
REPEAT_PREFIX = "rep_"
JPEG_QUALITY = 90


@dataclass(frozen=True)
class Stimulus:
    """One BOLD5000 image: where it comes from and what it shows."""

    name: str
    source: str
    category: Category
    image_number: int
    repeated: bool


def betas_file(cfg: DemoDataConfig, subject: str, hemisphere: str, roi: str) -> Path:
    return cfg.root / BETAS_DIR / f"{subject}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_allses_{hemisphere}{roi}.npy"


def run_file(cfg: DemoDataConfig, subject: str, session: int, run: int) -> Path:
    """Presentation list of one run (sessions and runs count from 1)."""
    return cfg.root / LISTS_DIR / subject / f"{subject}_sess{session:02d}" / f"CSI_sess{session:02d}_run{run:02d}.txt"


def image_file(cfg: DemoDataConfig, stimulus: Stimulus) -> Path:
    return cfg.root / PRESENTED_DIR / stimulus.source / stimulus.name


def n_trials(cfg: DemoDataConfig) -> int:
    b = cfg.bold5000
    return b.sessions * b.runs_per_session * b.trials_per_run


def stimuli(cfg: DemoDataConfig) -> list[Stimulus]:
    """The stimulus set: the repeated (test) stimuli first, then those shown once."""
    b = cfg.bold5000
    n_once = n_trials(cfg) - b.n_repeated_stimuli * b.repeats_per_stimulus
    if n_once < 1:
        raise ConfigError("the BOLD5000 demo has no trials left for training images",
                          path="demo_data.bold5000", value=n_once,
                          expected="sessions * runs_per_session * trials_per_run > n_repeated_stimuli * "
                                   "repeats_per_stimulus",
                          hint="add runs or trials, or repeat fewer stimuli")
    table = category_table(cfg)
    rng = stream(cfg.seed, "BOLD5000", "stimuli")
    total = b.n_repeated_stimuli + n_once
    categories = rng.integers(len(table), size=total)
    sources = rng.choice(len(SOURCES), size=total, p=SOURCE_PROBABILITIES)
    coco_ids = rng.choice(581_929, size=total, replace=False) + 1
    image_numbers = rng.choice(np.arange(1, 20000), size=total, replace=False)
    scene_counts: dict[int, int] = {}
    result = []
    for i in range(total):
        category, source, number = table[int(categories[i])], SOURCES[int(sources[i])], int(image_numbers[i])
        if source == "COCO":
            name = f"COCO_train2014_{int(coco_ids[i]):012d}.jpg"
        elif source == "ImageNet":
            name = f"{category.wnid}_{number}.JPEG"
        else:
            scene_counts[category.index] = scene_counts.get(category.index, 0) + 1
            name = f"{category.name.replace('_', '')}{scene_counts[category.index]}.jpg"
        result.append(Stimulus(name, source, category, number, repeated=i < b.n_repeated_stimuli))
    return result


def presentation_order(cfg: DemoDataConfig, subject: str, n_stimuli: int) -> np.ndarray:
    """Stimulus index (into `stimuli(cfg)`) of every trial of `subject`, in presentation order. int (n_trials,)."""
    b = cfg.bold5000
    trials = np.concatenate([np.repeat(np.arange(b.n_repeated_stimuli), b.repeats_per_stimulus),
                             np.arange(b.n_repeated_stimuli, n_stimuli)])
    return stream(cfg.seed, "BOLD5000", subject, "order").permutation(trials)


def area_specs(cfg: DemoDataConfig) -> list[vc.AreaSpec]:
    """ROI areas, left hemisphere first; early visual voxels span V1-V3-like pRF sizes."""
    b = cfg.bold5000
    specs = []
    for hemisphere, field in (("LH", "right"), ("RH", "left")):
        early = np.array_split(np.arange(b.early_vis_voxels), 3)
        specs += [vc.AreaSpec(f"{hemisphere}EarlyVis", len(part), "retinotopic", hierarchy, field)
                  for part, hierarchy in zip(early, (0.0, 0.25, 0.5), strict=True) if len(part)]
        specs += [vc.AreaSpec(f"{hemisphere}LOC", b.loc_voxels, "object", 1.0, field),
                  vc.AreaSpec(f"{hemisphere}OPA", b.opa_voxels, "scene", 1.0, field),
                  vc.AreaSpec(f"{hemisphere}PPA", b.ppa_voxels, "scene", 1.0, field),
                  vc.AreaSpec(f"{hemisphere}RSC", b.rsc_voxels, "scene", 1.0, field)]
    return specs


def files(cfg: DemoDataConfig) -> list[Path]:
    """Every BOLD5000 file the demo writes."""
    b = cfg.bold5000
    paths = [image_file(cfg, s) for s in stimuli(cfg)] + [cfg.root / REPEATED_LIST]
    for subject in cfg.bold5000_subjects:
        paths += [betas_file(cfg, subject, h, roi) for h in HEMISPHERES for roi in ROIS]
        paths += [run_file(cfg, subject, session, run)
                  for session in range(1, b.sessions + 1) for run in range(1, b.runs_per_session + 1)]
    return paths


def write(cfg: DemoDataConfig) -> list[Path]:
    """Write the BOLD5000 files that do not exist yet; returns the files written."""
    todo = {path for path in files(cfg) if not path.exists()}
    if not todo:
        return []
    table = stimuli(cfg)
    written = []
    repeated_list = cfg.root / REPEATED_LIST
    if repeated_list in todo:
        with atomic_path(repeated_list) as tmp:
            tmp.write_text("".join(f"{s.name}\n" for s in table if s.repeated))
        written.append(repeated_list)
    for subject in cfg.bold5000_subjects:
        written += _write_presentation_lists(cfg, subject, table, todo)

    need_betas = [s for s in cfg.bold5000_subjects if any(betas_file(cfg, s, h, r) in todo
                                                          for h in HEMISPHERES for r in ROIS)]
    need_images = [s for s in table if image_file(cfg, s) in todo]
    if not need_betas and not need_images:
        return written
    log.info("BOLD5000 demo: rendering %d images", len(table))
    images, instances = render_stimuli(cfg, "BOLD5000", [(s.category.index, s.image_number) for s in table],
                                       cfg.bold5000.image_size_px)
    for stimulus, image in zip(table, images, strict=True):
        path = image_file(cfg, stimulus)
        if path in todo:
            with atomic_path(path) as tmp:
                Image.fromarray(image).save(tmp, format="JPEG", quality=JPEG_QUALITY)
            written.append(path)
    if need_betas:
        features_early = vc.image_features(images)
        del images
        codes = vc.semantic_codes(stream(cfg.seed, "semantic"), len(category_table(cfg)))
        features_high = vc.stimulus_features([s.category for s in table], instances, codes)
        for subject in need_betas:
            written += _write_betas(cfg, subject, len(table), features_early, features_high, todo)
    return written


def _write_presentation_lists(cfg: DemoDataConfig, subject: str, table: list[Stimulus], todo: set[Path],
                              ) -> list[Path]:
    b = cfg.bold5000
    order = presentation_order(cfg, subject, len(table)).reshape(b.sessions, b.runs_per_session, b.trials_per_run)
    written = []
    for session in range(b.sessions):
        for run in range(b.runs_per_session):
            path = run_file(cfg, subject, session + 1, run + 1)
            if path not in todo:
                continue
            names = [(REPEAT_PREFIX if table[i].repeated else "") + table[i].name for i in order[session, run]]
            with atomic_path(path) as tmp:
                tmp.write_text("".join(f"{name}\n" for name in names))
            written.append(path)
    return written


def _write_betas(cfg: DemoDataConfig, subject: str, n_stimuli: int, features_early: np.ndarray,
                 features_high: np.ndarray, todo: set[Path]) -> list[Path]:
    cortex = vc.build_cortex(stream(cfg.seed, "BOLD5000", subject, "cortex"), area_specs(cfg), cfg.cortex)
    drive = vc.stimulus_drive(cortex, features_early, features_high)
    betas = vc.trial_responses(stream(cfg.seed, "BOLD5000", subject, "trials"), cortex, drive,
                               presentation_order(cfg, subject, n_stimuli))
    written = []
    for hemisphere in HEMISPHERES:
        for roi in ROIS:
            path = betas_file(cfg, subject, hemisphere, roi)
            if path in todo:
                with atomic_path(path) as tmp:
                    np.save(tmp, np.ascontiguousarray(betas[:, cortex.area == f"{hemisphere}{roi}"]))
                written.append(path)
    return written
