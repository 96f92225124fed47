"""fMRI-image pairs: row selection, pairing, voxel padding, image scaling and the reference's crop augmentation."""

import pickle

import numpy as np
import pytest
import torch

from mindvis.data.contract import read_subject
from mindvis.data.pairs import (
    FmriImagePairs,
    augment_image,
    averaged_test_rows,
    hold_out,
    train_rows,
)
from mindvis.errors import ConfigError, ContractError
from mindvis.models.mbm import voxel_index
from tests.stage_b_helpers import write_task_subject


@pytest.fixture
def subject_dir(tmp_path):
    return write_task_subject(tmp_path, n_voxels=50, n_train=12, n_test=3, repeats=2, image_px=16)


def test_rows_for_training_and_generation(subject_dir):
    subject = read_subject(subject_dir)
    assert train_rows(subject).tolist() == list(range(12))
    averaged = averaged_test_rows(subject, subject_dir)
    assert averaged.tolist() == [12, 13, 14]  # one per test stimulus, n_averaged > 1
    assert subject.samples["stimulus_id"].iloc[averaged].tolist() == ["test_00", "test_01", "test_02"]


def test_averaged_rows_must_name_distinct_stimuli(tmp_path):
    subject = read_subject(write_task_subject(tmp_path, n_test=2, repeats=2))
    duplicated = subject.samples.copy()
    duplicated.loc[duplicated["n_averaged"] > 1, "stimulus_id"] = "test_00"
    with pytest.raises(ContractError, match="distinct stimuli"):
        averaged_test_rows(type(subject)(duplicated, subject.fmri, subject.voxels, subject.stimuli))
    single_only = subject.samples.assign(n_averaged=1)
    with pytest.raises(ContractError, match="no averaged test fMRI"):
        averaged_test_rows(type(subject)(single_only, subject.fmri, subject.voxels, subject.stimuli))


def test_pairs_pad_fmri_like_the_reference_and_pair_each_row_with_its_image(subject_dir):
    subject = read_subject(subject_dir)
    rows = train_rows(subject)
    pairs = FmriImagePairs(subject_dir, rows, num_voxels=64, patch_size=16, image_size=16)
    assert len(pairs) == 12
    item = pairs[5]
    assert item["fmri"].shape == (64,) and item["fmri"].dtype == torch.float32
    np.testing.assert_array_equal(item["fmri"].numpy(), np.asarray(subject.fmri[5])[voxel_index(50, 64, 16)])
    stored = subject.stimuli.images[subject.stimuli.index_of(["train_005"])[0]]
    assert item["image"].shape == (3, 16, 16) and item["item"] == 5
    # no augmentation at the stored size: exactly the image scaled to [-1, 1], channels first
    np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy(), stored / 127.5 - 1.0, atol=1e-6)
    # a longer subject is cut to the encoder's length
    cut = FmriImagePairs(subject_dir, rows, num_voxels=32, patch_size=16, image_size=16)
    np.testing.assert_array_equal(cut[0]["fmri"].numpy(), np.asarray(subject.fmri[0])[:32])


def test_pairs_resize_to_the_model_size_and_pickle_without_the_fmri_matrix(subject_dir):
    pairs = FmriImagePairs(subject_dir, np.arange(4), num_voxels=64, patch_size=16, image_size=8,
                           crop_probability=1.0, crop_ratio=0.2)
    images = torch.stack([pairs[i]["image"] for i in range(4)])
    assert images.shape == (4, 3, 8, 8) and images.min() >= -1.0 and images.max() <= 1.0
    pairs.fmri_row(0)
    assert isinstance(pairs._fmri, np.memmap)
    clone = pickle.loads(pickle.dumps(pairs))
    assert clone._fmri is None and torch.equal(clone[1]["fmri"], pairs[1]["fmri"])


def test_crop_takes_a_window_of_the_kept_size_with_the_set_probability():
    image = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    scaled = torch.from_numpy(image).permute(2, 0, 1).float() / 127.5 - 1.0
    windows = {(top, left): scaled[:, top:top + 4, left:left + 4] for top in range(5) for left in range(5)}
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):
        crop = augment_image(image, size=4, crop_probability=1.0, crop_ratio=0.5, generator=generator)
        assert any(torch.allclose(crop, window) for window in windows.values())
    # never cropped: the whole image, resized
    whole = augment_image(image, size=8, crop_probability=0.0, crop_ratio=0.5)
    assert torch.allclose(whole, scaled)
    # p = 0.5: some crops, some whole images (the reference's random_crop(205, p=0.5) at 256 px)
    cropped = [not torch.allclose(augment_image(image, 8, 0.5, 0.5, generator), scaled) for _ in range(40)]
    assert 5 < sum(cropped) < 35
    same = [augment_image(image, 8, 0.5, 0.5, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(*same)


def test_hold_out_is_seeded_disjoint_and_refuses_to_take_everything():
    rows = np.arange(100, 120)
    fit, val = hold_out(rows, 4, seed=1)
    assert len(val) == 4 and len(fit) == 16 and not set(fit) & set(val)
    assert np.array_equal(hold_out(rows, 4, seed=1)[1], val)
    assert not np.array_equal(hold_out(rows, 4, seed=2)[1], val)
    with pytest.raises(ConfigError, match="val_items"):
        hold_out(rows, 20, seed=1)


def test_subject_without_stimuli_is_refused(subject_dir):
    (subject_dir / "stimuli.npz").unlink()
    with pytest.raises(ContractError, match="no stimulus images"):
        FmriImagePairs(subject_dir, np.arange(3), num_voxels=64, patch_size=16, image_size=16)
