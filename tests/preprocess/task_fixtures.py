"""Tiny GOD and BOLD5000 raw datasets in the real release layouts, where every fMRI row encodes its image.

Encoding (before any normalisation): for a trial showing image k,
  - the first three voxels of the encoding block are the mean R, G, B of the image's content,
  - the next voxel is an image code (GOD: index within train_images/test_images; BOLD5000: position of the file name in
    `all_names`), the next one (GOD) the image set (0 train, 1 test),
  - the remaining voxels are per-trial noise, whose repeats average to exactly zero per image.
Since normalisation is affine with the statistics recorded in voxels.parquet, `fmri * std + mean` gives back these
values, so a test can check that every preprocessed row sits next to the right image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from mindvis.preprocess import bold5000

RAW_IMAGE_PX = 16  # GOD images_256.npz stand-in; the layout matters, not the size


def distinct_colours(n: int, seed: int) -> np.ndarray:
    """(n, 3) uint8 colours, pairwise far apart (>= 20 in some channel) so that images are unmistakable."""
    rng = np.random.default_rng(seed)
    colours: list[np.ndarray] = []
    while len(colours) < n:
        candidate = rng.integers(10, 246, size=3)
        if all(np.abs(candidate - c).max() >= 20 for c in colours):
            colours.append(candidate)
    return np.array(colours, dtype=np.uint8)


def zero_mean_noise(rng: np.random.Generator, n_repeats: int, n_voxels: int) -> np.ndarray:
    """(n_repeats, n_voxels) noise whose mean over repeats is exactly zero."""
    noise = rng.normal(size=(n_repeats, n_voxels))
    return noise - noise.mean(axis=0)


# ----------------------------------------------------------------------------------------------- GOD

@dataclass
class GodRaw:
    root: Path
    subject: str
    folder: Path
    train_colours: np.ndarray
    test_colours: np.ndarray
    vc_columns: np.ndarray  # raw columns of the VC voxels, in order
    roi_of_vc_voxel: list[str]
    train_ids: list[str]
    test_ids: list[str]
    categories: dict[str, str | None] = field(default_factory=dict)

    @property
    def sbj_file(self) -> Path:
        return self.folder / f"{self.subject}.npz"


GOD_WNIDS = (1518878, 1443537, 2084071, 9999999)  # the last one is absent from the class index
GOD_CLASSES = {"7": ["n01518878", "ostrich"], "1": ["n01443537", "goldfish"], "9": ["n02084071", "n02085620", "dog"]}


def write_god(root: Path, subject: str = "sbj_3", n_train: int = 10, n_test: int = 3, repeats: int = 4,
              shuffle_test_trials: bool = False, compressed_images: bool = False, seed: int = 0) -> GodRaw:
    """Write Kamitani/npz/{<subject>.npz, images_256.npz, labels, class index} under `root`."""
    rng = np.random.default_rng(seed)
    folder = root / "Kamitani" / "npz"
    folder.mkdir(parents=True, exist_ok=True)
    colours = distinct_colours(n_train + n_test, seed=1)
    train_colours, test_colours = colours[:n_train], colours[n_train:]

    def stack(cols: np.ndarray) -> np.ndarray:
        return np.broadcast_to(cols[:, None, None, :], (len(cols), RAW_IMAGE_PX, RAW_IMAGE_PX, 3)).copy()

    saver = np.savez_compressed if compressed_images else np.savez
    saver(folder / "images_256.npz", train_images=stack(train_colours), test_images=stack(test_colours))

    def ids(n: int, offset: int) -> list[str]:
        return [f"{GOD_WNIDS[(i + offset) % len(GOD_WNIDS)]}.{i + offset:06d}" for i in range(n)]

    train_ids, test_ids = ids(n_train, 0), ids(n_test, 100)
    for name, rows in (("imagenet_training_label.csv", train_ids), ("imagenet_testing_label.csv", test_ids)):
        lines = [f"{sid},n{int(sid.split('.')[0]):08d}_{int(sid.split('.')[1])}.JPEG" for sid in rows]
        (folder / name).write_text("\n".join(lines) + "\n")
    (folder / "imagenet_class_index.json").write_text(json.dumps(GOD_CLASSES))
    names_by_wnid = {int(w[1:]): v[-1] for v in GOD_CLASSES.values() for w in v[:-1]}
    categories = {sid: names_by_wnid.get(int(sid.split(".")[0])) for sid in train_ids + test_ids}

    # Voxels: 12 in VC (5 encoding + 7 noise), 4 outside VC holding huge values that must never leak in.
    n_all, n_noise = 16, 7
    outside = np.array([2, 7, 11, 15])
    vc_columns = np.setdiff1d(np.arange(n_all), outside)
    masks = {name: np.zeros(n_all, dtype=bool) for name in ("VC", "LVC", "HVC", "V1", "V2", "LOC", "FFA")}
    masks["VC"][vc_columns] = True
    masks["V1"][vc_columns[:3]] = True
    masks["V2"][vc_columns[3:6]] = True
    masks["LVC"][vc_columns[:8]] = True  # V1 + V2 + two voxels only LVC contains
    masks["LOC"][vc_columns[8:10]] = True
    masks["FFA"][vc_columns[9:11]] = True  # overlaps LOC on one voxel: same size, alphabetical FFA wins
    masks["HVC"][vc_columns[8:]] = True
    roi_of_vc_voxel = ["V1"] * 3 + ["V2"] * 3 + ["LVC"] * 2 + ["LOC", "FFA", "FFA", "HVC"]

    def encode(colour: np.ndarray, code: int, image_set: int, noise: np.ndarray) -> np.ndarray:
        row = rng.normal(1e6, 1.0, size=n_all)
        row[vc_columns] = np.concatenate([colour.astype(float), [code, image_set], noise])
        return row

    train_index = rng.permutation(n_train)
    arr_0 = np.stack([encode(train_colours[k], k, 0, rng.normal(size=n_noise)) for k in train_index])
    test_index = np.repeat(np.arange(n_test), repeats)
    noise = np.concatenate([zero_mean_noise(rng, repeats, n_noise) for _ in range(n_test)])
    arr_1 = np.stack([encode(test_colours[k], k, 1, noise[t]) for t, k in enumerate(test_index)])
    arr_2 = np.stack([arr_1[test_index == k].mean(axis=0) for k in range(n_test)])
    if shuffle_test_trials:
        order = rng.permutation(len(test_index))
        arr_1, test_index = arr_1[order], test_index[order]
    noise_ceiling, snr = rng.uniform(size=n_all), rng.uniform(size=n_all)
    np.savez(folder / f"{subject}.npz", arr_0.astype(np.float32), arr_1.astype(np.float32), arr_2.astype(np.float32),
             train_index, test_index, noise_ceiling, snr, **masks)
    return GodRaw(root=root, subject=subject, folder=folder, train_colours=train_colours, test_colours=test_colours,
                  vc_columns=vc_columns, roi_of_vc_voxel=roi_of_vc_voxel, train_ids=train_ids, test_ids=test_ids,
                  categories=categories)


def rewrite_npz(path: Path, **changes: np.ndarray | None) -> None:
    """Rewrite an .npz with some arrays replaced (value) or removed (None), keeping the others and their names."""
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key, None)
        else:
            arrays[key] = value
    np.savez(path, **arrays)


# ----------------------------------------------------------------------------------------------- BOLD5000

@dataclass
class BoldRaw:
    root: Path
    subject: str
    all_names: list[str]  # every image file name, the index is the image code
    colours: dict[str, np.ndarray]
    image_set: dict[str, str]
    trial_names: list[str]  # presentation order (rep_ stripped)
    repeated: list[str]  # the repeated list as written (includes an image this subject never saw)
    voxels_per_file: dict[str, int]
    file_codes: dict[str, float]

    def beta(self, hemisphere: str, roi: str) -> Path:
        return bold5000.beta_file(self.root, self.subject, hemisphere, roi)

    @property
    def lists_dir(self) -> Path:
        return self.root / bold5000.LISTS_DIR / self.subject


def save_image_file(path: Path, colour: np.ndarray, landscape: bool) -> None:
    """A non-square picture whose centre square is `colour` and whose cropped-away margins are black.

    Saved as PNG bytes (lossless) under the release's .jpg/.JPEG names: readers must not trust extensions.
    """
    height, width = (20, 30) if landscape else (30, 20)
    picture = np.zeros((height, width, 3), dtype=np.uint8)
    if landscape:
        picture[:, 5:25] = colour
    else:
        picture[5:25, :] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(path, format="PNG")


def write_bold5000(root: Path, subject: str = "CSI1", rois: tuple[str, ...] = bold5000.DEFAULT_ROIS,
                   repeats_seen: tuple[int, int, int] = (4, 3, 2), seed: int = 0) -> BoldRaw:
    """Write BOLD5000 betas, presentation lists, repeated list and images for one subject under `root`.

    Three repeated stimuli are shown `repeats_seen` times, a fourth one of the list never.
    """
    rng = np.random.default_rng(seed)
    names_by_set = {
        "COCO": [f"COCO_train2014_{i:012d}.jpg" for i in (36, 49, 77, 110)],
        "ImageNet": [f"n0144{i}537_{i}0{i}.JPEG" for i in range(4)],
        "Scene": ["airplanecabin1.jpg", "bedroom3.jpg", "kitchen7.jpg"],
    }
    all_names = [name for names in names_by_set.values() for name in names]
    image_set = {name: s for s, names in names_by_set.items() for name in names}
    colours = dict(zip(all_names, distinct_colours(len(all_names), seed=2)))
    for i, name in enumerate(all_names):
        save_image_file(root / bold5000.PRESENTED_DIR / image_set[name] / name, colours[name], landscape=i % 2 == 0)

    # Repeated stimuli: 3 seen by this subject, 1 never seen (as CSI4 misses some).
    repeated_seen = [all_names[1], all_names[5], all_names[9]]
    repeats = dict(zip(repeated_seen, repeats_seen))
    never_seen = all_names[10]
    repeated_file = root / bold5000.REPEATED_LIST
    repeated_file.parent.mkdir(parents=True, exist_ok=True)
    repeated = [repeated_seen[1], never_seen, repeated_seen[0], repeated_seen[2]]
    repeated_file.write_text("\n".join(repeated) + "\n")

    singles = [n for n in all_names if n not in repeats and n != never_seen]
    trial_names = singles + [n for n, r in repeats.items() for _ in range(r)]
    trial_names = [trial_names[i] for i in rng.permutation(len(trial_names))]
    # Sessions and runs; the release prefixes repeated images with rep_.
    sessions = {f"{subject}_sess01": 2, f"{subject}_sess02": 2}
    chunks = np.array_split(np.arange(len(trial_names)), sum(sessions.values()))
    run_number = 0
    for session, n_runs in sessions.items():
        for run in range(1, n_runs + 1):
            tokens = [("rep_" if trial_names[t] in repeats else "") + trial_names[t] for t in chunks[run_number]]
            path = root / bold5000.LISTS_DIR / subject / session / f"{subject}_{session[-6:]}_run{run:02d}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(tokens) + "\n")
            run_number += 1

    # Betas: LHEarlyVis carries R, G, B, image code; every file ends with a constant code column; the rest is noise
    # that averages to zero over the repeats of each image.
    voxels_per_file, file_codes = {}, {}
    n_trials = len(trial_names)
    for r, roi in enumerate(rois):
        for h, hemisphere in enumerate(bold5000.HEMISPHERES):
            key = f"{hemisphere}{roi}"
            n_vox = 6 if key == "LHEarlyVis" else 3 + r % 2
            betas = np.zeros((n_trials, n_vox))
            for name in set(trial_names):
                rows = [t for t, n in enumerate(trial_names) if n == name]
                betas[rows, :-1] = zero_mean_noise(rng, len(rows), n_vox - 1) if len(rows) > 1 else rng.normal(
                    size=(1, n_vox - 1))
            if key == "LHEarlyVis":
                betas[:, :3] = [colours[n] for n in trial_names]
                betas[:, 3] = [all_names.index(n) for n in trial_names]
            code = 100.0 * (2 * r + h + 1)
            betas[:, -1] = code
            file_codes[key] = code
            voxels_per_file[key] = n_vox
            path = bold5000.beta_file(root, subject, hemisphere, roi)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, betas.astype(np.float32))
    return BoldRaw(root=root, subject=subject, all_names=all_names, colours=colours, image_set=image_set,
                   trial_names=trial_names, repeated=repeated, voxels_per_file=voxels_per_file, file_codes=file_codes)


def unnormalised(fmri: np.ndarray, voxels) -> np.ndarray:
    """Undo the z-score with the statistics recorded in voxels.parquet: (n, V) float64."""
    return np.asarray(fmri, dtype=np.float64) * voxels["std"].to_numpy() + voxels["mean"].to_numpy()


def image_mean_colours(stimuli, stimulus_ids) -> np.ndarray:
    """(n, 3) mean RGB of the stimulus image of each id."""
    rows = stimuli.index_of(stimulus_ids)
    return stimuli.images[rows].reshape(len(rows), -1, 3).astype(np.float64).mean(axis=1)

