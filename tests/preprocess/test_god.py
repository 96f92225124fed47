"""GOD reader: real release layout in, preprocessed contract out, every row next to its own image."""

from __future__ import annotations

import numpy as np
import pytest
from tests.preprocess.task_fixtures import image_mean_colours, rewrite_npz, unnormalised, write_god

from mindvis.config.data import GodPreprocessConfig
from mindvis.preprocess import god
from mindvis.data.contract import read_subject
from mindvis.errors import InputDataError

IMAGE_PX = 8


def run(raw, tmp_path, **cfg):
    out = tmp_path / "out" / "GOD" / raw.subject
    god.preprocess_subject(raw.root, raw.subject, GodPreprocessConfig(**cfg), IMAGE_PX, out)
    return read_subject(out)


@pytest.mark.parametrize("shuffle_test_trials", [False, True], ids=["grouped", "shuffled"])
def test_every_row_is_paired_with_its_image(tmp_path, shuffle_test_trials):
    raw = write_god(tmp_path / "raw", shuffle_test_trials=shuffle_test_trials)
    subject = run(raw, tmp_path)
    samples = subject.samples
    values = unnormalised(subject.fmri, subject.voxels)
    # Encoded colour = colour of the stored stimulus image, for train, averaged test and single test rows.
    np.testing.assert_allclose(values[:, :3], image_mean_colours(subject.stimuli, samples["stimulus_id"]), atol=1e-3)
    # Encoded image index and set agree with the row's metadata and with the label files.
    np.testing.assert_allclose(values[:, 3], samples["image_index"], atol=1e-3)
    np.testing.assert_allclose(values[:, 4], (samples["split"] == "test").astype(float), atol=1e-3)
    expected_ids = [(raw.test_ids if split == "test" else raw.train_ids)[k]
                    for split, k in zip(samples["split"], samples["image_index"])]
    assert samples["stimulus_id"].tolist() == expected_ids
    # Averaged rows are the mean of their trials: the zero-mean trial noise cancels.
    averaged = subject.rows("test", averaged=True)
    np.testing.assert_allclose(values[averaged, 5:], 0, atol=1e-3)


def test_rows_splits_and_counts_follow_the_release(tmp_path):
    raw = write_god(tmp_path / "raw", n_train=10, n_test=3, repeats=4)
    samples = run(raw, tmp_path).samples
    assert samples["split"].tolist() == ["train"] * 10 + ["test"] * 15
    assert samples["n_averaged"].tolist() == [1] * 10 + [4] * 3 + [1] * 12
    assert samples["raw_array"].tolist() == ["arr_0"] * 10 + ["arr_2"] * 3 + ["arr_1"] * 12
    assert samples["trial"].iloc[:10].tolist() == list(range(10))
    assert samples["trial"].iloc[10:13].isna().all()
    assert samples["trial"].iloc[13:].tolist() == list(range(12))
    assert samples["image_index"].iloc[10:13].tolist() == [0, 1, 2]
    assert set(samples["source"]) == {"Kamitani/npz/sbj_3.npz"}
    # category = class name of the image's synset; a synset absent from the class index stays empty
    category = samples["category"].astype(object).where(samples["category"].notna(), None)
    assert category.tolist() == [raw.categories[s] for s in samples["stimulus_id"]]
    assert samples["category"].isna().any() and {"ostrich", "goldfish", "dog"} <= set(samples["category"].dropna())
    assert samples.loc[samples["category"] == "ostrich", "class_index"].eq(7).all()
    assert samples.loc[samples["category"] == "ostrich", "wnid"].eq("n01518878").all()
    assert samples["wnid"].notna().all() and samples["image_file"].str.endswith(".JPEG").all()


def test_voxels_are_the_roi_columns_with_their_finest_roi_and_statistics(tmp_path):
    raw = write_god(tmp_path / "raw")
    subject = run(raw, tmp_path)
    voxels = subject.voxels
    assert voxels["voxel_index"].tolist() == raw.vc_columns.tolist()
    assert voxels["roi"].tolist() == raw.roi_of_vc_voxel
    assert voxels["noise_ceiling"].notna().all() and voxels["snr"].notna().all()
    with np.load(raw.sbj_file) as archive:
        train_vc = archive["arr_0"][:, archive["VC"]].astype(np.float64)
    # MinD-Vis: one scalar mean/std of the training matrix, applied to every row
    np.testing.assert_allclose(voxels["mean"], train_vc.mean(), rtol=1e-6)
    np.testing.assert_allclose(voxels["std"], train_vc.std(), rtol=1e-6)
    train = subject.fmri[subject.rows("train")]
    assert abs(train.mean()) < 1e-4 and abs(train.std() - 1) < 1e-4


def test_voxel_normalisation_uses_per_voxel_train_statistics(tmp_path):
    raw = write_god(tmp_path / "raw")
    subject = run(raw, tmp_path, normalization="voxel")
    train = subject.fmri[subject.rows("train")]
    np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-4)
    assert subject.voxels["mean"].nunique() > 1
    values = unnormalised(subject.fmri, subject.voxels)
    np.testing.assert_allclose(values[:, :3], image_mean_colours(subject.stimuli, subject.samples["stimulus_id"]),
                               atol=1e-3)


def test_another_roi_keeps_only_its_voxels(tmp_path):
    raw = write_god(tmp_path / "raw")
    subject = run(raw, tmp_path, roi="V1")
    assert subject.voxels["voxel_index"].tolist() == raw.vc_columns[:3].tolist()
    assert set(subject.voxels["roi"]) == {"V1"}


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
def test_stimuli_are_the_used_images_at_image_size(tmp_path, compressed):
    raw = write_god(tmp_path / "raw", compressed_images=compressed)
    stimuli = run(raw, tmp_path).stimuli
    assert stimuli.images.dtype == np.uint8 and stimuli.images.shape == (13, IMAGE_PX, IMAGE_PX, 3)
    assert stimuli.stimulus_id.tolist() == raw.train_ids + raw.test_ids
    np.testing.assert_array_equal(stimuli.images[:10, 4, 4], raw.train_colours)
    np.testing.assert_array_equal(stimuli.images[10:, 4, 4], raw.test_colours)


def test_subjects_and_raw_files(tmp_path):
    raw = write_god(tmp_path, subject="sbj_3")
    for n in (10, 1):
        (raw.folder / f"sbj_{n}.npz").write_bytes(raw.sbj_file.read_bytes())
    assert god.find_subjects(tmp_path) == ["sbj_1", "sbj_3", "sbj_10"]
    assert god.find_subjects(tmp_path / "nowhere") == []
    files = god.raw_files(tmp_path, "sbj_3")
    assert files[0] == raw.sbj_file and all(f.is_file() for f in files)
    assert {f.name for f in files} == {"sbj_3.npz", "images_256.npz", "imagenet_class_index.json",
                                       "imagenet_training_label.csv", "imagenet_testing_label.csv"}


# ----------------------------------------------------------------------------------------------- bad input

def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _nan_in_vc(raw):
    with np.load(raw.sbj_file) as archive:
        arr_1 = archive["arr_1"].copy()
    arr_1[2, raw.vc_columns[6]] = np.nan
    rewrite_npz(raw.sbj_file, arr_1=arr_1)


def _index_out_of_range(key, value):
    def mutate(raw):
        with np.load(raw.sbj_file) as archive:
            index = archive[key].copy()
        index[1] = value
        rewrite_npz(raw.sbj_file, **{key: index})
    return mutate


def _no_training_trials(raw):
    with np.load(raw.sbj_file) as archive:
        n_voxels = archive["arr_0"].shape[1]
    rewrite_npz(raw.sbj_file, arr_0=np.zeros((0, n_voxels), np.float32), arr_3=np.zeros(0, np.int64))


BAD_INPUTS = {
    # case: (mutation of a valid raw tree, subject to ask for, roi, file named in the error, words in the message)
    "subject absent": (None, "sbj_4", "VC", "sbj_4.npz", "not found"),
    "subject file truncated": (lambda raw: _truncate(raw.sbj_file), "sbj_3", "VC", "sbj_3.npz", "truncated"),
    "image archive missing": (lambda raw: (raw.folder / "images_256.npz").unlink(), "sbj_3", "VC", "images_256.npz",
                              "missing"),
    "image archive truncated": (lambda raw: _truncate(raw.folder / "images_256.npz"), "sbj_3", "VC",
                                "images_256.npz", "corrupt"),
    "label file missing": (lambda raw: (raw.folder / "imagenet_testing_label.csv").unlink(), "sbj_3", "VC",
                           "imagenet_testing_label.csv", "missing"),
    "label file short": (lambda raw: (raw.folder / "imagenet_training_label.csv").write_text("1518878.000001,a.JPEG\n"),
                         "sbj_3", "VC", "imagenet_training_label.csv", "do not match"),
    "class index unreadable": (lambda raw: (raw.folder / "imagenet_class_index.json").write_text("{not json"),
                               "sbj_3", "VC", "imagenet_class_index.json", "cannot parse"),
    "NaN voxel": (_nan_in_vc, "sbj_3", "VC", "sbj_3.npz", "NaN"),
    "train image index out of range": (_index_out_of_range("arr_3", 10), "sbj_3", "VC", "sbj_3.npz", "do not exist"),
    "test image index out of range": (_index_out_of_range("arr_4", -1), "sbj_3", "VC", "sbj_3.npz", "do not exist"),
    "ROI mask missing": (None, "sbj_3", "V9", "sbj_3.npz", "ROI mask 'V9'"),
    "required array missing": (lambda raw: rewrite_npz(raw.sbj_file, arr_4=None), "sbj_3", "VC", "sbj_3.npz",
                               "lacks"),
    "no training trials": (_no_training_trials, "sbj_3", "VC", "sbj_3.npz", "no trials"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_reported_with_file_value_expectation_and_hint(tmp_path, case):
    mutate, subject, roi, file_name, words = BAD_INPUTS[case]
    raw = write_god(tmp_path / "raw")
    if mutate is not None:
        mutate(raw)
    out = tmp_path / "out"
    with pytest.raises(InputDataError) as caught:
        god.preprocess_subject(raw.root, subject, GodPreprocessConfig(roi=roi), IMAGE_PX, out)
    error = caught.value
    assert file_name in str(error.path) and words in str(error)
    assert error.expected and error.hint
    if case not in ("image archive missing", "label file missing", "class index unreadable"):
        assert error.value is not None
    assert not out.exists(), "nothing may be written when the input is bad"


def test_nan_outside_the_roi_is_harmless(tmp_path):
    raw = write_god(tmp_path / "raw")
    with np.load(raw.sbj_file) as archive:
        arr_0 = archive["arr_0"].copy()
    arr_0[0, 2] = np.nan  # column 2 is outside VC
    rewrite_npz(raw.sbj_file, arr_0=arr_0)
    assert np.isfinite(run(raw, tmp_path).fmri).all()
