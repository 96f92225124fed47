"""BOLD5000 reader: GLMsingle ROI betas + presentation lists + image files -> contract, rows paired with images."""

from __future__ import annotations

import numpy as np
import pytest
from tests.preprocess.task_fixtures import image_mean_colours, unnormalised, write_bold5000

from mindvis.config.data import Bold5000PreprocessConfig
from mindvis.preprocess import bold5000
from mindvis.data.contract import read_subject
from mindvis.errors import InputDataError

IMAGE_PX = 8


def run(raw, tmp_path, **cfg):
    out = tmp_path / "out" / "BOLD5000" / raw.subject
    bold5000.preprocess_subject(raw.root, raw.subject, Bold5000PreprocessConfig(**cfg), IMAGE_PX, out)
    return read_subject(out)


@pytest.mark.parametrize("normalization", ["scalar", "voxel"])
def test_every_row_is_paired_with_its_image(tmp_path, normalization):
    raw = write_bold5000(tmp_path / "raw")
    subject = run(raw, tmp_path, normalization=normalization)
    samples, voxels = subject.samples, subject.voxels
    values = unnormalised(subject.fmri, voxels)
    # LHEarlyVis voxels 0-2 encode the colour of the centre square of the image shown (the margins are cropped away)
    np.testing.assert_allclose(values[:, :3], image_mean_colours(subject.stimuli, samples["stimulus_id"]), atol=0.51)
    np.testing.assert_allclose(values[:, 3], [raw.all_names.index(s) for s in samples["stimulus_id"]], atol=1e-3)
    # single trials keep their presentation-list position
    singles = samples["trial"].notna()
    assert [raw.trial_names[t] for t in samples.loc[singles, "trial"]] == samples.loc[singles, "stimulus_id"].tolist()
    # averaged rows: the trial noise (zero mean over the repeats of an image) cancels
    noise = [i for i, roi in enumerate(voxels["roi"]) if roi == "LHEarlyVis"][4:5]
    averaged = subject.rows("test", averaged=True)
    np.testing.assert_allclose(values[np.ix_(averaged, noise)], 0, atol=1e-3)


def test_splits_follow_the_repeated_list(tmp_path):
    raw = write_bold5000(tmp_path / "raw")
    samples = run(raw, tmp_path).samples
    seen = [name for name in raw.repeated if name in raw.trial_names]
    repeats = {name: raw.trial_names.count(name) for name in seen}
    train = samples[samples["split"] == "train"]
    assert set(train["stimulus_id"]).isdisjoint(seen)
    assert train["trial"].tolist() == sorted(train["trial"])  # chronological
    assert len(train) == len(raw.trial_names) - sum(repeats.values())
    averaged = samples[(samples["split"] == "test") & samples["trial"].isna()]
    assert averaged["stimulus_id"].tolist() == seen  # repeated-list order; the never-seen image is skipped
    assert averaged["n_averaged"].tolist() == [repeats[n] for n in seen]
    single = samples[(samples["split"] == "test") & samples["trial"].notna()]
    assert single["stimulus_id"].tolist() == [n for n in seen for _ in range(repeats[n])]
    assert (single["n_averaged"] == 1).all() and single["marked_repeat"].all()
    assert samples["split"].tolist() == ["train"] * len(train) + ["test"] * (len(averaged) + len(single))
    assert samples["category"].tolist() == [raw.image_set[s] for s in samples["stimulus_id"]]
    assert set(train["session"]) == {"CSI1_sess01", "CSI1_sess02"}
    assert train["source"].str.startswith("BOLD5000/BOLD5000_Stimuli/Stimuli_Presentation_Lists/CSI1/").all()


def test_repeated_stimulus_seen_once_is_a_single_test_trial_only(tmp_path):
    raw = write_bold5000(tmp_path / "raw", repeats_seen=(4, 3, 1))
    subject = run(raw, tmp_path)
    once = next(name for name in raw.repeated if raw.trial_names.count(name) == 1)
    rows = subject.samples[subject.samples["stimulus_id"] == once]
    assert rows["split"].tolist() == ["test"] and rows["n_averaged"].tolist() == [1] and rows["trial"].notna().all()
    assert len(subject.rows("test", averaged=True)) == 2 and len(subject.rows("test", averaged=False)) == 8


def test_voxels_are_the_roi_files_in_reference_order(tmp_path):
    raw = write_bold5000(tmp_path / "raw")
    subject = run(raw, tmp_path)
    voxels = subject.voxels
    expected = [f"{h}{roi}" for roi in ("EarlyVis", "LOC", "OPA", "PPA", "RSC") for h in ("LH", "RH")]
    assert list(dict.fromkeys(voxels["roi"])) == expected
    for key in expected:
        block = voxels[voxels["roi"] == key]
        assert block["voxel_index"].tolist() == list(range(raw.voxels_per_file[key]))
        assert set(block["hemisphere"]) == {key[:2]}
        # the last column of every file holds that file's code: the concatenation kept each file's columns together
        column = block.index[-1]
        np.testing.assert_allclose(unnormalised(subject.fmri, voxels)[:, column], raw.file_codes[key], atol=1e-2)
    # MinD-Vis: one scalar mean/std over all trials of the subject (test included)
    betas = np.concatenate([np.load(raw.beta(h, r)) for r in ("EarlyVis", "LOC", "OPA", "PPA", "RSC")
                            for h in ("LH", "RH")], axis=1).astype(np.float64)
    np.testing.assert_allclose(voxels["mean"], betas.mean(), rtol=1e-6)
    np.testing.assert_allclose(voxels["std"], betas.std(), rtol=1e-6)


def test_roi_subset_reads_only_those_files(tmp_path):
    raw = write_bold5000(tmp_path / "raw")
    subject = run(raw, tmp_path, rois=("PPA", "EarlyVis"))
    assert list(dict.fromkeys(subject.voxels["roi"])) == ["LHPPA", "RHPPA", "LHEarlyVis", "RHEarlyVis"]


def test_stimuli_are_every_image_shown_centre_cropped(tmp_path):
    raw = write_bold5000(tmp_path / "raw")
    stimuli = run(raw, tmp_path).stimuli
    shown = list(dict.fromkeys(raw.trial_names))
    assert sorted(stimuli.stimulus_id.tolist()) == sorted(shown)
    assert stimuli.images.shape == (len(shown), IMAGE_PX, IMAGE_PX, 3) and stimuli.images.dtype == np.uint8
    for sid, image in zip(stimuli.stimulus_id, stimuli.images):
        # the black margins of the non-square originals are cropped away: the whole image is the centre colour
        np.testing.assert_allclose(image.reshape(-1, 3), np.broadcast_to(raw.colours[sid], (IMAGE_PX**2, 3)), atol=1)


def test_subjects_and_raw_files(tmp_path):
    raw = write_bold5000(tmp_path, subject="CSI1")
    write_bold5000(tmp_path, subject="CSI10", rois=("EarlyVis",))
    assert bold5000.find_subjects(tmp_path) == ["CSI1", "CSI10"]
    assert bold5000.find_subjects(tmp_path / "nowhere") == []
    files = bold5000.raw_files(tmp_path, "CSI1")
    assert files[:2] == [raw.beta("LH", "EarlyVis"), raw.beta("RH", "EarlyVis")]
    assert all(f.is_file() for f in files)
    assert sum(f.suffix == ".txt" and "Presentation" in str(f) for f in files) == 4
    assert {f.name for f in files} >= set(raw.trial_names)
    # before the lists exist, the folder itself stands for them
    assert bold5000.raw_files(tmp_path / "empty", "CSI1")[-1].name == "CSI1"


def test_natural_order_of_sessions_and_runs():
    names = ["CSI1_sess10", "CSI1_sess2", "CSI1_sess01"]
    assert sorted(names, key=bold5000.natural_key) == ["CSI1_sess01", "CSI1_sess2", "CSI1_sess10"]


# ----------------------------------------------------------------------------------------------- bad input

def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _scene_image(raw, name):
    return raw.root / bold5000.PRESENTED_DIR / "Scene" / name


def _drop_last_trial_line(raw):
    run_file = sorted(raw.lists_dir.rglob("*.txt"))[-1]
    lines = run_file.read_text().split()
    run_file.write_text("\n".join(lines[:-1]) + "\n")


def _nan_beta(raw):
    path = raw.beta("RH", "LOC")
    betas = np.load(path)
    betas[3, 1] = np.inf
    np.save(path, betas)


def _fewer_trials_in_one_roi(raw):
    path = raw.beta("LH", "OPA")
    np.save(path, np.load(path)[:-2])


def _no_trials(raw):
    for path in sorted((raw.root / bold5000.BETAS_DIR).glob("CSI1_*.npy")):
        np.save(path, np.load(path)[:0])
    for run_file in sorted(raw.lists_dir.rglob("*.txt")):
        run_file.write_text("")


BAD_INPUTS = {
    # case: (mutation of a valid raw tree, subject, file/folder named in the error, words in the message)
    "subject absent": (None, "CSI4", "py", "not found"),
    "beta file missing": (lambda raw: raw.beta("RH", "RSC").unlink(), "CSI1", "allses_RHRSC.npy", "missing"),
    "beta file truncated": (lambda raw: _truncate(raw.beta("LH", "PPA")), "CSI1", "allses_LHPPA.npy", "cannot read"),
    "NaN/inf beta": (_nan_beta, "CSI1", "allses_RHLOC.npy", "NaN/inf"),
    "trial counts differ across ROIs": (_fewer_trials_in_one_roi, "CSI1", "allses_LHOPA.npy", "disagree"),
    "lists shorter than betas": (_drop_last_trial_line, "CSI1", "CSI1", "disagree on the number of trials"),
    "lists missing": (lambda raw: [p.unlink() for p in raw.lists_dir.rglob("*.txt")], "CSI1", "CSI1", "no trials"),
    "no trials": (_no_trials, "CSI1", "CSI1", "no trials"),
    "stimulus image missing": (lambda raw: _scene_image(raw, "bedroom3.jpg").unlink(), "CSI1", "bedroom3.jpg",
                               "not found"),
    "stimulus image corrupt": (lambda raw: _truncate(_scene_image(raw, "airplanecabin1.jpg")), "CSI1",
                               "airplanecabin1.jpg", "cannot decode"),
    "repeated list missing": (lambda raw: (raw.root / bold5000.REPEATED_LIST).unlink(), "CSI1",
                              "repeated_stimuli_113_list.txt", "missing"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_reported_with_file_value_expectation_and_hint(tmp_path, case):
    mutate, subject, file_name, words = BAD_INPUTS[case]
    raw = write_bold5000(tmp_path / "raw")
    if mutate is not None:
        mutate(raw)
    out = tmp_path / "out"
    with pytest.raises(InputDataError) as caught:
        bold5000.preprocess_subject(raw.root, subject, Bold5000PreprocessConfig(), IMAGE_PX, out)
    error = caught.value
    assert file_name in str(error.path) and words in str(error)
    assert error.expected and error.hint
    if case not in ("beta file missing", "repeated list missing"):
        assert error.value is not None
    assert not out.exists(), "nothing may be written when the input is bad"
