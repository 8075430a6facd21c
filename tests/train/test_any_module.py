"""``fit`` trains any Flax module: Linen with or without ``train``, and NNX (BatchNorm and
dropout state included) through the same loop, checkpoints and evaluation."""

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest
from flax import nnx

from jaxconv import models
from jaxconv.data import load_dataset
from jaxconv.models import nnx as nnx_models
from jaxconv.train import evaluate, fit, params_sha256
from jaxconv.train.checkpoint import Checkpoints
from jaxconv.train.state import create_state

SHAPE = (8, 8, 1)
ARCH = dict(channels=(8, 16), norm="batch")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", val_fraction=0.1)


def _twins(data, **arch):
    """A Linen preset and its NNX twin holding the variables ``fit`` initialises the
    Linen one with (seed 0)."""
    linen = models.CNN(**arch)
    state = create_state(linen, data.x_train, optax.sgd(0.0), seed=0)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    twin = nnx_models.CNN(**arch, input_shape=SHAPE, rngs=nnx.Rngs(0))
    return linen, nnx_models.from_linen(twin, variables)


def _close(a, b, **tolerance):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **tolerance), a, b)


def test_nnx_trains_like_linen_from_the_same_weights(digits):
    """Same weights, same batches: the NNX step (BatchNorm in train mode, its statistics
    updated) follows the Linen one to float rounding, and evaluates the same."""
    linen, twin = _twins(digits, **ARCH)
    opts = dict(max_steps=40, batch_size=32, eval_every=20, progress=False)
    linen_state, linen_history = fit(linen, digits, optax.adam(3e-3), **opts)
    nnx_state, nnx_history = fit(twin, digits, optax.adam(3e-3), **opts)
    a, b = linen_history.split("train"), nnx_history.split("train")
    np.testing.assert_allclose([r["loss"] for r in b], [r["loss"] for r in a], rtol=1e-5)
    _close(nnx_state.params, linen_state.params, rtol=2e-4, atol=2e-5)
    _close(nnx_state.batch_stats, linen_state.batch_stats, rtol=2e-4, atol=2e-5)
    # the statistics moved from their initial values, and evaluation uses them
    assert not np.allclose(nnx_state.batch_stats["BatchNorm_0"]["var"], 1.0)
    lin, nx = (evaluate(s, digits.x_test, digits.y_test) for s in (linen_state, nnx_state))
    assert abs(lin["accuracy"] - nx["accuracy"]) <= 0.01 and nx["accuracy"] > 0.25  # chance is 0.1


def test_nnx_dropout_follows_the_seed_and_reruns_bit_identically(digits, tmp_path):
    def run(seed, run_dir=None):
        model = nnx_models.CNN(channels=(8,), dropout=0.3, input_shape=SHAPE, rngs=nnx.Rngs(1))
        state, history = fit(model, digits, optax.adam(1e-3), max_steps=12, batch_size=32,
                             eval_every=4, seed=seed, progress=False, run_dir=run_dir)  # fmt: skip
        return params_sha256(state.params), [r["loss"] for r in history.split("train")]

    first = run(0, tmp_path / "a")
    assert run(0) == first  # checkpointing changes nothing either
    assert run(1)[0] != first[0]  # the dropout masks follow fit's seed
    # and dropout is on in training: without it the same weights train differently
    plain = nnx_models.CNN(channels=(8,), dropout=0.0, input_shape=SHAPE, rngs=nnx.Rngs(1))
    state, _ = fit(plain, digits, optax.adam(1e-3), max_steps=12, batch_size=32,
                   progress=False)  # fmt: skip
    assert params_sha256(state.params) != first[0]
    restored, _ = Checkpoints(tmp_path / "a").restore(state)
    assert params_sha256(restored.params) == first[0]


class _NoTrain(nn.Module):
    """A Linen module called as ``model(x)``."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3))(x))
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


class _UnusedTrain(_NoTrain):
    """The same module with a ``train`` argument it ignores."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Conv(8, (3, 3))(x))
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


def test_a_linen_module_without_train_trains_like_one_with_it(digits):
    runs = [
        fit(m, digits, optax.adam(3e-3), max_steps=20, batch_size=32, progress=False)[0]
        for m in (_NoTrain(), _UnusedTrain())
    ]
    assert params_sha256(runs[0].params) == params_sha256(runs[1].params)
    assert evaluate(runs[0], digits.x_test, digits.y_test)["accuracy"] > 0.3


def test_what_is_not_a_module_is_one_line(digits):
    with pytest.raises(TypeError, match=r"^`model` must be a flax.linen.Module or a flax.nnx"):
        fit(lambda x: x, digits, optax.sgd(0.1), max_steps=1, progress=False)
