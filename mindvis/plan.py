"""What the workflow will do, computed from the config alone: subjects, raw inputs and output paths per job.

Rules call these functions, so the DAG (`snakemake -n`) exists before any demo data does, and so the planning can be
tested without Snakemake. Reader modules are imported lazily: a dry run should not pay for what it does not use.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mindvis import paths
from mindvis.config import Config
from mindvis.config.build import to_dict
from mindvis.data.contract import TASK_DATASETS, contract_files
from mindvis.demo.pretrained import CLASS_INDEX_FILE, classifier_recipe, ldm_recipe, shipped_weights
from mindvis.errors import ConfigError

SNAKEMAKE_RESOURCE_KEYS = ("gpu", "gpu_model", "mem_mb", "runtime", "cpus_per_task", "slurm_partition",
                           "slurm_account")


def share_checkout_with_jobs(checkout: str | os.PathLike[str]) -> None:
    """Put the workflow's checkout on PYTHONPATH of every job, so scripts import this mindvis in any environment."""
    current = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(checkout), current]))


def _reader(dataset: str) -> Any:
    if dataset == "HCP":
        from mindvis.preprocess import hcp as reader
    elif dataset == "GOD":
        from mindvis.preprocess import god as reader
    elif dataset == "NSD":
        from mindvis.preprocess import nsd as reader
    else:
        from mindvis.preprocess import bold5000 as reader
    return reader


def _demo_subjects(cfg: Config, dataset: str) -> tuple[str, ...]:
    demo = cfg.demo_data
    return {"HCP": demo.hcp_subjects, "GOD": demo.god_subjects, "BOLD5000": demo.bold5000_subjects,
            "NSD": demo.nsd_subjects}[dataset]


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
        hcp = cfg.preprocess.hcp
        found = reader.find_subjects(cfg.raw_root, hcp.runs, hcp.source, hcp.file_pattern)
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
        return reader.raw_files(cfg.raw_root, subject, hcp.runs, hcp.source, hcp.file_pattern)
    if dataset == "BOLD5000":
        return reader.raw_files(cfg.raw_root, subject, cfg.preprocess.bold5000.rois)
    if dataset == "NSD":
        return reader.raw_files(cfg.raw_root, subject, cfg.preprocess.nsd)
    return reader.raw_files(cfg.raw_root, subject)


def preprocessed_outputs(cfg: Config, dataset: str, subject: str = "{subject}") -> dict[str, str]:
    """Named contract files of one preprocessed subject (with a `{subject}` wildcard by default)."""
    return paths.preprocessed(cfg.results_root, *(Path(name).stem for name in contract_files(dataset)),
                              dataset=dataset, subject=subject)


def targets(cfg: Config) -> list[tuple[str, str]]:
    """(dataset, subject) pairs that get Stage A2, Stage B and evaluation: the task datasets' subjects."""
    return [(ds, s) for ds in TASK_DATASETS if ds in cfg.datasets for s in subjects(cfg, ds)]


# ------------------------------------------------------------------------------------------ what each job reads

RAW_ROOT = "<raw_root>"  # where raw data is read: demo_data.root in demo mode, else data_root (Config.raw_root)
# The demo's categories (mindvis.demo.images.category_table): what the demo LDM and the demo classifier learn.
DEMO_CATEGORIES = ("demo_data.seed", "demo_data.god.n_train_categories", "demo_data.god.n_test_categories")

# The config values each rule's job reads, as dotted paths into the resolved config (preset values filled in).
# They are the rule's Snakemake params (`job_params`), so Snakemake's params rerun trigger reruns exactly the jobs
# whose values changed; and the job's config is built from its params alone (mindvis.workflow.job), so it cannot
# compute with anything else. Deliberately absent: results_root and tracking.* (where outputs and MLflow runs go;
# jobs get them beside their params), resources.* (what a job asks of the scheduler), and the keys that shape the
# DAG instead (datasets, subjects, data_root, stage_a.pretrained, stage_b.pretrained_ldm / finetuned): they decide
# which files are a job's inputs and outputs, and Snakemake reruns a job whose input files change.
JOB_READS: dict[str, tuple[str, ...]] = {
    # every writer's keys, also of datasets not configured: dropping a dataset must not rerun the others' demo data
    "demo_synthesize": ("demo_data",),
    "preprocess_hcp": (RAW_ROOT, "preprocess.hcp"),
    "preprocess_god": (RAW_ROOT, "preprocess.god", "preprocess.image_size"),
    "preprocess_bold5000": (RAW_ROOT, "preprocess.bold5000", "preprocess.image_size"),
    "preprocess_nsd": (RAW_ROOT, "preprocess.nsd", "preprocess.image_size"),
    "stage_a_pretrain": ("stage_a.model", "stage_a.pretrain", "trainer"),
    "stage_a_finetune": ("stage_a.finetune", "trainer"),  # the model's sizes come from the checkpoint it tunes
    "ldm_pretrain": (*DEMO_CATEGORIES, "preprocess.image_size", "stage_b.architecture", "stage_b.ldm_pretrain",
                     "stage_b.sampling.scheduler", "stage_b.sampling.steps", "trainer.accelerator",
                     "trainer.precision", "trainer.num_workers"),  # always one device
    "stage_b_finetune": ("stage_b.training", "stage_b.architecture.image_size", "stage_b.sampling.scheduler",
                         "trainer"),  # the LDM's other sizes come from the pretrained LDM it starts from
    "demo_classifier": (*DEMO_CATEGORIES, "preprocess.image_size", "evaluation.demo_classifier",
                        "trainer.accelerator", "trainer.precision", "trainer.num_workers"),  # always one device
    "generate": ("stage_b.sampling", "seed", "evaluation.device"),
    "ceilings": ("stage_b.sampling", "seed", "evaluation.device"),  # the LDM and class index are inputs
    "evaluate": ("evaluation",),
    "report_summary": (),  # its metrics.json inputs and the MLflow store
}


def job_reads(cfg: Config, rule: str) -> list[str]:
    """The dotted config paths `rule`'s job reads (JOB_READS with its placeholders expanded for this config)."""
    if rule not in JOB_READS:
        raise KeyError(f"no JOB_READS entry for rule {rule!r}")
    paths: list[str] = []
    for path in JOB_READS[rule]:
        if path == RAW_ROOT:
            paths += ["demo", "demo_data.root" if cfg.demo else "data_root"]
        else:
            paths.append(path)
    return list(dict.fromkeys(paths))


def select(tree: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """The values of `tree` (a nested plain dict) at the dotted `paths`, as a nested dict of the same shape."""
    selected: dict[str, Any] = {}
    for path in paths:
        *parents, leaf = path.split(".")
        source, target = tree, selected
        for key in parents:
            source = source[key]
            target = target.setdefault(key, {})
        target[leaf] = source[leaf]
    return selected


def job_params(cfg: Config, rule: str) -> dict[str, Any]:
    """The resolved config values `rule`'s job reads, as a nested plain dict in config.yaml's shape.

    Rules pass it as `params: config_slice=...`: a deterministic plain value, compared by Snakemake's params
    rerun trigger against what the job's outputs were made with, logged as the job's MLflow params, and the only
    config the job's code sees (mindvis.workflow.job). Keys are sorted at every level, so the value (and its repr,
    which Snakemake records) does not depend on the order of JOB_READS or of the config classes' fields.
    """
    return _sorted_keys(select(to_dict(cfg), job_reads(cfg, rule)))


def _sorted_keys(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {key: _sorted_keys(tree[key]) for key in sorted(tree)}
    return tree


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
    job is one task and Lightning starts one process per device (mindvis.training.runner.cluster_plugins); with
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


def pretrain_train_datasets(cfg: Config) -> set[str]:
    """The task datasets whose training fMRI joins Stage A1 (stage_a.pretrain.include_god_train / include_nsd_train)."""
    pretrain = cfg.stage_a.pretrain
    return {name for name, included in (("GOD", pretrain.include_god_train), ("NSD", pretrain.include_nsd_train))
            if included}


def stage_a_pretrain_inputs(cfg: Config) -> list[str]:
    """fmri.npy + samples.parquet of every subject Stage A1 learns from (HCP, plus GOD / NSD train fMRI when
    enabled)."""
    datasets = ["HCP"] + sorted(pretrain_train_datasets(cfg))
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


def stage_a_init(cfg: Config) -> list[str]:
    """The checkpoint A2 starts from (as a Snakemake input list): `stage_a.pretrained` when set, else the A1 result.

    A configured checkpoint that does not exist is left out (check_requirements names it before any job runs).
    """
    if cfg.stage_a.pretrained is not None:
        return _existing(cfg.stage_a.pretrained)
    return [paths.stage_a_pretrain_file(cfg.results_root, "model.safetensors")]


def uses_demo_ldm(cfg: Config) -> bool:
    """Whether Stage B starts from the demo LDM (shipped or trained here): demo mode, no configured LDM, Stage B
    trained here."""
    return cfg.demo and cfg.stage_b.pretrained_ldm is None and cfg.stage_b.finetuned is None


def uses_demo_classifier(cfg: Config) -> bool:
    """Whether the n-way metric uses the demo classifier (shipped or trained here): demo mode without configured
    classifier weights."""
    return cfg.demo and cfg.evaluation.weights.classifier is None


def shipped_demo_ldm(cfg: Config) -> Path | None:
    """The LDM shipped with the repository (`demo_data.pretrained`/ldm) when the demo starts Stage B from the demo
    LDM and the shipped one was made by the recipe this config gives; else None (a warning says why)."""
    if not uses_demo_ldm(cfg) or cfg.demo_data.pretrained is None:
        return None
    arch = cfg.stage_b.architecture
    return _shipped(Path(cfg.demo_data.pretrained) / "ldm", "ldm",
                    json.dumps(ldm_recipe(cfg.demo_data, arch, cfg.stage_b.ldm_pretrain), sort_keys=True))


def shipped_demo_classifier(cfg: Config) -> Path | None:
    """The n-way classifier shipped with the repository (`demo_data.pretrained`/classifier) when the demo has no
    configured classifier and the shipped one fits this config's recipe; else None."""
    if not uses_demo_classifier(cfg) or cfg.demo_data.pretrained is None:
        return None
    recipe = classifier_recipe(cfg.demo_data, cfg.preprocess.image_size, cfg.evaluation.demo_classifier)
    return _shipped(Path(cfg.demo_data.pretrained) / "classifier", "classifier", json.dumps(recipe, sort_keys=True))


@functools.lru_cache(maxsize=8)
def _shipped(directory: Path, kind: str, recipe: str) -> Path | None:
    # cached: the Snakefile asks several times while it parses, the warning of a mismatch should come once
    return shipped_weights(directory, kind, json.loads(recipe))  # type: ignore[arg-type]


def trains_demo_ldm(cfg: Config) -> bool:
    """Whether rule ldm_pretrain exists: demo mode without a pretrained LDM, with Stage B trained here and no
    shipped demo LDM of this config's recipe."""
    return uses_demo_ldm(cfg) and shipped_demo_ldm(cfg) is None


def demo_ldm_dir(cfg: Config) -> Path:
    """Where the demo's label2img-layout LDM is (model.ckpt + config.yaml + class_index.json + recipe.json): the
    shipped one when it fits the config, else ldm_pretrain's output directory."""
    return shipped_demo_ldm(cfg) or paths.demo_ldm_dir(cfg.results_root)


def pretrained_ldm(cfg: Config) -> list[str]:
    """The label2img-layout LDM Stage B starts from, as a Snakemake input list: `stage_b.pretrained_ldm`, or the
    demo's (shipped, else ldm_pretrain's output).

    Empty when real data has none configured or the configured one does not exist: the DAG still builds (so
    `--until preprocess_god` or `--until stage_a_pretrain` run without an LDM), and check_requirements stops the
    workflow before any job runs when a Stage B job is among the jobs to run.
    """
    if cfg.stage_b.pretrained_ldm is not None:
        return _existing(cfg.stage_b.pretrained_ldm)
    if cfg.demo:
        return [str(demo_ldm_dir(cfg) / "model.ckpt")]
    return []


def stage_b_model(cfg: Config, dataset: str = "{dataset}", subject: str = "{subject}") -> list[str]:
    """The Stage B model `generate` reads (as a Snakemake input list): `stage_b.finetuned`, else the
    stage_b_finetune output (stage_b.json). A configured file that does not exist is left out (as pretrained_ldm)."""
    if cfg.stage_b.finetuned is not None:
        return _existing(cfg.stage_b.finetuned)
    return [paths.stage_b_file(cfg.results_root, dataset, subject)]


def ceilings_ldm(cfg: Config) -> list[str]:
    """The pretrained LDM of the class-conditioned ceiling: pretrained_ldm where Stage B starts from one (not with
    the `stage_b.finetuned` shortcut in demo mode, where no demo LDM is trained)."""
    return pretrained_ldm(cfg) if cfg.stage_b.pretrained_ldm is not None or uses_demo_ldm(cfg) else []


def ldm_class_index(cfg: Config) -> list[str]:
    """The pretrained LDM's class -> wnid file for the class-conditioned ceiling (a Snakemake input list):
    `evaluation.ldm_class_index`, else the demo LDM's class_index.json, else a class_index.json beside the
    configured LDM's model.ckpt; empty when there is none (that ceiling is then skipped, with the reason)."""
    if cfg.evaluation.ldm_class_index is not None:
        return _existing(cfg.evaluation.ldm_class_index)
    if cfg.stage_b.pretrained_ldm is None:
        return [str(demo_ldm_dir(cfg) / CLASS_INDEX_FILE)] if uses_demo_ldm(cfg) else []
    ldm = Path(cfg.stage_b.pretrained_ldm)
    return _existing((ldm if ldm.suffix != ".ckpt" else ldm.parent) / CLASS_INDEX_FILE)


def trains_demo_classifier(cfg: Config) -> bool:
    """Whether rule demo_classifier exists: demo mode without configured n-way classifier weights and without a
    shipped classifier of this config's recipe."""
    return uses_demo_classifier(cfg) and shipped_demo_classifier(cfg) is None


def demo_classifier_dir(cfg: Config) -> Path:
    """Where the demo classifier is (model.safetensors + config.json): the shipped one when it fits the config,
    else demo_classifier's output directory."""
    return shipped_demo_classifier(cfg) or paths.demo_classifier_dir(cfg.results_root)


def n_way_classifier(cfg: Config) -> list[str]:
    """The n-way classifier evaluate needs as an input: the demo classifier in demo mode without configured weights."""
    return [str(demo_classifier_dir(cfg) / "model.safetensors")] if uses_demo_classifier(cfg) else []


def metric_weights(cfg: Config) -> list[str]:
    """The configured metric-network weight files that exist: inputs of evaluate (replacing a file reruns it)."""
    return [path for value in vars(cfg.evaluation.weights).values() if value is not None
            for path in _existing(value)]


def _existing(path: str | os.PathLike[str]) -> list[str]:
    return [str(path)] if Path(path).exists() else []


# ------------------------------------------------------------------------------- files demanded where they are used

def requirement_problems(cfg: Config, rule: str) -> list[ConfigError]:
    """What stops `rule`'s jobs from running: pretrained files they read that are not configured or not there.

    stage_b_finetune needs `stage_b.pretrained_ldm` on real data; stage_a_finetune, generate and evaluate need the
    files that `stage_a.pretrained`, `stage_b.finetuned` and `evaluation.weights.*` name, when set.
    """
    problems = []
    if rule == "stage_b_finetune" and cfg.stage_b.pretrained_ldm is None and not cfg.demo:
        problems.append(ConfigError(
            "Stage B needs a pretrained latent diffusion model", path="stage_b.pretrained_ldm", value=None,
            expected="a directory with the CompVis label2img model.ckpt + config.yaml",
            hint="download MinD-Vis' pretrains/ldm/label2img and set stage_b.pretrained_ldm, or set "
                 "stage_b.finetuned to a finetuned.pth to only generate; stages before Stage B run without it "
                 "(e.g. --until stage_a_finetune)"))
    configured = {
        "stage_a_finetune": {"stage_a.pretrained": cfg.stage_a.pretrained},
        "stage_b_finetune": {"stage_b.pretrained_ldm": cfg.stage_b.pretrained_ldm},
        "generate": {"stage_b.finetuned": cfg.stage_b.finetuned},
        "evaluate": {f"evaluation.weights.{k}": v for k, v in vars(cfg.evaluation.weights).items()},
    }.get(rule, {})
    for key, path in configured.items():
        if path is not None and not Path(path).exists():
            weights = key.startswith("evaluation.weights.")
            problems.append(ConfigError(
                f"configured {'metric-network weights' if weights else 'file'} not found", path=key,
                value=str(path), expected="an existing local file (nothing is downloaded)",
                hint=f"fix the path, or set {key}: null {_NULL_MEANS.get(key, 'to skip its metrics')}"))
    return problems


_NULL_MEANS = {"stage_a.pretrained": "to train Stage A1 here",
               "stage_b.pretrained_ldm": "in demo mode (the demo trains its own; real data needs one)",
               "stage_b.finetuned": "to train Stage B here"}


def check_requirements(cfg: Config, rules: Iterable[str]) -> None:
    """Raise the first requirement problem of the `rules` about to run (call it before any job starts).

    The Snakefile's onstart calls it with the rules of the jobs Snakemake is going to run, so a missing LDM or
    weight file stops the workflow before any work, and only when a job that reads it is going to run.
    """
    wanted = set(rules)
    for rule in JOB_READS:  # pipeline order
        if rule in wanted:
            problems = requirement_problems(cfg, rule)
            if problems:
                raise problems[0]


def requirement_message(cfg: Config, rule: str) -> str | None:
    """A rule's `message:` while its requirements are not met (shown by `snakemake -n`), else None."""
    problems = requirement_problems(cfg, rule)
    if not problems:
        return None
    first = problems[0]
    text = f"{rule} cannot run: {first.path}: {first.problem} ({first.hint})"
    return text.replace("{", "{{").replace("}", "}}")  # Snakemake formats messages with the job's wildcards


def metrics_files(cfg: Config, target_pairs: list[tuple[str, str]] | None = None) -> list[str]:
    """metrics.json of every decoding target (`target_pairs`, default targets(cfg)): what the report summarises."""
    pairs = targets(cfg) if target_pairs is None else target_pairs
    return [paths.eval_file(cfg.results_root, "metrics", dataset, subject) for dataset, subject in pairs]


def final_outputs(cfg: Config) -> list[str]:
    """What `snakemake` (rule all) builds: every subject preprocessed, every target evaluated, the report summary."""
    outputs: list[str] = []
    for dataset in cfg.datasets:
        for subject in subjects(cfg, dataset):
            outputs += preprocessed_outputs(cfg, dataset, subject).values()
    target_pairs = targets(cfg)
    outputs += metrics_files(cfg, target_pairs)
    if target_pairs:
        outputs += [paths.report_file(cfg.results_root, name) for name in paths.REPORT_FILES]
    elif cfg.stage_a.pretrained is None and "HCP" in cfg.datasets:
        outputs.append(paths.stage_a_pretrain_file(cfg.results_root, "model.safetensors"))
    return outputs
