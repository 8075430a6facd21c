"""A run of several processes under a watcher: what JAX's coordination service does to a
process, said in one line.

When a process of a multi-process run never comes, or dies, JAX's coordination service
ends the others with ``abort()``: exit 134 and a C++ stack trace. Its Python API cannot be
told otherwise (jaxlib 0.10's ``missed_heartbeat_callback`` is called with an
``absl::Status`` it cannot hand to Python: ``std::bad_cast``, then ``terminate``). So a
``jaxconv-train`` that will start ``jax.distributed`` runs its job in a child process and
watches it: the child's output passes through, but for JAX's C++ log records; signals are
passed on; and when the service aborts the child, the watcher says why in one line, exits
2 (the processes never started together: nothing was written, the directory the job made
is removed) or 1 (a peer died mid-run: process 0 has recorded "failed" where it could).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from jaxconv._process import die_with_parent
from jaxconv.train.parallel import detected_cluster

#: Set in the child's environment: it runs the job itself.
CHILD = "JAXCONV_SUPERVISED"
#: The file, named in the child's environment, where the job notes its run directory.
NOTES = "JAXCONV_SUPERVISOR_NOTES"
#: A C++ log record of JAX (tsl/absl): ``E1202 16:31:18.225 30136 file.cc:388] ...``.
_CPP_RECORD = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\]")
#: Lines that end a C++ record's continuation lines: the command's own, Python's.
_OURS = ("jaxconv-train:", "[20", "Traceback", "Error executing job")


def wanted(argv: Sequence[str]) -> bool:
    """Whether this command will start ``jax.distributed`` (a ``distributed.*`` key or a
    detected cluster of several tasks), and is not the watched child itself."""
    if os.environ.get(CHILD):
        return False
    keys = (a.split("=", 1)[0].lstrip("+~") for a in argv)
    return any(k.startswith("distributed.") for k in keys) or detected_cluster() is not None


def note_run_dir(run_dir: Path, made_here: bool) -> None:
    """Called by the child's job: where it runs (the watcher removes a directory the job
    made when the service aborts it before anything was written)."""
    path = os.environ.get(NOTES)
    if path:
        Path(path).write_text(json.dumps({"run_dir": str(run_dir), "made_here": made_here}))


def run(argv: Sequence[str]) -> int:
    """Run ``jaxconv-train ARGV`` as a watched child; its exit status, or the one line
    and status of the service's abort."""
    with tempfile.TemporaryDirectory(prefix="jaxconv-") as scratch:
        notes = Path(scratch) / "notes.json"
        env = {**os.environ, CHILD: "1", NOTES: str(notes)}
        child = subprocess.Popen(
            [sys.executable, "-m", "jaxconv", *argv],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,  # signals reach it once: from here
            preexec_fn=_die_with_parent,
        )
        previous = {s: signal.signal(s, lambda signum, _: child.send_signal(signum))
                    for s in (signal.SIGINT, signal.SIGTERM)}  # fmt: skip
        try:
            seen = _pass_stderr(child.stderr)
            code = child.wait()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        if code in (-signal.SIGABRT, 128 + signal.SIGABRT) and seen.fatal:
            return 1 if seen.said_error else _aborted(seen.fatal, notes)
        return code if code >= 0 else 128 - code


class _Seen:
    """What the child's stderr showed: its fatal C++ record, and whether it said its own
    error line already (then the watcher adds none)."""

    fatal = ""
    said_error = False


def _die_with_parent() -> None:
    """In the child: the kernel kills it when the watcher dies (Linux), so a killed
    watcher never leaves its job running on."""
    die_with_parent()


def _pass_stderr(stream) -> _Seen:
    """Copy the child's stderr but for JAX's C++ records (and their continuation lines)."""
    seen, fatal, in_record = _Seen(), [], False
    for line in stream:
        seen.said_error = seen.said_error or line.startswith("jaxconv-train: error:")
        if _CPP_RECORD.match(line) or line.startswith(("*** Check failure", "    @ ")):
            in_record = True
            if line.startswith("F") or fatal:
                fatal.append(line)
            continue
        if in_record and not line.startswith(_OURS):
            if fatal:
                fatal.append(line)
            continue
        in_record = False
        sys.stderr.write(line)
        sys.stderr.flush()
    seen.fatal = "".join(fatal)
    return seen


def _aborted(fatal: str, notes: Path) -> int:
    """The one line for an abort by the coordination service, and the exit status."""
    if "RegisterTask" in fatal or "register" in fatal.lower():
        _remove_if_made(notes)
        print(
            "jaxconv-train: error: jax.distributed could not start: not every process of "
            "the run came within distributed.timeout_seconds, and JAX's coordination service "
            "stopped this one; nothing was written",
            file=sys.stderr,
            flush=True,
        )
        return 2
    print(
        "jaxconv-train: error: another process of the run died or stopped answering, and "
        "JAX's coordination service stopped this one too; process 0 recorded the run as "
        "failed where it could (resume with trainer.resume=true)",
        file=sys.stderr,
        flush=True,
    )
    return 1


def _remove_if_made(notes: Path) -> None:
    """Remove the run directory the job made, when it is still empty."""
    try:
        noted = json.loads(notes.read_text())
        run_dir = Path(noted["run_dir"])
        if noted.get("made_here") and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()
    except (OSError, ValueError, KeyError):
        pass
