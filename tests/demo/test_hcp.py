"""Demo HCP runs: CIFTI-2 dense series nibabel reads, 91282 grayordinates, TR 0.72 s, slow retinotopic fluctuations."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nibabel import cifti2

from mindvis.preprocess.grayordinates import N_GRAYORDINATES, STRUCTURES, visual_grayordinates
from mindvis.demo import hcp, synthesize


@pytest.fixture(scope="module")
def run(tmp_path_factory, make_small_config):
    cfg = make_small_config(tmp_path_factory.mktemp("hcp") / "demo")
    written = synthesize(cfg, ["HCP"])
    assert written == hcp.files(cfg)
    path = cfg.root / "HCP" / "100206" / "MNINonLinear" / "Results" / "rfMRI_REST1_LR" / (
        "rfMRI_REST1_LR_Atlas_MSMAll_hp2000_clean.dtseries.nii")
    assert written == [path]
    return cfg, nib.load(path)


def test_dense_series_in_the_hcp_layout(run):
    cfg, image = run
    assert isinstance(image, cifti2.Cifti2Image)
    series, models = image.header.get_axis(0), image.header.get_axis(1)
    assert isinstance(series, cifti2.SeriesAxis) and isinstance(models, cifti2.BrainModelAxis)
    assert series.size == cfg.hcp.frames and series.step == pytest.approx(0.72) and series.unit == "SECOND"
    assert len(models) == N_GRAYORDINATES
    assert [(str(name), len(part)) for name, _, part in models.iter_structures()] == list(STRUCTURES)
    assert image.shape == (cfg.hcp.frames, N_GRAYORDINATES)
    assert image.get_data_dtype() == np.float32


def test_values_are_positive_fmri_levels_with_percent_fluctuations(run):
    _, image = run
    data = np.asarray(image.dataobj, dtype=np.float32)
    assert np.isfinite(data).all() and (data > 0).all()
    relative_sd = data.std(axis=0) / data.mean(axis=0)
    assert 0.002 < np.median(relative_sd) < 0.05


def test_visual_fluctuations_are_slow_and_follow_the_visual_field_map(run):
    _, image = run
    visual = visual_grayordinates()
    series = np.asarray(image.dataobj, dtype=np.float32)[:, visual.index].astype(np.float64)
    series = (series - series.mean(0)) / series.std(0)
    lag1 = (series[1:] * series[:-1]).mean(0)
    assert np.median(lag1) > 0.5  # smooth at TR 0.72 s (white noise would give ~0)

    field_map, hemisphere = hcp.visual_field_map()
    rng = np.random.default_rng(0)
    pairs = rng.integers(len(field_map), size=(4000, 2))
    same_side = hemisphere[pairs[:, 0]] == hemisphere[pairs[:, 1]]
    pairs = pairs[same_side]
    distance = np.linalg.norm(field_map[pairs[:, 0]] - field_map[pairs[:, 1]], axis=1)
    corr = (series[:, pairs[:, 0]] * series[:, pairs[:, 1]]).mean(0)
    near, far = corr[distance < 0.1].mean(), corr[distance > 0.5].mean()
    assert near > far + 0.2, (near, far)


def test_visual_field_map_covers_both_coordinates_in_every_area():
    field_map, hemisphere = hcp.visual_field_map()
    visual = visual_grayordinates()
    assert field_map.shape == (len(visual), 2) and ((field_map >= 0) & (field_map <= 1)).all()
    for side in ("L", "R"):
        for area in ("V1", "V2", "V3", "V4"):
            rows = (hemisphere == side) & (visual.roi == area)
            assert np.ptp(field_map[rows, 0]) > 0.5 and np.ptp(field_map[rows, 1]) > 0.5, (side, area)
