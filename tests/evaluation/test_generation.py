"""Generation job: every output file with the right shapes, seeded samples, ground truth, grid and tracking."""

from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from PIL import Image

from mindvis.checkpoints import save_stage_b
from mindvis.config.stage_b import SamplingConfig
from mindvis.data.contract import read_subject
from mindvis.errors import ConfigError
from mindvis.devices import resolve_device
from mindvis.evaluation.generation import GenerationOutputs, generate_subject, image_file_name
from mindvis.figures import labelled_grid
from mindvis.models.ldm import assemble_fmri_ldm, build_unet, build_vqvae
from mindvis.models.mbm import FmriEncoder, MbmArchitecture
from mindvis.tracking import open_job_run_for_tests
from tests.stage_b_helpers import TINY_LDM, write_task_subject

SAMPLING = SamplingConfig(scheduler="ddim", steps=3, n_samples=2, batch_size=4)


@pytest.fixture(scope="module")
def stage_b_dir(tmp_path_factory):
    torch.manual_seed(0)
    encoder = FmriEncoder(MbmArchitecture(num_voxels=64, patch_size=16, embed_dim=32, depth=1, num_heads=2,
                                          decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2))
    model = assemble_fmri_ldm(TINY_LDM, build_unet(TINY_LDM), build_vqvae(TINY_LDM), encoder)
    return save_stage_b(model, tmp_path_factory.mktemp("stage_b") / "model")


@pytest.fixture
def subject_dir(tmp_path):
    return write_task_subject(tmp_path, n_voxels=50, n_train=4, n_test=3, repeats=2, image_px=16)


def test_generation_writes_samples_ground_truth_files_and_grid(stage_b_dir, subject_dir, tmp_path):
    out = tmp_path / "eval"
    with open_job_run_for_tests(tmp_path / "mlruns") as run:
        summary = generate_subject(stage_b_dir, subject_dir, GenerationOutputs.in_dir(out), SAMPLING, seed=7,
                                   device="auto", run=run)
    assert summary["n_items"] == 3 and summary["n_images"] == 6 and summary["device"] == "cpu"
    assert summary["images_per_s"] > 0 and (summary["scheduler"], summary["steps"]) == ("ddim", 3)
    with np.load(out / "samples.npz") as archive:
        samples, truth = archive["samples"], archive["ground_truth"]
        assert samples.shape == (3, 2, 16, 16, 3) and samples.dtype == np.uint8
        assert truth.shape == (3, 16, 16, 3) and truth.dtype == np.uint8
        assert archive["stimulus_id"].tolist() == ["test_00", "test_01", "test_02"]
        assert archive["sample_id"].tolist() == [4, 5, 6]  # the averaged test rows of samples.parquet
    stimuli = read_subject(subject_dir).stimuli
    np.testing.assert_array_equal(truth, stimuli.images[stimuli.index_of(["test_00", "test_01", "test_02"])])
    files = sorted(p.name for p in (out / "samples").iterdir())
    assert files == sorted(image_file_name(s, k) for s in ("test_00", "test_01", "test_02") for k in range(2))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "samples" / "test_01_1.png")), samples[1, 1])
    grid = np.asarray(Image.open(out / "grid.png"))
    assert grid.shape[0] > 3 * 128 and grid.shape[1] > 3 * 128  # 3 rows of 1 + 2 tiles, plus labels
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "samples", "samples.npz"]  # nothing else left

    client = MlflowClient(tracking_uri=run.target.uri)
    data = client.get_run(run.run_id).data
    assert data.metrics["n_images"] == 6 and data.metrics["images_per_s"] > 0
    assert [a.path for a in client.list_artifacts(run.run_id, "generation")] == ["generation/grid.png"]


def test_same_seed_same_samples_other_seed_other_samples(stage_b_dir, subject_dir, tmp_path):
    runs = {name: tmp_path / name for name in ("a", "b", "c")}
    for name, sampling, seed in (("a", SAMPLING, 1), ("b", SamplingConfig("ddim", 3, 2, batch_size=1), 1),
                                 ("c", SAMPLING, 2)):
        generate_subject(stage_b_dir, subject_dir, GenerationOutputs.in_dir(runs[name]), sampling, seed=seed,
                         device="cpu")
    a, b, c = (np.load(path / "samples.npz")["samples"].astype(int) for path in runs.values())
    # batch size does not change the images; BLAS kernels chosen by batch shape may flip a rounding (1 grey level)
    assert np.abs(a - b).max() <= 1 and np.mean(a != b) < 0.01
    assert np.abs(a - c).mean() > 5  # another seed: other images, not a rounding difference


def test_a_rerun_replaces_the_outputs(stage_b_dir, subject_dir, tmp_path):
    out = tmp_path / "eval"
    for n_samples in (3, 1):
        generate_subject(stage_b_dir, subject_dir, GenerationOutputs.in_dir(out),
                         SamplingConfig("ddim", 2, n_samples=n_samples), seed=1, device="cpu")
    assert len(list((out / "samples").iterdir())) == 3  # the earlier run's 9 files are gone
    assert np.load(out / "samples.npz")["samples"].shape[1] == 1


def test_ground_truth_follows_the_model_size(stage_b_dir, tmp_path):
    subject = write_task_subject(tmp_path, n_train=2, n_test=2, image_px=32)
    generate_subject(stage_b_dir, subject, GenerationOutputs.in_dir(tmp_path / "eval"), SAMPLING, seed=0,
                     device="cpu")
    with np.load(tmp_path / "eval" / "samples.npz") as archive:
        assert archive["ground_truth"].shape == (2, 16, 16, 3) and archive["samples"].shape[2:4] == (16, 16)


def test_devices_and_file_names():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="device"):
        resolve_device("quantum")
    assert image_file_name("COCO/train 2014.jpg", 3) == "COCO_train_2014.jpg_3.png"


def test_labelled_grid_places_tiles_below_and_beside_labels():
    tiles = np.zeros((2, 3, 8, 8, 3), dtype=np.uint8)
    tiles[1, 2] = 255
    grid = labelled_grid(tiles, ["row a", "row b"], ["x", "y", "z"], tile_px=32, gap_px=4)
    assert grid.dtype == np.uint8 and grid.shape[2] == 3
    height, width = grid.shape[:2]
    # the white tile is the bottom-right one (tiles end one gap before the right and bottom edges)
    assert (grid[height - 4 - 32:height - 4, width - 4 - 32:width - 4] == 255).all()
    assert (grid[height - 4 - 32:height - 4, width - 2 * (4 + 32):width - 4 - 32 - 4] == 0).all()


def test_generation_from_a_mindvis_finetuned_checkpoint(tmp_path):
    """stage_b.finetuned: the release file is read directly (its fmri_encoder.pth beside it, as released)."""
    release = Path(__file__).parents[1] / "fixtures" / "release" / "stage_b" / "finetuned.pth"
    subject = write_task_subject(tmp_path, n_voxels=900, n_train=2, n_test=2, image_px=16)
    summary = generate_subject(release, subject, GenerationOutputs.in_dir(tmp_path / "eval"),
                               SamplingConfig("plms", 2, n_samples=1), seed=0, device="cpu")
    assert (summary["n_images"], summary["image_size"]) == (2, 256)  # the size it was fine-tuned at
    with np.load(tmp_path / "eval" / "samples.npz") as archive:
        assert archive["samples"].shape == (2, 1, 256, 256, 3) and archive["ground_truth"].shape == (2, 256, 256, 3)
