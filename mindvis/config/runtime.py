"""Config sections about where and how jobs run: cluster resources, Lightning trainer, MLflow tracking."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class JobResources:
    """Resources one Snakemake job asks for (locally they only limit concurrency; on SLURM they become sbatch flags)."""

    gpu: int = field(default=0, metadata={"minimum": 0})
    gpu_model: str | None = None
    mem_mb: int = field(default=4000, metadata={"minimum": 100})
    runtime: int = field(default=60, metadata={"minimum": 1, "description": "minutes"})
    cpus_per_task: int = field(default=1, metadata={"minimum": 1})
    slurm_partition: str | None = None
    slurm_account: str | None = None


@dataclass(frozen=True)
class TrainerConfig:
    """Lightning trainer placement; SLURM resources of the training rules follow from devices and num_nodes."""

    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    devices: int = field(default=1, metadata={"minimum": 1})
    num_nodes: int = field(default=1, metadata={"minimum": 1})
    strategy: str = "auto"
    precision: Literal["auto", "32", "16-mixed", "bf16-mixed"] = field(default="auto", metadata={
        "description": "auto = bf16-mixed on GPU, 32 on CPU"})
    num_workers: int = field(default=0, metadata={"minimum": 0})
    launcher: Literal["auto", "lightning", "srun"] = field(default="auto", metadata={
        "description": "how the devices x num_nodes processes start: lightning = Lightning starts them (one node); "
                       "srun = one SLURM task per process (several nodes); auto = srun when num_nodes > 1"})

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes

    @property
    def uses_srun(self) -> bool:
        """Whether training processes are SLURM tasks started by srun (see mindvis.training.launch)."""
        if self.world_size == 1:
            return False
        return self.launcher == "srun" or (self.launcher == "auto" and self.num_nodes > 1)


@dataclass(frozen=True)
class TrackingConfig:
    tracking_uri: str | None = field(default=None, metadata={
        "description": "null = sqlite:///<results_root>/mlflow.db (absolute); or http://host:port of an mlflow server"})
    experiment: str = "mindvis"
    log_every_n_steps: int = field(default=10, metadata={"minimum": 1})
