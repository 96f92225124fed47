"""MLflow tracking: one parent run per workflow invocation, one child run per job.

The parent run is created (together with the store) when the workflow starts (Snakemake `onstart`) and closed
FINISHED or FAILED when it ends (`onsuccess` / `onerror`). Its id is kept in `<results_root>/.mindvis/parent_run.json`,
outside the declared outputs, so starting a new invocation never invalidates finished jobs. Jobs open a child run
with `job_run(...)`; library code receives the resulting `JobRun` (or None) and logs through it.

Store: an absolute `sqlite:///<results_root>/mlflow.db` with artifacts in `<results_root>/mlartifacts` by default,
or any tracking URI from config (e.g. `http://host:5000` of an `mlflow server` for clusters).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow  # noqa: E402  (after the telemetry default)
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import RunStatus  # noqa: E402

log = logging.getLogger(__name__)

PARENT_FILE = Path(".mindvis") / "parent_run.json"
MAX_PARAM_CHARS = 6000


@dataclass(frozen=True)
class TrackingTarget:
    """Where runs go: tracking URI, experiment name, and the artifact root used when creating the experiment."""

    uri: str
    experiment: str
    artifact_location: str | None
    results_root: Path
    log_every_n_steps: int = 10


def target_for(results_root: str | os.PathLike[str], tracking_uri: str | None = None, experiment: str = "mindvis",
               log_every_n_steps: int = 10) -> TrackingTarget:
    """Resolve the store: `tracking_uri` if given, else the embedded sqlite store under `results_root`."""
    root = Path(results_root).resolve()
    if tracking_uri:
        return TrackingTarget(tracking_uri, experiment, None, root, log_every_n_steps)
    return TrackingTarget(f"sqlite:///{root / 'mlflow.db'}", experiment, (root / "mlartifacts").as_uri(), root,
                          log_every_n_steps)


def target_from_config(cfg: Any) -> TrackingTarget:
    """TrackingTarget of a resolved mindvis Config."""
    return target_for(cfg.results_root, cfg.tracking.tracking_uri, cfg.tracking.experiment,
                      cfg.tracking.log_every_n_steps)


def ensure_experiment(target: TrackingTarget) -> str:
    """Create the store (if embedded) and the experiment if needed; return the experiment id.

    Call this once before parallel jobs start: concurrent first-time creation of a sqlite store races in MLflow's
    schema migration.
    """
    if target.uri.startswith("sqlite:"):
        target.results_root.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=target.uri)
    experiment = client.get_experiment_by_name(target.experiment)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(target.experiment, artifact_location=target.artifact_location)
    except mlflow.exceptions.MlflowException:
        # Another process created it between our lookup and create.
        return client.get_experiment_by_name(target.experiment).experiment_id


def start_pipeline_run(target: TrackingTarget, config: Mapping[str, Any], commit: str) -> str:
    """Create the parent run of one workflow invocation, log the resolved config, remember its id; return it."""
    experiment_id = ensure_experiment(target)
    client = MlflowClient(tracking_uri=target.uri)
    _close_abandoned_runs(client, experiment_id, parent_run_id(target))
    run = client.create_run(
        experiment_id,
        run_name=f"pipeline {time.strftime('%Y-%m-%d %H:%M:%S')}",
        tags={"mindvis.kind": "pipeline", "mindvis.git_commit": commit},
    )
    run_id = run.info.run_id
    client.log_dict(run_id, dict(config), "config.json")
    for key, value in flatten_params(config).items():
        client.log_param(run_id, key, value)
    path = target.results_root / PARENT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"run_id": run_id, "tracking_uri": target.uri}))
    os.replace(tmp, path)
    log.info("MLflow pipeline run %s in %s", run_id, target.uri)
    return run_id


def _close_abandoned_runs(client: MlflowClient, experiment_id: str, parent: str | None) -> None:
    """Mark `parent`'s still-RUNNING child runs (and `parent` itself) KILLED: a killed job cannot close its own run.

    Called when an invocation ends (its jobs are all done, so any RUNNING child was killed or preempted and rerun)
    and when a new one starts on the same results_root (Snakemake's directory lock means no job of the previous
    invocation is alive any more).
    """
    if parent is None:
        return
    killed = RunStatus.to_string(RunStatus.KILLED)
    stale = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent}' "
                                                "and attributes.status = 'RUNNING'")
    for run in stale:
        client.set_terminated(run.info.run_id, killed)
    try:
        if client.get_run(parent).info.status == "RUNNING":
            client.set_terminated(parent, killed)
    except mlflow.exceptions.MlflowException:
        pass  # the previous parent lives in another store or was deleted


def end_pipeline_run(target: TrackingTarget, success: bool) -> None:
    """Close the parent run FINISHED or FAILED (no-op when there is none)."""
    run_id = parent_run_id(target)
    if run_id is None:
        return
    status = RunStatus.to_string(RunStatus.FINISHED if success else RunStatus.FAILED)
    client = MlflowClient(tracking_uri=target.uri)
    client.set_terminated(run_id, status)
    _close_abandoned_runs(client, ensure_experiment(target), run_id)


def parent_run_id(target: TrackingTarget) -> str | None:
    """Id of the current invocation's parent run, if a workflow started one against this store."""
    path = target.results_root / PARENT_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info["run_id"] if info.get("tracking_uri") == target.uri else None


def flatten_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten a nested config mapping to MLflow params: dotted keys, string values (long values truncated)."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, f"{name}."))
        else:
            text = json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)
            flat[name] = text[:MAX_PARAM_CHARS]
    return flat


class JobRun:
    """One MLflow child run; the object library code logs through.

    All methods address the run by id through an MlflowClient, so several may coexist in one process.
    """

    def __init__(self, target: TrackingTarget, run_id: str) -> None:
        self.target = target
        self.run_id = run_id
        self.client = MlflowClient(tracking_uri=target.uri)

    def log_params(self, params: Mapping[str, Any]) -> None:
        for key, value in flatten_params(params).items():
            self.client.log_param(self.run_id, key, value)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        timestamp = int(time.time() * 1000)
        entities = [mlflow.entities.Metric(k, float(v), timestamp, step or 0) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=entities)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self.client.log_figure(self.run_id, figure, artifact_file)

    def log_image(self, image: Any, artifact_file: str) -> None:
        """Log a uint8 (H, W, 3) array or PIL image as a PNG artifact."""
        self.client.log_image(self.run_id, image, artifact_file=artifact_file)

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        self.client.log_dict(self.run_id, dict(data), artifact_file)

    def log_artifact(self, local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        path = Path(local_path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_table(self, data: Any, artifact_file: str) -> None:
        """Log a pandas DataFrame (or dict of columns) as an MLflow table (shown in the UI's artifact view)."""
        self.client.log_table(self.run_id, data=data, artifact_file=artifact_file)

    def log_input(self, samples: Any, source: str | os.PathLike[str], name: str, context: str) -> None:
        """Record a dataset the job read (a pandas table describing it, e.g. samples.parquet) with its source path."""
        with warnings.catch_warnings():  # schema-inference chatter about int columns and ambiguous local sources
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(samples, source=str(source), name=name)._to_mlflow_entity()
        tag = mlflow.entities.InputTag(key="mlflow.data.context", value=context)
        entity = mlflow.entities.DatasetInput(dataset=dataset, tags=[tag])
        self.client.log_inputs(self.run_id, datasets=[entity])

    def lightning_logger(self) -> Any:
        """A Lightning MLFlowLogger writing into this run (import deferred: Lightning is heavy)."""
        from pytorch_lightning.loggers import MLFlowLogger

        return MLFlowLogger(experiment_name=self.target.experiment, tracking_uri=self.target.uri,
                            run_id=self.run_id, log_model=False)


@contextlib.contextmanager
def job_run(target: TrackingTarget, rule: str, wildcards: Mapping[str, str] | None = None,
            params: Mapping[str, Any] | None = None, commit: str = "unknown") -> Iterator[JobRun]:
    """Open a child run for one job (under the pipeline's parent run when there is one).

    The run is named `<rule>[k=v,...]` and tagged with the rule, wildcards and git commit; `params` (the job's config
    slice) are logged flattened. It ends FINISHED, or FAILED with the error message as tag `mindvis.error`.
    """
    wildcards = dict(wildcards or {})
    experiment_id = ensure_experiment(target)
    client = MlflowClient(tracking_uri=target.uri)
    label = ",".join(f"{k}={v}" for k, v in sorted(wildcards.items()))
    tags = {"mindvis.kind": "job", "mindvis.rule": rule, "mindvis.git_commit": commit,
            **{f"mindvis.wildcard.{k}": v for k, v in wildcards.items()}}
    parent = parent_run_id(target)
    if parent is not None:
        tags["mlflow.parentRunId"] = parent
    run = client.create_run(experiment_id, run_name=f"{rule}[{label}]" if label else rule, tags=tags)
    job = JobRun(target, run.info.run_id)
    job.log_params({"rule": rule, **{f"wildcards.{k}": v for k, v in wildcards.items()}, **(params or {})})
    try:
        yield job
    except BaseException as exc:
        client.set_tag(job.run_id, "mindvis.error", f"{type(exc).__name__}: {exc}"[:5000])
        client.set_terminated(job.run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    client.set_terminated(job.run_id, RunStatus.to_string(RunStatus.FINISHED))


@contextlib.contextmanager
def open_job_run_for_tests(directory: str | os.PathLike[str], rule: str = "test") -> Iterator[JobRun]:
    """A real JobRun against a fresh sqlite store in `directory` (for tests of code that logs)."""
    target = target_for(directory)
    with job_run(target, rule) as run:
        yield run
