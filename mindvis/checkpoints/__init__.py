"""Checkpoints: mindvis's own format (safetensors + JSON) and import of the MinD-Vis release files.

Release `.pth` files are pickles; they are only ever read through `safe_pickle.load_release_checkpoint`, which
refuses any global outside an allow-list instead of running it.
"""

from mindvis.checkpoints.own_format import read_own_format, save_own_format
from mindvis.checkpoints.safe_pickle import ReferenceConfig, load_release_checkpoint
from mindvis.checkpoints.stage_a import (
    StageAWeights,
    load_fmri_encoder,
    load_mbm,
    load_weights_into,
    read_stage_a_weights,
    save_fmri_encoder,
    save_mbm,
)
from mindvis.checkpoints.release_ldm import PretrainedLdm, import_finetuned, load_label2img
from mindvis.checkpoints.stage_b import load_stage_b, save_stage_b

__all__ = [
    "PretrainedLdm",
    "import_finetuned",
    "load_label2img",
    "load_stage_b",
    "save_stage_b",
    "ReferenceConfig",
    "StageAWeights",
    "load_fmri_encoder",
    "load_mbm",
    "load_release_checkpoint",
    "load_weights_into",
    "read_own_format",
    "read_stage_a_weights",
    "save_fmri_encoder",
    "save_mbm",
    "save_own_format",
]
