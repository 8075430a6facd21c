"""Shared pieces of the fault-injection suite: a tiny config, the CLI in a subprocess,
and byte-exact snapshots of a directory (a refused command must leave it unchanged)."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import TINY_SHAPES_RUN
from tests.helpers import cli as _cli

#: 16x16 shapes, a two-layer CNN: a few seconds per run. A constant schedule: the suite
#: resumes runs for longer, which a schedule planned over the total steps refuses.
TINY = [
    *TINY_SHAPES_RUN,
    "schedule=constant",
    "trainer.plots=false",
    "trainer.progress=false",
]


def cli(args, cwd, timeout=300, **kwargs):
    """The CLI with the fault suite's shorter timeout."""
    return _cli(args, cwd, timeout=timeout, **kwargs)


def summarize_cli(sweep, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "jaxconv.app.summarize", str(sweep)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def error_lines(stderr: str) -> list[str]:
    """stderr without the INFO/WARNING log records of libraries."""
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and not line.startswith(("[", "WARNING:", "INFO:"))
    ]


def snapshot(root: Path) -> dict[str, str]:
    """Every file and directory under ``root`` with its bytes' SHA-256 (and mtime)."""
    out = {}
    for path in sorted(Path(root).rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            out[key] = f"-> {os.readlink(path)}"
        elif path.is_dir():
            out[key + "/"] = "dir"
        else:
            out[key] = f"{hashlib.sha256(path.read_bytes()).hexdigest()} {path.stat().st_mtime_ns}"
    return out


def result(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "result.json").read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished CLI run (10 steps, checkpoints at 5 and 10) to be resumed or refused."""
    root = tmp_path_factory.mktemp("trained")
    run_dir = root / "run"
    proc = cli(
        [*TINY, "trainer.max_steps=10", "trainer.eval_every=5", f"hydra.run.dir={run_dir}"],
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir
