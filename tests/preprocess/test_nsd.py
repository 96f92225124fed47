"""NSD release -> contract: every fMRI row is the z-scored response to its own image, the split follows shared1000,
both betas formats (NIfTI and the HDF5 twin in MATLAB's axis order) give the same result, and bad input stops with a
clear error before anything is written."""

from __future__ import annotations

import h5py
import nibabel as nib
import numpy as np
import pytest
from scipy.io import loadmat, savemat

from mindvis.config.data import NsdPreprocessConfig
from mindvis.data.contract import read_subject
from mindvis.errors import InputDataError
from mindvis.preprocess import nsd
from tests.preprocess.nsd_fixtures import GRID, SHARED_IDS, expected_zscores, write_release, write_session

CFG = NsdPreprocessConfig()


def preprocess(root, out, cfg=CFG, subject="subj01"):
    return nsd.preprocess_subject(root, subject, cfg, 16, out)


def test_every_row_is_the_zscored_response_to_its_image(tmp_path):
    release = write_release(tmp_path / "raw")
    subject = preprocess(release.root, tmp_path / "out")
    expected = expected_zscores(release)
    samples = subject.samples
    shared = np.isin(release.trial_ids, SHARED_IDS)

    train = samples[samples["split"] == "train"]
    assert train["nsd_id"].tolist() == release.trial_ids[~shared].tolist()
    np.testing.assert_allclose(subject.fmri[train.index], expected[~shared], atol=1e-5)

    single = samples[(samples["split"] == "test") & (samples["n_averaged"] == 1)]
    assert single["nsd_id"].tolist() == release.trial_ids[shared].tolist()
    np.testing.assert_allclose(subject.fmri[single.index], expected[shared], atol=1e-5)
    located = (single["session"] - 1) * release.trials_per_session + single["trial"] - 1  # both 1-based
    assert located.tolist() == np.flatnonzero(shared).tolist()

    averaged = samples[samples["n_averaged"] > 1]
    assert sorted(averaged["stimulus_id"].astype(int)) == sorted(SHARED_IDS)
    assert (averaged["n_averaged"] == 3).all() and (averaged["split"] == "test").all()
    for row, nsd_id in zip(averaged.index, averaged["nsd_id"], strict=True):
        np.testing.assert_allclose(subject.fmri[row], expected[release.trial_ids == nsd_id].mean(axis=0), atol=1e-5)


def test_contract_files_voxels_and_stimuli(tmp_path):
    release = write_release(tmp_path / "raw")
    preprocess(release.root, tmp_path / "out")
    subject = read_subject(tmp_path / "out")
    assert subject.voxels[["i", "j", "k"]].to_numpy().tolist() == release.roi_coords.tolist()
    assert (subject.voxels["roi"] == "nsdgeneral").all()
    ids = sorted(set(release.trial_ids.tolist()))
    assert subject.stimuli.stimulus_id.tolist() == [str(i) for i in ids]
    # the fixture's image of id n is flat grey 7n: the brick's row n - 1
    assert subject.stimuli.images[:, 8, 8, 0].tolist() == [(7 * i) % 256 for i in ids]
    assert subject.samples["category"].isna().all()
    assert subject.samples["source"].iloc[0].endswith("betas_session01.nii.gz")


def test_hdf5_twin_in_matlab_axis_order_gives_the_same_subject(tmp_path):
    nifti = preprocess(write_release(tmp_path / "a").root, tmp_path / "out_a")
    hdf5 = preprocess(write_release(tmp_path / "b", hdf5_betas=True).root, tmp_path / "out_b")
    np.testing.assert_array_equal(nifti.fmri, hdf5.fmri)
    assert hdf5.samples["source"].iloc[0].endswith("betas_session01.hdf5")


def test_sessions_subset_and_multi_label_roi(tmp_path):
    release = write_release(tmp_path / "raw", sessions=3, roi_labels=True)
    subject = preprocess(release.root, tmp_path / "out", NsdPreprocessConfig(sessions=(2,)))
    assert set(subject.samples["session"].dropna()) == {2}
    assert len(subject.samples[subject.samples["n_averaged"] == 1]) == release.trials_per_session
    assert set(subject.voxels["roi"]) == {"nsdgeneral_1", "nsdgeneral_2"}


def test_design_indices_are_one_based(tmp_path):
    release = write_release(tmp_path / "raw")
    raw = loadmat(release.root / nsd.DESIGN_FILE)
    design = nsd.read_design(release.root, "subj01")
    first = int(raw["masterordering"][0, 0])
    assert design.trial_ids[0] == raw["subjectim"][0, first - 1]
    assert design.shared == frozenset(SHARED_IDS)
    assert design.session_trials.tolist() == [12, 12]


# ------------------------------------------------------------------------------------------------ bad input

def assert_refused(root, out, match, cfg=CFG, subject="subj01"):
    with pytest.raises(InputDataError, match=match) as caught:
        preprocess(root, out, cfg, subject)
    assert not out.exists()  # nothing half-written
    return str(caught.value)


def test_missing_session_file(tmp_path):
    release = write_release(tmp_path / "raw", sessions=3)
    nsd.session_file(release.root, "subj01", 3).unlink()
    message = assert_refused(release.root, tmp_path / "out", "missing NSD betas of session 3",
                             NsdPreprocessConfig(sessions=(1, 3)))
    assert "betas_session03.nii.gz" in message and "preprocess.nsd.sessions" in message


def test_betas_on_another_grid_than_the_roi(tmp_path):
    release = write_release(tmp_path / "raw")
    write_session(release.root, "subj01", 2, np.zeros((GRID[0], GRID[1], GRID[2] + 1, 12), np.int16), hdf5=False)
    message = assert_refused(release.root, tmp_path / "out", "different grids")
    assert "betas_session02" in message and str(GRID) in message


def test_trial_count_that_disagrees_with_the_design(tmp_path):
    release = write_release(tmp_path / "raw")
    write_session(release.root, "subj01", 1, np.zeros((*GRID, 11), np.int16), hdf5=True)
    message = assert_refused(release.root, tmp_path / "out", "another number of trials")
    assert "betas_session01.hdf5" in message and "12 trials" in message


def test_nsd_id_outside_the_stimulus_brick(tmp_path):
    release = write_release(tmp_path / "raw")
    with h5py.File(release.root / nsd.STIMULI_FILE, "w") as file:
        file.create_dataset(nsd.BRICK_KEY, data=np.zeros((10, 8, 8, 3), np.uint8))
    message = assert_refused(release.root, tmp_path / "out", "outside the stimulus brick")
    assert "1..10" in message


def test_nan_betas_in_roi_voxels(tmp_path):
    release = write_release(tmp_path / "raw")
    data = np.ones((*GRID, 12), np.float32)
    data[3, 2, 1, 4] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), nsd.session_file(release.root, "subj01", 2))
    message = assert_refused(release.root, tmp_path / "out", "NaN or infinite")
    assert "trial 5" in message and "(3, 2, 1)" in message


def test_subject_absent_from_subjectim(tmp_path):
    release = write_release(tmp_path / "raw")
    raw = loadmat(release.root / nsd.DESIGN_FILE)
    savemat(release.root / nsd.DESIGN_FILE, {**{k: v for k, v in raw.items() if not k.startswith("__")},
                                            "subjectim": raw["subjectim"][:1]})
    (release.root / "NSD/nsddata_betas/ppdata/subj02").symlink_to(release.root / "NSD/nsddata_betas/ppdata/subj01")
    assert_refused(release.root, tmp_path / "out", "subj02 is not in the design's subjectim", subject="subj02")


def test_unreadable_hdf5(tmp_path):
    release = write_release(tmp_path / "raw", hdf5_betas=True)
    path = nsd.session_file(release.root, "subj01", 1, "hdf5")
    path.write_bytes(path.read_bytes()[:2000])
    message = assert_refused(release.root, tmp_path / "out", "cannot read the NSD betas")
    assert "betas_session01.hdf5" in message and "download it again" in message


def test_raw_files_name_what_the_job_reads(tmp_path):
    release = write_release(tmp_path / "raw", hdf5_betas=True)
    files = nsd.raw_files(release.root, "subj01", CFG)
    assert [f.name for f in files] == ["nsd_expdesign.mat", "nsd_stimuli.hdf5", "nsdgeneral.nii.gz",
                                       "betas_session01.hdf5", "betas_session02.hdf5"]
    assert nsd.find_subjects(release.root) == ["subj01"]
