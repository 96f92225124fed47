"""Demo GOD files follow the MinD-Vis release layout (keys, dtypes, shapes, orders, label files)."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from mindvis.demo import god, synthesize

ARRAY_KEYS = [f"arr_{i}" for i in range(7)]
ROI_KEYS = ["V1", "V2", "V3", "V4", "LOC", "FFA", "PPA", "LVC", "HVC", "VC"]
STIMULUS_ID = re.compile(r"^(\d+)\.(\d{6})$")


@pytest.fixture
def god_files(small_cfg):
    synthesize(small_cfg, ["GOD"])
    return small_cfg, small_cfg.root / "Kamitani" / "npz"


def test_subject_file_has_the_release_keys_dtypes_and_shapes(god_files):
    cfg, folder = god_files
    g = cfg.god
    n_train = g.n_train_categories * g.images_per_train_category
    n_test_trials = g.n_test_categories * g.test_repeats
    with np.load(folder / "sbj_3.npz") as npz:
        assert sorted(npz.files) == sorted(ARRAY_KEYS + ROI_KEYS)
        arrays = {key: npz[key] for key in npz.files}
    n_voxels = arrays["arr_0"].shape[1]
    assert n_voxels == sum((g.v1_voxels, g.v2_voxels, g.v3_voxels, g.v4_voxels, g.loc_voxels, g.ffa_voxels,
                            g.ppa_voxels, g.hvc_other_voxels))
    assert arrays["arr_0"].shape == (n_train, n_voxels) and arrays["arr_0"].dtype == np.float32
    assert arrays["arr_1"].shape == (n_test_trials, n_voxels) and arrays["arr_1"].dtype == np.float32
    assert arrays["arr_2"].shape == (g.n_test_categories, n_voxels) and arrays["arr_2"].dtype == np.float32
    assert arrays["arr_3"].dtype == np.int64 and sorted(arrays["arr_3"]) == list(range(n_train))
    assert arrays["arr_4"].dtype == np.int64
    for key in ("arr_5", "arr_6"):
        assert arrays[key].shape == (n_voxels,) and arrays[key].dtype == np.float32
    assert ((arrays["arr_5"] >= 0) & (arrays["arr_5"] <= 100)).all()
    for name in ROI_KEYS:
        assert arrays[name].shape == (n_voxels,) and arrays[name].dtype == bool and arrays[name].any()
    for key in ("arr_0", "arr_1", "arr_2"):
        assert np.isfinite(arrays[key]).all()


def test_test_trials_are_grouped_per_image_and_arr_2_is_their_average(god_files):
    cfg, folder = god_files
    with np.load(folder / "sbj_3.npz") as npz:
        trials, averaged, labels = npz["arr_1"], npz["arr_2"], npz["arr_4"]
    np.testing.assert_array_equal(labels, np.repeat(np.arange(cfg.god.n_test_categories), cfg.god.test_repeats))
    for image in range(cfg.god.n_test_categories):
        np.testing.assert_allclose(averaged[image], trials[labels == image].mean(axis=0), rtol=1e-5, atol=1e-6)


def test_roi_masks_nest_like_god(god_files):
    _, folder = god_files
    with np.load(folder / "sbj_3.npz") as m:
        assert (m["LVC"] == (m["V1"] | m["V2"] | m["V3"])).all()
        assert not (m["LVC"] & m["V4"]).any()
        assert ((m["LOC"] | m["FFA"] | m["PPA"]) <= m["HVC"]).all()
        assert (m["VC"] == (m["LVC"] | m["V4"] | m["HVC"])).all()
        singles = np.stack([m[k] for k in ("V1", "V2", "V3", "V4", "LOC", "FFA", "PPA")])
        assert singles.sum(axis=0).max() == 1


def test_images_and_label_files_align_row_by_row(god_files):
    cfg, folder = god_files
    size = cfg.god.image_size_px
    with np.load(folder / "images_256.npz") as images:
        assert sorted(images.files) == ["test_images", "train_images"]
        train_images, test_images = images["train_images"], images["test_images"]
    assert train_images.dtype == test_images.dtype == np.uint8
    assert train_images.shape == (cfg.god.n_train_categories * cfg.god.images_per_train_category, size, size, 3)
    assert test_images.shape == (cfg.god.n_test_categories, size, size, 3)

    rows = {}
    for name, n in (("imagenet_training_label.csv", len(train_images)), ("imagenet_testing_label.csv",
                                                                          len(test_images))):
        with open(folder / name, newline="") as handle:
            rows[name] = list(csv.reader(handle))
        assert len(rows[name]) == n
        ids = []
        for stimulus_id, filename in rows[name]:
            match = STIMULUS_ID.match(stimulus_id)
            assert match, stimulus_id
            assert filename == f"n{int(match[1]):08d}_{int(match[2])}.JPEG"
            ids.append(float(stimulus_id))
        assert ids == sorted(ids)

    class_index = json.loads((folder / "imagenet_class_index.json").read_text())
    assert list(class_index) == [str(i) for i in range(len(class_index))]
    wnid_to_class = {}
    for key, entry in class_index.items():
        assert 2 <= len(entry) <= 3 and all(re.fullmatch(r"n\d{8}", w) for w in entry[:-1])
        wnid_to_class.update({int(w[1:]): key for w in entry[:-1]})
    assert any(len(entry) == 3 for entry in class_index.values())  # some classes list an alias synset

    def classes(name):
        return {wnid_to_class[int(sid.split(".")[0])] for sid, _ in rows[name]}

    train_classes, test_classes = classes("imagenet_training_label.csv"), classes("imagenet_testing_label.csv")
    assert len(train_classes) == cfg.god.n_train_categories
    assert len(test_classes) == cfg.god.n_test_categories
    assert not train_classes & test_classes


def test_the_voxel_noise_ceiling_is_estimated_from_the_repeats():
    rng = np.random.default_rng(0)
    signal = rng.normal(0, 1, (20, 1, 3)) * np.array([2.0, 1.0, 0.0])
    trials = (signal + rng.normal(0, 1, (20, 50, 3))).reshape(1000, 3)
    labels = np.repeat(np.arange(20), 50)
    ceiling, snr = god.voxel_reliability(trials, labels)
    assert snr[0] > snr[1] > snr[2] and snr[2] < 0.2
    assert ceiling[0] > 95 and ceiling[2] < 50
