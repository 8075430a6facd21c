"""Faults of the machine under a run: the disk filling up, the run directory removed, the
memory exhausted. Each reaches the caller as :class:`MachineFault`, one line naming the
cause, whichever library (Orbax, TensorStore, XLA, the standard library) raised it."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

from jaxconv._errors import first_line


class MachineFault(RuntimeError):
    """A run stopped by its machine, not by its config: the disk, the memory or the run
    directory. The message names the cause in one line; earlier checkpoints stay usable."""


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` and the exceptions it was raised from or while handling, each once."""
    seen: set[int] = set()
    todo = [err]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__]


_NO_SPACE = ("No space left on device", "[os_error_code='28']", "Disk quota exceeded")
_NO_MEMORY = ("Out of memory", "out of memory", "std::bad_alloc", "Cannot allocate memory")


def _missing(errors: list[BaseException], inside: Path | None) -> bool:
    """Whether one of ``errors`` is a file not found: any (``inside`` None) or one whose
    path names ``inside`` (removed under the run while a library wrote or deleted it)."""
    for e in errors:
        if not (isinstance(e, FileNotFoundError) or "NOT_FOUND" in str(e)):
            continue
        if inside is None or str(inside.absolute()) in f"{getattr(e, 'filename', '')} {e}":
            return True
    return False


def machine_fault(
    err: BaseException, run_dir: Path | None = None, *, writing_run_dir: bool = False
) -> MachineFault | None:
    """The :class:`MachineFault` ``err`` amounts to (None: not a fault of the machine).
    ``writing_run_dir``: ``err`` came from writing files of ``run_dir`` alone (a checkpoint
    save), so any file not found is one of its own, removed under the run.

    >>> machine_fault(OSError(errno.ENOSPC, "No space left on device"), Path("runs/a"))
    MachineFault('no space left on device at runs/a')
    >>> machine_fault(ValueError("bad value")) is None
    True
    """
    if isinstance(err, MachineFault):
        return err
    errors = list(_chain(err))
    texts = [str(e) for e in errors]
    where = f" at {run_dir}" if run_dir is not None else ""
    if any(getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) for e in errors) or any(
        mark in text for text in texts for mark in _NO_SPACE
    ):
        return MachineFault(f"no space left on device{where}")
    if run_dir is not None and not Path(run_dir).is_dir():
        return MachineFault(f"run directory {run_dir} was removed during the run")
    if run_dir is not None and _missing(errors, None if writing_run_dir else Path(run_dir)):
        return MachineFault(f"files in run directory {run_dir} were removed during the run")
    if any(isinstance(e, MemoryError) for e in errors) or any(
        mark in text for text in texts for mark in _NO_MEMORY
    ):
        quoted = next((first_line(e) for e in errors if str(e).strip()), type(err).__name__)
        return MachineFault(f"out of memory while compiling or running the step ({quoted})")
    return None


#: What a collective or the coordination service says when another process is gone.
_PEER_GONE = ("Gloo", "Connection reset by peer", "coordination service", "heartbeat")


def peer_fault(err: BaseException) -> MachineFault | None:
    """The :class:`MachineFault` of a multi-process run whose peer died or stopped
    answering (a collective failed on its connection), from any error in ``err``'s chain."""
    for e in _chain(err):
        if any(mark in str(e) for mark in _PEER_GONE):
            return MachineFault(f"another process of the run stopped answering ({first_line(e)})")
    return None
