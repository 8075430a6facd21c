"""Structured configs (dataclasses in Hydra's ConfigStore): typed, so a wrong type or an
unknown key is rejected by Hydra before anything runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class DataConfig:
    name: str = "mnist1d"
    root: str = "~/.cache/jaxconv"
    val_fraction: float = 0.1
    normalize: bool = True
    limit_train: int | None = None
    download: bool = True
    augment_shift: int = 0
    augment_flip: bool = False
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizerConfig:
    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    clip_norm: float | None = None
    b1: float = 0.9
    b2: float = 0.999


@dataclass
class ScheduleConfig:
    name: str = "constant"
    warmup_fraction: float = 0.05
    final_fraction: float = 0.0


@dataclass
class TrainerConfig:
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 128
    eval_every: int | None = None
    checkpoint_every: int | None = None
    keep_checkpoints: int = 3
    resume: bool = False
    progress: bool = True
    label_smoothing: float = 0.0
    plots: bool = True
    reuse_host_memory: bool = True  # keep freed host memory (jaxconv.train.reuse_host_memory)
    devices: Any = "all"  # "all" or an int: local devices per process the batch is split over
    compute_dtype: str = "float32"  # float32 | bfloat16: what the layers compute in


@dataclass
class DistributedConfig:
    """``jax.distributed``: null everywhere = start it only when a cluster (SLURM, Open MPI)
    with several tasks is detected; ``initialize=false`` never."""

    initialize: bool | None = None
    coordinator_address: str | None = None  # host:port of process 0
    num_processes: int | None = None
    process_id: int | None = None
    timeout_seconds: int = 300  # wait for the others at start; notice a dead one


@dataclass
class LoggerConfig:
    """Where a run is reported besides metrics.csv (always written): choose with
    ``logger=tensorboard``, ``logger=mlflow`` or ``logger=[tensorboard,mlflow]``."""

    tensorboard: bool = False  # event files in the run directory (tensorboardX)
    mlflow: bool = False  # one MLflow run per training run
    filters: bool = True  # TensorBoard: the first-layer filters as an image at each evaluation
    tracking_uri: str | None = None  # MLflow: null = MLFLOW_TRACKING_URI, else ./mlflow.db
    experiment: str | None = None  # MLflow: null = the sweep directory, or the run's parent


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: Any = MISSING
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = 0
    conv_backend: str = "auto"


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    # The schemas live in a group of their own, so the user-facing groups list options only.
    cs.store(group="schema", name="data", node=DataConfig)
    cs.store(group="schema", name="optimizer", node=OptimizerConfig)
    cs.store(group="schema", name="schedule", node=ScheduleConfig)
    cs.store(group="schema", name="trainer", node=TrainerConfig)
