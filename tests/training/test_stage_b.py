"""Stage B training: the trainable split, one optimisation step, the job end to end, resume after a kill."""

import dataclasses
import sys
import textwrap

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

import mindvis.config as config_module
from mindvis.checkpoints import load_stage_b
from mindvis.data.contract import read_subject
from mindvis.data.pairs import FmriImagePairs, train_rows
from mindvis.errors import CheckpointError, ConfigError
from mindvis.tracking import open_job_run_for_tests
from mindvis.training.common import per_dataset
from mindvis.training.stage_b import StageBSystem, build_stage_b_model, pixel_correlation, train_stage_b
from tests.killed_jobs import kill_after_first_checkpoint, rerun_to_completion
from tests.stage_b_helpers import write_pretrained_ldm, write_stage_a2, write_task_subject


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage_b_inputs")
    return {"subject": write_task_subject(root, n_voxels=50, n_train=16, n_test=2, image_px=16),
            "encoder": write_stage_a2(root / "stage_a2"), "ldm": write_pretrained_ldm(root / "ldm")}


def stage_b_config(**training):
    settings = {"epochs": 2, "batch_size": {"GOD": 4}, "val_items": 4, "val_every_n_epochs": 1, "val_steps": 2,
                "checkpoint_every_n_steps": 2, "learning_rate": 1e-3, **training}
    return config_module.resolve({"demo": True, "preprocess": {"image_size": 16}, "stage_b": {"training": settings}})


def test_trainable_split_is_the_conditioning_stage_and_cross_attention(inputs):
    model = build_stage_b_model(inputs["encoder"], inputs["ldm"], image_size=16)
    system = StageBSystem(model, lr=1e-3, weight_decay=0.01, val_scheduler="ddim", val_steps=2, seed=0)
    names = set(system.trainable)
    assert {n for n in names if n.startswith("model.conditioner.encoder.")}  # the whole fMRI encoder
    assert "model.conditioner.mapper.dim_mapper.weight" in names and "model.time_head.projection.weight" in names
    unet = {n for n in names if n.startswith("model.unet.")}
    assert unet and all(".attn2." in n or ".norm2." in n for n in unet)
    assert not any(".resnets." in n for n in unet)  # ResNet norm2 layers stay frozen
    assert not any(n.startswith("model.vqvae.") for n in names)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert "unet.conv_in.weight" in frozen and "vqvae.quantize.embedding.weight" in frozen


def test_one_step_changes_only_trainable_tensors(inputs):
    model = build_stage_b_model(inputs["encoder"], inputs["ldm"], image_size=16)
    system = StageBSystem(model, lr=1e-2, weight_decay=0.01, val_scheduler="ddim", val_steps=2, seed=0).train()
    pairs = FmriImagePairs(inputs["subject"], np.arange(4), 64, 16, 16, crop_probability=0.5, crop_ratio=0.2)
    batch = {"fmri": torch.stack([pairs[i]["fmri"] for i in range(4)]),
             "image": torch.stack([pairs[i]["image"] for i in range(4)])}
    before = {k: v.clone() for k, v in system.state_dict().items()}
    optimizer = system.configure_optimizers()
    loss = model.training_loss(batch["image"], batch["fmri"], generator=torch.Generator().manual_seed(0))
    loss.backward()
    optimizer.step()
    changed = {k for k, v in system.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and changed <= set(system.trainable)
    assert {"model.conditioner.mapper.dim_mapper.weight", "model.time_head.projection.weight",
            "model.conditioner.encoder.blocks.0.attn.qkv.weight"} <= changed
    assert any(".attn2.to_k." in k for k in changed)


def test_class_mean_start_is_the_pretrained_ldm_told_the_mean_class(inputs):
    """With conditioning_init class_mean, Stage B starts from the label2img model given its average class: every
    context token at the class table's mean (plus a small fMRI part) and nothing added to the time embedding."""
    from torch import nn

    from mindvis.checkpoints.label2img import load_pretrained_ldm
    from mindvis.models.ldm import ClassConditionedLdm

    model = build_stage_b_model(inputs["encoder"], inputs["ldm"], image_size=16, conditioning_init="class_mean")
    table = load_pretrained_ldm(inputs["ldm"]).class_embedding
    fmri = torch.randn(3, 50)
    with torch.no_grad():
        context, time_cond = model.condition(fmri)
        assert torch.allclose(context, context[:, :1].expand_as(context), atol=1e-6)  # 77 equal tokens
        assert not torch.allclose(context[0], context[1])  # still a function of the fMRI
        assert torch.equal(time_cond, torch.zeros_like(time_cond))
        model.conditioner.mapper.start_at(table.mean(0), fmri_scale=0.0)  # the fMRI part off: exactly the class
        x_t, t = torch.randn(3, *model.latent_shape), torch.tensor([10, 500, 900])
        mean_class = ClassConditionedLdm(model.architecture, model.unet, nn.Embedding.from_pretrained(table.mean(0)[None]))
        expected = mean_class.denoise(x_t, t, *mean_class.condition(torch.zeros(3, dtype=torch.long)))
        assert torch.allclose(model.predict_noise(x_t, t, fmri), expected, atol=1e-5)
    reference = build_stage_b_model(inputs["encoder"], inputs["ldm"], image_size=16)
    assert reference.time_head(reference.conditioner(fmri)).abs().sum() > 0  # the reference start differs


def test_class_mean_start_needs_a_class_table(inputs, tmp_path):
    import shutil

    from mindvis.checkpoints.release_ldm import CLASS_EMBEDDING_KEY

    ldm = shutil.copytree(inputs["ldm"], tmp_path / "ldm")
    checkpoint = torch.load(ldm / "model.ckpt", weights_only=True)
    del checkpoint["state_dict"][CLASS_EMBEDDING_KEY]
    torch.save(checkpoint, ldm / "model.ckpt")
    with pytest.raises(ConfigError, match="no class table") as error:
        build_stage_b_model(inputs["encoder"], ldm, image_size=16, conditioning_init="class_mean")
    assert "conditioning_init: reference" in str(error.value)


def test_unet_learning_rate_tunes_the_cross_attention_at_its_own_rate(inputs):
    model = build_stage_b_model(inputs["encoder"], inputs["ldm"], image_size=16)
    system = StageBSystem(model, lr=1e-2, unet_lr=0.0, weight_decay=0.01, val_scheduler="ddim", val_steps=2,
                          seed=0).train()
    pairs = FmriImagePairs(inputs["subject"], np.arange(4), 64, 16, 16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = system.configure_optimizers()
    model.training_loss(torch.stack([pairs[i]["image"] for i in range(4)]),
                        torch.stack([pairs[i]["fmri"] for i in range(4)]),
                        generator=torch.Generator().manual_seed(0)).backward()
    optimizer.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert "conditioner.mapper.dim_mapper.weight" in changed
    assert not any(k.startswith("unet.") for k in changed)  # rate 0: the pretrained cross-attention stays
    assert [group["lr"] for group in optimizer.param_groups] == [1e-2, 0.0]


def test_checkpoints_hold_only_trainable_tensors(inputs):
    model = build_stage_b_model(inputs["encoder"], inputs["ldm"], image_size=16)
    system = StageBSystem(model, lr=1e-3, weight_decay=0.01, val_scheduler="ddim", val_steps=2, seed=0)
    checkpoint = {"state_dict": system.state_dict()}
    system.on_save_checkpoint(checkpoint)
    assert set(checkpoint["state_dict"]) == set(system.trainable)
    del checkpoint["state_dict"][system.trainable[0]]
    with pytest.raises(CheckpointError, match="lacks trainable"):
        system.on_load_checkpoint(checkpoint)


def test_pixel_correlation():
    a = torch.rand(3, 8, 8, 3)
    assert torch.allclose(pixel_correlation(a, 2 * a + 1), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(pixel_correlation(a, -a), -torch.ones(3, dtype=torch.float64))


def test_stage_b_trains_validates_and_writes_the_own_format(inputs, tmp_path):
    cfg = stage_b_config(keep="best", unet_learning_rate=1e-3)
    out, resume = tmp_path / "stage_b", tmp_path / ".resume"
    with open_job_run_for_tests(tmp_path / "mlruns") as run:
        run.target = dataclasses.replace(run.target, log_every_n_steps=1)
        summary = train_stage_b(inputs["subject"], inputs["encoder"], inputs["ldm"], out, cfg.stage_b, cfg.trainer,
                                resume, run=run, dataset="GOD")
    assert (summary["n_train"], summary["n_val"], summary["image_size"]) == (12, 4, 16)
    assert summary["global_step"] == 2 * 3  # 12 pairs / batch 4, 2 epochs
    assert summary["best_val_pixel_corr"] is not None and summary["kept"] == "best"
    assert 0 < summary["trainable_parameters"] < summary["parameters"]
    assert not resume.exists()  # resume state cleared after success
    model = load_stage_b(out)
    assert model.architecture.image_size == 16 and model.conditioner.encoder.arch.num_voxels == 64
    trained = model.state_dict()
    initial = build_stage_b_model(inputs["encoder"], inputs["ldm"], image_size=16).state_dict()
    assert torch.equal(trained["unet.conv_in.weight"], initial["unet.conv_in.weight"])  # frozen
    attn2 = next(k for k in trained if ".attn2.to_k." in k)
    assert not torch.equal(trained[attn2], initial[attn2])

    client = MlflowClient(tracking_uri=run.target.uri)
    metrics = client.get_run(run.run_id).data.metrics
    assert {"train/loss", "val/pixel_corr", "train/samples_per_s", "global_step"} <= set(metrics)
    grids = [a.path for a in client.list_artifacts(run.run_id, "validation")]
    assert len(grids) == 2 and all(p.endswith(".png") for p in grids)  # one per validation (every epoch)


def test_keep_last_writes_the_final_weights_and_still_validates(inputs, tmp_path):
    """keep: last (the demo preset) writes the weights of the last step; validation grids are still logged."""
    cfg = stage_b_config(keep="last", epochs=1)
    with open_job_run_for_tests(tmp_path / "mlruns") as run:
        summary = train_stage_b(inputs["subject"], inputs["encoder"], inputs["ldm"], tmp_path / "last", cfg.stage_b,
                                cfg.trainer, tmp_path / ".resume", run=run, dataset="GOD")
    assert summary["kept"] == "last" and summary["best_val_pixel_corr"] is None
    assert [a.path for a in MlflowClient(tracking_uri=run.target.uri).list_artifacts(run.run_id, "validation")]
    cfg = stage_b_config(keep="last", epochs=2)  # same seed: one more epoch must change the written weights
    train_stage_b(inputs["subject"], inputs["encoder"], inputs["ldm"], tmp_path / "last2", cfg.stage_b, cfg.trainer,
                  tmp_path / ".resume2", dataset="GOD")
    one, two = load_stage_b(tmp_path / "last").state_dict(), load_stage_b(tmp_path / "last2").state_dict()
    assert not torch.equal(one["conditioner.mapper.dim_mapper.weight"], two["conditioner.mapper.dim_mapper.weight"])


def test_held_out_pairs_are_training_rows_never_test_rows(inputs):
    subject = read_subject(inputs["subject"])
    assert set(subject.samples["split"].iloc[train_rows(subject)]) == {"train"}


def test_configuration_errors(inputs, tmp_path):
    other = write_task_subject(tmp_path, dataset="THINGS", subject="sub-01", n_train=4)
    cfg = stage_b_config()
    with pytest.raises(ConfigError, match="batch size"):
        train_stage_b(other, inputs["encoder"], inputs["ldm"], tmp_path / "o", cfg.stage_b, cfg.trainer, tmp_path / "r",
                      dataset="THINGS")
    with pytest.raises(ConfigError, match="no epoch count for this dataset") as error:
        per_dataset({"GOD": 5}, "THINGS", "stage_b.training.epochs", "epoch count")
    assert "add THINGS: <epoch count> under stage_b.training.epochs" in str(error.value)
    assert per_dataset(7, "THINGS", "stage_b.training.epochs", "epoch count") == 7
    cfg = stage_b_config(val_items=16)
    with pytest.raises(ConfigError, match="val_items"):
        train_stage_b(inputs["subject"], inputs["encoder"], inputs["ldm"], tmp_path / "o", cfg.stage_b, cfg.trainer,
                      tmp_path / "r", dataset="GOD")
    assert not (tmp_path / "o").exists()


RUN_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    import mindvis.config as config_module
    from mindvis.training.stage_b import train_stage_b
    torch.set_num_threads(1)
    subject, encoder, ldm, out, resume = sys.argv[1:]
    cfg = config_module.resolve({"demo": True, "preprocess": {"image_size": 16}, "stage_b": {"training": {
        "epochs": 12, "batch_size": {"GOD": 2}, "val_items": 0, "checkpoint_every_n_steps": 3}}})
    summary = train_stage_b(subject, encoder, ldm, out, cfg.stage_b, cfg.trainer, resume, dataset="GOD")
    print("SUMMARY", summary["resumed_from_step"], summary["global_step"])
""")


def test_resume_after_a_kill_continues_from_the_saved_step(inputs, tmp_path):
    out, resume = tmp_path / "out", tmp_path / "resume"
    command = [sys.executable, "-c", RUN_SCRIPT, str(inputs["subject"]), str(inputs["encoder"]), str(inputs["ldm"]),
               str(out), str(resume)]
    checkpoint = kill_after_first_checkpoint(command, resume, timeout_s=180)
    assert not out.exists()  # nothing half-written
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert saved["global_step"] > 0
    assert not any(k.startswith("model.vqvae.") for k in saved["state_dict"])  # trainable tensors only

    stdout = rerun_to_completion(command)
    resumed, final = map(int, stdout.split("SUMMARY")[1].split())
    assert resumed >= saved["global_step"] and resumed % 3 == 0
    assert final == 12 * 8  # 16 pairs / batch 2 = 8 steps per epoch: the schedule's total, not more
    assert (out / "stage_b.json").is_file() and not resume.exists()


def test_presets_fill_the_architecture_and_image_size_follows_the_stimuli():
    demo, paper = config_module.resolve({"demo": True}), config_module.resolve({"demo": False})
    assert demo.stage_b.architecture.image_size == demo.preprocess.image_size == 64
    assert demo.stage_b.architecture.latent_size == 16
    label2img = paper.stage_b.architecture
    assert label2img.image_size == paper.preprocess.image_size == 256
    assert (label2img.model_channels, label2img.channel_mult, label2img.vq_num_embeddings) == (192, (1, 2, 3, 5), 8192)
    assert paper.stage_b.training.learning_rate == 5.3e-5
    assert paper.stage_b.training.batch_size == {"GOD": 5, "BOLD5000": 25, "NSD": 25}
    assert (paper.stage_b.sampling.scheduler, paper.stage_b.sampling.steps) == ("plms", 250)
    fixed = config_module.resolve({"stage_b": {"architecture": {"image_size": 32}}})
    assert fixed.stage_b.architecture.image_size == 32 and fixed.preprocess.image_size == 64
