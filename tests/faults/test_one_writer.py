"""One writer per run directory: a second command into a directory another process is
writing is refused in one line (exit 2) and changes nothing; the hold is an OS lock, so
a SIGKILLed run leaves none behind; a sweep job held elsewhere is refused while the rest
of the sweep goes on."""

import fcntl
import os
import shutil
import signal
import subprocess

import pytest

from jaxconv.app.rundir import RunDirBusy, held
from jaxconv.run_layout import RunDir, read_metrics
from tests.helpers import start_cli, wait_for_checkpoint

from .conftest import TINY, cli, error_lines, result, snapshot

#: Long enough to still be training when the second command arrives (a checkpoint every
#: 5 steps slows it down; a resume may save less often).
LONG = [*TINY, "trainer.max_steps=400", "trainer.eval_every=200", "trainer.checkpoint_every=5"]


def test_a_held_directory_is_refused_in_the_same_process(tmp_path):
    run_dir = tmp_path / "run"
    with held(run_dir) as hold:
        hold.keep = True
        with pytest.raises(RunDirBusy, match="is in use by another jaxconv-train"):
            with held(run_dir):
                pass
    with held(run_dir) as hold:  # released with the block
        hold.keep = True
    assert RunDir(run_dir).lock.exists()


def test_a_refused_hold_leaves_nothing(tmp_path):
    run_dir = tmp_path / "new" / "run"
    with pytest.raises(ValueError, match="refused"):
        with held(run_dir):  # not kept: the run was never accepted
            raise ValueError("refused")
    assert not (tmp_path / "new").exists()


@pytest.fixture
def running(tmp_path):
    """A run in the middle of training (its first checkpoint written); killed after."""
    run_dir = tmp_path / "run"
    proc = start_cli([*LONG, f"hydra.run.dir={run_dir}"], tmp_path,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_for_checkpoint(run_dir, 5)
    yield proc, run_dir
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=60)


def test_a_second_run_or_a_resume_into_a_running_directory_is_refused(running, tmp_path):
    proc, run_dir = running
    assert proc.poll() is None, "the first run ended before the test could race it"
    os.kill(proc.pid, signal.SIGSTOP)  # hold it still: the snapshot must not move
    try:
        before = snapshot(run_dir)
        for extra in (["seed=1"], ["trainer.resume=true"]):
            second = cli([*LONG, *extra, f"hydra.run.dir={run_dir}"], tmp_path)
            assert second.returncode == 2, second.stderr[-2000:]
            (line,) = error_lines(second.stderr)
            assert line == (
                f"jaxconv-train: error: run directory {run_dir} is in use by another "
                "jaxconv-train (it holds .jaxconv.lock): wait for it to end, or choose "
                "another directory"
            )
            assert snapshot(run_dir) == before
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert proc.wait(timeout=300) == 0
    rows = read_metrics(RunDir(run_dir).metrics)
    steps = [(r["step"], r["split"]) for r in rows]
    assert len(steps) == len(set(steps))  # no row written twice
    assert result(run_dir)["status"] == "ok" and result(run_dir)["seed"] == 0


def test_a_killed_run_leaves_no_stale_lock(running, tmp_path):
    proc, run_dir = running
    proc.kill()
    proc.wait(timeout=60)
    resumed = cli([*LONG, "trainer.checkpoint_every=null", "trainer.resume=true",
                   f"hydra.run.dir={run_dir}"], tmp_path)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert result(run_dir)["status"] == "ok" and result(run_dir)["steps"] == 400


def test_a_sweep_job_held_by_another_process_is_refused_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    job0 = sweep / "0"
    job0.mkdir(parents=True)
    handle = os.open(RunDir(job0).lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(handle, fcntl.LOCK_EX)  # another writer holds job 0
    try:
        before = snapshot(job0)
        proc = cli(["-m", *TINY, "trainer.max_steps=4", "seed=0,1",
                    f"hydra.sweep.dir={sweep}"], tmp_path)  # fmt: skip
        assert snapshot(job0) == before  # nothing written into the held directory
    finally:
        os.close(handle)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "job 0 failed: RunDirBusy: run directory" in proc.stderr
    assert result(sweep / "1")["status"] == "ok"


def test_a_folder_of_the_users_own_files_is_refused(tmp_path):
    own = tmp_path / "project"
    own.mkdir()
    for name in ("config.yaml", "metrics.csv", "result.json"):
        (own / name).write_text(f"the user's own {name}\n")
    before = snapshot(own)
    proc = cli([*TINY, "trainer.max_steps=2", "hydra.run.dir=."], own)
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = error_lines(proc.stderr)
    assert line == (
        f"jaxconv-train: error: run directory {own} holds files jaxconv did not write "
        "(config.yaml, metrics.csv, result.json): choose a new or empty directory"
    )
    assert snapshot(own) == before


def test_a_finished_run_without_its_checkpoints_is_not_reused(trained, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    shutil.rmtree(run_dir / "checkpoints")  # an ordinary clean-up
    before = snapshot(run_dir)
    proc = cli([*TINY, "trainer.max_steps=10", "trainer.eval_every=5", "seed=1",
                f"hydra.run.dir={run_dir}"], tmp_path)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = error_lines(proc.stderr)
    assert line.endswith("holds a finished run (result.json says ok): choose another directory")
    assert snapshot(run_dir) == before


def test_a_resume_without_config_yaml_checks_result_json(trained, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    (run_dir / "config.yaml").unlink()
    shutil.rmtree(run_dir / ".hydra")
    before = snapshot(run_dir)
    proc = cli([*TINY, "trainer.max_steps=12", "trainer.eval_every=5", "seed=1",
                "trainer.resume=true", f"hydra.run.dir={run_dir}"], tmp_path)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = error_lines(proc.stderr)
    assert line.endswith("its config.yaml is missing and result.json records another config")
    assert snapshot(run_dir) == before
