"""fit(loss=, metrics=): a regression and a multi-label model through the same loop as the
classifiers (metrics.csv, evaluate, the best checkpoint, resume, divergence)."""

import dataclasses
import signal

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxconv import models
from jaxconv.data import load_dataset
from jaxconv.train import (
    Checkpoints,
    Diverged,
    Interrupted,
    evaluate,
    fit,
    params_sha256,
    read_metrics,
)
from jaxconv.train.objectives import absolute_error, sigmoid_binary_cross_entropy, squared_error

REGRESSION = dict(loss=squared_error, metrics={"mae": absolute_error})
OPTIONS = dict(max_steps=120, batch_size=32, eval_every=30, progress=False, seed=3)


def _as_values(y: np.ndarray) -> np.ndarray:
    """A digit's class as a number to regress: (N, 1) float32 in [0, 1]."""
    return (np.asarray(y, np.float32) / 9.0)[:, None]


@pytest.fixture(scope="module")
def regression():
    d = load_dataset("digits", val_fraction=0.15)
    return dataclasses.replace(d, y_train=_as_values(d.y_train), y_val=_as_values(d.y_val),
                               y_test=_as_values(d.y_test), num_classes=1)  # fmt: skip


def _mlp():
    return models.MLP(num_classes=1, hidden=(64,))


def test_a_regression_trains_and_reports_its_own_metrics(regression, tmp_path):
    state, history = fit(_mlp(), regression, optax.adam(3e-3), run_dir=tmp_path, **OPTIONS,
                         **REGRESSION)  # fmt: skip
    x, y = regression.x_test, regression.y_test
    predicted = np.asarray(state.apply_fn({"params": state.params}, x, train=False))
    # The same numbers computed here with numpy from the model's predictions.
    want = {
        "loss": np.mean(np.sum((predicted - y) ** 2, -1)),
        "mae": np.mean(np.abs(predicted - y)),
    }
    got = evaluate(state, x, y, batch_size=50, **REGRESSION)  # 50 pads the last batch
    assert set(got) == {"loss", "mae"}
    np.testing.assert_allclose([got["loss"], got["mae"]], [want["loss"], want["mae"]], rtol=1e-5)
    # Better than the best linear fit of the pixels (least squares, fitted here on the
    # training split; 0.045 here), and far better than the best constant (the variance).
    design = lambda x: np.c_[x.reshape(len(x), -1), np.ones(len(x))]  # noqa: E731
    w = np.linalg.lstsq(design(regression.x_train), regression.y_train, rcond=None)[0]
    linear = np.mean((design(x) @ w - y) ** 2)
    assert got["loss"] < 0.75 * linear and got["loss"] < 0.3 * np.var(y), (got, linear)
    rows = read_metrics(tmp_path / "metrics.csv")
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert header == "step,epoch,split,loss,mae,images_per_s"
    assert [r["step"] for r in rows if r["split"] == "val"] == [30, 60, 90, 120]
    values = [(r["step"], r["split"], r["loss"], r["mae"]) for r in rows]
    assert values == [(r["step"], r["split"], r["loss"], r["mae"]) for r in history.rows]
    # No accuracy: the best checkpoint is the evaluation with the lowest validation loss.
    val = history.split("val")
    best_step = min(val, key=lambda r: r["loss"])["step"]
    assert Checkpoints(tmp_path).best.latest_step() == best_step


def test_a_resumed_regression_equals_the_uninterrupted_one(regression, tmp_path):
    full, full_history = fit(_mlp(), regression, optax.adam(3e-3), run_dir=tmp_path / "full",
                             **OPTIONS, **REGRESSION)  # fmt: skip
    calls = []

    def stop_at_step_44():  # mid-way through the second evaluation window
        calls.append(1)  # polled once when the state is ready, then before every step
        return signal.SIGTERM if len(calls) == 46 else None

    cut = dict(run_dir=tmp_path / "cut", checkpoint_every=11, **OPTIONS, **REGRESSION)
    with pytest.raises(Interrupted):
        fit(_mlp(), regression, optax.adam(3e-3), should_stop=stop_at_step_44, **cut)
    assert Checkpoints(tmp_path / "cut").latest_step() == 44
    resumed, history = fit(_mlp(), regression, optax.adam(3e-3), resume=True, **cut)
    assert params_sha256(resumed.params) == params_sha256(full.params)

    def numbers(rows):  # every value but the speed; the train window's mae included
        return [{k: v for k, v in r.items() if k != "images_per_s"} for r in rows]

    assert numbers(history.rows) == numbers(full_history.rows)
    with pytest.raises(ValueError, match="trained with the metrics loss, mae; this run computes"):
        fit(_mlp(), regression, optax.adam(3e-3), resume=True, **{**cut, "metrics": {}})


def test_a_multi_label_model_trains_with_its_own_loss():
    d = load_dataset("digits", val_fraction=0.1)

    def labels(y):  # two independent 0/1 labels: even, and above 4
        return np.stack([y % 2 == 0, y > 4], axis=1).astype(np.float32)

    data = dataclasses.replace(d, y_train=labels(d.y_train), y_val=labels(d.y_val),
                               y_test=labels(d.y_test), num_classes=2)  # fmt: skip

    def exact(logits, targets):  # every label of the example right
        return jnp.all((logits > 0) == (targets > 0.5), axis=-1).astype(jnp.float32)

    state, history = fit(models.MLP(num_classes=2, hidden=(64,)), data, optax.adam(3e-3),
                         loss=sigmoid_binary_cross_entropy, metrics={"exact": exact},
                         **OPTIONS)  # fmt: skip
    logits = np.asarray(state.apply_fn({"params": state.params}, data.x_test))
    want = np.mean(np.all((logits > 0) == (data.y_test > 0.5), axis=-1))
    got = evaluate(state, data.x_test, data.y_test, loss=sigmoid_binary_cross_entropy,
                   metrics={"exact": exact})  # fmt: skip
    assert got["exact"] == pytest.approx(want) and want > 0.8


def test_a_non_finite_loss_of_ones_own_stops_training(regression):
    # A step far too large: the squared error overflows within a few steps.
    with pytest.raises(Diverged, match=r"non-finite loss \((inf|nan)\) at training step"):
        fit(_mlp(), regression, optax.sgd(1e8), **OPTIONS, **REGRESSION)


def test_bad_losses_and_metrics_are_one_line(regression):
    digits = load_dataset("digits", val_fraction=0.1)
    cases = [
        (dict(loss=lambda o, t: jnp.mean((o - t) ** 2)), r"`loss` must return one value per "
         r"example, shape \(32,\); got shape \(\)"),
        (dict(loss=squared_error, metrics={"mae": lambda o, t: o - t}),
         r"`metrics\['mae'\]` must return one value per example, shape \(32,\); got shape"),
        (dict(loss=squared_error, metrics={"loss": absolute_error}),
         r"`metrics` key 'loss' must be an identifier other than step, epoch"),
        (dict(loss=squared_error, label_smoothing=0.1),
         r"`label_smoothing` \(=0.1\) applies to the default cross-entropy only"),
        (dict(loss="mse"), r"`loss` \(='mse'\) must be a function"),
    ]  # fmt: skip
    for arguments, message in cases:
        with pytest.raises((ValueError, TypeError), match=message):
            fit(_mlp(), regression, optax.adam(1e-3), **{**OPTIONS, **arguments})
    # Float targets need a loss of one's own; the default checks class indices.
    with pytest.raises(ValueError, match=r"one class index per example .*; other targets need"):
        fit(_mlp(), regression, optax.adam(1e-3), **OPTIONS)
    short = dataclasses.replace(regression, y_val=regression.y_val[:-1])
    with pytest.raises(ValueError, match=r"`y_val` \(shape .*\) must hold one row per example"):
        fit(_mlp(), short, optax.adam(1e-3), **OPTIONS, **REGRESSION)
    state, _ = fit(models.LogisticRegression(num_classes=10), digits, optax.sgd(0.0), max_steps=1,
                   batch_size=8, progress=False)  # fmt: skip
    assert set(evaluate(state, digits.x_test, digits.y_test)) == {"loss", "accuracy"}
