"""Stage A training: data selection over the contract, schedule, the Lightning system, resume after a kill."""

import pickle
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

import mindvis.config as config_module
from mindvis.checkpoints import load_mbm
from mindvis.data.contract import PreprocessedSubject, Stimuli, write_subject
from mindvis.data.datasets import (
    FmriRows,
    model_voxel_count,
    read_selections,
    select_pretrain_rows,
    select_test_rows,
    split_indices,
)
from mindvis.errors import ContractError
from mindvis.models.mbm import MaskedBrainModel, MbmArchitecture, voxel_index
from mindvis.tracking import open_job_run_for_tests
from mindvis.training.common import warmup_cosine_factor, weight_decay_groups
from mindvis.training.runner import checkpoint_dir, resume_checkpoint
from mindvis.training.stage_a import train_stage_a_finetune, train_stage_a_pretrain
from tests.killed_jobs import kill_after_first_checkpoint, rerun_to_completion

FIXTURES = Path(__file__).parents[1] / "fixtures" / "release"


def write_fake_subject(root: Path, dataset: str, subject: str, n_voxels: int, splits: dict[str, int],
                       seed: int) -> Path:
    """A contract directory whose rows are smooth random mixtures of a few sinusoids (learnable) plus noise."""
    rng = np.random.default_rng(seed)
    n = sum(splits.values())
    t = np.linspace(0, 6 * np.pi, n_voxels)
    basis = np.stack([np.sin(k * t + k) for k in (1, 2, 3, 5)])
    fmri = (rng.normal(size=(n, 4)) @ basis + 0.1 * rng.normal(size=(n, n_voxels))).astype(np.float32)
    split = [name for name, count in splits.items() for _ in range(count)]
    samples = pd.DataFrame({
        "sample_id": np.arange(n), "split": split,
        "stimulus_id": [None if s == "pretrain" else "img0" for s in split], "category": None,
        "n_averaged": [35 if (s == "test" and i % 2) else 1 for i, s in enumerate(split)], "source": "synthetic"})
    voxels = pd.DataFrame({"roi": ["V1"] * n_voxels, "mean": 0.0, "std": 1.0})
    stimuli = None if dataset == "HCP" else Stimuli(np.zeros((1, 8, 8, 3), np.uint8), np.array(["img0"]))
    out = root / "preprocessed" / dataset / subject
    write_subject(out, PreprocessedSubject(samples, fmri, voxels, stimuli))
    return out


@pytest.fixture
def contract(tmp_path):
    """Two HCP subjects (150 voxels) and one GOD subject (170 voxels)."""
    return {
        "hcp": [write_fake_subject(tmp_path, "HCP", s, 150, {"pretrain": 48}, i)
                for i, s in enumerate(["100206", "100307"])],
        "god": write_fake_subject(tmp_path, "GOD", "sbj_3", 170, {"train": 32, "test": 16}, 7),
    }


def demo_config(**sections):
    return config_module.resolve({"demo": True, "stage_a": sections})


def test_pretrain_selection_mixes_god_train_rows_and_pads_like_the_reference(contract):
    inputs = [*contract["hcp"], contract["god"]]
    with_god = read_selections(inputs, lambda s, d: select_pretrain_rows(s, d, True))
    without = read_selections(inputs, lambda s, d: select_pretrain_rows(s, d, False))
    assert [len(s.rows) for s in with_god] == [32, 48, 48]  # sorted: GOD first
    assert [len(s.rows) for s in without] == [0, 48, 48]
    assert model_voxel_count(with_god, 16) == 176 and model_voxel_count(without, 16) == 160  # 150 -> 160
    dataset = FmriRows(with_god, num_voxels=176, patch_size=16)  # 170 -> 176 is the longest padded vector
    assert len(dataset) == 128
    directory, row = dataset.locate(40)
    item = dataset[40]
    raw = np.load(directory / "fmri.npy")[row]
    assert item.shape == (1, 176) and item.dtype == torch.float32
    np.testing.assert_array_equal(item[0].numpy(), raw[voxel_index(150, 176, 16)])
    # the dataset pickles (to workers / DDP processes) as paths and indices, not as the fMRI matrix
    assert len(pickle.dumps(dataset)) < 10_000
    assert isinstance(dataset._matrices[0], np.memmap)


def test_iterating_a_dataset_never_copies_the_fmri_matrix(tmp_path):
    """Rows are read from the memory map per item: Python-side allocations stay far below the matrix size."""
    subject = tmp_path / "preprocessed" / "HCP" / "big"
    n_rows, n_voxels = 20_000, 500
    samples = pd.DataFrame({"sample_id": np.arange(n_rows), "split": "pretrain", "stimulus_id": None,
                            "category": None, "n_averaged": np.ones(n_rows, np.int32), "source": "synthetic"})
    fmri = np.random.default_rng(0).standard_normal((n_rows, n_voxels), dtype=np.float32)
    write_subject(subject, PreprocessedSubject(samples, fmri, pd.DataFrame(
        {"roi": ["V1"] * n_voxels, "mean": 0.0, "std": 1.0}), None))
    del fmri
    tracemalloc.start()
    dataset = FmriRows(read_selections([subject], lambda s, d: select_pretrain_rows(s, d, False)), 512, 16)
    total = 0.0
    for batch in torch.utils.data.DataLoader(dataset, batch_size=500, shuffle=True):
        total += float(batch[:, 0, 0].sum())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    matrix_bytes = n_rows * n_voxels * 4
    assert peak < 0.2 * matrix_bytes, f"peak {peak / 2**20:.1f} MiB for a {matrix_bytes / 2**20:.1f} MiB matrix"


def test_finetune_selection_is_the_test_split_averaged_and_single(contract):
    (selection,) = read_selections([contract["god"]], select_test_rows)
    assert selection.rows.tolist() == list(range(32, 48))
    with pytest.raises(ContractError, match="no fMRI samples"):
        FmriRows(read_selections(contract["hcp"], select_test_rows), 160, 16)


def test_split_is_seeded_and_disjoint():
    train, val = split_indices(100, 0.1, seed=3)
    assert len(val) == 10 and not set(train) & set(val) and len(train) + len(val) == 100
    assert np.array_equal(split_indices(100, 0.1, seed=3)[1], val)
    assert len(split_indices(5, 0.01, seed=0)[1]) == 1
    assert len(split_indices(5, 0.0, seed=0)[1]) == 0


def test_schedule_warms_up_linearly_then_half_cosine_to_min():
    factors = [warmup_cosine_factor(s, warmup_steps=10, total_steps=110, min_ratio=0.1) for s in range(111)]
    assert factors[0] == 0 and factors[5] == pytest.approx(0.5) and factors[10] == pytest.approx(1.0)
    assert factors[60] == pytest.approx(0.55) and factors[110] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))


def test_weight_decay_groups_match_the_reference_optimizer():
    """The reference fixture's AdamW has 87 parameters without decay and 45 with (MANIFEST.json)."""
    arch = MbmArchitecture(num_voxels=2048, patch_size=16, embed_dim=64, depth=2, num_heads=4,
                           decoder_embed_dim=32, decoder_depth=8, decoder_num_heads=4)
    no_decay, decay = weight_decay_groups(MaskedBrainModel(arch), 0.05)
    assert (len(no_decay["params"]), len(decay["params"])) == (87, 45)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0


def test_pretrain_then_finetune_write_own_format_and_log_to_mlflow(contract, tmp_path):
    # the reference's 16-voxel patches (the demo preset's 320 would leave these tiny inputs one or two tokens)
    cfg = demo_config(model={"patch_size": 16}, pretrain={"epochs": 10, "batch_size": 16, "val_fraction": 0.1,
                                                          "lr": 2e-3}, finetune={"epochs": 2})
    out = tmp_path / "stage_a" / "pretrain"
    with open_job_run_for_tests(tmp_path / "mlruns") as run:
        summary = train_stage_a_pretrain({"HCP": contract["hcp"], "GOD": [contract["god"]]}, out, cfg.stage_a,
                                         cfg.trainer, tmp_path / ".resume" / "a1", run=run)
    assert summary["n_train"] + summary["n_val"] == 128 and summary["num_voxels"] == 176
    assert summary["global_step"] == 10 * int(np.ceil(summary["n_train"] / 16))
    assert summary["best_val_loss"] is not None
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert not (tmp_path / ".resume" / "a1").exists()  # resume state cleared after success
    model = load_mbm(out)
    assert model.arch.num_voxels == 176 and model.arch.embed_dim == 64
    # training lowered the masked-patch loss on these data (same samples, same masks)
    dataset = FmriRows(read_selections(contract["hcp"], lambda s, d: select_pretrain_rows(s, d, False)), 176, 16)
    x = torch.stack([dataset[i] for i in range(32)])
    noise = torch.rand(32, 11, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert model(x, 0.75, noise).loss < 0.8 * MaskedBrainModel(model.arch).eval()(x, 0.75, noise).loss

    client = MlflowClient(tracking_uri=run.target.uri)
    logged = client.get_run(run.run_id).data
    assert "train/loss" in logged.metrics and "val/loss" in logged.metrics
    assert "train/samples_per_s" in logged.metrics and "train/lr" in logged.metrics
    artifacts = {a.path for a in client.list_artifacts(run.run_id)}
    assert {"model", "reconstructions"} <= artifacts
    assert any(a.path.endswith("final.png") for a in client.list_artifacts(run.run_id, "reconstructions"))

    tuned = tmp_path / "stage_a" / "finetune"
    summary = train_stage_a_finetune(contract["god"], out, tuned, cfg.stage_a, cfg.trainer,
                                     tmp_path / ".resume" / "a2", dataset="GOD")
    assert summary["n_train"] == 16 and summary["global_step"] == 2  # 16 test rows, GOD batch 16, 2 epochs
    assert not torch.equal(load_mbm(tuned).state_dict()["blocks.0.attn.qkv.weight"],
                           model.state_dict()["blocks.0.attn.qkv.weight"])


def test_finetune_from_a_release_checkpoint(tmp_path):
    subject = write_fake_subject(tmp_path, "BOLD5000", "CSI1", 1500, {"train": 8, "test": 8}, 3)
    cfg = demo_config(finetune={"epochs": 1})
    summary = train_stage_a_finetune(subject, FIXTURES / "stage_a" / "checkpoint.pth", tmp_path / "out",
                                     cfg.stage_a, cfg.trainer, tmp_path / "resume", dataset="BOLD5000")
    assert summary["num_voxels"] == 2048 and summary["global_step"] == 2  # BOLD5000 batch 4
    assert load_mbm(tmp_path / "out").arch.decoder_depth == 8


def test_resume_state_of_other_settings_is_discarded(tmp_path):
    assert resume_checkpoint(tmp_path / "resume", "job-a") is None  # nothing saved yet
    last = checkpoint_dir(tmp_path / "resume") / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"checkpoint of job-a")
    assert resume_checkpoint(tmp_path / "resume", "job-a") == last
    assert resume_checkpoint(tmp_path / "resume", "job-b") is None  # settings changed: start afresh
    assert not last.exists()


RUN_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    import mindvis.config as config_module
    from mindvis.training.stage_a import train_stage_a_pretrain
    cfg = config_module.resolve({"demo": True, "stage_a": {"pretrain": {
        "epochs": 20, "batch_size": 16, "val_fraction": 0.0, "checkpoint_every_n_steps": 4}}})
    inputs, out, resume = sys.argv[1:-2], Path(sys.argv[-2]), Path(sys.argv[-1])
    summary = train_stage_a_pretrain({"HCP": inputs}, out, cfg.stage_a, cfg.trainer, resume)
    print("SUMMARY", summary["resumed_from_step"], summary["global_step"])
""")


def test_resume_after_a_kill_continues_from_the_saved_step(contract, tmp_path):
    out, resume = tmp_path / "out", tmp_path / "resume"
    command = [sys.executable, "-c", RUN_SCRIPT, *map(str, contract["hcp"]), str(out), str(resume)]
    checkpoint = kill_after_first_checkpoint(command, resume, timeout_s=120)
    assert not out.exists()  # nothing half-written
    saved_step = torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"]
    assert saved_step > 0

    stdout = rerun_to_completion(command)
    resumed, final = map(int, stdout.split("SUMMARY")[1].split())
    assert resumed >= saved_step and resumed % 4 == 0
    assert final == 20 * 6  # 96 samples / batch 16 = 6 steps per epoch: the schedule's total, not more
    assert (out / "model.safetensors").is_file() and not resume.exists()
