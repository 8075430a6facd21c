"""Running ``jaxconv-train`` as a user would: a subprocess on the CPU, and the wait for
one of its checkpoints (for the tests that interrupt it there)."""

import os
import subprocess
import sys
import time
from pathlib import Path


def cli_env() -> dict:
    return {**os.environ, "JAX_PLATFORMS": "cpu"}


def cli(args, cwd, timeout=600, **kwargs) -> subprocess.CompletedProcess:
    """``python -m jaxconv ARGS`` to completion, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "jaxconv", *map(str, args)],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def start_cli(args, cwd, **kwargs) -> subprocess.Popen:
    """``python -m jaxconv ARGS`` started in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "jaxconv", *map(str, args)], cwd=cwd, env=cli_env(), **kwargs
    )


def wait_for_checkpoint(run_dir: Path, step: int, timeout: float = 300) -> None:
    """Until the run's manifest records checkpoint ``step`` (or ``timeout`` seconds)."""
    manifest = Path(run_dir) / "checkpoints" / "manifest" / f"last-{step}.json"
    deadline = time.time() + timeout
    while time.time() < deadline and not manifest.exists():
        time.sleep(0.05)
