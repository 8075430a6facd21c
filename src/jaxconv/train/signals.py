"""Stopping a run cleanly on SIGINT / SIGTERM.

The first signal only raises a flag: the training loop looks at it between steps, where
the state is whole, writes a checkpoint and raises :class:`Interrupted`. A second signal
stops at once (``KeyboardInterrupt``), for a user who will not wait for the checkpoint.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

#: Exit statuses of a process ended by a signal, as shells report them (128 + number).
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(Exception):
    """Training stopped on a signal; ``saved`` says whether a checkpoint holds ``step``."""

    def __init__(self, signum: int, step: int | None, saved: bool):
        self.signum, self.step, self.saved = signum, step, saved
        where = f" at step {step}" if step is not None else " before training"
        kept = "; checkpoint saved, continue with trainer.resume=true" if saved else ""
        super().__init__(f"interrupted by {signal.Signals(signum).name}{where}{kept}")

    @property
    def exit_status(self) -> int:
        return EXIT_STATUS.get(self.signum, 128 + int(self.signum))


class StopFlag:
    """Which signal asked the run to stop (None while none has)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self) -> int | None:
        return self.signum


@contextlib.contextmanager
def stop_on_signals(
    signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM),
) -> Iterator[StopFlag]:
    """Within the block, SIGINT/SIGTERM set the yielded flag instead of killing the process.

    Outside the main thread (where Python cannot install handlers) the flag never rises
    and signals keep their usual effect. Start ``jax.distributed`` before entering: it
    installs a SIGTERM handler of its own, which would replace this one.
    """
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.signum is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}")
        flag.signum = signum

    # A signal the process was started ignoring (nohup, a background job of a script) stays
    # ignored, as Python itself leaves such a SIGINT alone.
    previous = {
        s: signal.signal(s, handler) for s in signums if signal.getsignal(s) is not signal.SIG_IGN
    }
    try:
        yield flag
    finally:
        for s, h in previous.items():  # None: a handler installed outside Python
            signal.signal(s, h if h is not None else signal.SIG_DFL)
