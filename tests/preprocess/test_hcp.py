"""HCP reader: real CIFTI-2 dense series (written with our writer) and the MinD-Vis npz -> the data contract."""

import numpy as np
import pytest

from mindvis.config.data import HcpPreprocessConfig
from mindvis.preprocess import hcp
from mindvis.data.contract import read_subject
from mindvis.preprocess.grayordinates import visual_grayordinates
from mindvis.demo.cifti import write_dense_series
from mindvis.errors import InputDataError
from mindvis.preprocess.windows import window_means
from tests.preprocess.test_grayordinates import _glasser_dlabel

N_FRAMES = 30
SUBJECT = "100206"


@pytest.fixture(scope="module")
def visual():
    return visual_grayordinates()


@pytest.fixture(scope="module")
def run_data():
    """Known values: (30 frames, 91282) with a different offset per grayordinate, so misplaced columns show."""
    rng = np.random.default_rng(0)
    offsets = np.linspace(-5, 5, 91282, dtype=np.float32)
    return rng.standard_normal((N_FRAMES, 91282)).astype(np.float32) + offsets


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory, run_data):
    """A raw root with one subject, runs REST1_LR (the data) and REST1_RL (the data reversed in time)."""
    root = tmp_path_factory.mktemp("raw")
    write_dense_series(hcp.run_path(root, SUBJECT, "REST1_LR"), run_data)
    write_dense_series(hcp.run_path(root, SUBJECT, "REST1_RL"), run_data[::-1])
    return root


def test_layout_helpers_follow_the_hcp_release(tmp_path, raw_root):
    assert hcp.run_path("/d", "100307", "REST2_RL").as_posix() == (
        "/d/HCP/100307/MNINonLinear/Results/rfMRI_REST2_RL/rfMRI_REST2_RL_Atlas_MSMAll_hp2000_clean.dtseries.nii")
    assert hcp.npz_path("/d", "100307").as_posix() == "/d/HCP/npz/100307/HCP_visual_voxel.npz"
    assert hcp.find_subjects(raw_root) == [SUBJECT]
    assert hcp.find_subjects(raw_root, runs=("REST1_LR", "REST2_LR")) == []
    assert hcp.find_subjects(raw_root, source="npz") == []
    assert hcp.raw_files(raw_root, SUBJECT, ("REST1_LR", "REST1_RL")) == [
        hcp.run_path(raw_root, SUBJECT, "REST1_LR"), hcp.run_path(raw_root, SUBJECT, "REST1_RL")]
    # nothing on disk yet (e.g. before the demo rule ran): the expected input names the pattern looked for
    assert hcp.raw_files(tmp_path, "100307") == [hcp.run_dir(tmp_path, "100307", "REST1_LR")
                                                 / "rfMRI_REST1_LR_Atlas_MSMAll_hp2000_clean*.dtseries.nii"]
    assert hcp.find_subjects(tmp_path) == []


S1200_NAME = "rfMRI_REST1_LR_Atlas_MSMAll_hp2000_clean.dtseries.nii"
CURRENT_NAME = "rfMRI_REST1_LR_Atlas_MSMAll_hp2000_clean_rclean_tclean.dtseries.nii"


@pytest.mark.parametrize("name", [S1200_NAME, CURRENT_NAME])
def test_both_release_names_are_found_by_the_default_pattern(tmp_path, run_data, name):
    path = hcp.run_dir(tmp_path, SUBJECT, "REST1_LR") / name
    write_dense_series(path, run_data)
    assert hcp.find_subjects(tmp_path) == [SUBJECT]
    assert hcp.raw_files(tmp_path, SUBJECT) == [path]
    result = hcp.preprocess_subject(tmp_path, SUBJECT, HcpPreprocessConfig(), tmp_path / "out")
    assert result.fmri.shape == (3, 4183)
    assert result.samples["source"].iloc[0].endswith(name)


def test_several_matching_series_are_refused_until_the_pattern_picks_one(tmp_path, run_data):
    folder = hcp.run_dir(tmp_path, SUBJECT, "REST1_LR")
    for name in (S1200_NAME, CURRENT_NAME):
        write_dense_series(folder / name, run_data)
    with pytest.raises(InputDataError, match="several HCP dense series of run REST1_LR") as error:
        hcp.raw_files(tmp_path, SUBJECT)
    assert S1200_NAME in str(error.value) and CURRENT_NAME in str(error.value)
    assert "preprocess.hcp.file_pattern" in str(error.value)
    with pytest.raises(InputDataError, match="several HCP dense series"):
        hcp.preprocess_subject(tmp_path, SUBJECT, HcpPreprocessConfig(), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    current = HcpPreprocessConfig(file_pattern="rfMRI_{run}_Atlas_MSMAll_hp2000_clean_rclean_tclean.dtseries.nii")
    assert hcp.raw_files(tmp_path, SUBJECT, file_pattern=current.file_pattern) == [folder / CURRENT_NAME]
    result = hcp.preprocess_subject(tmp_path, SUBJECT, current, tmp_path / "out")
    assert result.samples["source"].iloc[0].endswith(CURRENT_NAME)


def test_cifti_run_becomes_windowed_scalar_zscored_v1_to_v4(tmp_path, raw_root, run_data, visual):
    out = tmp_path / "HCP" / SUBJECT
    result = hcp.preprocess_subject(raw_root, SUBJECT, HcpPreprocessConfig(), out)
    expected_windows = window_means(run_data[:, visual.index], 10)  # (3, 4183)
    assert result.fmri.shape == (3, 4183) and result.fmri.dtype == np.float32
    # scalar z-score: one mean and std over the whole window matrix, recorded per voxel
    mean, std = expected_windows.mean(dtype=np.float64), expected_windows.std(dtype=np.float64)
    np.testing.assert_allclose(result.voxels["mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(result.voxels["std"], std, rtol=1e-6)
    np.testing.assert_allclose(result.fmri, (expected_windows - mean) / std, atol=1e-5)
    # undoing the recorded normalisation gives back the raw values at the V1-V4 grayordinates
    restored = result.fmri * result.voxels["std"].to_numpy() + result.voxels["mean"].to_numpy()
    np.testing.assert_allclose(restored, expected_windows, atol=1e-4)

    on_disk = read_subject(out)
    np.testing.assert_array_equal(on_disk.fmri, result.fmri)
    samples = on_disk.samples
    assert samples["split"].tolist() == ["pretrain"] * 3
    assert samples["stimulus_id"].isna().all() and samples["category"].isna().all()
    assert samples["n_averaged"].tolist() == [10, 10, 10]
    assert samples["run"].tolist() == ["REST1_LR"] * 3 and samples["frame_start"].tolist() == [0, 10, 20]
    assert samples["source"].iloc[0] == hcp.run_path(raw_root, SUBJECT, "REST1_LR").relative_to(raw_root).as_posix()
    voxels = on_disk.voxels
    assert voxels["roi"].value_counts().to_dict() == {"V1": 1618, "V2": 1220, "V3": 684, "V4": 661}
    np.testing.assert_array_equal(voxels["grayordinate"].to_numpy(dtype=np.int64), visual.index)
    assert set(voxels["hemisphere"]) == {"L", "R"}
    assert set(voxels["glasser_label"]) == {1, 181, 4, 184, 5, 185, 6, 186}
    assert voxels["area"].iloc[0] == "L_V1"


def test_voxel_normalisation_zscores_each_grayordinate_over_time(tmp_path, raw_root, run_data, visual):
    cfg = HcpPreprocessConfig(window_frames=3, normalization="voxel")
    result = hcp.preprocess_subject(raw_root, SUBJECT, cfg, tmp_path / "out")
    windows = window_means(run_data[:, visual.index], 3)  # (10, 4183)
    assert result.fmri.shape == (10, 4183)
    np.testing.assert_allclose(result.fmri.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(result.fmri.std(axis=0), 1, atol=1e-4)
    np.testing.assert_allclose(result.voxels["mean"], windows.mean(axis=0, dtype=np.float64), rtol=1e-5, atol=1e-6)
    assert result.voxels["std"].nunique() > 1
    assert result.samples["n_averaged"].unique().tolist() == [3]


def test_incomplete_tail_window_is_dropped(tmp_path, raw_root):
    result = hcp.preprocess_subject(raw_root, SUBJECT, HcpPreprocessConfig(window_frames=7), tmp_path / "out")
    assert result.samples["frame_start"].tolist() == [0, 7, 14, 21]  # frames 28-29 do not fill a window


def test_several_runs_are_windowed_separately_and_normalised_together(tmp_path, raw_root, run_data, visual):
    cfg = HcpPreprocessConfig(runs=("REST1_LR", "REST1_RL"), window_frames=10)
    result = hcp.preprocess_subject(raw_root, SUBJECT, cfg, tmp_path / "out")
    assert result.samples["run"].tolist() == ["REST1_LR"] * 3 + ["REST1_RL"] * 3
    assert result.samples["frame_start"].tolist() == [0, 10, 20] * 2
    assert result.samples["sample_id"].tolist() == list(range(6))
    # REST1_RL holds the frames reversed: its windows are REST1_LR's in reverse order
    np.testing.assert_allclose(result.fmri[3:], result.fmri[2::-1], atol=1e-5)
    assert abs(result.fmri.mean()) < 1e-5 and abs(result.fmri.std() - 1) < 1e-4


def _write_npz(root, subject, data, visual):
    path = hcp.npz_path(root, subject)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{roi: data[:, visual.index[visual.roi == roi]] for roi in ("V1", "V2", "V3", "V4")})
    return path


def test_npz_intermediate_gives_the_same_samples_as_the_cifti(tmp_path, raw_root, run_data, visual):
    npz_root = tmp_path / "raw"
    path = _write_npz(npz_root, "100307", run_data, visual)
    assert hcp.find_subjects(npz_root) == ["100307"]
    assert hcp.raw_files(npz_root, "100307") == [path]
    from_npz = hcp.preprocess_subject(npz_root, "100307", HcpPreprocessConfig(), tmp_path / "npz_out")
    from_cifti = hcp.preprocess_subject(raw_root, SUBJECT, HcpPreprocessConfig(), tmp_path / "cifti_out")
    np.testing.assert_allclose(from_npz.fmri, from_cifti.fmri, atol=1e-6)
    assert from_npz.samples["source"].tolist() == ["HCP/npz/100307/HCP_visual_voxel.npz"] * 3
    assert from_npz.samples["run"].isna().all()
    assert from_npz.voxels["roi"].tolist() == from_cifti.voxels["roi"].tolist()
    assert from_npz.voxels["grayordinate"].isna().all()  # the intermediate does not record them
    read_subject(tmp_path / "npz_out")


def test_source_auto_prefers_cifti_and_source_selects_explicitly(tmp_path, raw_root, run_data, visual):
    _write_npz(raw_root, SUBJECT, run_data, visual)
    try:
        assert hcp.raw_files(raw_root, SUBJECT) == [hcp.run_path(raw_root, SUBJECT, "REST1_LR")]
        assert hcp.raw_files(raw_root, SUBJECT, source="npz") == [hcp.npz_path(raw_root, SUBJECT)]
        result = hcp.preprocess_subject(raw_root, SUBJECT, HcpPreprocessConfig(source="npz"), tmp_path / "out")
        assert result.samples["source"].iloc[0].endswith(".npz")
        assert hcp.find_subjects(raw_root, source="npz") == [SUBJECT]
    finally:
        hcp.npz_path(raw_root, SUBJECT).unlink()


def test_configured_glasser_dlabel_is_used_as_the_atlas(tmp_path, raw_root, visual):
    atlas = _glasser_dlabel(tmp_path / "glasser.dlabel.nii")
    result = hcp.preprocess_subject(raw_root, SUBJECT, HcpPreprocessConfig(atlas=atlas), tmp_path / "out")
    np.testing.assert_array_equal(result.voxels["grayordinate"].to_numpy(dtype=np.int64), visual.index)
    assert result.voxels["area"].iloc[0] == "L_V1_ROI" and result.voxels["glasser_label"].iloc[0] == 181


def test_read_columns_returns_requested_order_across_distant_groups(raw_root, run_data):
    import nibabel as nib

    columns = np.array([91281, 5, 70000, 6, 4, 30000])
    proxy = nib.load(hcp.run_path(raw_root, SUBJECT, "REST1_LR")).dataobj
    got = hcp.read_columns(proxy, columns, hcp.run_path(raw_root, SUBJECT, "REST1_LR"))
    np.testing.assert_array_equal(got, run_data[:, columns])
