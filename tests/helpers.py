"""Running ``jaxconv-train`` as a user would: a subprocess on the CPU, and the wait for
one of its checkpoints (for the tests that interrupt it there)."""

import os
import subprocess
import sys
import time
from pathlib import Path

#: A run of seconds: the 16x16 shapes dataset, a two-layer CNN, small splits and batches.
TINY_SHAPES_RUN = [
    "experiment=shapes_cnn",
    "model.channels=[4,8]",
    "data.options.num_train=96",
    "data.options.num_test=48",
    "trainer.batch_size=16",
]


def cli_env() -> dict:
    return {**os.environ, "JAX_PLATFORMS": "cpu"}


def cli(args, cwd, timeout=600, env=None, **kwargs) -> subprocess.CompletedProcess:
    """``python -m jaxconv ARGS`` to completion, output captured as text (``env``: the
    environment, default :func:`cli_env`)."""
    return subprocess.run(
        [sys.executable, "-m", "jaxconv", *map(str, args)],
        cwd=cwd,
        env=env or cli_env(),
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
    """Until the run's manifest records a checkpoint of ``step`` or later (or ``timeout``
    seconds). Later counts: with few checkpoints kept, a fast run deletes ``step``'s own
    before a loaded machine's poll would see it."""
    manifests = Path(run_dir) / "checkpoints" / "manifest"
    deadline = time.time() + timeout
    while time.time() < deadline and not any(
        int(p.stem.split("-")[1]) >= step for p in manifests.glob("last-*.json")
    ):
        time.sleep(0.05)


def simulated_devices_env(devices: int) -> dict:
    """The environment of a process whose CPU backend has ``devices`` devices (read when
    the backend starts: hence a subprocess)."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    return {**cli_env(), "XLA_FLAGS": flags.strip()}


def run_python(code: str, devices: int = 1, timeout: float = 600) -> str:
    """Run ``code`` in a fresh Python on ``devices`` simulated CPU devices; its stdout."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=simulated_devices_env(devices),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def free_port() -> int:
    """A TCP port on localhost the OS says is free now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def computed_once(tmp_path_factory, name: str, compute):
    """``compute()`` (a JSON value) once per test session: the first xdist worker to ask
    computes it under a file lock, the others wait and read it (xdist's own pattern for
    session data; a session fixture alone runs once per worker)."""
    import fcntl
    import json

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of this session
    path = root / f"{name}.json"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return json.loads(path.read_text())
        value = compute()
        path.write_text(json.dumps(value))
        return value
