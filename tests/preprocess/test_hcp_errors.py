"""HCP reader on bad input: a mindvis InputDataError naming the file, value and expectation; no output written."""

import nibabel as nib
import numpy as np
import pytest
from nibabel import cifti2

from mindvis.config.data import HcpPreprocessConfig
from mindvis.preprocess import hcp
from mindvis.preprocess.grayordinates import visual_area_indices
from mindvis.demo.cifti import standard_brain_models, write_dense_series
from mindvis.errors import InputDataError

SUBJECT = "100206"
N_FRAMES = 12


def _refused(raw_root, out, match, named_file, cfg=HcpPreprocessConfig(), subject=SUBJECT):
    """Run the subject job, expect InputDataError matching `match` and naming `named_file`; nothing written."""
    with pytest.raises(InputDataError, match=match) as info:
        hcp.preprocess_subject(raw_root, SUBJECT if subject is None else subject, cfg, out)
    assert str(named_file) in str(info.value)
    assert not out.exists()
    return info.value


def _run_file(root, run="REST1_LR"):
    path = hcp.run_path(root, SUBJECT, run)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _good_data(n_frames=N_FRAMES):
    return np.random.default_rng(0).standard_normal((n_frames, 91282)).astype(np.float32)


def test_missing_run_file(tmp_path):
    write_dense_series(_run_file(tmp_path), _good_data())
    cfg = HcpPreprocessConfig(runs=("REST1_LR", "REST2_LR"))
    error = _refused(tmp_path, tmp_path / "out", "missing HCP resting-state CIFTI file",
                     hcp.run_dir(tmp_path, SUBJECT, "REST2_LR"), cfg)
    assert "preprocess.hcp.runs" in error.hint and "preprocess.hcp.file_pattern" in error.hint
    assert "rfMRI_REST2_LR_Atlas_MSMAll_hp2000_clean*.dtseries.nii" in str(error)


def test_unreadable_file(tmp_path):
    path = _run_file(tmp_path)
    path.write_bytes(b"this is not an image" * 50)
    _refused(tmp_path, tmp_path / "out", "cannot read the file: not a NIfTI-2/CIFTI-2 image", path)


def test_dense_scalar_file_is_not_a_series(tmp_path):
    path = _run_file(tmp_path)
    image = cifti2.Cifti2Image(np.zeros((2, 91282), dtype=np.float32),
                               header=(cifti2.ScalarAxis(["a", "b"]), standard_brain_models()))
    image.to_filename(path)
    error = _refused(tmp_path, tmp_path / "out", "not a dense time series", path)
    assert error.value == "axes SCALARS x BRAIN_MODELS"


def test_nifti1_volume_is_not_cifti(tmp_path):
    path = _run_file(tmp_path)
    nib.Nifti1Image(np.zeros((4, 4, 4, N_FRAMES), dtype=np.float32), np.eye(4)).to_filename(path)
    error = _refused(tmp_path, tmp_path / "out", "not a CIFTI-2 file", path)
    assert error.value == "NIfTI-1 image"


def test_nifti2_volume_without_cifti_extension_is_not_cifti(tmp_path):
    path = _run_file(tmp_path)
    nib.Nifti2Image(np.zeros((4, 4, 4, N_FRAMES), dtype=np.float32), np.eye(4)).to_filename(path)
    error = _refused(tmp_path, tmp_path / "out", "not a CIFTI-2 file", path)
    assert error.value == "NIfTI-2 image without CIFTI-2 extension"


def test_cortex_only_file_has_the_wrong_grayordinate_count(tmp_path):
    path = _run_file(tmp_path)
    write_dense_series(path, np.zeros((N_FRAMES, 59412), dtype=np.float32),
                       brain_models=standard_brain_models()[:59412])
    error = _refused(tmp_path, tmp_path / "out", "wrong number of grayordinates", path)
    assert error.value == 59412 and "91282" in error.expected


def test_structures_in_another_order_are_refused(tmp_path):
    models = standard_brain_models()
    swapped = np.concatenate([np.arange(59412), np.arange(59412 + 135, 59412 + 275), np.arange(59412, 59412 + 135),
                              np.arange(59412 + 275, 91282)])  # accumbens right before left
    reordered = cifti2.BrainModelAxis(models.name[swapped], voxel=models.voxel[swapped],
                                      vertex=models.vertex[swapped], affine=models.affine,
                                      volume_shape=models.volume_shape, nvertices=models.nvertices)
    path = _run_file(tmp_path)
    write_dense_series(path, _good_data(), brain_models=reordered)
    error = _refused(tmp_path, tmp_path / "out", "structures do not follow the HCP layout", path)
    assert "ACCUMBENS_RIGHT" in str(error.value) and "ACCUMBENS_LEFT" in error.expected


def test_other_cortical_vertices_are_refused(tmp_path):
    models = standard_brain_models()
    vertex = models.vertex.copy()
    vertex[:29696] = np.arange(29696)  # same count, but not the HCP medial-wall-free vertex list
    shifted = cifti2.BrainModelAxis(models.name, voxel=models.voxel, vertex=vertex, affine=models.affine,
                                    volume_shape=models.volume_shape, nvertices=models.nvertices)
    path = _run_file(tmp_path)
    write_dense_series(path, _good_data(), brain_models=shifted)
    _refused(tmp_path, tmp_path / "out", "cortical vertices differ", path)


def test_nan_in_a_visual_grayordinate_is_refused_with_its_location(tmp_path):
    data = _good_data()
    v2_column = int(visual_area_indices()["V2"][7])
    data[4, v2_column] = np.nan
    data[3, 91000] = np.inf  # subcortical: not read, does not matter
    path = _run_file(tmp_path)
    write_dense_series(path, data)
    error = _refused(tmp_path, tmp_path / "out", "1 NaN/inf values", path)
    assert f"frame 4, grayordinate {v2_column} (V2)" in str(error.value)


def test_nan_outside_the_visual_cortex_is_ignored(tmp_path):
    data = _good_data()
    data[:, 91000] = np.nan
    write_dense_series(_run_file(tmp_path), data)
    result = hcp.preprocess_subject(tmp_path, SUBJECT, HcpPreprocessConfig(), tmp_path / "out")
    assert np.isfinite(result.fmri).all()


def test_too_few_frames_for_one_window(tmp_path):
    path = _run_file(tmp_path)
    write_dense_series(path, _good_data(n_frames=5))
    error = _refused(tmp_path, tmp_path / "out", "too few frames", path)
    assert error.value == 5 and "window_frames = 10" in error.expected


def test_truncated_cifti_file(tmp_path):
    path = _run_file(tmp_path)
    write_dense_series(path, _good_data())
    content = path.read_bytes()
    path.write_bytes(content[: len(content) - 4 * N_FRAMES * 1000])
    _refused(tmp_path, tmp_path / "out", "truncated", path)


def test_cifti_file_cut_inside_its_header(tmp_path):
    path = _run_file(tmp_path)
    write_dense_series(path, _good_data())
    path.write_bytes(path.read_bytes()[:5000])
    _refused(tmp_path, tmp_path / "out", "cannot read the NIfTI-2 header|damaged CIFTI-2 XML", path)


def test_subject_named_but_absent(tmp_path):
    write_dense_series(_run_file(tmp_path), _good_data())
    error = _refused(tmp_path, tmp_path / "out", "HCP subject '999999' not found", tmp_path / "HCP",
                     subject="999999")
    assert SUBJECT in error.hint


def _npz_file(root):
    path = hcp.npz_path(root, SUBJECT)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _npz_arrays(n_frames=N_FRAMES):
    rng = np.random.default_rng(0)
    return {roi: rng.standard_normal((n_frames, n)).astype(np.float32)
            for roi, n in {"V1": 16, "V2": 12, "V3": 6, "V4": 6}.items()}


def test_truncated_npz(tmp_path):
    path = _npz_file(tmp_path)
    np.savez(path, **_npz_arrays())
    path.write_bytes(path.read_bytes()[:300])
    _refused(tmp_path, tmp_path / "out", "cannot read MinD-Vis HCP intermediate", path)


def test_npz_without_v4(tmp_path):
    path = _npz_file(tmp_path)
    arrays = _npz_arrays()
    del arrays["V4"]
    np.savez(path, **arrays)
    error = _refused(tmp_path, tmp_path / "out", "lacks required arrays", path)
    assert error.value == ["V4"]


def test_npz_areas_of_different_length(tmp_path):
    path = _npz_file(tmp_path)
    arrays = _npz_arrays()
    arrays["V3"] = arrays["V3"][:-1]
    np.savez(path, **arrays)
    _refused(tmp_path, tmp_path / "out", "not numeric \\(frames, voxels\\) matrices of one run", path)


def test_npz_with_inf(tmp_path):
    path = _npz_file(tmp_path)
    arrays = _npz_arrays()
    arrays["V3"][2, 1] = np.inf
    np.savez(path, **arrays)
    error = _refused(tmp_path, tmp_path / "out", "NaN/inf", path)
    assert "frame 2, column 29 (V3)" in str(error.value)


def test_npz_too_short(tmp_path):
    path = _npz_file(tmp_path)
    np.savez(path, **_npz_arrays(n_frames=3))
    _refused(tmp_path, tmp_path / "out", "too few frames", path)
