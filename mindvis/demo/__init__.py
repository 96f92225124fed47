"""The embedded demo: deterministic synthetic raw data in the real datasets' layouts (under DemoDataConfig.root).

The same readers and preprocessing that serve real data run on it. What is written (see each module):
- GOD (mindvis.demo.god): `Kamitani/npz/` as the MinD-Vis release (images_256.npz, label csvs, class index,
  sbj_<n>.npz);
- BOLD5000 (mindvis.demo.bold5000): GLMsingle ROI betas, stimulus images, repeated-stimulus list, presentation lists;
- HCP (mindvis.demo.hcp): CIFTI-2 dense series of resting-state runs in the 91282-grayordinate layout;
- NSD (mindvis.demo.nsd): the release's experimental design (.mat), stimulus brick (.hdf5), nsdgeneral ROI volume and
  int16 single-trial betas volumes (.nii.gz) per session.
Images come from procedurally drawn categories (mindvis.demo.images), fMRI from a virtual visual cortex per subject
(mindvis.demo.cortex). The same config (seed included) always gives the same arrays.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from mindvis.config.data import DemoDataConfig
from mindvis.demo import bold5000, god, hcp, nsd
from mindvis.demo.images import Category, category_table, generate_category_images, n_categories
from mindvis.errors import ConfigError

__all__ = ["DATASETS", "Category", "category_table", "datasets_of", "expected_files", "generate_category_images",
           "n_categories", "synthesize"]

log = logging.getLogger(__name__)

_WRITERS = {"HCP": hcp, "GOD": god, "BOLD5000": bold5000, "NSD": nsd}
DATASETS: tuple[str, ...] = tuple(_WRITERS)
# The top folder of each dataset's raw layout (below the demo root, as below data_root).
TOP_FOLDERS: dict[str, str] = {"HCP": "HCP", "GOD": "Kamitani", "BOLD5000": "BOLD5000", "NSD": "NSD"}


def _modules(datasets: Sequence[str]) -> list:
    unknown = [d for d in datasets if d not in _WRITERS]
    if unknown:
        raise ConfigError("unknown dataset for the demo", path="datasets", value=unknown,
                          expected=f"a subset of {list(DATASETS)}")
    return [_WRITERS[d] for d in DATASETS if d in datasets]


def expected_files(cfg: DemoDataConfig, datasets: Sequence[str]) -> list[Path]:
    """Exactly the files `synthesize(cfg, datasets)` writes, computed from the config alone (nothing is generated)."""
    return [path for module in _modules(datasets) for path in module.files(cfg)]


def datasets_of(root: str | os.PathLike[str], files: Sequence[str | os.PathLike[str]]) -> list[str]:
    """The datasets (in DATASETS order) whose raw layout below `root` holds any of `files`.

    The demo_synthesize job learns what to write from its declared outputs, not from `datasets`: dropping a dataset
    from the config then leaves the other datasets' demo files (and all work built on them) as they are.
    """
    tops = set()
    for path in files:
        relative = Path(path).resolve().relative_to(Path(root).resolve())
        tops.add(relative.parts[0])
    return [dataset for dataset in DATASETS if TOP_FOLDERS[dataset] in tops]


def synthesize(cfg: DemoDataConfig, datasets: Sequence[str]) -> list[Path]:
    """Write the demo's raw files of `datasets` under cfg.root; files that already exist are kept as they are.

    Every file is written atomically. Returns the files written by this call.
    """
    written: list[Path] = []
    for module in _modules(datasets):
        written += module.write(cfg)
    log.info("demo data: wrote %d files under %s", len(written), cfg.root)
    return written
