"""Demo GOD (Generic Object Decoding, Kamitani lab) files in the layout of the MinD-Vis release.

`Kamitani/npz/` holds, as the real release (whose npz files come from SelfSuperReconst):
- `images_256.npz`: `train_images` uint8 (n_train, S, S, 3) and `test_images` uint8 (n_test, S, S, 3), each sorted by
  stimulus id (S = demo_data.god.image_size_px; 256 in the real file, whose name the demo keeps); zip-deflated.
- `imagenet_training_label.csv` / `imagenet_testing_label.csv`: no header, one row per image of train_images /
  test_images in the same order: `<synset number>.<image number, 6 digits>,<wnid>_<image number>.JPEG`,
  e.g. `1518878.014910,n01518878_14910.JPEG`.
- `imagenet_class_index.json`: {"<class index>": [wnid, (alias wnid,) name]}, classes sorted by wnid.
- `sbj_<n>.npz`: arr_0 train fMRI float32 (n_train trials, V) in presentation order; arr_1 test trials float32
  (n_test * repeats, V) grouped per test image in test_images order (as MinD-Vis assumes); arr_2 test fMRI averaged
  over repeats float32 (n_test, V); arr_3 int64 (n_train,) row of train_images shown on each train trial;
  arr_4 int64 (n_test * repeats,) row of test_images shown on each test trial; arr_5 float32 (V,) voxel noise
  ceiling (percent of variance of the repeat average); arr_6 float32 (V,) voxel SNR (signal s.d. / noise s.d.);
  then one boolean (V,) mask per ROI: V1, V2, V3, V4, LOC, FFA, PPA, LVC (V1-V3), HVC (LOC, FFA, PPA and the cortex
  around them), VC (all of them).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mindvis.config.data import DemoDataConfig
from mindvis.demo import cortex as vc
from mindvis.demo.images import FAKE_WNID_BASE, Category, category_table, render_stimuli
from mindvis.demo.streams import stream
from mindvis.io import atomic_path

log = logging.getLogger(__name__)

NPZ_DIR = Path("Kamitani") / "npz"
IMAGES_FILE = "images_256.npz"
CLASS_INDEX_FILE = "imagenet_class_index.json"
TRAIN_LABEL_FILE = "imagenet_training_label.csv"
TEST_LABEL_FILE = "imagenet_testing_label.csv"
ROI_ORDER = ("V1", "V2", "V3", "V4", "LOC", "FFA", "PPA", "LVC", "HVC", "VC")
HVC_OTHER = "HVC_other"
ALIAS_EVERY = 5
"""Every ALIAS_EVERY-th class of the class index lists a second wnid, as some entries of the real file do."""


@dataclass(frozen=True)
class Stimulus:
    """One GOD image: its category and ImageNet-style image number."""

    category: Category
    image_number: int

    @property
    def stimulus_id(self) -> str:
        """GOD's id: synset number '.' image number (6 digits), e.g. '1518878.014910'."""
        return f"{int(self.category.wnid[1:])}.{self.image_number:06d}"

    @property
    def filename(self) -> str:
        return f"{self.category.wnid}_{self.image_number}.JPEG"


def npz_dir(cfg: DemoDataConfig) -> Path:
    return cfg.root / NPZ_DIR


def files(cfg: DemoDataConfig) -> list[Path]:
    """Every GOD file the demo writes."""
    folder = npz_dir(cfg)
    shared = [folder / name for name in (IMAGES_FILE, CLASS_INDEX_FILE, TRAIN_LABEL_FILE, TEST_LABEL_FILE)]
    return shared + [folder / f"{subject}.npz" for subject in cfg.god_subjects]


def stimuli(cfg: DemoDataConfig) -> tuple[list[Stimulus], list[Stimulus]]:
    """(train, test) stimuli, each sorted by stimulus id (the row order of images_256.npz)."""
    train, test = [], []
    for category in category_table(cfg):
        count = cfg.god.images_per_train_category if category.split == "train" else 1
        numbers = stream(cfg.seed, "image-numbers", category.index).choice(np.arange(1, 20000), count, replace=False)
        (train if category.split == "train" else test).extend(Stimulus(category, int(n)) for n in numbers)
    return sorted(train, key=_id_order), sorted(test, key=_id_order)


def _id_order(stimulus: Stimulus) -> tuple[int, int]:
    """Sort key equal to the numeric order of GOD stimulus ids."""
    return int(stimulus.category.wnid[1:]), stimulus.image_number


def area_specs(cfg: DemoDataConfig) -> list[vc.AreaSpec]:
    """The subject's areas, left hemisphere (right visual field) first, then the right hemisphere."""
    god = cfg.god
    counts = {"V1": god.v1_voxels, "V2": god.v2_voxels, "V3": god.v3_voxels, "V4": god.v4_voxels,
              "LOC": god.loc_voxels, "FFA": god.ffa_voxels, "PPA": god.ppa_voxels, HVC_OTHER: god.hvc_other_voxels}
    kinds = {"V1": ("retinotopic", 0.0), "V2": ("retinotopic", 0.25), "V3": ("retinotopic", 0.5),
             "V4": ("retinotopic", 0.8), "LOC": ("object", 1.0), "FFA": ("face", 1.0), "PPA": ("scene", 1.0),
             HVC_OTHER: ("object", 1.0)}
    specs = []
    for hemisphere, field in (("LH", "right"), ("RH", "left")):
        for name, total in counts.items():
            n = total // 2 + (total % 2 if hemisphere == "LH" else 0)
            if n:
                kind, hierarchy = kinds[name]
                specs.append(vc.AreaSpec(name, n, kind, hierarchy, field))
    return specs


def roi_masks(areas: np.ndarray) -> dict[str, np.ndarray]:
    """GOD's boolean ROI masks from per-voxel area labels."""
    masks = {name: areas == name for name in ("V1", "V2", "V3", "V4", "LOC", "FFA", "PPA")}
    masks["LVC"] = masks["V1"] | masks["V2"] | masks["V3"]
    masks["HVC"] = masks["LOC"] | masks["FFA"] | masks["PPA"] | (areas == HVC_OTHER)
    masks["VC"] = masks["LVC"] | masks["V4"] | masks["HVC"]
    return {name: masks[name] for name in ROI_ORDER}


def voxel_reliability(test_trials: np.ndarray, test_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Noise ceiling (percent) and SNR of each voxel, estimated from repeated test trials.

    Args:
        test_trials: (n_trials, V); test_labels: (n_trials,) image of each trial (every image repeated R >= 2 times).
    Returns:
        noise ceiling of the R-trial average (percent of its variance) and signal s.d. / single-trial noise s.d.,
        both float32 (V,).
    """
    images = np.unique(test_labels)
    groups = np.stack([test_trials[test_labels == image] for image in images]).astype(np.float64)  # (n, R, V)
    repeats = groups.shape[1]
    noise_var = groups.var(axis=1, ddof=1).mean(axis=0)
    signal_var = np.maximum(groups.mean(axis=1).var(axis=0, ddof=1) - noise_var / repeats, 0.0)
    snr = np.sqrt(signal_var / noise_var)
    ceiling = 100.0 * snr**2 / (snr**2 + 1.0 / repeats)
    return ceiling.astype(np.float32), snr.astype(np.float32)


def _class_index(cfg: DemoDataConfig) -> dict[str, list[str]]:
    categories = sorted(category_table(cfg), key=lambda c: c.wnid)
    rng = stream(cfg.seed, "class-index-aliases")
    used = {int(c.wnid[1:]) for c in categories}
    index = {}
    for position, category in enumerate(categories):
        entry = [category.wnid]
        if position % ALIAS_EVERY == ALIAS_EVERY - 1:
            alias = int(FAKE_WNID_BASE + rng.integers(9_999_999))
            while alias in used:
                alias = int(FAKE_WNID_BASE + rng.integers(9_999_999))
            used.add(alias)
            entry.append(f"n{alias:08d}")
        index[str(position)] = entry + [category.name]
    return index


def _write_label_csv(path: Path, rows: list[Stimulus]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerows([s.stimulus_id, s.filename] for s in rows)


def write(cfg: DemoDataConfig) -> list[Path]:
    """Write the GOD files that do not exist yet; returns the files written."""
    todo = [path for path in files(cfg) if not path.exists()]
    if not todo:
        return []
    folder = npz_dir(cfg)
    train, test = stimuli(cfg)
    written = []
    if folder / CLASS_INDEX_FILE in todo:
        with atomic_path(folder / CLASS_INDEX_FILE) as tmp:
            tmp.write_text(json.dumps(_class_index(cfg)))
        written.append(folder / CLASS_INDEX_FILE)
    for name, rows in ((TRAIN_LABEL_FILE, train), (TEST_LABEL_FILE, test)):
        if folder / name in todo:
            _write_label_csv(folder / name, rows)
            written.append(folder / name)
    subjects = [s for s in cfg.god_subjects if folder / f"{s}.npz" in todo]
    if folder / IMAGES_FILE not in todo and not subjects:
        return written

    log.info("GOD demo: rendering %d images", len(train) + len(test))
    size = cfg.god.image_size_px
    images, instances = render_stimuli(cfg, "GOD", [(s.category.index, s.image_number) for s in train + test], size)
    if folder / IMAGES_FILE in todo:
        with atomic_path(folder / IMAGES_FILE) as tmp:
            # compressed: flat synthetic images shrink ~20x; readers stream members through zipfile either way
            np.savez_compressed(tmp, train_images=images[: len(train)], test_images=images[len(train):])
        written.append(folder / IMAGES_FILE)
    if subjects:
        features_early = vc.image_features(images)
        del images
        codes = vc.semantic_codes(stream(cfg.seed, "semantic"), len(category_table(cfg)))
        features_high = vc.stimulus_features([s.category for s in train + test], instances, codes)
        for subject in subjects:
            path = folder / f"{subject}.npz"
            arrays, masks = subject_arrays(cfg, subject, len(train), len(test), features_early, features_high)
            with atomic_path(path) as tmp:
                np.savez(tmp, *arrays, **masks)
            written.append(path)
    return written


def subject_arrays(cfg: DemoDataConfig, subject: str, n_train: int, n_test: int, features_early: np.ndarray,
                   features_high: np.ndarray) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """arr_0..arr_6 and the ROI masks of one subject (see module docstring); stimuli rows: train then test."""
    cortex = vc.build_cortex(stream(cfg.seed, "GOD", subject, "cortex"), area_specs(cfg), cfg.cortex)
    drive = vc.stimulus_drive(cortex, features_early, features_high)
    train_order = stream(cfg.seed, "GOD", subject, "order").permutation(n_train)
    test_labels = np.repeat(np.arange(n_test), cfg.god.test_repeats)
    trials = vc.trial_responses(stream(cfg.seed, "GOD", subject, "trials"), cortex, drive,
                                np.concatenate([train_order, n_train + test_labels]))
    train_fmri, test_fmri = trials[:n_train], trials[n_train:]
    test_average = np.stack([test_fmri[test_labels == i].astype(np.float64).mean(axis=0) for i in range(n_test)])
    ceiling, snr = voxel_reliability(test_fmri, test_labels)
    arrays = [train_fmri, test_fmri, test_average.astype(np.float32), train_order.astype(np.int64),
              test_labels.astype(np.int64), ceiling, snr]
    return arrays, roi_masks(cortex.area)
