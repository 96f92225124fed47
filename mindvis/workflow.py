"""Glue between Snakemake jobs and the library: what every workflow script does before and after its one call.

A workflow script is a few lines::

    from mindvis.workflow import job
    with job(snakemake) as (cfg, run):
        some_library_function(..., run=run)

`job` sends library logging to the rule's log file (and stderr), builds the job's config from the values the rule's
`params.config_slice` carries (mindvis.plan.job_params) and opens the job's MLflow child run under the pipeline's
parent run, with exactly those values as its params. A value the params do not carry is a placeholder that raises
when used (mindvis.config.build.NotCarried): what Snakemake's params rerun trigger compares is what the job used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mindvis.config import Config, git_commit, resolve
from mindvis.config.build import build_partial, to_dict
from mindvis.data.contract import PreprocessedSubject
from mindvis.errors import ConfigError
from mindvis.logs import setup_logging
from mindvis.tracking import JobRun, job_run, target_from_config

def job_config(config_slice: Mapping[str, Any], placement: Config) -> Config:
    """The config a job computes with: the values of its params' `config_slice`, plus where it writes.

    Args:
        config_slice: the nested plain dict of mindvis.plan.job_params (what the rule's params carry).
        placement: the workflow's resolved config; only `results_root` and `tracking` are taken from it (where
            outputs, resume state and MLflow runs go: never a reason to rerun a job).
    Returns:
        a Config whose fields not in `config_slice` are NotCarried placeholders.
    """
    carried = {**config_slice, "results_root": str(placement.results_root), "tracking": to_dict(placement.tracking)}
    return build_partial(Config, carried)


def is_rank_zero() -> bool:
    """Whether this process is rank 0 of a distributed job (always true when not distributed).

    Lightning's DDP launcher starts ranks > 0 as copies of the job script with LOCAL_RANK/NODE_RANK set (inside a
    SLURM step whose SLURM_PROCID is 0 for all of them); under srun every task has SLURM_PROCID; torchrun sets RANK.
    So a process is rank 0 only if every rank variable that is set says 0.
    """
    variables = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")
    return all(int(os.environ[v]) == 0 for v in variables if v in os.environ)


@contextlib.contextmanager
def job(smk: Any) -> Iterator[tuple[Config, JobRun | None]]:
    """Set up one Snakemake job: logging, its config (job_config of its params), MLflow child run. Yields (config, run).

    In a distributed job only rank 0 owns the rule's log file and the MLflow run; other ranks get run=None and log
    to stderr, so one job is one run however many processes train it.
    """
    config_slice = _config_slice(smk)
    cfg = job_config(config_slice, resolve(smk.config))
    if "torch" in sys.modules:  # intra-op threads = the job's cores (torch's default oversubscribes shared nodes)
        sys.modules["torch"].set_num_threads(max(1, int(getattr(smk, "threads", 1) or 1)))
    if not is_rank_zero():
        setup_logging(None)
        yield cfg, None
        return
    setup_logging(smk.log[0] if len(smk.log) else None)
    commit = git_commit(Path(__file__).resolve().parent)
    with job_run(target_from_config(cfg), smk.rule, dict(smk.wildcards.items()), config_slice,
                 commit=commit) as run:
        try:
            yield cfg, run
        finally:
            if len(smk.log):  # attach the log also (especially) when the job failed
                for handler in logging.getLogger().handlers:
                    handler.flush()
                run.log_artifact(smk.log[0], "logs")


def _config_slice(smk: Any) -> dict[str, Any]:
    config_slice = getattr(smk.params, "config_slice", None)
    if not isinstance(config_slice, Mapping):
        raise ConfigError("the rule passes no config values to its job", path=f"rule {smk.rule}",
                          value=config_slice, expected='params: config_slice=plan.job_params(CFG, "<rule>")',
                          hint="give the rule the values its job reads (mindvis.plan.JOB_READS)")
    return dict(config_slice)


def log_preprocessed(run: JobRun, subject: PreprocessedSubject, out_dir: Path, name: str) -> None:
    """Record a preprocessing job's counts (per split and averaging) and its output as an MLflow dataset input."""
    samples = subject.samples
    counts = {"n_samples": len(samples), "n_voxels": subject.n_voxels}
    for split, count in samples["split"].value_counts().items():
        counts[f"n_{split}"] = int(count)
    counts["n_averaged_rows"] = int((samples["n_averaged"] > 1).sum())
    if subject.stimuli is not None:
        counts["n_stimuli"] = len(subject.stimuli.stimulus_id)
    run.log_metrics(counts)
    run.log_input(samples, source=out_dir, name=name, context="preprocessed")
