"""Demo NSD files follow the release's layout and formats, and the real reader pairs every row with its image.

The round trip runs mindvis.preprocess.nsd.preprocess_subject on the demo files and checks each preprocessed row
against the virtual cortex's noise-free response to every image of the stored brick (the row must match its own
image best), and against the demo's own betas z-scored per session.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from scipy.io import loadmat
from tests.demo.test_calibration import _cross_validated_alpha, _grey_pixels, two_way_identification

from mindvis.config.data import DemoDataConfig, NsdPreprocessConfig
from mindvis.data.contract import read_subject
from mindvis.demo import expected_files, nsd, synthesize
from mindvis.errors import ConfigError
from mindvis.preprocess.nsd import preprocess_subject

IMAGE_PX = 32
DESIGN = Path("NSD/nsddata/experiments/nsd/nsd_expdesign.mat")
BRICK = Path("NSD/nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5")
ROI = Path("NSD/nsddata/ppdata/subj01/func1pt8mm/roi/nsdgeneral.nii.gz")
BETAS = "NSD/nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_session{:02d}.nii.gz"


@pytest.fixture
def nsd_files(small_cfg):
    synthesize(small_cfg, ["NSD"])
    return small_cfg


def _design(cfg: DemoDataConfig) -> dict[str, np.ndarray]:
    return {k: v for k, v in loadmat(cfg.root / DESIGN).items() if not k.startswith("__")}


def _preprocess(cfg: DemoDataConfig, out: Path):
    preprocess_subject(cfg.root, "subj01", NsdPreprocessConfig(), IMAGE_PX, out)
    return read_subject(out)


def _unit_rows(a: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _noise_free(cfg: DemoDataConfig, subject_ids: np.ndarray) -> np.ndarray:
    """The cortex's noise-free response (gain x drive) to each image of `subject_ids` (subjectim row order), computed
    from the images stored in the brick, in the reader's voxel order. float (n_images, n_roi)."""
    with h5py.File(cfg.root / BRICK, "r") as file:
        order = np.argsort(subject_ids)
        stored = file["imgBrick"][subject_ids[order] - 1]
    images = np.empty_like(stored)
    images[order] = stored
    rendered, instances = nsd.render_subject_images(cfg, "subj01")
    np.testing.assert_array_equal(images, rendered)  # brick row id - 1 holds image id
    layout = nsd.roi_layout(cfg, "subj01")
    gain = nsd.subject_cortex(cfg, "subj01").gain
    return (nsd.subject_drive(cfg, "subj01", images, instances) * gain)[:, layout.cortex_voxel]


# ----------------------------------------------------------------------------------------------- files


def test_writes_exactly_the_announced_files_once(small_cfg):
    expected = nsd.files(small_cfg)
    assert expected == expected_files(small_cfg, ["NSD"])
    assert not any(p.exists() for p in expected)
    relative = [p.relative_to(small_cfg.root).as_posix() for p in expected]
    assert relative == [DESIGN.as_posix(), BRICK.as_posix(), ROI.as_posix()] + [BETAS.format(s) for s in (1, 2, 3)]
    assert sorted(synthesize(small_cfg, ["NSD"])) == sorted(expected)
    assert {p for p in small_cfg.root.rglob("*") if p.is_file()} == set(expected)
    assert synthesize(small_cfg, ["NSD"]) == []


def test_same_config_same_bytes_other_seed_other_data(make_small_config, tmp_path):
    first, second = make_small_config(tmp_path / "a"), make_small_config(tmp_path / "b")
    other = make_small_config(tmp_path / "c", seed=1)
    for cfg in (first, second, other):
        synthesize(cfg, ["NSD"])
    for path in nsd.files(first):
        relative = path.relative_to(first.root)
        assert path.read_bytes() == (second.root / relative).read_bytes(), relative
    assert (first.root / BETAS.format(1)).read_bytes() != (other.root / BETAS.format(1)).read_bytes()
    assert not np.array_equal(_design(first)["masterordering"], _design(other)["masterordering"])


def test_a_missing_session_is_rewritten_identically(nsd_files):
    path = nsd_files.root / BETAS.format(2)
    before = path.read_bytes()
    path.unlink()
    assert synthesize(nsd_files, ["NSD"]) == [path]
    assert path.read_bytes() == before


def test_design_file_holds_1_based_release_arrays(nsd_files):
    n = nsd_files.nsd
    design = _design(nsd_files)
    assert set(design) == {"masterordering", "subjectim", "sharedix", "stimpattern"}
    order, subjectim, shared, pattern = (design[k] for k in ("masterordering", "subjectim", "sharedix", "stimpattern"))
    n_own = n.sessions * n.trials_per_session - n.n_shared_images * n.repeats
    n_ids = n.n_shared_images + 8 * n_own
    for array in (order, subjectim, shared):
        assert np.issubdtype(array.dtype, np.integer) and array.min() >= 1
    assert order.shape == (1, n.sessions * n.trials_per_session) and order.max() == n.n_shared_images + n_own
    assert subjectim.shape == (8, n.n_shared_images + n_own) and subjectim.max() <= n_ids
    assert shared.shape == (1, n.n_shared_images) and (np.diff(shared[0]) > 0).all()
    # the release: the shared images are every subject's first columns; the other images are the subject's own
    assert (subjectim[:, :n.n_shared_images] == shared).all()
    own = subjectim[:, n.n_shared_images:]
    assert len(np.unique(own)) == own.size and not np.isin(own, shared).any()
    assert sorted(np.concatenate([shared[0], own.ravel()])) == list(range(1, n_ids + 1))  # ids 1..n_ids, all used
    # trials: each shared image `repeats` times, in different sessions; each own image once
    counts = np.bincount(order[0], minlength=subjectim.shape[1] + 1)[1:]
    assert (counts[:n.n_shared_images] == n.repeats).all() and (counts[n.n_shared_images:] == 1).all()
    sessions = order[0].reshape(n.sessions, n.trials_per_session)
    for column in range(1, n.n_shared_images + 1):
        assert len({s for s in range(n.sessions) if column in sessions[s]}) == min(n.repeats, n.sessions)
    assert pattern.ndim == 3 and pattern.shape[0] == n.sessions and set(np.unique(pattern)) <= {0, 1}
    assert pattern.reshape(n.sessions, -1).sum(axis=1).tolist() == [n.trials_per_session] * n.sessions


def test_brick_holds_every_design_image_at_its_id(nsd_files):
    n = nsd_files.nsd
    subjectim = _design(nsd_files)["subjectim"]
    with h5py.File(nsd_files.root / BRICK, "r") as file:
        assert list(file) == ["imgBrick"]
        brick = file["imgBrick"]
        assert brick.dtype == np.uint8 and brick.shape == (subjectim.max(), n.image_size_px, n.image_size_px, 3)
    _noise_free(nsd_files, subjectim[0].astype(np.int64))  # asserts brick[id - 1] is image id


def test_roi_volume_is_a_contiguous_blob_in_a_brain(nsd_files):
    image = nib.load(nsd_files.root / ROI)
    volume = np.asanyarray(image.dataobj)
    assert volume.shape == tuple(nsd_files.nsd.grid) and volume.dtype == np.int16
    values, counts = np.unique(volume, return_counts=True)
    assert values.tolist() == [-1, 0, 1] and counts[2] == nsd_files.nsd.roi_voxels
    assert ndimage.label(volume == 1)[1] == 1
    assert ndimage.label(volume >= 0)[1] == 1 and counts[1] > counts[2] / 2  # brain around the ROI
    assert (volume[0] == -1).all() and (volume[-1] == -1).all()  # the brain lies inside the grid
    np.testing.assert_allclose(image.header.get_zooms(), (1.8, 1.8, 1.8))
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")
    layout = nsd.roi_layout(nsd_files, "subj01")
    np.testing.assert_array_equal(layout.coords, np.argwhere(volume > 0))
    assert sorted(layout.cortex_voxel) == list(range(nsd_files.nsd.roi_voxels))


def test_betas_are_int16_percent_signal_change_x_300_on_the_roi_grid(nsd_files):
    n = nsd_files.nsd
    roi = np.asanyarray(nib.load(nsd_files.root / ROI).dataobj)
    session_means = []
    for session in range(1, n.sessions + 1):
        image = nib.load(nsd_files.root / BETAS.format(session))
        betas = np.asanyarray(image.dataobj)
        assert betas.dtype == np.int16 and betas.shape == (*roi.shape, n.trials_per_session)
        np.testing.assert_array_equal(image.affine, nib.load(nsd_files.root / ROI).affine)
        assert (betas[roi == -1] == 0).all() and (betas[roi >= 0] != 0).mean() > 0.95
        percent = betas[roi == 1].astype(np.float64) / 300.0  # (voxels, trials)
        assert 0.0 < percent.mean() < 3.0 and 0.5 < percent.std(axis=1).mean() < 4.0
        session_means.append(percent.mean(axis=1))
    # per-voxel session drift: session means spread well beyond their sampling error (~s.d. / sqrt(trials) each)
    spread = np.std(session_means, axis=0).mean()
    assert spread > 1.5 * percent.std(axis=1).mean() / np.sqrt(n.trials_per_session)


@pytest.mark.parametrize("change, match", [
    ({"nsd_subjects": ("subject1",)}, "not an NSD subject"),
    ({"nsd_subjects": ("subj09",)}, "not an NSD subject"),
    ({"nsd": {"n_shared_images": 40}}, "no trials left"),
    ({"nsd": {"roi_voxels": 5000}}, "does not fit"),
    ({"nsd": {"grid": (5, 20, 20)}}, "too small"),
])
def test_impossible_configs_are_config_errors(small_cfg, change, match):
    if "nsd" in change:
        change = {"nsd": replace(small_cfg.nsd, **change["nsd"])}
    with pytest.raises(ConfigError, match=match):
        nsd.files(replace(small_cfg, **change))


# ----------------------------------------------------------------------------------------------- round trip


def test_the_reader_pairs_every_row_with_its_image(small_cfg, tmp_path):
    """With low noise, every single-trial and averaged row correlates best with its own image's noise-free response
    among all the subject's images (a row <-> image shift would make that fail for nearly every row)."""
    cfg = replace(small_cfg, cortex=replace(small_cfg.cortex, noise_private=1.0, noise_shared=0.5))
    synthesize(cfg, ["NSD"])
    subject = _preprocess(cfg, tmp_path / "out")
    ids = _design(cfg)["subjectim"][0].astype(np.int64)
    expected = _noise_free(cfg, ids)
    similarity = _unit_rows(subject.fmri.astype(np.float64)) @ _unit_rows(expected).T
    best = ids[similarity.argmax(axis=1)]
    np.testing.assert_array_equal(best, subject.samples["stimulus_id"].astype(int).to_numpy())
    np.testing.assert_array_equal(subject.voxels[["i", "j", "k"]].to_numpy(), nsd.roi_layout(cfg, "subj01").coords)
    assert sorted(subject.stimuli.stimulus_id.astype(int)) == sorted(ids)


def test_splits_follow_shared1000_and_averages_are_the_mean_of_their_trials(nsd_files, tmp_path):
    n = nsd_files.nsd
    subject = _preprocess(nsd_files, tmp_path / "out")
    samples = subject.samples
    shared = set(_design(nsd_files)["sharedix"][0].tolist())
    ids = samples["stimulus_id"].astype(int)
    train = samples["split"] == "train"
    assert not set(ids[train]) & shared and (samples.loc[train, "n_averaged"] == 1).all()
    assert train.sum() == n.sessions * n.trials_per_session - n.n_shared_images * n.repeats
    averaged = subject.rows("test", averaged=True)
    assert set(ids[averaged]) == shared and len(averaged) == n.n_shared_images
    assert (samples["n_averaged"].to_numpy()[averaged] == n.repeats).all()
    single = subject.rows("test", averaged=False)
    assert len(single) == n.n_shared_images * n.repeats and set(ids[single]) == shared
    for row in averaged:
        trials = single[ids.to_numpy()[single] == ids[row]]
        assert len(trials) == n.repeats
        np.testing.assert_allclose(subject.fmri[row], subject.fmri[trials].astype(np.float64).mean(axis=0),
                                   rtol=1e-5, atol=1e-5)
    assert samples["category"].isna().all()


def test_rows_are_the_demo_trials_z_scored_per_session(nsd_files, tmp_path):
    """Each single-trial row is the demo's beta of that (session, trial), z-scored per voxel within its session."""
    n = nsd_files.nsd
    subject = _preprocess(nsd_files, tmp_path / "out")
    volumes = dict(nsd.session_betas(nsd_files, "subj01", *nsd.render_subject_images(nsd_files, "subj01")))
    coords = nsd.roi_layout(nsd_files, "subj01").coords
    trial_ids = nsd.experiment_design(nsd_files).trial_ids("subj01")
    samples = subject.samples
    single = samples["trial"].notna().to_numpy()
    for session in range(1, n.sessions + 1):
        betas = volumes[session][tuple(coords.T)].T.astype(np.float64) / 300.0  # (trials, voxels)
        z = (betas - betas.mean(axis=0)) / betas.std(axis=0)
        rows = np.flatnonzero(single & (samples["session"] == session).fillna(False).to_numpy())
        trials = samples["trial"].to_numpy()[rows].astype(int)
        assert sorted(trials) == list(range(1, n.trials_per_session + 1))
        np.testing.assert_allclose(subject.fmri[rows], z[trials - 1], atol=1e-4)
        first = (session - 1) * n.trials_per_session
        np.testing.assert_array_equal(samples["stimulus_id"].to_numpy()[rows].astype(int),
                                      trial_ids[first + trials - 1])


def test_default_demo_nsd_subject_is_decodable(tmp_path):
    """Ridge from the preprocessed training trials to 16x16 grey pixels identifies the averaged test images well
    above chance (2-way: 0.5; the default demo gives ~0.76), and single trials correlate best with their own image's
    noise-free response far above chance."""
    cfg = replace(DemoDataConfig(), root=tmp_path / "demo")
    synthesize(cfg, ["NSD"])
    subject = _preprocess(cfg, tmp_path / "out")
    position = {s: k for k, s in enumerate(subject.stimuli.stimulus_id)}
    stimulus = subject.samples["stimulus_id"].to_numpy()
    train, test = subject.rows("train"), subject.rows("test", averaged=True)

    def pixels(rows: np.ndarray) -> np.ndarray:
        return _grey_pixels(subject.stimuli.images[[position[s] for s in stimulus[rows]]])

    x_train, x_test = subject.fmri[train].astype(np.float64), subject.fmri[test].astype(np.float64)
    y_train = pixels(train)
    gram = x_train @ x_train.T
    alpha = _cross_validated_alpha(gram, y_train)
    dual = np.linalg.solve(gram + alpha * np.eye(len(gram)), y_train - y_train.mean(0))
    accuracy = two_way_identification(x_test @ x_train.T @ dual + y_train.mean(0), pixels(test))
    assert accuracy > 0.68, f"2-way identification {accuracy:.3f}"

    ids = _design(cfg)["subjectim"][0].astype(np.int64)
    similarity = _unit_rows(subject.fmri[train].astype(np.float64)) @ _unit_rows(_noise_free(cfg, ids)).T
    top1 = (ids[similarity.argmax(axis=1)] == stimulus[train].astype(int)).mean()
    assert top1 > 0.8, f"top-1 identification among {len(ids)} images: {top1:.3f}"


def test_adding_a_subject_keeps_the_shared_files_and_gives_it_its_own_images(small_cfg, tmp_path):
    """The design and brick cover all 8 subject rows, so they do not depend on which subjects the demo writes."""
    synthesize(small_cfg, ["NSD"])
    both = replace(small_cfg, nsd_subjects=("subj01", "subj05"))
    written = synthesize(both, ["NSD"])
    assert sorted(written) == sorted(set(nsd.files(both)) - set(nsd.files(small_cfg)))
    fresh = replace(both, root=tmp_path / "fresh")
    synthesize(fresh, ["NSD"])
    for path in nsd.files(both):
        assert path.read_bytes() == (fresh.root / path.relative_to(both.root)).read_bytes()
    subjectim = _design(both)["subjectim"]
    n_shared = both.nsd.n_shared_images
    assert not set(subjectim[0, n_shared:]) & set(subjectim[4, n_shared:])
    subject = _preprocess(both, tmp_path / "out1")
    preprocess_subject(both.root, "subj05", NsdPreprocessConfig(), IMAGE_PX, tmp_path / "out5")
    other = read_subject(tmp_path / "out5")
    test1 = set(subject.samples.loc[subject.samples["split"] == "test", "stimulus_id"])
    assert test1 == set(other.samples.loc[other.samples["split"] == "test", "stimulus_id"])
    assert not set(subject.samples["stimulus_id"]) - test1 & set(other.samples["stimulus_id"])
