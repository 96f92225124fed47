"""Small demo configurations (seconds to generate) for the demo tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from mindvis.config.data import DemoBold5000Config, DemoDataConfig, DemoGodConfig, DemoHcpConfig, DemoNsdConfig


def small_config(root: Path, seed: int = 0) -> DemoDataConfig:
    """A demo config with every dataset shrunk to the minimum that still has GOD's, BOLD5000's and NSD's structure."""
    return DemoDataConfig(
        root=root,
        seed=seed,
        god_subjects=("sbj_3",),
        bold5000_subjects=("CSI1",),
        hcp_subjects=("100206",),
        nsd_subjects=("subj01",),
        god=DemoGodConfig(n_train_categories=94, images_per_train_category=2, n_test_categories=6, test_repeats=3,
                          image_size_px=32, v1_voxels=20, v2_voxels=16, v3_voxels=12, v4_voxels=10, loc_voxels=12,
                          ffa_voxels=6, ppa_voxels=6, hvc_other_voxels=5),
        bold5000=DemoBold5000Config(sessions=2, runs_per_session=2, trials_per_run=9, n_repeated_stimuli=4,
                                    repeats_per_stimulus=3, image_size_px=48, early_vis_voxels=12, loc_voxels=8,
                                    opa_voxels=4, ppa_voxels=5, rsc_voxels=3),
        hcp=DemoHcpConfig(frames=30),
        nsd=DemoNsdConfig(sessions=3, trials_per_session=40, n_shared_images=8, repeats=3, grid=(14, 16, 12),
                          roi_voxels=240, image_size_px=48),
    )


@pytest.fixture
def small_cfg(tmp_path: Path) -> DemoDataConfig:
    return small_config(tmp_path / "demo")


@pytest.fixture(scope="session")
def make_small_config():
    """`small_config` for fixtures of a wider scope than a test."""
    return small_config
