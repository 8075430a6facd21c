"""Training with Optax: state, steps, loop, checkpoints (usable without Hydra)."""

from jaxconv.train.checkpoint import CheckpointError as CheckpointError
from jaxconv.train.checkpoint import Checkpoints as Checkpoints
from jaxconv.train.checkpoint import silence_failed_reads as silence_failed_reads
from jaxconv.train.faults import MachineFault as MachineFault
from jaxconv.train.faults import machine_fault as machine_fault
from jaxconv.train.host_memory import reuse_host_memory as reuse_host_memory
from jaxconv.train.loggers import CsvLogger as CsvLogger
from jaxconv.train.loggers import Logger as Logger
from jaxconv.train.loggers import MLflowLogger as MLflowLogger
from jaxconv.train.loggers import TensorBoardLogger as TensorBoardLogger
from jaxconv.train.loop import Diverged as Diverged
from jaxconv.train.loop import FitOptions as FitOptions
from jaxconv.train.loop import History as History
from jaxconv.train.loop import evaluate as evaluate
from jaxconv.train.loop import fit as fit
from jaxconv.train.loop import read_metrics as read_metrics
from jaxconv.train.loop import total_steps as total_steps
from jaxconv.train.optim import OptimizerOptions as OptimizerOptions
from jaxconv.train.optim import ScheduleOptions as ScheduleOptions
from jaxconv.train.optim import make_optimizer as make_optimizer
from jaxconv.train.optim import make_schedule as make_schedule
from jaxconv.train.signals import Interrupted as Interrupted
from jaxconv.train.signals import stop_on_signals as stop_on_signals
from jaxconv.train.state import TrainState as TrainState
from jaxconv.train.state import params_sha256 as params_sha256
