"""What the evaluation job reads: the generation job's samples, the subject's ridge training pairs and the
n-way classifier.

Each reader checks what it reads against the others (sample rows against the subject, the classifier's classes
against evaluation.n_way) and raises InputDataError naming the file and the fix; scoring starts only once they fit.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mindvis.config.evaluation import EvaluationConfig
from mindvis.data.contract import read_subject
from mindvis.data.pairs import train_rows
from mindvis.devices import resolve_device
from mindvis.errors import InputDataError
from mindvis.evaluation.demo_classifier import is_demo_classifier, load_demo_classifier
from mindvis.evaluation.metrics import as_uint8_images, as_uint8_samples
from mindvis.evaluation.networks import ImageClassifier
from mindvis.io import load_npz

log = logging.getLogger(__name__)

SAMPLES_KEYS = ("samples", "ground_truth", "stimulus_id", "sample_id")


# ---------------------------------------------------------------------------------------- generated samples

@dataclass(frozen=True)
class GeneratedSamples:
    """The generation job's output (samples.npz).

    Attributes:
        samples: uint8 (N, K, H, W, 3), K generated images per test stimulus.
        ground_truth: uint8 (N, H, W, 3), the stimuli at the generated size.
        stimulus_id: str (N,).
        sample_id: int64 (N,), the fmri.npy row each test stimulus was generated from.
    """

    samples: np.ndarray
    ground_truth: np.ndarray
    stimulus_id: np.ndarray
    sample_id: np.ndarray


def read_samples(path: str | os.PathLike[str]) -> GeneratedSamples:
    """Read and check samples.npz (GeneratedSamples); InputDataError naming the file when it does not fit."""
    arrays = load_npz(path, SAMPLES_KEYS, "generated samples (samples.npz)")
    try:
        samples = as_uint8_samples(arrays["samples"], "samples")
        ground_truth = as_uint8_images(arrays["ground_truth"], "ground_truth")
    except InputDataError as exc:
        raise InputDataError(exc.problem, path=path, value=exc.value, expected=exc.expected,
                             hint="rerun the generate rule for this subject") from exc
    stimulus_id = np.asarray(arrays["stimulus_id"]).astype(str)
    sample_id = np.asarray(arrays["sample_id"])
    n = len(samples)
    if (ground_truth.shape != (n, *samples.shape[2:]) or stimulus_id.shape != (n,) or sample_id.shape != (n,)
            or not np.issubdtype(sample_id.dtype, np.integer)):
        raise InputDataError("samples.npz arrays do not pair up", path=path,
                             value={k: arrays[k].shape for k in SAMPLES_KEYS},
                             expected="samples (N, K, H, W, 3), ground_truth (N, H, W, 3), stimulus_id (N,), "
                                      "integer sample_id (N,)", hint="rerun the generate rule for this subject")
    return GeneratedSamples(samples, ground_truth, stimulus_id, sample_id.astype(np.int64))


# ------------------------------------------------------------------------------------------- ridge training

@dataclass(frozen=True)
class RidgeData:
    """What the ridge baselines are fitted on and applied to.

    Attributes:
        train_fmri: float32 (N_train, V), the subject's train rows that show a stimulus.
        train_images: uint8 (N_train, H, W, 3), their stimuli at the generated size.
        groups: str (N_train,), their stimulus ids (cross-validation keeps repeats of an image together).
        test_fmri: float32 (N, V), the rows the samples were generated from.
    """

    train_fmri: np.ndarray
    train_images: np.ndarray
    groups: np.ndarray
    test_fmri: np.ndarray


def ridge_inputs(subject_dir: str | os.PathLike[str], generated: GeneratedSamples) -> RidgeData:
    """The subject's training pairs and the test fMRI of the generated samples, checked against samples.npz."""
    subject = read_subject(subject_dir, mmap=True)
    if subject.stimuli is None:
        raise InputDataError("the subject has no stimulus images", path=subject_dir,
                             expected="a GOD / BOLD5000 subject directory with stimuli.npz")
    n_rows = len(subject.samples)
    if generated.sample_id.min(initial=0) < 0 or generated.sample_id.max(initial=0) >= n_rows:
        raise InputDataError("samples.npz names fMRI rows the subject does not have", path=subject_dir,
                             value=generated.sample_id.tolist()[:5], expected=f"rows 0..{n_rows - 1}",
                             hint="were the samples generated from another subject's directory?")
    subject_ids = subject.samples["stimulus_id"].iloc[generated.sample_id].astype(str).to_numpy()
    mismatched = np.flatnonzero(subject_ids != generated.stimulus_id)
    if len(mismatched):
        i = int(mismatched[0])
        raise InputDataError("samples.npz stimulus ids do not match the subject's rows", path=subject_dir,
                             value={"row": int(generated.sample_id[i]), "samples.npz": generated.stimulus_id[i],
                                    "samples.parquet": subject_ids[i]},
                             expected="the generation job's output for this subject",
                             hint="rerun the generate rule after preprocessing changed")
    rows = train_rows(subject)
    groups = subject.samples["stimulus_id"].iloc[rows].astype(str).to_numpy()
    images = subject.stimuli.images_of(groups, generated.ground_truth.shape[1])  # as generation's ground truth
    return RidgeData(train_fmri=np.asarray(subject.fmri[rows], dtype=np.float32), train_images=images,
                     groups=groups, test_fmri=np.asarray(subject.fmri[generated.sample_id], dtype=np.float32))


# ----------------------------------------------------------------------------------------------- classifier

@dataclass(frozen=True)
class ClassifierChoice:
    """The n-way classifier of this evaluation (None when there is none), its class names and description."""

    classifier: ImageClassifier | None
    class_names: tuple[str, ...] | None
    description: str | None


def classifier_config(cfg: EvaluationConfig, classifier_path: str | os.PathLike[str] | None
                      ) -> tuple[EvaluationConfig, Path | None]:
    """(config, demo classifier directory or None) for an n-way classifier given by path.

    A torchvision state dict (a user's classifier of cfg.classifier_arch) becomes cfg.weights.classifier, so
    check_weights / load_networks treat it as configured; a demo_classifier directory is returned separately (it
    has its own loader) with weights.classifier cleared; None keeps cfg as it is.
    """
    if classifier_path is None:
        return cfg, None
    if is_demo_classifier(classifier_path):
        return dataclasses.replace(cfg, weights=dataclasses.replace(cfg.weights, classifier=None)), Path(
            classifier_path)
    return dataclasses.replace(cfg, weights=dataclasses.replace(cfg.weights, classifier=Path(classifier_path))), None


def load_classifier(cfg: EvaluationConfig, demo_path: Path | None, networks_classifier: ImageClassifier | None
                    ) -> ClassifierChoice:
    """The n-way classifier: the demo classifier at `demo_path`, else the one load_networks(cfg) built, else none."""
    if demo_path is not None:
        loaded = load_demo_classifier(demo_path, resolve_device(cfg.device), cfg.batch_size)
        return ClassifierChoice(loaded.classifier, loaded.class_names,
                                f"demo classifier {demo_path} ({loaded.n_classes} classes)")
    if networks_classifier is not None:
        return ClassifierChoice(networks_classifier, None,
                                f"{cfg.classifier_arch} from {cfg.weights.classifier}")
    return ClassifierChoice(None, None, None)


def effective_n_way(cfg: EvaluationConfig, classifier: ImageClassifier | None, probe: np.ndarray) -> int:
    """min(cfg.n_way, number of classes): the demo classifier has fewer classes than ImageNet's 1000.

    Args:
        probe: uint8 (M >= 1, H, W, 3) images; the first is classified to count the classifier's outputs.
    """
    if classifier is None:
        return cfg.n_way
    n_classes = classifier.logits(probe[:1]).shape[1]
    if n_classes < cfg.n_way:
        log.warning("evaluation.n_way %d > the classifier's %d classes: using %d-way", cfg.n_way, n_classes,
                    n_classes)
    return min(cfg.n_way, n_classes)
