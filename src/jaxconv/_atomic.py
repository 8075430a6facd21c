"""Writing a small file so that a reader, or a process killed mid-write, never sees it
half written: the text goes to a temporary file beside it, which then replaces it in one
``os.replace`` (atomic on POSIX and Windows within one file system).

Below every layer: it imports nothing of jaxconv, so ``train`` and ``app`` share it."""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    """``path.write_text(text)``, all or nothing; the text is written as given (no
    newline translation, so csv's line endings stay as the csv module made them)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, newline="")
    os.replace(tmp, path)
