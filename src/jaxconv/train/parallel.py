"""Data parallelism with JAX's own engine: a 1-D device mesh over ``data``, each global
batch sharded along it, everything else replicated, the step ``jit``-compiled with those
shardings so that XLA inserts the reductions (all-reduce of the gradients, of BatchNorm's
batch statistics and of the metrics). One process or many: with ``jax.distributed``
every process holds its share of each global batch and the same mesh of all devices.

The semantics are those of one device on the global batch; only the order of floating
point reductions depends on the topology (so a run is bit-for-bit reproducible on the
same topology, and agrees with another topology to rounding).
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxconv._errors import first_line
from jaxconv._options import option

#: The mesh axis the batch is split along.
DATA = "data"


def check_devices(devices: Any) -> None:
    """``devices`` is ``"all"`` or a positive int (checked without touching a device)."""
    if devices == "all" or devices is None:
        return
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(f"`devices` (={devices!r}) must be 'all' or an int >= 1")


def data_mesh(devices: int | str | None = "all") -> Mesh:
    """A 1-D mesh over ``data``: ``devices`` of each process's local devices (``"all"``:
    every one), grouped by process so that each process's rows of a batch are contiguous."""
    check_devices(devices)
    local = jax.local_device_count()
    per_process = local if devices in ("all", None) else devices
    if per_process > local:
        raise ValueError(
            f"`devices` (={devices}) must be 'all' or at most the {local} local "
            f"{jax.default_backend()} devices of this process"
        )
    chosen = [
        d
        for p in range(jax.process_count())
        for d in sorted(jax.local_devices(process_index=p), key=lambda d: d.id)[:per_process]
    ]
    return Mesh(np.array(chosen), (DATA,))


def check_batch(batch_size: int, mesh: Mesh) -> None:
    """A global batch must split evenly over the mesh's devices."""
    n = mesh.devices.size
    if batch_size % n:
        raise ValueError(
            f"`batch_size` (={batch_size}) must be divisible by the number of devices (={n})"
        )


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every leaf of ``tree`` (equal on every process) as a global array replicated over
    ``mesh``."""
    sharding = replicated(mesh)
    return jax.tree.map(
        lambda leaf: jax.make_array_from_process_local_data(sharding, np.asarray(leaf)), tree
    )


def local_rows(global_rows: int, mesh: Mesh) -> slice:
    """The rows of a ``global_rows`` batch that this process holds."""
    per_device = global_rows // mesh.devices.size
    mine = [i for i, d in enumerate(mesh.devices.flat) if d.process_index == jax.process_index()]
    return slice(mine[0] * per_device, (mine[-1] + 1) * per_device)


def shard_batch(local: np.ndarray, mesh: Mesh, global_rows: int) -> jax.Array:
    """This process's rows of a batch -> the global batch, sharded along ``data``."""
    return jax.make_array_from_process_local_data(
        batch_sharding(mesh), local, (global_rows, *local.shape[1:])
    )


def mesh_of(tree: Any) -> Mesh | None:
    """The mesh ``tree``'s first array is placed on (None for a single-device array)."""
    leaves = jax.tree.leaves(tree)
    sharding = getattr(leaves[0], "sharding", None) if leaves else None
    return sharding.mesh if isinstance(sharding, NamedSharding) else None


def describe(mesh: Mesh) -> dict[str, Any]:
    """What result.json and provenance.json record about the topology."""
    return {
        "devices": int(mesh.devices.size),
        "local_devices": sum(d.process_index == jax.process_index() for d in mesh.devices.flat),
        "processes": jax.process_count(),
        "mesh_shape": dict(mesh.shape),
        "platform": mesh.devices.flat[0].platform,
    }


def is_primary() -> bool:
    """Process 0 writes the run's files; every process takes part in the collectives.
    True in a single process without starting its backend (a refused run need not)."""
    return not jax.distributed.is_initialized() or jax.process_index() == 0


# --- several processes -------------------------------------------------------------------

#: Environments in which ``jax.distributed.initialize()`` finds its arguments by itself,
#: recognised by the variables JAX's own cluster detection reads.
CLUSTER_VARIABLES = {
    "slurm": (
        "SLURM_JOB_ID",
        "SLURM_STEP_NODELIST",
        "SLURM_NTASKS",
        "SLURM_PROCID",
        "SLURM_LOCALID",
    ),
    "openmpi": ("OMPI_MCA_orte_hnp_uri",),
}


def detected_cluster() -> str | None:
    """The cluster environment this process runs in with more than one task, if any."""
    for name, variables in CLUSTER_VARIABLES.items():
        if all(v in os.environ for v in variables):
            if name == "slurm" and os.environ["SLURM_NTASKS"].strip() in ("", "1"):
                continue  # one task: nothing to coordinate
            return name
    return None


_HOW = "how the processes find each other"


@dataclasses.dataclass
class DistributedOptions:
    """The ``distributed`` config group: :func:`initialize`'s keywords. null everywhere =
    start ``jax.distributed`` only when a cluster (SLURM, Open MPI) with several tasks is
    detected; ``initialize=false`` never."""

    initialize: bool | None = option(None, resume="free", why=_HOW)
    coordinator_address: str | None = option(None, resume="free", why=_HOW)  # host:port
    num_processes: int | None = option(
        None, resume="free", why="the topology (recorded in result.json)"
    )
    process_id: int | None = option(None, resume="free", why="which process this is")
    timeout_seconds: int = option(300, resume="free", why="how long processes wait for each other")


def initialize(
    *,
    initialize: bool | None = None,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    timeout_seconds: int = 300,
) -> bool:
    """Start ``jax.distributed`` when asked or when a cluster is detected; must run before
    anything touches a device (and it touches none itself, so that settings applied
    before the backend starts, like :func:`~jaxconv.train.reuse_host_memory`, still
    can be). Returns whether ``jax.distributed`` is running.

    ``initialize``: ``False`` never, ``True`` always (JAX detects its arguments when none
    are given), ``None`` when ``coordinator_address`` is given or :func:`detected_cluster`
    finds one. ``timeout_seconds`` bounds the wait for the other processes at start and
    the time a dead process goes unnoticed (the heartbeat), after which the survivors stop
    instead of waiting in a collective forever.
    """
    if jax.distributed.is_initialized():
        return True
    explicit = coordinator_address is not None
    if initialize is False or not (initialize or explicit or detected_cluster()):
        return False
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=timeout_seconds,
            heartbeat_timeout_seconds=timeout_seconds,
        )
    except Exception as err:  # noqa: BLE001  (jaxlib raises its own XlaRuntimeError)
        where = coordinator_address or detected_cluster() or "the detected cluster"
        raise DistributedError(
            f"jax.distributed could not connect via {where} within {timeout_seconds} s "
            f"(distributed.timeout_seconds): {first_line(err)}"
        ) from err
    return True


class DistributedError(RuntimeError):
    """The processes of a run could not start together or do not agree."""


def agree(failed: bool, token: str = "") -> tuple[bool, bool]:
    """A collective check, called by every process at the same point: whether any process
    ``failed``, and whether all passed the same ``token`` (a run directory, a config
    hash). One process returns at once."""
    if jax.process_count() == 1:
        return failed, True
    from jax.experimental import multihost_utils

    # int32: what a device array holds without x64
    mine = np.array([int(failed), zlib.crc32(token.encode()) & 0x7FFFFFFF], np.int32)
    everyone = _allgather(mine, multihost_utils, "before the run was accepted")
    return bool(everyone[:, 0].any()), bool((everyone[:, 1] == mine[1]).all())


def _allgather(mine: np.ndarray, multihost_utils, when: str) -> np.ndarray:
    """``process_allgather``, its failure (a process that died, or that never came within
    the heartbeat timeout) as one :class:`DistributedError` line."""
    try:
        return np.asarray(multihost_utils.process_allgather(mine))
    except Exception as err:  # noqa: BLE001  (jaxlib's runtime error)
        raise DistributedError(
            f"another process stopped or did not answer {when} (the wait is bounded by "
            f"distributed.timeout_seconds): {first_line(err)}"
        ) from err


class AgreedStop:
    """``should_stop`` made collective: every ``every`` calls the processes share their
    signal flags, and all stop at the same step when any was signalled (a process that
    stopped alone would leave the others waiting in the next collective).

    Called with the latest state, which it waits for first: the flags' all-gather has
    no data dependence on a training step still running, and two collectives running
    at once can meet in a different order on each process (a deadlock)."""

    def __init__(self, should_stop, every: int = 10):
        self.should_stop, self.every, self.calls, self.agreed = should_stop, every, 0, None

    def __call__(self, state: Any = None) -> int | None:
        if self.agreed:
            return self.agreed
        self.calls += 1
        if self.calls % self.every:
            return None
        from jax.experimental import multihost_utils

        jax.block_until_ready(state)

        mine = np.array([self.should_stop() or 0], np.int32)
        signals = _allgather(mine, multihost_utils, "between two steps").ravel()
        self.agreed = int(signals.max()) or None
        return self.agreed
