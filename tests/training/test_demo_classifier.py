"""The demo's stand-in n-way classifier: learns the demo categories (above chance on fresh images), saves a file the
evaluation loads, logs its curve, is reproducible, and refuses files that are not demo classifiers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from mindvis.checkpoints.own_format import save_own_format
from mindvis.config.data import DemoDataConfig
from mindvis.config.evaluation import DemoClassifierConfig
from mindvis.config.runtime import TrainerConfig
from mindvis.demo.images import category_table, generate_category_images
from mindvis.errors import CheckpointError
from mindvis.tracking import open_job_run_for_tests
from mindvis.evaluation.demo_classifier import is_demo_classifier, load_demo_classifier
from mindvis.training.demo_classifier import train_demo_classifier

DEMO = DemoDataConfig()
CPU = TrainerConfig(accelerator="cpu")
IMAGE_PX = 32


@pytest.fixture(autouse=True)
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_classifier")
    with open_job_run_for_tests(root / "mlflow", rule="demo_classifier") as run:
        summary = train_demo_classifier(DEMO, IMAGE_PX, root / "out",
                                        DemoClassifierConfig(images_per_category=8, epochs=3, width=16, seed=0),
                                        CPU, root / "resume", run=run)
    return summary, root


def test_learns_the_categories_above_chance_on_fresh_images(trained):
    summary, root = trained
    loaded = load_demo_classifier(root / "out" / "model.safetensors")
    n_classes = len(category_table(DEMO))
    assert loaded.n_classes == n_classes == summary["n_classes"]
    # images it never saw (another image seed than training and validation), at the size it was trained for
    images = np.concatenate([generate_category_images(DEMO, c, 2, seed=4321, size_px=IMAGE_PX)
                             for c in range(n_classes)])
    labels = np.repeat(np.arange(n_classes), 2)
    accuracy = float((loaded.classifier.logits(images).argmax(axis=1) == labels).mean())
    assert accuracy > 4.0 / n_classes, f"accuracy {accuracy:.3f}, chance {1 / n_classes:.3f}"
    assert summary["val_accuracy"] > 4.0 / n_classes
    assert summary["n_way"] == 50 and summary["chance"] == pytest.approx(1 / n_classes)


def test_saved_in_the_own_format_with_class_names_and_preprocessing(trained):
    _, root = trained
    document = json.loads((root / "out" / "config.json").read_text())
    assert document["format"] == "mindvis" and document["kind"] == "demo_classifier"
    assert [c["name"] for c in document["classes"]] == [c.name for c in category_table(DEMO)]
    assert document["preprocess"]["input_px"] == IMAGE_PX
    assert is_demo_classifier(root / "out") and is_demo_classifier(root / "out" / "config.json")
    loaded = load_demo_classifier(root / "out")
    probabilities = loaded.classifier.probabilities(np.zeros((3, 64, 64, 3), np.uint8))  # any size is resized
    assert probabilities.shape == (3, loaded.n_classes)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_logs_the_accuracy_curve(trained):
    summary, root = trained
    client = MlflowClient(tracking_uri=f"sqlite:///{(root / 'mlflow' / 'mlflow.db').resolve()}")
    run = client.search_runs([client.get_experiment_by_name("mindvis").experiment_id])[0]
    history = client.get_metric_history(run.info.run_id, "val/accuracy")
    assert len(history) == 3 and history[-1].value == pytest.approx(summary["val_accuracy"])
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 3


def test_same_seed_same_weights(tmp_path):
    settings = DemoClassifierConfig(images_per_category=1, epochs=1, width=4, seed=3)
    train_demo_classifier(DEMO, 16, tmp_path / "a", settings, CPU, tmp_path / "resume-a")
    train_demo_classifier(DEMO, 16, tmp_path / "b", settings, CPU, tmp_path / "resume-b")
    a = load_demo_classifier(tmp_path / "a").classifier.network.module.state_dict()
    b = load_demo_classifier(tmp_path / "b").classifier.network.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_other_checkpoints_are_refused(tmp_path):
    save_own_format(tmp_path / "other", {"w": torch.zeros(2)}, "masked_brain_model", {})
    assert not is_demo_classifier(tmp_path / "other") and not is_demo_classifier(tmp_path / "nothing")
    with pytest.raises(CheckpointError, match="another kind"):
        load_demo_classifier(tmp_path / "other")
    save_own_format(tmp_path / "broken", {"w": torch.zeros(2)}, "demo_classifier",
                    {"architecture": {"num_classes": 3, "width": 4},
                     "preprocess": {"input_px": 16, "mean": [0, 0, 0], "std": [1, 1, 1]},
                     "classes": [{"name": n} for n in "abc"]})
    with pytest.raises(CheckpointError, match="do not fit"):
        load_demo_classifier(tmp_path / "broken")
