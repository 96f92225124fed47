"""Per-stage ceilings: the ceilings job's images (first stage, class-conditioned LDM) and their metrics.json scores."""

import json

import numpy as np
import pytest
import torch

from mindvis.checkpoints import save_stage_b
from mindvis.checkpoints.label2img import load_pretrained_ldm
from mindvis.config.evaluation import EvaluationConfig, MetricWeightsConfig
from mindvis.config.stage_b import SamplingConfig
from mindvis.errors import InputDataError
from mindvis.evaluation.ceilings import (
    first_stage_reconstructions,
    read_ceiling_images,
    stimulus_wnid,
    write_ceiling_images,
)
from mindvis.evaluation.evaluate import EvaluationOutputs, evaluate_subject
from mindvis.evaluation.generation import GenerationOutputs, generate_subject
from mindvis.models.ldm import assemble_fmri_ldm
from mindvis.models.mbm import FmriEncoder, MbmArchitecture
from tests.evaluation.conftest import TEST_CLASSIFIER_ARCH
from tests.stage_b_helpers import write_pretrained_ldm, write_task_subject

SAMPLING = SamplingConfig(scheduler="ddim", steps=2, n_samples=2, batch_size=3)
# BOLD5000-style ImageNet file names: the first two are of LDM classes 1 and 3, the last of none of its classes.
TEST_IDS = ["n90000011_17.JPEG", "n90000013_2.JPEG", "n01440764_5.JPEG"]
CLASS_INDEX = {str(c): [f"n9000001{c}", f"class_{c}"] for c in range(5)}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A label2img LDM with a class index, a Stage B model made from it, a subject and its generated samples."""
    root = tmp_path_factory.mktemp("ceilings")
    ldm_dir = write_pretrained_ldm(root / "ldm", n_classes=5)
    (ldm_dir / "class_index.json").write_text(json.dumps(CLASS_INDEX))
    ldm = load_pretrained_ldm(ldm_dir)
    torch.manual_seed(0)
    encoder = FmriEncoder(MbmArchitecture(num_voxels=64, patch_size=16, embed_dim=32, depth=1, num_heads=2,
                                          decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2))
    stage_b = save_stage_b(assemble_fmri_ldm(ldm.architecture, ldm.unet, ldm.vqvae, encoder), root / "stage_b")
    subject = write_task_subject(root, dataset="BOLD5000", subject="CSI1", n_train=6, test_ids=TEST_IDS)
    eval_dir = root / "eval"
    generate_subject(stage_b, subject, GenerationOutputs.in_dir(eval_dir), SAMPLING, seed=1, device="cpu")
    return {"ldm": ldm_dir, "stage_b": stage_b, "subject": subject, "eval": eval_dir, "root": root}


def test_first_stage_decodes_the_quantised_encoding(chain):
    ldm = load_pretrained_ldm(chain["ldm"])
    images = np.load(chain["eval"] / "samples.npz")["ground_truth"]
    recon = first_stage_reconstructions(ldm.vqvae, images)
    assert recon.shape == images.shape and recon.dtype == np.uint8
    with torch.no_grad():  # generation decodes quantised latents: so must the ceiling
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
        expected = ldm.vqvae.decode(ldm.vqvae.encode(x).latents).sample
    assert np.abs(recon.astype(int) - ((expected.clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()
                  ).max() <= 1


def test_ceiling_images_cover_the_ldm_classes_and_share_the_reconstructions_noise(chain, tmp_path):
    out = tmp_path / "ceilings.npz"
    summary = write_ceiling_images(chain["eval"] / "samples.npz", chain["subject"], chain["stage_b"], chain["ldm"],
                                   chain["ldm"] / "class_index.json", SAMPLING, seed=1, out_path=out, device="cpu")
    assert summary["n_class_conditioned"] == 2 and summary["skipped"] == {}
    stages, skipped = read_ceiling_images(out, n_test=3)
    assert skipped == {}
    rows, images = stages["class_conditioned"]
    assert rows.tolist() == [0, 1] and images.shape == (2, 2, 16, 16, 3)  # the third stimulus' class is not the LDM's
    assert stages["first_stage"][1].shape == (3, 1, 16, 16, 3)
    again = tmp_path / "again.npz"
    write_ceiling_images(chain["eval"] / "samples.npz", chain["subject"], chain["stage_b"], chain["ldm"],
                         chain["ldm"] / "class_index.json", SAMPLING, seed=1, out_path=again, device="cpu")
    assert np.array_equal(read_ceiling_images(again, 3)[0]["class_conditioned"][1], images)  # seeded


def test_without_ldm_or_class_index_the_class_conditioned_ceiling_is_skipped_with_the_reason(chain, tmp_path):
    no_ldm = write_ceiling_images(chain["eval"] / "samples.npz", chain["subject"], chain["stage_b"], None, None,
                                  SAMPLING, seed=1, out_path=tmp_path / "a.npz", device="cpu")
    assert "no pretrained LDM" in no_ldm["skipped"]["class_conditioned"]
    no_index = write_ceiling_images(chain["eval"] / "samples.npz", chain["subject"], chain["stage_b"], chain["ldm"],
                                    None, SAMPLING, seed=1, out_path=tmp_path / "b.npz", device="cpu")
    assert "evaluation.ldm_class_index" in no_index["skipped"]["class_conditioned"]
    stages, skipped = read_ceiling_images(tmp_path / "b.npz", n_test=3)
    assert set(stages) == {"first_stage"} and set(skipped) == {"class_conditioned"}


def test_a_ceilings_file_of_other_samples_is_refused(chain, tmp_path):
    out = tmp_path / "ceilings.npz"
    write_ceiling_images(chain["eval"] / "samples.npz", chain["subject"], chain["stage_b"], None, None, SAMPLING,
                         seed=1, out_path=out, device="cpu")
    with pytest.raises(InputDataError, match="do not match the generated samples"):
        read_ceiling_images(out, n_test=5)
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(InputDataError, match="rerun the ceilings rule"):
        read_ceiling_images(tmp_path / "broken.npz", n_test=3)


def test_identity_first_stage_scores_as_the_ground_truth_and_metrics_json_has_every_stage(chain, tmp_path,
                                                                                         metric_weight_files):
    """An identity-like first stage (decode(encode(x)) = x) must score exactly as the ground-truth row."""
    generated = np.load(chain["eval"] / "samples.npz")
    ceilings = tmp_path / "ceilings.npz"
    conditioned = generated["samples"][:2]
    np.savez(ceilings, first_stage=generated["ground_truth"][:, None], class_conditioned=conditioned,
             class_rows=np.array([0, 1]), skipped=json.dumps({}))
    cfg = EvaluationConfig(weights=MetricWeightsConfig(classifier=str(metric_weight_files["classifier"])),
                           classifier_arch=TEST_CLASSIFIER_ARCH, n_way=10, n_trials=50, pixel_metric_px=16,
                           device="cpu")
    document = evaluate_subject(chain["eval"] / "samples.npz", chain["subject"],
                                EvaluationOutputs.in_dir(tmp_path / "out"), cfg, dataset="BOLD5000", subject="CSI1",
                                ceilings_npz=ceilings)
    section = document["ceilings"]
    assert list(section) == ["ground_truth", "first_stage", "class_conditioned", "mindvis", "skipped"]
    assert section["ground_truth"]["top1_nway_mean"] == 1.0 and section["ground_truth"]["pixcorr"] == pytest.approx(1)
    assert section["first_stage"] == section["ground_truth"]
    assert section["class_conditioned"]["n_images"] == 2
    assert section["mindvis"]["pixcorr"] == pytest.approx(document["mindvis"]["pixcorr"])
    assert section["mindvis"]["top1_nway_mean"] == pytest.approx(document["mindvis"]["top1_nway_mean"])
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written["ceilings"] == json.loads(json.dumps(section))


@pytest.mark.parametrize(("stimulus_id", "wnid", "expected"), [
    ("n01440764_10026.JPEG", None, "n01440764"), ("COCO_train2014_000000000009.jpg", None, None),
    ("1518878.005958", "n01518878", "n01518878"), ("airplane1.jpg", None, None)])
def test_stimulus_wnid_from_the_god_column_or_the_imagenet_file_name(stimulus_id, wnid, expected):
    assert stimulus_wnid(stimulus_id, wnid) == expected
