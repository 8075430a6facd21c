"""Writing a small file so that a reader, or a process killed mid-write, never sees it
half written: the text goes to a temporary file beside it, which then replaces it in one
``os.replace`` (atomic on POSIX and Windows within one file system).

Below every layer: it imports nothing of jaxconv, so ``train`` and ``app`` share it."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    """``path.write_text(text)``, all or nothing; the text is written as given (no
    newline translation, so csv's line endings stay as the csv module made them)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, newline="")
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)  # no empty or partial copy is left beside the file
        if isinstance(err, OSError) and err.errno == errno.ENOSPC and _fits(path, text):
            _overwrite(path, text)
            return
        raise


def _fits(path: Path, text: str) -> bool:
    """Whether ``text`` fits in the disk blocks ``path`` already holds."""
    try:
        return len(text.encode()) <= path.stat().st_blocks * 512
    except OSError:
        return False


def _overwrite(path: Path, text: str) -> None:
    """On a full disk the copy cannot be made: write over the file's own blocks (no new
    block is needed), so that a run's last status still reaches its result.json."""
    with open(path, "r+", newline="") as handle:
        handle.write(text)
        handle.truncate()


def nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (a name too long to look up counts as
    missing)."""
    probe = Path(path)
    while probe != probe.parent:
        try:
            if probe.exists():
                return probe
        except OSError:  # ENAMETOOLONG
            pass
        probe = probe.parent
    return probe


def unwritable(path: Path) -> str | None:
    """Why new files cannot be made at ``path`` (a directory to be, or one that exists),
    judged at its nearest existing ancestor; None when they can."""
    probe = nearest_existing(path)
    if not probe.is_dir():
        return f"{probe} is a file, not a directory"
    if os.access(probe, os.W_OK | os.X_OK):
        return None
    try:
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            return f"{probe} is on a read-only file system"
    except OSError:
        pass
    return f"check the permissions of {probe}"
