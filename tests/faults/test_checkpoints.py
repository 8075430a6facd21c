"""Restore errors are classified and reported in one line each; checkpoints
that cannot be used are kept; TensorStore's dumps during a fallback are not printed."""

import shutil

import optax
import pytest

from jaxconv.data import load_dataset
from jaxconv.models import CNN
from jaxconv.train import CheckpointError, fit

from .conftest import TINY, cli, error_lines, result, snapshot


def corrupt(run_dir, step):
    """Overwrite the array chunks of checkpoint ``step`` (its metadata stays readable)."""
    chunks = [
        p
        for p in (run_dir / "checkpoints" / "last" / str(step)).rglob("*")
        if p.is_file() and p.parent.name == "d"
    ]
    assert chunks
    for path in chunks:
        path.write_bytes(b"garbage")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", val_fraction=0.0)


def test_checkpoint_of_another_model_is_named_as_such(tmp_path, digits):
    fit(
        CNN(channels=(4,), kernel_size=(3, 3)),
        digits,
        optax.adam(1e-3),
        max_steps=2,
        batch_size=16,
        run_dir=tmp_path,
        progress=False,
    )
    with pytest.raises(CheckpointError) as err:
        fit(
            CNN(channels=(6,), kernel_size=(3, 3)),
            digits,
            optax.adam(1e-3),
            max_steps=3,
            batch_size=16,
            run_dir=tmp_path,
            resume=True,
            progress=False,
        )
    message = str(err.value)
    assert "\n" not in message and "(files kept)" in message
    assert (
        "checkpoint at step 2 has parameters of another "
        "model: params/BatchNorm_0/bias has shape (4,) "
        "in the checkpoint, (6,) in the model"
    ) in message
    assert "corrupt" not in message


def test_fallback_is_one_line_and_only_when_there_is_something_to_fall_back_to(
    tmp_path, digits, capfd
):
    model = CNN(channels=(4,), kernel_size=(3, 3))
    fit(
        model,
        digits,
        optax.adam(1e-3),
        max_steps=2,
        batch_size=16,
        run_dir=tmp_path,
        progress=False,
    )
    corrupt(tmp_path, 2)  # the only checkpoint
    capfd.readouterr()
    with pytest.raises(CheckpointError, match="checkpoint at step 2 is unreadable or corrupt"):
        fit(
            model,
            digits,
            optax.adam(1e-3),
            max_steps=3,
            batch_size=16,
            run_dir=tmp_path,
            resume=True,
            progress=False,
        )
    out, err = capfd.readouterr()
    assert (
        "falling back" not in err and "Traceback" not in err and "Event loop is closed" not in err
    ), err


def resume_to_step_12(run_dir, cwd):
    """Resume the suite's trained run (10 steps, checkpoints at 5 and 10) to step 12."""
    args = [*TINY, "trainer.max_steps=12", "trainer.eval_every=5", "trainer.resume=true"]
    return cli([*args, f"hydra.run.dir={run_dir}"], cwd=cwd)


def test_corrupt_newest_checkpoint_falls_back_quietly(trained, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    corrupt(run_dir, 10)
    proc = resume_to_step_12(run_dir, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = error_lines(proc.stderr)
    assert line.startswith("checkpoint at step 10 is unreadable or corrupt (") and line.endswith(
        "falling back to step 5"
    )
    for noise in ("Traceback", "Exception ignored", "Event loop is closed", "Future exception"):
        assert noise not in proc.stderr
    assert result(run_dir)["status"] == "ok" and result(run_dir)["steps"] == 12


def test_no_usable_checkpoint_is_one_line_exit_2_and_changes_nothing(trained, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    corrupt(run_dir, 10)
    corrupt(run_dir, 5)
    before = snapshot(run_dir)
    proc = resume_to_step_12(run_dir, tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = error_lines(proc.stderr)
    assert lines[0].endswith("falling back to step 5") and len(lines) == 2, proc.stderr
    assert lines[1].startswith(
        f"jaxconv-train: error: no usable checkpoint in {run_dir}/checkpoints/last (files kept): "
    )
    assert "Traceback" not in proc.stderr and len(proc.stderr) < 5000
    assert snapshot(run_dir) == before
