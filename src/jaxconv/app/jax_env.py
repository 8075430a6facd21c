"""When did this process start its XLA backend, and with which flags?

XLA reads ``XLA_FLAGS`` and the memory settings once, when the backend starts. Hydra sets a
job's environment (``hydra.job.env_set``) before the job runs; that takes effect only if
the backend has not started yet in this process, which holds for the first job of a
process and for launchers that start a process per job. Provenance records both.
"""

from __future__ import annotations

import os

_AT_START: dict[str, str | None] | None = None


def backend_started() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge._backends)
    except Exception:  # private API moved: assume started, the conservative answer
        return True


def note_start() -> None:
    """Call just before the first use of the backend in a job."""
    global _AT_START
    if _AT_START is None and not backend_started():
        _AT_START = {k: os.environ.get(k) for k in ("XLA_FLAGS", "XLA_PYTHON_CLIENT_MEM_FRACTION")}


def flags_at_start() -> dict[str, str | None] | None:
    return _AT_START
