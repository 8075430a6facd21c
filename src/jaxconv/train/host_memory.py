"""Reuse freed host memory: the allocator setting that CPU training with XLA needs.

XLA on CPU gives every run of a compiled step one fresh scratch buffer (activations,
patch matrices, gradients: 74 MiB for the classic MNIST net at batch 128) and frees it
when the step ends. glibc hands such large blocks back to the kernel (``munmap``), so
the next step writes to brand-new pages and takes a page fault for every 4 KiB of them
(counts and kernel time per step: ``docs/performance-notes.md``). Keeping the freed
memory in the process instead makes those steps fault-free
(``benchmarks/train_step.py --host-memory`` shows the effect).

:func:`reuse_host_memory` sets glibc's allocator, through ``mallopt``, to

- serve every thread from the main arena (``M_ARENA_MAX`` = 1): a thread's own arena
  would still ``mmap`` any block larger than its 64 MiB heap, whatever the settings;
- never serve a block with its own ``mmap`` (``M_MMAP_MAX`` = 0);
- never trim the top of the heap back to the kernel (``M_TRIM_THRESHOLD`` = 2 GiB - 1).

The price: the process keeps its peak host memory until it exits, which is what a
training process wants. Numbers are unaffected (it only changes where buffers live).
The arena setting binds threads that have not allocated yet, so call it before the
first JAX computation starts XLA's thread pools; ``jaxconv-train`` does so when
``trainer.reuse_host_memory`` is true (the default). Elsewhere than Linux with glibc
it does nothing and returns ``False``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc's mallopt parameter numbers (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8

_SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))


def _mallopt():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 -- glibc only (musl's mallopt is a no-op)
        return libc.mallopt
    except (OSError, AttributeError):
        return None


def reuse_host_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the kernel.

    Returns ``True`` when the settings were applied (Linux with glibc), ``False``
    otherwise. Safe to call more than once. Call it before the first JAX computation
    (see :func:`backend_started`); the module docstring explains what it changes.

    >>> reuse_host_memory() == (_mallopt() is not None)  # applied exactly where glibc is
    True
    """
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return all(mallopt(param, value) == 1 for param, value in _SETTINGS)


def backend_started() -> bool:
    """Whether this process has already started an XLA backend (and its threads)."""
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge._backends)
    except Exception:  # private API moved: assume started, the conservative answer
        return True
