"""Glue between Snakemake jobs and the library: what every workflow script does before and after its one call.

A workflow script is a few lines::

    from mindvis.workflow import job
    with job(snakemake) as (cfg, run):
        some_library_function(..., run=run)

`job` sends library logging to the rule's log file (and stderr), resolves the config, and opens the job's MLflow child
run under the pipeline's parent run, logging the config slice the rule names in `params.config_section`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mindvis.config import Config, git_commit, resolve
from mindvis.config.build import to_dict
from mindvis.data.contract import PreprocessedSubject
from mindvis.tracking import JobRun, job_run, target_from_config

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_file: str | Path | None) -> None:
    """Send INFO logging to stderr and, if given, to `log_file` (the rule's `log:`)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, handlers=handlers, force=True)


def config_section(cfg: Config, dotted: str | None) -> dict[str, Any]:
    """The config slice at `dotted` (e.g. "preprocess.god") as a plain dict, prefixed by its path for MLflow."""
    if not dotted:
        return {}
    node: Any = cfg
    for key in dotted.split("."):
        node = node[key] if isinstance(node, dict) else getattr(node, key)
    return {dotted: to_dict(node)}


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
    """Set up one Snakemake job: logging, resolved config, MLflow child run. Yields (config, run).

    In a distributed job only rank 0 owns the rule's log file and the MLflow run; other ranks get run=None and log
    to stderr, so one job is one run however many processes train it.
    """
    cfg = resolve(smk.config)
    if "torch" in sys.modules:  # intra-op threads = the job's cores (torch's default oversubscribes shared nodes)
        sys.modules["torch"].set_num_threads(max(1, int(getattr(smk, "threads", 1) or 1)))
    if not is_rank_zero():
        setup_logging(None)
        yield cfg, None
        return
    setup_logging(smk.log[0] if len(smk.log) else None)
    section = smk.params.get("config_section") if hasattr(smk.params, "get") else None
    params = {"preset": cfg.preset_name, "demo": cfg.demo, "seed": cfg.seed, **config_section(cfg, section)}
    commit = git_commit(Path(__file__).resolve().parent)
    with job_run(target_from_config(cfg), smk.rule, dict(smk.wildcards.items()), params, commit=commit) as run:
        try:
            yield cfg, run
        finally:
            if len(smk.log):  # attach the log also (especially) when the job failed
                for handler in logging.getLogger().handlers:
                    handler.flush()
                run.log_artifact(smk.log[0], "logs")


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
