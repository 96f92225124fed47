"""Demo weights shipped with the repository, and how the workflow knows they still fit the config.

The default demo starts Stage B from `demo/pretrained/ldm` (CompVis label2img layout) and scores the n-way metric
with `demo/pretrained/classifier`, as a real run starts from the downloaded label2img LDM and an ImageNet
classifier. Both were made by this project's own rules (`ldm_pretrain`, `demo_classifier`) with a long budget
(`make demo-pretrains`, about an hour on 2 cores), on freshly drawn images of the demo categories, never the
datasets' images.

Each directory records what made it, its *recipe*: the demo generator's fingerprint (GENERATOR_VERSION, the demo seed
and the category table), the image size, the architecture and the training settings (`recipe.json` beside the LDM's
model.ckpt; the `recipe` entry of the classifier's config.json). `shipped_weights` compares that record with the
recipe the current config gives; on any difference (another demo seed or category count, a changed generator, other
sizes or budgets) the workflow trains its own through the rules instead, and says which keys differ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mindvis.config.data import DemoDataConfig
from mindvis.demo.images import GENERATOR_VERSION, category_table, generate_category_images
from mindvis.io import atomic_directory

log = logging.getLogger(__name__)

Kind = Literal["ldm", "classifier"]
RECIPE_FILE = "recipe.json"  # beside the LDM's model.ckpt + config.yaml
CLASS_INDEX_FILE = "class_index.json"  # beside them too: {"<class>": [wnid, name]}, as imagenet_class_index.json
CLASSIFIER_CONFIG = "config.json"
# ldm_pretrain settings that change only what is logged or how often it is saved, not the weights.
NOT_IN_RECIPE = frozenset({"sample_classes", "checkpoint_every_n_steps"})
PROBE_SEED = 777_000  # fresh-image seed of the generator probe (not one any training draws)


def generator_fingerprint(demo_cfg: DemoDataConfig) -> str:
    """sha256 over GENERATOR_VERSION, the demo seed and the category table (what every drawn image depends on).

    Exact and cheap (no image is drawn), so it is the same on every machine; that the version is bumped when the
    drawing changes is what `generator_probe` and its test guard.
    """
    table = [[c.wnid, c.name, c.split, round(c.hue, 6), round(c.texture_angle_rad, 6), round(c.texture_period, 6),
              c.dark_pattern] for c in category_table(demo_cfg)]
    text = json.dumps({"version": GENERATOR_VERSION, "seed": demo_cfg.seed, "categories": table}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def generator_probe(demo_cfg: DemoDataConfig, image_size: int) -> list[list[float]]:
    """Mean RGB (0..255) of one freshly drawn image per category: a coarse record of what the generator draws.

    Stored with the shipped weights; a test redraws it and fails when the drawing changed without a bump of
    GENERATOR_VERSION (which would leave the shipped weights looking current).
    """
    means = [generate_category_images(demo_cfg, c, 1, PROBE_SEED, image_size).reshape(-1, 3).mean(axis=0)
             for c in range(len(category_table(demo_cfg)))]
    return np.round(np.array(means, dtype=np.float64), 3).tolist()


def ldm_recipe(demo_cfg: DemoDataConfig, architecture: Any, settings: Any) -> dict[str, Any]:
    """What the demo LDM depends on: the generator, the resolved architecture (image size included), ldm_pretrain."""
    training = {k: v for k, v in asdict(settings).items() if k not in NOT_IN_RECIPE}
    return {"generator": generator_fingerprint(demo_cfg), "architecture": _plain(asdict(architecture)),
            "ldm_pretrain": _plain(training)}


def classifier_recipe(demo_cfg: DemoDataConfig, image_size: int, settings: Any) -> dict[str, Any]:
    """What the demo classifier depends on: the generator, the image size and its training settings."""
    return {"generator": generator_fingerprint(demo_cfg), "image_size": int(image_size),
            "demo_classifier": _plain(asdict(settings))}


def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples become lists, paths strings), so recipes compare equal after a round trip."""
    return json.loads(json.dumps(value, default=str))


def recipe_differences(expected: dict[str, Any], recorded: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two recipes (sorted; a key present in one only counts)."""
    keys = sorted(set(expected) | set(recorded))
    differences = []
    for key in keys:
        a, b = expected.get(key), recorded.get(key)
        path = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            differences += recipe_differences(a, b, path + ".")
        elif a != b:
            differences.append(path)
    return differences


def recorded_recipe(directory: str | Path, kind: Kind) -> dict[str, Any] | None:
    """The recipe a shipped (or rule-made) directory records, or None when it records none or is unreadable."""
    directory = Path(directory)
    try:
        if kind == "ldm":
            return json.loads((directory / RECIPE_FILE).read_text())["recipe"]
        return json.loads((directory / CLASSIFIER_CONFIG).read_text())["recipe"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def shipped_weights(directory: str | Path | None, kind: Kind, expected: dict[str, Any]) -> Path | None:
    """`directory` when it holds shipped weights of `kind` made by exactly the `expected` recipe, else None.

    A mismatch is logged as a warning naming the differing keys, so a user sees why the workflow trains its own.
    """
    if directory is None:
        return None
    directory = Path(directory)
    recorded = recorded_recipe(directory, kind)
    if recorded is None:
        log.warning("no usable shipped demo %s in %s (missing or without a recipe): the workflow trains one", kind,
                    directory)
        return None
    differences = recipe_differences(expected, recorded)
    if differences:
        log.warning("the shipped demo %s in %s was made by another recipe (differs in %s): the workflow trains "
                    "its own with the rule (make demo-pretrains remakes the shipped one)", kind, directory,
                    ", ".join(differences[:6]) + (" ..." if len(differences) > 6 else ""))
        return None
    return directory


def install(ldm_dir: str | Path, classifier_dir: str | Path, destination: str | Path) -> Path:
    """Copy rule outputs (an ldm_pretrain directory and a demo_classifier directory) to `destination`/{ldm,classifier}
    (atomically), as `make demo-pretrains` does to refresh the weights shipped with the repository."""
    destination = Path(destination)
    with atomic_directory(destination) as tmp:
        shutil.copytree(ldm_dir, tmp / "ldm")
        shutil.copytree(classifier_dir, tmp / "classifier")
    log.info("installed the demo pretrained weights in %s", destination)
    return destination


def main(argv: list[str] | None = None) -> None:
    """`python -m mindvis.demo.pretrained RESULTS_ROOT DESTINATION`: install a run's ldm_pretrain and
    demo_classifier outputs as the shipped demo weights (the last step of `make demo-pretrains`)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("results_root", type=Path, help="results_root of the run that trained them")
    parser.add_argument("destination", type=Path, help="where the shipped weights live (demo_data.pretrained)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sources = {"ldm": args.results_root / "ldm_pretrain", "classifier": args.results_root / "demo_classifier"}
    for kind, source in sources.items():
        if recorded_recipe(source, kind) is None:  # type: ignore[arg-type]
            raise SystemExit(f"{source}: no finished demo {kind} with a recipe there (run its rule first)")
    install(sources["ldm"], sources["classifier"], args.destination)


if __name__ == "__main__":
    main()
