"""Child processes that do not outlive the process that started them."""

from __future__ import annotations

import os
import signal


def die_with_parent(parent: int | None = None) -> None:
    """In a child process: ask the kernel to SIGKILL it when its parent dies (Linux's
    ``PR_SET_PDEATHSIG``; elsewhere nothing), so that a SIGKILLed parent leaves no
    child running on. With ``parent`` (its pid), exit at once if it died already."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent:
        os._exit(0)
