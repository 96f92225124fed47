"""Helpers for writing checkpoints in the MinD-Vis release layouts (as the reference code pickles them)."""

import sys
import textwrap

import pytest

CONFIG_MODULE = '''
class Config_MBM_fMRI:
    def __init__(self, **values):
        self.lr = 2.5e-4
        self.patch_size = 16
        self.mlp_ratio = 1.0
        self.__dict__.update(values)


class Config_Generative_Model:
    def __init__(self, **values):
        self.seed = 2022
        self.__dict__.update(values)


class NotAConfig:
    pass
'''


@pytest.fixture
def reference_config(tmp_path, monkeypatch):
    """An importable stand-in of the reference's `config` module, removed again after the test."""
    folder = tmp_path / "reference_code"
    folder.mkdir()
    (folder / "config.py").write_text(textwrap.dedent(CONFIG_MODULE))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "config", raising=False)
    import config

    yield config
    sys.modules.pop("config", None)


