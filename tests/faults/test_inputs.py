"""Library inputs that used to fail deep inside (or not at all): each is one error naming
the argument, raised before any work or allocation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv
from jaxconv import nn as jnn
from jaxconv.data import load_dataset
from jaxconv.models import CNN
from jaxconv.ops import policy
from jaxconv.train import evaluate, fit, make_optimizer

from ..conftest import BACKENDS

HUGE = dict(dilation=10**6, padding="SAME")


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "lax"])
def test_a_huge_dilation_is_refused_before_allocating(backend):
    x, k = jnp.ones((1, 16, 16, 2)), jnp.ones((3, 3, 2, 4))
    with pytest.raises(ValueError, match=rf"`backend` \(='{backend}'\) cannot compute .* 32.0 TB"):
        jaxconv.conv(x, k, backend=backend, **HUGE)


def test_a_huge_dilation_runs_on_lax_under_auto():
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 16, 16, 2))
    k = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 2, 4))
    # every tap but the centre reads padding: the result is the centre tap's 1x1 conv
    expected = jnp.einsum("nhwc,co->nhwo", x, k[1, 1])
    for backend in ("lax", "auto"):
        np.testing.assert_allclose(jaxconv.conv(x, k, backend=backend, **HUGE), expected, 1e-5)
    plan = str(jaxconv.ops.explain_backend(x, k, **HUGE))
    assert plan.startswith("lax: the zero-padded input would take 32.0 TB")
    grad = jax.grad(lambda a: jaxconv.conv(a, k, **HUGE).sum())(x)
    np.testing.assert_allclose(grad, jnp.broadcast_to(k[1, 1].sum(-1), x.shape), 1e-5)


def test_ordinary_padding_is_left_to_the_rules():
    p = policy.ConvProblem((9,), 1, 1, spatial=(1,), pads=((8, 8),))  # 17x the input, tiny
    assert policy.plan(p, "window").backend == "window"


def test_pooling_and_layer_arguments():
    with pytest.raises(ValueError, match=r"`norm_type` \(=nan\) must be a positive finite"):
        jaxconv.lp_pool(jnp.ones((1, 4, 1)), 2, norm_type=float("nan"))
    complex_x = jnp.ones((1, 4, 1), jnp.complex64)
    for pool in (jaxconv.max_pool, jaxconv.min_pool):
        with pytest.raises(TypeError, match=r"`x` \(dtype complex64\) must be real"):
            pool(complex_x, 2)
    for layer in (jnn.Conv(features=0, kernel_size=(3,)), jnn.ConvTranspose(0, (3,))):
        with pytest.raises(ValueError, match=r"`features` \(=0\) must be an int >= 1"):
            layer.init(jax.random.PRNGKey(0), jnp.ones((1, 8, 2)))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", val_fraction=0.1)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: {"y_train": d.y_train[:-5]}, r"`y_train` \(shape \(1288,\)\) must hold one"),
        (lambda d: {"y_train": d.y_train + 5}, r"`y_train` holds classes 5..14; `num_classes`"),
        (lambda d: {"y_val": np.eye(10)[d.y_val]}, r"`y_val` \(shape \(144, 10\)\) looks one-hot"),
        (lambda d: {"y_test": d.y_test.astype(float)}, r"`y_test` \(dtype float64\) must hold"),
    ],
    ids=["5-fewer-labels", "out-of-range", "one-hot", "float"],
)
def test_fit_checks_the_labels_before_any_step(digits, tmp_path, change, message):
    data = dataclasses.replace(digits, **change(digits))
    model = CNN(channels=(4,), kernel_size=(3, 3), pool="none")
    with pytest.raises(ValueError, match=message):
        fit(model, data, make_optimizer("adamw", 1e-3), max_steps=2, batch_size=16,
            run_dir=tmp_path / "run", progress=False)  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_evaluate_checks_the_labels(digits):
    model = CNN(channels=(4,), kernel_size=(3, 3), pool="none")
    state, _ = fit(model, digits, make_optimizer("adamw", 1e-3), max_steps=1, batch_size=16,
                   progress=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"`y_evaluated` \(shape \(10,\)\) must hold one"):
        evaluate(state, digits.x_test[:12], digits.y_test[:10])
