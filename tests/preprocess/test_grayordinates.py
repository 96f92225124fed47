"""The HCP grayordinate layout, the Glasser V1-V4 selection and the CIFTI-2 dense-series writer."""

import nibabel as nib
import numpy as np
import pytest
from nibabel import cifti2

from mindvis.preprocess import grayordinates as g
from mindvis.demo import cifti
from mindvis.errors import InputDataError


def test_standard_layout_has_the_hcp_structures_sizes_and_meshes():
    models = cifti.standard_brain_models()
    assert len(models) == g.N_GRAYORDINATES == 91282
    table = g.structures_of(models)
    assert [(s.name, s.count) for s in table] == list(g.STRUCTURES)
    assert sum(count for _, count in g.STRUCTURES) == 91282
    # the cached table used by readers says the same as nibabel's view of the axis
    for built, fast in zip(table, g.standard_structures(), strict=True):
        assert (built.name, built.offset, built.count, built.nvertices) == (fast.name, fast.offset, fast.count,
                                                                              fast.nvertices)
        assert (built.vertices is None) == (fast.vertices is None)
        if built.vertices is not None:
            np.testing.assert_array_equal(built.vertices, fast.vertices)
    assert models.nvertices == {name: 32492 for name in g.CORTEX_STRUCTURES}
    assert models.volume_shape == (91, 109, 91)
    np.testing.assert_array_equal(models.affine, np.diag([-2.0, 2.0, 2.0, 1.0]) + [[0, 0, 0, 90], [0, 0, 0, -126],
                                                                                    [0, 0, 0, -72], [0, 0, 0, 0]])
    g.check_standard_layout(table, "<built>")


def test_generated_subcortical_voxels_are_unique_inside_the_grid_and_in_their_hemisphere():
    models = cifti.standard_brain_models()
    volume = ~models.surface_mask
    voxels = models.voxel[volume]
    assert len(voxels) == 91282 - 29696 - 29716
    assert len(np.unique(voxels, axis=0)) == len(voxels)
    assert (voxels >= 0).all() and (voxels < np.array(cifti.VOLUME_SHAPE)).all()
    for name, _, part in models.iter_structures():
        x_mm = part.voxel[:, 0] * -2.0 + 90.0
        if name.endswith("_LEFT") and name not in g.CORTEX_STRUCTURES:
            assert (x_mm < 0).all(), name
        if name.endswith("_RIGHT") and name not in g.CORTEX_STRUCTURES:
            assert (x_mm > 0).all(), name
    # deterministic: a fresh computation gives the same coordinates
    fresh = cifti._subcortical_voxels.__wrapped__()
    np.testing.assert_array_equal(np.concatenate(list(fresh.values())), voxels)


def test_visual_areas_are_glasser_v1_to_v4_with_mindvis_counts():
    indices = g.visual_area_indices()
    assert {roi: idx.size for roi, idx in indices.items()} == {"V1": 1618, "V2": 1220, "V3": 684, "V4": 661}
    labels = g.standard_glasser_labels()
    for roi, keys in {"V1": (1, 181), "V2": (4, 184), "V3": (5, 185), "V4": (6, 186)}.items():
        np.testing.assert_array_equal(indices[roi], np.flatnonzero(np.isin(labels, keys)))
    visual = g.visual_grayordinates()
    assert len(visual) == 4183
    assert list(dict.fromkeys(visual.roi)) == ["V1", "V2", "V3", "V4"]
    # hemisphere from the structure agrees with the area name; everything is cortical
    assert (visual.index < 29696 + 29716).all()
    np.testing.assert_array_equal(visual.hemisphere, np.where(visual.index < 29696, "L", "R"))
    assert all(area.startswith(hemi + "_V") for area, hemi in zip(visual.area, visual.hemisphere))


def test_series_axis_is_what_real_hcp_files_carry():
    axis = cifti.series_axis(1200)
    assert axis.size == 1200 and axis.step == pytest.approx(0.72) and axis.start == 0 and axis.unit == "SECOND"


def test_written_dense_series_reads_back_exactly(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.standard_normal((7, 91282)).astype(np.float32)
    path = cifti.write_dense_series(tmp_path / "sub" / "run.dtseries.nii", data, tr_s=0.72)
    image = nib.load(path)
    assert isinstance(image, cifti2.Cifti2Image)
    assert image.nifti_header.get_intent()[0] == "ConnDenseSeries"
    series, models = image.header.get_axis(0), image.header.get_axis(1)
    assert isinstance(series, cifti2.SeriesAxis) and series.size == 7 and series.step == pytest.approx(0.72)
    assert series.unit == "SECOND"
    assert models == cifti.standard_brain_models()
    assert image.dataobj.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(image.dataobj), data)
    assert [p.name for p in path.parent.iterdir()] == ["run.dtseries.nii"]  # no temporary left behind


def test_header_reader_agrees_with_nibabels_full_parse(tmp_path):
    models = cifti.standard_brain_models()[:29696] + cifti.standard_brain_models()[59412:59412 + 135]
    path = cifti.write_dense_series(tmp_path / "run.dtseries.nii", np.ones((4, len(models))), tr_s=2.0,
                                brain_models=models)
    header = g.read_dense_series_header(path)
    assert (header.n_frames, header.tr_s, header.n_grayordinates) == (4, 2.0, 29696 + 135)
    nibabel_view = g.structures_of(nib.load(path).header.get_axis(1))
    assert [(s.name, s.offset, s.count, s.nvertices) for s in header.structures] == \
        [(s.name, s.offset, s.count, s.nvertices) for s in nibabel_view]
    np.testing.assert_array_equal(header.structures[0].vertices, nibabel_view[0].vertices)
    assert header.structures[1].vertices is None
    proxy = header.array_proxy()
    assert proxy.shape == (4, 29696 + 135)
    np.testing.assert_array_equal(np.asarray(proxy[:, 5:9]), np.ones((4, 4), dtype=np.float32))


def test_writer_accepts_fortran_ordered_float64_and_custom_layouts(tmp_path):
    models = cifti2.BrainModelAxis.from_surface(np.arange(5), 10, "CORTEX_LEFT")
    data = np.asfortranarray(np.arange(15, dtype=np.float64).reshape(3, 5))
    path = cifti.write_dense_series(tmp_path / "small.dtseries.nii", data, brain_models=models)
    image = nib.load(path)
    assert image.header.get_axis(1) == models
    np.testing.assert_array_equal(np.asarray(image.dataobj), data.astype(np.float32))


class _FailsAfterFirstBlock(np.ndarray):
    """An array whose second column block cannot be read (stands for a failing memmap / disk)."""

    def __getitem__(self, key):
        if isinstance(key, tuple) and isinstance(key[1], slice) and (key[1].start or 0) > 0:
            raise OSError("simulated read failure")
        return super().__getitem__(key)


def test_writer_leaves_nothing_behind_when_writing_fails(tmp_path):
    data = np.zeros((2, 91282), dtype=np.float32).view(_FailsAfterFirstBlock)
    with pytest.raises(OSError):
        cifti.write_dense_series(tmp_path / "run.dtseries.nii", data)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="91282"):
        cifti.write_dense_series(tmp_path / "run.dtseries.nii", np.zeros((2, 10), dtype=np.float32))


def _glasser_dlabel(path, right_first=True):
    """A Glasser .dlabel.nii over the cortex (59412 grayordinates), numbered as the HCP release (right first)."""
    labels = g.standard_glasser_labels()[:59412]
    atlas = g.load_atlas(None)
    if right_first:  # the HCP release numbers right areas 1-180 and left 181-360; names carry the "_ROI" suffix
        swapped = np.where(labels > 180, labels - 180, np.where(labels > 0, labels + 180, 0))
        names = {0: "???"} | {(k - 180 if k > 180 else k + 180): atlas.names[k] + "_ROI" for k in range(1, 361)}
    else:
        swapped, names = labels, {k: atlas.names[k] for k in range(0, 361)}
    cortex = cifti.standard_brain_models()[:59412]
    table = {key: (name, (1.0, 1.0, 1.0, 1.0)) for key, name in names.items()}
    label_axis = cifti2.LabelAxis(["glasser"], [table])
    image = cifti2.Cifti2Image(swapped[None, :].astype(np.float32), header=(label_axis, cortex))
    image.nifti_header.set_intent("NIFTI_INTENT_CONNECTIVITY_DENSE_LABELS")
    image.to_filename(path)
    return path


def test_a_user_glasser_dlabel_selects_the_same_grayordinates(tmp_path):
    atlas = g.load_atlas(_glasser_dlabel(tmp_path / "glasser.dlabel.nii"))
    from_dlabel = g.visual_grayordinates(atlas=atlas)
    default = g.visual_grayordinates()
    np.testing.assert_array_equal(from_dlabel.index, default.index)
    np.testing.assert_array_equal(from_dlabel.roi, default.roi)
    assert from_dlabel.area[0] == "L_V1_ROI" and from_dlabel.label[0] == 181


def test_atlas_that_is_not_a_label_file_is_refused(tmp_path):
    scalar = cifti2.Cifti2Image(np.zeros((1, 59412), dtype=np.float32),
                                header=(cifti2.ScalarAxis(["sulc"]), cifti.standard_brain_models()[:59412]))
    scalar.to_filename(tmp_path / "sulc.dscalar.nii")
    with pytest.raises(InputDataError, match="not a dense label file") as info:
        g.load_atlas(tmp_path / "sulc.dscalar.nii")
    assert "sulc.dscalar.nii" in str(info.value)
    with pytest.raises(InputDataError, match="missing Glasser atlas"):
        g.load_atlas(tmp_path / "absent.dlabel.nii")


def test_data_on_another_mesh_than_the_atlas_is_refused():
    models = cifti2.BrainModelAxis.from_surface(np.arange(100), 163842, "CORTEX_LEFT")
    with pytest.raises(InputDataError, match="cortical mesh does not match the atlas") as info:
        g.labels_on(g.structures_of(models), g.load_atlas(None), "data.dtseries.nii")
    assert "163842" in str(info.value) and "data.dtseries.nii" in str(info.value)
