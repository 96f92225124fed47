"""What the workflow will do, computed from the config alone: subjects, raw inputs and output paths per job.

Rules call these functions, so the DAG (`snakemake -n`) exists before any demo data does, and so the planning can be
tested without Snakemake. Reader modules are imported lazily: a dry run should not pay for what it does not use.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mindvis.config import Config
from mindvis.data.contract import TASK_DATASETS, contract_files, subject_dir
from mindvis.errors import ConfigError

SNAKEMAKE_RESOURCE_KEYS = ("gpu", "gpu_model", "mem_mb", "runtime", "cpus_per_task", "slurm_partition",
                           "slurm_account")


def share_checkout_with_jobs(checkout: str | os.PathLike[str]) -> None:
    """Put the workflow's checkout on PYTHONPATH of every job, so scripts import this mindvis in any environment."""
    current = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(checkout), current]))


def _reader(dataset: str) -> Any:
    if dataset == "HCP":
        from mindvis.data import hcp as reader
    elif dataset == "GOD":
        from mindvis.data import god as reader
    else:
        from mindvis.data import bold5000 as reader
    return reader


def _demo_subjects(cfg: Config, dataset: str) -> tuple[str, ...]:
    demo = cfg.demo_data
    return {"HCP": demo.hcp_subjects, "GOD": demo.god_subjects, "BOLD5000": demo.bold5000_subjects}[dataset]


def subjects(cfg: Config, dataset: str) -> list[str]:
    """Subjects of `dataset` to process: the configured list, else the demo's list, else every one found on disk."""
    if dataset not in cfg.datasets:
        return []
    chosen = cfg.subjects.get(dataset)
    if chosen is not None:
        if not chosen:
            raise ConfigError(f"empty subject list for {dataset}", path=f"subjects.{dataset}", value=[],
                              expected="null (all subjects) or a non-empty list",
                              hint=f"remove {dataset} from `datasets` to skip it")
        return list(chosen)
    if cfg.demo:
        return list(_demo_subjects(cfg, dataset))
    reader = _reader(dataset)
    if dataset == "HCP":
        found = reader.find_subjects(cfg.raw_root, cfg.preprocess.hcp.runs, cfg.preprocess.hcp.source)
    else:
        found = reader.find_subjects(cfg.raw_root)
    if not found:
        raise ConfigError(f"no {dataset} subjects found under data_root", path="data_root", value=str(cfg.raw_root),
                          expected=f"the {dataset} download layout below data_root (README, 'Raw inputs')",
                          hint=f"fix data_root, or drop {dataset} from `datasets`")
    return found


def demo_files(cfg: Config, datasets: tuple[str, ...] | list[str] | None = None) -> list[Path]:
    """Every raw file the demo_synthesize rule writes for `datasets` (default: the configured datasets)."""
    from mindvis.demo import expected_files

    return expected_files(cfg.demo_data, list(datasets or cfg.datasets))


def raw_inputs(cfg: Config, dataset: str, subject: str) -> list[Path]:
    """Raw files one preprocessing job reads (in demo mode: the demo files of that dataset, known before they exist)."""
    if cfg.demo:
        return demo_files(cfg, [dataset])
    reader = _reader(dataset)
    if dataset == "HCP":
        hcp = cfg.preprocess.hcp
        return reader.raw_files(cfg.raw_root, subject, hcp.runs, hcp.source)
    if dataset == "BOLD5000":
        return reader.raw_files(cfg.raw_root, subject, cfg.preprocess.bold5000.rois)
    return reader.raw_files(cfg.raw_root, subject)


def preprocessed_outputs(cfg: Config, dataset: str, subject: str = "{subject}") -> dict[str, str]:
    """Named contract files of one preprocessed subject (with a `{subject}` wildcard by default)."""
    folder = subject_dir(cfg.results_root, dataset, subject)
    return {Path(name).stem: str(folder / name) for name in contract_files(dataset)}


def targets(cfg: Config) -> list[tuple[str, str]]:
    """(dataset, subject) pairs that get Stage A2, Stage B and evaluation: the task datasets' subjects."""
    return [(ds, s) for ds in TASK_DATASETS if ds in cfg.datasets for s in subjects(cfg, ds)]


def resources(cfg: Config, rule: str) -> dict[str, Any]:
    """Snakemake `resources:` of `rule` from config (unset optional values omitted)."""
    res = cfg.resources_for(rule)
    values = {key: getattr(res, key) for key in SNAKEMAKE_RESOURCE_KEYS}
    if not res.gpu:
        values["gpu_model"] = None  # the SLURM executor would ask for `--gpus=<model>:0`
    return {key: value for key, value in values.items() if value is not None}


def training_resources(cfg: Config, rule: str) -> dict[str, Any]:
    """Resources of a Lightning training rule: GPU and node counts follow `trainer.devices` / `trainer.num_nodes`.

    When the rule asks for GPUs at all, it asks for `devices` of them per node on `num_nodes` nodes. On one node the
    job is one task and Lightning starts one process per device (mindvis.training.common.cluster_plugins); with
    `trainer.uses_srun` (several nodes) it asks for one task per process (mindvis.training.launch).
    """
    values = resources(cfg, rule)
    trainer = cfg.trainer
    if values.get("gpu", 0) > 0:
        values["gpu"] = trainer.world_size
    if trainer.uses_srun:
        # one SLURM task per training process (mindvis.training.launch starts them with srun); `mpi` makes the
        # executor run the job script once in the allocation instead of inside a one-task step
        values.update(mpi="srun", nodes=trainer.num_nodes)
        if trainer.devices > 1:
            values["tasks_per_node"] = trainer.devices
        else:
            values["tasks"] = trainer.world_size
        if values.get("gpu", 0) > 0:
            values["tasks_per_gpu"] = 1
    return values


def resume_dir(cfg: Config, rule: str, *parts: str) -> str:
    """Where a training rule keeps its resume state: outside the declared outputs, so a failed job's rerun resumes."""
    return str(Path(cfg.results_root, ".resume", rule, *parts))


def launch_dir(cfg: Config) -> Path:
    """Where multi-node training writes its srun call specs: under results_root, which every node must share."""
    return Path(cfg.results_root, ".launch")


def stage_a_pretrain_inputs(cfg: Config) -> list[str]:
    """fmri.npy + samples.parquet of every subject Stage A1 learns from (HCP, plus GOD train fMRI when enabled)."""
    datasets = ["HCP"] + (["GOD"] if cfg.stage_a.pretrain.include_god_train else [])
    files = []
    for dataset in datasets:
        for subject in subjects(cfg, dataset):
            outputs = preprocessed_outputs(cfg, dataset, subject)
            files += [outputs["samples"], outputs["fmri"]]
    if not files:
        raise ConfigError("Stage A1 has no data: HCP is not among the datasets and GOD training fMRI is disabled",
                          path="datasets", value=list(cfg.datasets),
                          expected="HCP in datasets, or stage_a.pretrain.include_god_train: true with GOD",
                          hint="or skip A1 with stage_a.pretrained: <released checkpoint>")
    return files


def stage_a_init(cfg: Config) -> str:
    """The checkpoint A2 starts from: `stage_a.pretrained` when set, else the A1 result."""
    if cfg.stage_a.pretrained is not None:
        return str(cfg.stage_a.pretrained)
    return str(Path(cfg.results_root, "stage_a", "pretrain", "model.safetensors"))


def trains_demo_ldm(cfg: Config) -> bool:
    """Whether rule ldm_pretrain exists: demo mode without a pretrained LDM and with Stage B trained here."""
    return cfg.demo and cfg.stage_b.pretrained_ldm is None and cfg.stage_b.finetuned is None


def demo_ldm_dir(cfg: Config) -> Path:
    """Where ldm_pretrain writes the demo's label2img-layout LDM (model.ckpt + config.yaml)."""
    return Path(cfg.results_root, "ldm_pretrain")


def pretrained_ldm(cfg: Config) -> str:
    """The label2img-layout LDM Stage B starts from: `stage_b.pretrained_ldm`, or the demo's ldm_pretrain output."""
    if cfg.stage_b.pretrained_ldm is not None:
        return str(cfg.stage_b.pretrained_ldm)
    if not cfg.demo:
        raise ConfigError("Stage B needs a pretrained latent diffusion model", path="stage_b.pretrained_ldm",
                          value=None, expected="a directory with the CompVis label2img model.ckpt + config.yaml",
                          hint="download MinD-Vis' pretrains/ldm/label2img and set stage_b.pretrained_ldm, or set "
                               "stage_b.finetuned to a finetuned.pth to only generate")
    return str(demo_ldm_dir(cfg) / "model.ckpt")


def stage_b_model(cfg: Config, dataset: str = "{dataset}", subject: str = "{subject}") -> str:
    """The Stage B model `generate` reads: `stage_b.finetuned`, else the stage_b_finetune output (stage_b.json)."""
    if cfg.stage_b.finetuned is not None:
        return str(cfg.stage_b.finetuned)
    return str(Path(cfg.results_root, "stage_b", dataset, subject, "stage_b.json"))


def trains_demo_classifier(cfg: Config) -> bool:
    """Whether rule demo_classifier exists: demo mode without configured n-way classifier weights."""
    return cfg.demo and cfg.evaluation.weights.classifier is None


def demo_classifier_dir(cfg: Config) -> Path:
    """Where demo_classifier writes its classifier (model.safetensors + config.json)."""
    return Path(cfg.results_root, "demo_classifier")


def n_way_classifier(cfg: Config) -> list[str]:
    """The n-way classifier evaluate needs as an input: the demo classifier in demo mode without configured weights."""
    return [str(demo_classifier_dir(cfg) / "model.safetensors")] if trains_demo_classifier(cfg) else []


def check_weight_files(cfg: Config) -> None:
    """Fail at start (before any job) when a configured metric-network file does not exist."""
    for key, path in vars(cfg.evaluation.weights).items():
        if path is not None and not Path(path).is_file():
            raise ConfigError("configured metric-network weights not found", path=f"evaluation.weights.{key}",
                              value=str(path), expected="an existing local weight file (nothing is downloaded)",
                              hint=f"fix the path, or set evaluation.weights.{key}: null to skip its metrics")


def eval_dir(cfg: Config, dataset: str = "{dataset}", subject: str = "{subject}") -> Path:
    return Path(cfg.results_root, "eval", dataset, subject)


# The files report_summary writes (mindvis.evaluation.report's names, repeated so that planning stays light to import).
REPORT_FILES = ("metrics_table.html", "metrics_table.csv", "training_curves.png")


def metrics_files(cfg: Config, target_pairs: list[tuple[str, str]] | None = None) -> list[str]:
    """metrics.json of every decoding target (`target_pairs`, default targets(cfg)): what the report summarises."""
    pairs = targets(cfg) if target_pairs is None else target_pairs
    return [str(eval_dir(cfg, dataset, subject) / "metrics.json") for dataset, subject in pairs]


def final_outputs(cfg: Config) -> list[str]:
    """What `snakemake` (rule all) builds: every subject preprocessed, every target evaluated, the report summary."""
    outputs: list[str] = []
    for dataset in cfg.datasets:
        for subject in subjects(cfg, dataset):
            outputs += preprocessed_outputs(cfg, dataset, subject).values()
    target_pairs = targets(cfg)
    outputs += metrics_files(cfg, target_pairs)
    if target_pairs:
        outputs += [str(Path(cfg.results_root, "report", name)) for name in REPORT_FILES]
    elif cfg.stage_a.pretrained is None and "HCP" in cfg.datasets:
        outputs.append(str(Path(cfg.results_root, "stage_a", "pretrain", "model.safetensors")))
    return outputs
