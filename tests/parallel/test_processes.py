"""Several processes on localhost (Gloo), started as SLURM would start them (JAX's own
cluster detection) or with explicit ``distributed.*`` keys: one run, written once by
process 0, equal to one process on as many devices, resumable after SIGKILL of all."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import (
    cli,
    cli_env,
    computed_once,
    free_port,
    simulated_devices_env,
    wait_for_checkpoint,
)

pytestmark = pytest.mark.slow

ARGS = [
    "data=digits",
    "model=cnn2d",
    "model.channels=[8,16]",
    "model.dropout=0.1",
    "trainer.batch_size=32",
    "trainer.max_steps=100",
    "trainer.eval_every=1",  # a metrics row per step: per-step losses to compare
    "trainer.checkpoint_every=20",
    "trainer.plots=false",
    "trainer.progress=false",
]


def slurm_env(rank: int, port: int) -> dict:
    """What ``srun --ntasks=2`` on one node sets, as JAX's SLURM detection reads it; the
    coordinator port, which SLURM jobs derive from the job id, comes from the OS here."""
    return {
        **cli_env(),
        "SLURM_JOB_ID": "4242",
        "SLURM_STEP_NODELIST": "localhost",
        "SLURM_NTASKS": "2",
        "SLURM_PROCID": str(rank),
        "SLURM_LOCALID": str(rank),
        "SLURM_NODEID": "0",
        "JAX_COORDINATOR_PORT": str(port),
    }


def start(args, run_dir: Path, *, explicit: bool = False) -> list[subprocess.Popen]:
    port = free_port()
    procs = []
    for rank in range(2):
        extra, env = [], slurm_env(rank, port)
        if explicit:  # no cluster variables: the keys say it all
            env = cli_env()
            extra = [
                f"distributed.coordinator_address=127.0.0.1:{port}",
                "distributed.num_processes=2",
                f"distributed.process_id={rank}",
            ]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "jaxconv", *args, *extra, f"hydra.run.dir={run_dir}"],
                cwd=run_dir.parent,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def finish(procs, timeout: float = 300) -> list[tuple[int, str, str]]:
    """Wait for every process; kill them all on timeout (no process outlives the test)."""
    deadline = time.time() + timeout
    out = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=max(deadline - time.time(), 1))
            out.append((p.returncode, stdout, stderr))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    return out


def run(args, run_dir: Path, **kwargs):
    return finish(start(args, run_dir, **kwargs))


def losses(run_dir: Path) -> list[float]:
    from jaxconv.train import read_metrics

    return [r["loss"] for r in read_metrics(run_dir / "metrics.csv") if r["split"] == "train"]


@pytest.fixture(scope="session")
def two_processes(tmp_path_factory):
    """The 2-process SLURM run the tests compare with (made once per session)."""

    def make():
        run_dir = tmp_path_factory.mktemp("mp") / "slurm"
        return str(run_dir), run(ARGS, run_dir)

    run_dir, outs = computed_once(tmp_path_factory, "two_processes", make)
    return Path(run_dir), outs


def test_two_slurm_processes_make_one_run_written_once(two_processes):
    run_dir, outs = two_processes
    for code, _, stderr in outs:
        assert code == 0, stderr[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "ok" and result["steps"] == 100
    assert (result["processes"], result["devices"], result["local_devices"]) == (2, 2, 1)
    assert result["mesh_shape"] == {"data": 2}
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["process_count"] == 2 and provenance["device_count"] == 2
    assert provenance["topology"] == {
        "devices": 2,
        "local_devices": 1,
        "processes": 2,
        "mesh_shape": {"data": 2},
        "platform": "cpu",
    }
    # process 0 reports and writes; process 1 trains in silence
    assert "test accuracy" in outs[0][1] and "test accuracy" not in outs[1][1]
    assert len(losses(run_dir)) == 100  # one row per step: nothing written twice
    assert sorted(p.name for p in (run_dir / "checkpoints" / "last").iterdir()) == [
        "100",
        "60",
        "80",
    ]


def test_two_processes_train_like_two_devices_in_one(two_processes, tmp_path):
    run_dir, _ = two_processes
    one = tmp_path / "one_process"
    proc = cli([*ARGS, f"hydra.run.dir={one}"], tmp_path, timeout=300, env=simulated_devices_env(2))
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = json.loads((one / "result.json").read_text())
    assert (single["processes"], single["devices"]) == (1, 2)
    a, b = losses(run_dir), losses(one)
    np.testing.assert_allclose(a[:20], b[:20], rtol=1e-4)
    multi = json.loads((run_dir / "result.json").read_text())
    assert abs(multi["test_accuracy"] - single["test_accuracy"]) <= 0.01
    # Gloo's all-reduce of two and XLA's in-process one add the same two partial sums: the
    # runs are bit-identical.
    assert a == b and multi["params_sha256"] == single["params_sha256"]


def test_sigkill_both_processes_and_resume_both_with_explicit_keys(two_processes, tmp_path):
    """Started with explicit ``distributed.*`` keys instead of SLURM's variables, each
    process's batches made by two Grain worker processes, killed mid-epoch (an epoch is
    40 steps; checkpoints every 15) and resumed: the same parameters, bit for bit, as the
    SLURM run without workers. Each process continues its own iterator from the state in
    the checkpoint."""
    run_dir, _ = two_processes
    killed = tmp_path / "killed"
    args = [*ARGS, "data.workers=2", "trainer.checkpoint_every=15"]  # 15, 30, 45, ...
    procs = start(args, killed, explicit=True)
    try:
        wait_for_checkpoint(killed, 15, timeout=240)
        for p in procs:
            os.kill(p.pid, signal.SIGKILL)
    finally:
        finish(procs, timeout=60)
    running = json.loads((killed / "result.json").read_text())
    assert running["status"] == "running" and running["processes"] == 2
    manifests = (killed / "checkpoints" / "manifest").glob("last-*.json")
    latest = max(int(p.stem.split("-")[1]) for p in manifests)
    assert latest % 40 != 0  # the checkpoint it resumes from is mid-epoch
    outs = run([*args, "trainer.resume=true"], killed, explicit=True)
    for code, _, stderr in outs:
        assert code == 0, stderr[-3000:]
    resumed = json.loads((killed / "result.json").read_text())
    whole = json.loads((run_dir / "result.json").read_text())
    assert resumed["status"] == "ok" and resumed["params_sha256"] == whole["params_sha256"]
    assert losses(killed) == losses(run_dir)


def test_an_nnx_model_in_two_processes_trains_like_two_devices_in_one(tmp_path):
    args = [*ARGS, "model.api=nnx", "trainer.max_steps=30", "trainer.checkpoint_every=null"]
    two = tmp_path / "two"
    for code, _, stderr in run(args, two):
        assert code == 0, stderr[-3000:]
    one = tmp_path / "one"
    proc = cli([*args, f"hydra.run.dir={one}"], tmp_path, timeout=300, env=simulated_devices_env(2))
    assert proc.returncode == 0, proc.stderr[-3000:]
    multi, single = (json.loads((d / "result.json").read_text()) for d in (two, one))
    assert multi["model_api"] == "nnx" and multi["processes"] == 2 and single["devices"] == 2
    assert losses(two) == losses(one) and multi["params_sha256"] == single["params_sha256"]


def test_a_refusal_on_one_process_stops_every_process(tmp_path):
    """Process 1 is given another seed: both stop before anything is written, in one line
    each, instead of one waiting for the other in a collective."""
    port = free_port()
    run_dir = tmp_path / "refused"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "jaxconv", *ARGS, f"seed={rank}", f"hydra.run.dir={run_dir}"],
            cwd=tmp_path,
            env=slurm_env(rank, port),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    outs = finish(procs, timeout=240)
    for code, _, stderr in outs:
        lines = [line for line in stderr.strip().splitlines() if not line.startswith("[Gloo]")]
        assert code == 2 and len(lines) == 1, stderr[-3000:]
        assert "different run directories or configs" in lines[0]
    assert not run_dir.exists()


def test_a_dead_process_fails_the_run_instead_of_leaving_the_other_waiting(tmp_path):
    """SIGKILL process 1 mid-run: process 0's next all-reduce fails (Gloo sees the closed
    connection) and the run ends "failed", within seconds rather than at a timeout."""
    run_dir = tmp_path / "orphan"
    args = [
        *ARGS,
        "trainer.max_steps=5000",
        "trainer.eval_every=500",
        "trainer.checkpoint_every=20",
    ]
    args += ["distributed.timeout_seconds=10"]
    procs = start(args, run_dir)
    try:
        wait_for_checkpoint(run_dir, 20, timeout=240)
        os.kill(procs[1].pid, signal.SIGKILL)
        killed_at = time.time()
        procs[0].wait(timeout=120)
        waited = time.time() - killed_at
    finally:
        finish(procs, timeout=60)
    assert procs[0].returncode != 0 and waited < 60
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "failed" and "Gloo" in result["error"], result


def test_sigterm_to_one_process_stops_both_at_the_same_step(tmp_path):
    """SLURM signals every task, but not at the same instant: the processes share their
    flags every few steps and all checkpoint and stop at one step (exit 143 each)."""
    run_dir = tmp_path / "term"
    args = [
        *ARGS,
        "trainer.max_steps=5000",
        "trainer.eval_every=500",
        "trainer.checkpoint_every=20",
    ]
    procs = start(args, run_dir)
    try:
        wait_for_checkpoint(run_dir, 20, timeout=240)
        procs[0].send_signal(signal.SIGTERM)
    finally:
        outs = finish(procs, timeout=120)
    assert [code for code, _, _ in outs] == [143, 143], [o[2][-2000:] for o in outs]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "interrupted"
    step = int(result["error"].split("step ")[1].split()[0].rstrip(";,:"))
    assert (run_dir / "checkpoints" / "last" / str(step)).is_dir()


def test_a_lone_process_told_there_are_two_is_one_line(tmp_path):
    """No second process ever comes: JAX's coordination service aborts the process; the
    watcher (jaxconv.app.supervise) says so in one line, exit 2, nothing written."""
    port = free_port()
    keys = [f"distributed.coordinator_address=127.0.0.1:{port}", "distributed.num_processes=2",
            "distributed.process_id=0", "distributed.timeout_seconds=10"]  # fmt: skip
    proc = cli([*ARGS, *keys, "hydra.run.dir=run"], tmp_path, timeout=180)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        "jaxconv-train: error: jax.distributed could not start: not every process of the run "
        "came within distributed.timeout_seconds, and JAX's coordination service stopped this "
        "one; nothing was written"
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_killed_peer_leaves_the_survivor_failed_in_one_line(tmp_path):
    run_dir = tmp_path / "run"
    longer = [*ARGS, "trainer.max_steps=3000", "trainer.eval_every=10",
              "distributed.timeout_seconds=10"]  # fmt: skip
    procs = start(longer, run_dir, explicit=True)
    try:
        wait_for_checkpoint(run_dir, 20, timeout=240)
        procs[1].kill()  # its watcher: the kernel kills the job under it too
        (code, _, stderr), _ = finish(procs, timeout=180)
    finally:
        for p in procs:
            p.kill()
    assert code == 1, stderr[-3000:]
    (line,) = stderr.strip().splitlines()
    assert line.startswith("jaxconv-train: error: another process of the run stopped answering")
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "failed" and "stopped answering" in record["error"]
