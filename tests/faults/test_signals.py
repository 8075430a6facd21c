"""SIGINT and SIGTERM end a run as "interrupted" with a checkpoint of the step
reached, one line and the shell's exit status (130, 143); resume then finishes
bit-identical to a run never interrupted, and the summary counts the interruption."""

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from tests.helpers import start_cli, wait_for_checkpoint

from .conftest import TINY, cli, error_lines, result, summarize_cli

COMMON = [
    *TINY,
    "trainer.max_steps=300",
    "trainer.eval_every=50",
    "trainer.checkpoint_every=20",
    "model.dropout=0.1",
]


def interrupt(run_dir, cwd, signum):
    proc = start_cli(
        [*COMMON, f"hydra.run.dir={run_dir}"],
        cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_checkpoint(run_dir, 40)
        os.kill(proc.pid, signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


@pytest.mark.slow
def test_sigint_and_sigterm_interrupt_then_resume_bit_identical(tmp_path):
    full_dir = tmp_path / "full"
    full = cli([*COMMON, f"hydra.run.dir={full_dir}"], cwd=tmp_path)
    assert full.returncode == 0, full.stderr[-3000:]
    reference = result(full_dir)

    for signum, status in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        run_dir = tmp_path / "sweep" / signal.Signals(signum).name
        code, err = interrupt(run_dir, tmp_path, signum)
        assert code == status, err[-3000:]
        (line,) = error_lines(err)
        name = signal.Signals(signum).name
        assert line.startswith(f"jaxconv-train: interrupted by {name} at step "), err
        step = int(line.split(" at step ")[1].split(";")[0])
        assert 40 <= step < 300 and line.endswith(
            "checkpoint saved, continue with trainer.resume=true"
        )
        interrupted = result(run_dir)
        assert interrupted["status"] == "interrupted" and name in interrupted["error"]
        assert (
            json.loads((run_dir / "checkpoints" / "manifest" / f"last-{step}.json").read_text())[
                "step"
            ]
            == step
        )
        assert "Traceback" not in err

    summary = summarize_cli(tmp_path / "sweep")
    assert summary.returncode == 0 and "| 0 / 0 / 2 / 0 / 0 |" in summary.stdout, summary.stdout

    for name in ("SIGINT", "SIGTERM"):
        run_dir = tmp_path / "sweep" / name
        resumed = cli([*COMMON, "trainer.resume=true", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        finished = result(run_dir)
        assert (
            finished["status"] == "ok" and finished["params_sha256"] == reference["params_sha256"]
        )
        assert (finished["test_accuracy"], finished["test_loss"]) == (
            reference["test_accuracy"],
            reference["test_loss"],
        )


def test_stop_flag_in_python(hydra_compose, tmp_path):
    """From Python: the loop polls ``should_stop`` between steps and checkpoints there."""
    from jaxconv.data import load_dataset
    from jaxconv.models import CNN
    from jaxconv.train import Checkpoints, Interrupted, fit, make_optimizer, make_schedule

    data = load_dataset("digits", val_fraction=0.0)
    calls = []

    def should_stop():
        calls.append(1)
        return signal.SIGTERM if len(calls) > 7 else None

    with pytest.raises(Interrupted) as info:
        fit(
            CNN(channels=(4,), kernel_size=(3, 3)),
            data,
            make_optimizer("sgd", make_schedule("constant", 0.1, 20)),
            max_steps=20,
            batch_size=16,
            run_dir=tmp_path,
            progress=False,
            should_stop=should_stop,
        )
    # polled once before anything is written, then before each step: the 8th poll comes
    # after 6 steps
    assert (info.value.step, info.value.saved, info.value.exit_status) == (6, True, 143)
    assert Checkpoints(tmp_path).latest_step() == 6


def test_signals_while_stopping_never_print_a_traceback(tmp_path):
    """A SIGINT, then more every few milliseconds until the process ends: they land in the
    checkpoint, in the record, in the interpreter's shutdown (atexit, __del__), wherever.
    One line, exit 130, the run recorded as interrupted, never a traceback."""
    run_dir = tmp_path / "run"
    proc = start_cli(
        [*TINY, "trainer.max_steps=3000", "trainer.eval_every=5", f"hydra.run.dir={run_dir}"],
        tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def keep_interrupting():
        while proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                return
            time.sleep(0.01)

    try:
        wait_for_checkpoint(run_dir, 5)
        os.kill(proc.pid, signal.SIGINT)
        time.sleep(0.03)
        threading.Thread(target=keep_interrupting, daemon=True).start()
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "Exception ignored" not in err, err
    (line,) = error_lines(err)
    assert line.startswith("jaxconv-train: interrupted")
    assert result(run_dir)["status"] == "interrupted"
