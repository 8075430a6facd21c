"""When did this process start its XLA backend, and with which settings?

XLA reads ``XLA_FLAGS`` and the memory settings once, when the backend starts. Hydra sets a
job's environment (``hydra.job.env_set``) before the job runs; that takes effect only if
the backend has not started yet in this process, which holds for the first job of a
process and for launchers that start a process per job. The same holds for the host
allocator setting (:func:`jaxconv.train.reuse_host_memory`), which must precede the
backend's threads. Provenance records both; the command's entry point holds one
:class:`BackendStart` for its process and hands it to every job.
"""

from __future__ import annotations

import dataclasses
import os

import jax

from jaxconv._errors import first_line
from jaxconv.train.host_memory import backend_started, reuse_host_memory


@dataclasses.dataclass
class BackendStart:
    """What the backend started with: ``flags`` (None until noted, or when it had started
    before anyone noted it) and whether the host allocator reuses memory."""

    flags: dict[str, str | None] | None = None
    host_memory_reused: bool | None = None

    def note(self, *, reuse_memory: bool = True) -> None:
        """Call just before the first use of the backend in a job; with ``reuse_memory``,
        apply :func:`~jaxconv.train.reuse_host_memory` first (only while the backend is not
        started: its threads must not have allocated yet). Later calls keep the first."""
        if self.flags is None and not backend_started():
            self.host_memory_reused = reuse_memory and reuse_host_memory()
            self.flags = {
                k: os.environ.get(k) for k in ("XLA_FLAGS", "XLA_PYTHON_CLIENT_MEM_FRACTION")
            }


class BackendUnavailable(RuntimeError):
    """No JAX backend could start with this process's settings (``JAX_PLATFORMS`` naming a
    platform the machine lacks); reported in one line before anything is written."""


def start_backend() -> None:
    """Start JAX's backend now, so that a platform that cannot start is one line, before
    the run directory is touched, instead of a traceback from deep inside the first step."""
    try:
        jax.devices()
    except Exception as err:  # jax raises RuntimeError, or AssertionError for 'cuda'
        wanted = os.environ.get("JAX_PLATFORMS") or jax.config.jax_platforms
        raise BackendUnavailable(
            f"JAX could not start a backend for JAX_PLATFORMS={wanted!r} ({first_line(err)}); "
            "unset it to let JAX choose, or name a platform this machine has (cpu always is)"
        ) from None
