"""Divergence is never reported as success; every float hyperparameter is
checked for finiteness and range before anything runs."""

import jax
import numpy as np
import pytest

from jaxconv.app.errors import ConfigError
from jaxconv.app.train import train
from jaxconv.train import Checkpoints, Diverged

from .conftest import TINY, cli, error_lines, result


def test_non_finite_loss_fails_the_run_and_keeps_finite_checkpoints(tmp_path):
    run_dir = tmp_path / "run"
    proc = cli(
        [
            *TINY,
            "optimizer.lr=1e6",
            "trainer.max_steps=40",
            "trainer.eval_every=20",
            "trainer.checkpoint_every=1",
            "trainer.keep_checkpoints=2",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    (line,) = error_lines(proc.stderr)
    assert line.startswith("jaxconv-train: error: non-finite loss") and "at training step" in line
    res = result(run_dir)
    assert res["status"] == "failed" and "non-finite loss" in res["error"]
    bad_step = int(res["error"].split("at training step ")[1].split(";")[0])
    assert "test_accuracy" not in res and "params_sha256" not in res

    # the checkpoints that were kept are finite and older than the failing step
    ckpt = Checkpoints(run_dir)
    steps = sorted(ckpt.last.all_steps())
    assert steps and max(steps) < bad_step
    assert f"last finite checkpoint: step {max(steps)}" in res["error"]
    restored = ckpt.last.restore(max(steps))
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(restored["params"]))
    ckpt.close()


def test_nan_parameters_are_never_checkpointed(hydra_compose, tmp_path, monkeypatch):
    """A step whose loss is finite but whose update is not (an infinite gradient) must
    not be saved: the check before a save looks at the parameters themselves."""
    import jaxconv.train.loop as loop

    real = loop.make_train_step

    def poisoned(*args):
        step = real(*args)

        def wrapped(state, x, y):
            new, metrics = step(state, x, y)
            if int(new.step) == 3:
                new = new.replace(params=jax.tree.map(lambda p: p * np.nan, new.params))
            return new, metrics

        return wrapped

    monkeypatch.setattr(loop, "make_train_step", poisoned)
    monkeypatch.setattr(loop, "_TRAIN_STEPS", {})  # fit's compiled steps: made anew
    with pytest.raises(Diverged, match="non-finite parameters after training step 3"):
        train(hydra_compose([*TINY, "trainer.max_steps=6", "trainer.checkpoint_every=1"]), tmp_path)
    assert sorted(Checkpoints(tmp_path).last.all_steps()) == [1, 2]
    assert result(tmp_path)["status"] == "failed"


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["optimizer.lr=inf"], r"optimizer.lr \(=inf\) must be a finite number"),
        (["optimizer.lr=nan"], r"optimizer.lr \(=nan\) must be a finite number"),
        (
            ["optimizer=momentum", "optimizer.momentum=nan"],
            r"optimizer.momentum \(=nan\) must be a finite number",
        ),
        (["optimizer.momentum=1.0"], r"optimizer.momentum \(=1.0\) must be in \[0, 1\)"),
        (["optimizer.b1=1.0"], r"optimizer.b1 \(=1.0\) must be in \[0, 1\)"),
        (["optimizer.b2=-0.1"], r"optimizer.b2 \(=-0.1\) must be in \[0, 1\)"),
        (["optimizer.clip_norm=0"], r"optimizer.clip_norm \(=0.0\) must be > 0 or null"),
        (
            ["optimizer.weight_decay=-inf"],
            r"optimizer.weight_decay \(=-inf\) must be a finite number",
        ),
        (["model.dropout=1.0"], r"model.dropout \(=1.0\) must be in \[0, 1\)"),
        (["model.dropout=nan"], r"model.dropout \(=nan\) must be a finite number"),
        (
            ["schedule.warmup_fraction=1.5"],
            r"schedule.warmup_fraction \(=1.5\) must be in \[0, 1\]",
        ),
        (["trainer.label_smoothing=1.0"], r"trainer.label_smoothing \(=1.0\) must be in \[0, 1\)"),
        (["data.limit_train=0"], r"data.limit_train \(=0\) must be >= 1"),
        (
            ["data.augment_shift=16"],
            r"data.augment_shift \(=16\) must be smaller than the input length \(=16\)",
        ),
        (
            ["trainer.batch_size=1000000000"],
            r"trainer.batch_size \(=1000000000\) must be <= "
            r"the training set size \(=86 examples of shapes\)",
        ),
    ],
)
def test_hyperparameters_are_checked_before_training(hydra_compose, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train(hydra_compose([*TINY, "trainer.max_steps=2", *overrides]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_finite_lr_that_diverges_is_caught_between_evaluations(hydra_compose, tmp_path):
    """The loss is looked at every 25 steps (where the progress bar reads it anyway), so a
    run with rare evaluations stops long before its end."""
    with pytest.raises(Diverged, match="non-finite loss") as info:
        train(
            hydra_compose(
                [*TINY, "optimizer.lr=1e6", "trainer.max_steps=400", "trainer.eval_every=400"]
            ),
            tmp_path,
        )
    step = int(str(info.value).split("at training step ")[1].split(";")[0])
    assert 1 < step <= 25
    assert result(tmp_path)["status"] == "failed"
    assert not (tmp_path / "checkpoints" / "last").exists() or not any(
        (tmp_path / "checkpoints" / "last").iterdir()
    )
