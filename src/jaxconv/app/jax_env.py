"""When did this process start its XLA backend, and with which settings?

XLA reads ``XLA_FLAGS`` and the memory settings once, when the backend starts. Hydra sets a
job's environment (``hydra.job.env_set``) before the job runs; that takes effect only if
the backend has not started yet in this process, which holds for the first job of a
process and for launchers that start a process per job. The same holds for the host
allocator setting (:func:`jaxconv.train.reuse_host_memory`), which must precede the
backend's threads. Provenance records both.
"""

from __future__ import annotations

import os

from jaxconv.train.host_memory import backend_started, reuse_host_memory

_AT_START: dict[str, str | None] | None = None
_HOST_MEMORY_REUSED: bool | None = None


def note_start(*, reuse_memory: bool = True) -> None:
    """Call just before the first use of the backend in a job; with ``reuse_memory``,
    apply :func:`~jaxconv.train.reuse_host_memory` first (only while the backend is not
    started: its threads must not have allocated yet)."""
    global _AT_START, _HOST_MEMORY_REUSED
    if _AT_START is None and not backend_started():
        _HOST_MEMORY_REUSED = reuse_memory and reuse_host_memory()
        _AT_START = {k: os.environ.get(k) for k in ("XLA_FLAGS", "XLA_PYTHON_CLIENT_MEM_FRACTION")}


def flags_at_start() -> dict[str, str | None] | None:
    return _AT_START


def host_memory_reused() -> bool | None:
    """Whether the backend started with :func:`~jaxconv.train.reuse_host_memory` applied
    (None: the backend had started before this module saw it)."""
    return _HOST_MEMORY_REUSED
