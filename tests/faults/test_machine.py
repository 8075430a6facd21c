"""Faults of the disk, the memory and the environment, and run directories the system
would reject: each ends in one line naming the cause. A refused command (exit 2) writes
nothing; a run stopped by its machine (exit 1) records "failed" with the same line where
a result.json exists, keeps its earlier checkpoints, leaves no temporary or empty
folders, and resumes to the uninterrupted hash once the cause is gone.

Read-only folders and a small full disk are tmpfs mounts (root only: skipped otherwise)."""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import cli_env, start_cli, wait_for_checkpoint

from .conftest import TINY, cli, error_lines, result, snapshot

STEPS = ["trainer.max_steps=15", "trainer.eval_every=5"]


def _mount(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode().strip()})")


@pytest.fixture
def mounts(tmp_path):
    """Mount tmpfs folders for the test; all are unmounted after it."""
    made = []

    def mount(name: str, options: str) -> Path:
        path = tmp_path / name
        _mount(path, options)
        made.append(path)
        return path

    yield mount
    for path in reversed(made):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _refused(proc, *expected: str) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = error_lines(proc.stderr)
    for text in expected:
        assert text in line, line
    return line


@pytest.mark.parametrize(
    "make,run_dir,expected",
    [
        (lambda root: None, "a" * 300, "a name of 300 bytes on its path; the file system allows"),
        (lambda root: None, "/".join(["b" * 200] * 20), "passes the system's PATH_MAX"),
        (
            lambda root: (root / "link").symlink_to(root / "nowhere"),
            "link/run",
            "link is a symlink to",
        ),
        (
            lambda root: ((root / "l1").symlink_to("l2"), (root / "l2").symlink_to("l1")),
            "l1",
            "is a symlink loop",
        ),
        (
            lambda root: (
                (root / "r").mkdir(),
                (root / "r/.jaxconv.lock").touch(),
                (root / "r/checkpoints").touch(),
            ),  # fmt: skip
            "r",
            "checkpoints is a file, not what jaxconv writes there",
        ),
        (
            lambda root: (
                (root / "r/result.json").mkdir(parents=True),
                (root / "r/.jaxconv.lock").touch(),
            ),  # fmt: skip
            "r",
            "result.json is a directory, not what jaxconv writes there",
        ),
    ],
    ids=[
        "300-char-name",
        "past-PATH_MAX",
        "dangling-symlink",
        "symlink-loop",
        "checkpoints-a-file",
        "result-json-a-dir",
    ],  # fmt: skip
)
def test_run_dirs_the_system_would_reject_are_one_line(tmp_path, make, run_dir, expected):
    make(tmp_path)
    before = snapshot(tmp_path)
    proc = cli([*TINY, *STEPS, f"hydra.run.dir={run_dir}"], cwd=tmp_path, timeout=120)
    _refused(proc, "jaxconv-train: error: run directory ", expected)
    assert snapshot(tmp_path) == before


def test_a_platform_the_machine_lacks_is_one_line(tmp_path):
    env = {**cli_env(), "JAX_PLATFORMS": "cuda"}
    proc = cli([*TINY, *STEPS, "hydra.run.dir=run"], cwd=tmp_path, env=env, timeout=120)
    _refused(proc, "JAX could not start a backend for JAX_PLATFORMS='cuda'")
    assert list(tmp_path.iterdir()) == []


def test_read_only_folders_are_one_line(mounts, tmp_path):
    read_only = mounts("ro", "ro,size=1m")
    proc = cli([*TINY, *STEPS], cwd=read_only, timeout=120)  # the default run directory
    _refused(proc, "run directory outputs is not writable (", "is on a read-only file system")
    tutorial = subprocess.run(
        [sys.executable, "-m", "jaxconv.tutorial", str(read_only / "figures")],
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(),
    )
    assert tutorial.returncode == 2
    assert tutorial.stderr.strip().splitlines() == [
        f"python -m jaxconv.tutorial: error: OUT_DIR ({read_only / 'figures'}) cannot take "
        f"the figures: {read_only} is on a read-only file system"
    ]
    assert list(read_only.iterdir()) == []


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """params_sha256 of the 15-step run the faulted runs are resumed to."""
    root = tmp_path_factory.mktemp("uninterrupted")
    proc = cli([*TINY, *STEPS, "hydra.run.dir=run"], cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return result(root / "run")["params_sha256"]


def _leftovers(run_dir: Path) -> list[str]:
    """Temporary files, empty files and empty folders a failed run should not leave."""
    out = []
    for path in run_dir.rglob("*"):
        if path.name.endswith(".tmp") or "orbax-checkpoint-tmp" in path.name:
            out.append(str(path))
        elif path.is_dir() and not any(path.iterdir()):
            out.append(str(path))
    return out


def test_disk_full_during_a_checkpoint(mounts, uninterrupted):
    disk = mounts("disk", "size=3m")
    free = shutil.disk_usage(disk).free
    filler = disk / "filler"
    filler.write_bytes(b"\0" * (free - 150 * 1024))  # about one checkpoint fits, not more
    run_dir = disk / "run"
    proc = cli([*TINY, *STEPS, f"hydra.run.dir={run_dir}"], cwd=disk)
    assert proc.returncode == 1, proc.stderr[-3000:]
    (line,) = error_lines(proc.stderr)
    assert line.startswith(f"jaxconv-train: error: no space left on device at {run_dir}")
    assert "Traceback" not in proc.stdout + proc.stderr
    record = result(run_dir)
    assert record["status"] == "failed" and "no space left on device" in record["error"]
    assert _leftovers(run_dir) == []
    failed_at = int(re.search(r"saving the checkpoint of step (\d+)", line).group(1))
    kept = sorted(int(p.stem.split("-")[1]) for p in run_dir.glob("checkpoints/manifest/last-*"))
    assert kept == list(range(5, failed_at, 5)) or kept == list(range(5, failed_at + 5, 5))
    filler.unlink()
    proc = cli([*TINY, *STEPS, "trainer.resume=true", f"hydra.run.dir={run_dir}"], cwd=disk)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result(run_dir)["params_sha256"] == uninterrupted


def test_run_directory_removed_during_training(tmp_path):
    run_dir = tmp_path / "run"
    proc = start_cli(
        [*TINY, "trainer.max_steps=5000", "trainer.eval_every=5", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_checkpoint(run_dir, 5)
        deadline = time.time() + 60
        while run_dir.exists() and proc.poll() is None and time.time() < deadline:
            shutil.rmtree(run_dir, ignore_errors=True)  # races the run's writes: again
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 1, stderr[-3000:]
    (line,) = error_lines(stderr)
    assert line.startswith("jaxconv-train: error: ") and "removed during the run" in line, line
    assert "Traceback" not in stderr


def test_memory_exhausted_in_the_step(tmp_path):
    big = [
        "model.channels=[64,128]",
        "data.options.num_train=5000",
        "trainer.batch_size=4096",
        "trainer.max_steps=3",
        "trainer.eval_every=3",
    ]  # fmt: skip (twice what 2 GiB hold)
    run_dir = tmp_path / "run"
    limited = ["prlimit", f"--as={2 * 1024**3}", sys.executable, "-m", "jaxconv"]  # no fork
    proc = subprocess.run(  # hook in this multithreaded process
        [*limited, *TINY, *big, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    (line,) = error_lines(proc.stderr)
    assert line.startswith("jaxconv-train: error: out of memory while compiling or running")
    record = result(run_dir)
    assert record["status"] == "failed" and "out of memory" in record["error"]
    assert _leftovers(run_dir) == [] and not (run_dir / "checkpoints").exists()


def test_a_refused_resume_does_not_make_the_manifest_again(trained, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    shutil.rmtree(run_dir / "checkpoints" / "manifest")
    before = snapshot(run_dir)
    proc = cli(
        [
            *TINY,
            "trainer.max_steps=12",
            "trainer.eval_every=5",
            "trainer.resume=true",
            f"hydra.run.dir={run_dir}",
        ],  # fmt: skip
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    *fallbacks, line = error_lines(proc.stderr)  # a line per step tried, then the error
    assert line.startswith("jaxconv-train: error: no usable checkpoint") and len(fallbacks) == 1
    assert snapshot(run_dir) == before
    assert not os.path.exists(run_dir / "checkpoints" / "manifest")


def test_sigterm_before_the_first_checkpoint_leaves_no_partial_files(tmp_path):
    """SIGTERM as soon as the run is accepted (its result.json says running): the step
    reached is checkpointed, result.json says interrupted, nothing temporary or empty."""
    run_dir = tmp_path / "run"
    proc = start_cli(
        [*TINY, "trainer.max_steps=300", "trainer.eval_every=100", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while not (run_dir / "result.json").exists() and time.time() < deadline:
            time.sleep(0.01)
        proc.terminate()
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr[-3000:]
    (line,) = error_lines(stderr)
    assert line.startswith("jaxconv-train: interrupted by SIGTERM")
    assert result(run_dir)["status"] == "interrupted"
    assert _leftovers(run_dir) == []
