"""Any Optax optimizer and schedule by name, with its own keywords; weight decay masked
off biases and normalisation parameters; one-line refusals that list what exists."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxconv.train.optim import (
    decay_mask_of,
    make_optimizer,
    make_schedule,
    optax_names,
)


def _quadratic_steps(opt, steps=30):
    """``steps`` updates of ``opt`` on ``|w - 1|^2`` (w a 2x3 kernel and a bias), in one
    compiled scan; the loss before and after, and the parameters."""
    params = {"kernel": jnp.full((2, 3), 0.5), "bias": jnp.full(3, 0.5)}

    def loss(p):
        return sum(jnp.sum((v - 1.0) ** 2) for v in jax.tree.leaves(p))

    def step(carry, _):
        params, state = carry
        updates, state = opt.update(jax.grad(loss)(params), state, params)
        return (optax.apply_updates(params, updates), state), None

    first = float(loss(params))
    (params, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, length=steps))(
        (params, opt.init(params))
    )
    return first, float(loss(params)), params


@pytest.mark.parametrize("name", optax_names())
def test_every_listed_optax_optimizer_steps(name):
    """Every name the config accepts makes an optimizer that fit's update can step (with
    its own defaults) and that moves the parameters somewhere finite."""
    _, last, params = _quadratic_steps(make_optimizer(name, 1.0), steps=3)
    assert np.isfinite(last) and float(jnp.abs(params["kernel"] - 0.5).max()) > 0


def test_an_optax_optimizer_equals_calling_optax_with_the_same_keywords():
    ours = make_optimizer("lion", 0.05, b1=0.95, keywords={"b2": 0.98})
    theirs = optax.lion(0.05, b1=0.95, b2=0.98)
    a, b = _quadratic_steps(ours), _quadratic_steps(theirs)
    assert a[:2] == b[:2] and a[1] < a[0] / 2
    # a preset passes the keywords Optax's function takes through too
    eps = make_optimizer("adam", 0.05, keywords={"eps": 1e-3})
    assert _quadratic_steps(eps)[1] == _quadratic_steps(optax.adam(0.05, eps=1e-3))[1]


def test_weight_decay_masked_to_kernels_leaves_biases_alone():
    """Decoupled decay pulls a parameter towards zero against its gradient; with
    ``decay_mask="kernels"`` only the 2-D kernel is pulled, the bias reaches its optimum."""
    plain = _quadratic_steps(optax.adamw(0.05, weight_decay=0.0), 300)[2]
    for name in ("adamw", "lion", "sgd"):
        masked = _quadratic_steps(
            make_optimizer(name, 0.05, weight_decay=2.0, decay_mask="kernels"), 300
        )[2]
        everything = _quadratic_steps(make_optimizer(name, 0.05, weight_decay=2.0), 300)[2]
        assert float(jnp.max(masked["kernel"])) < 0.7  # decayed
        assert float(jnp.max(everything["bias"])) < 0.7
        np.testing.assert_allclose(masked["bias"], 1.0, atol=0.06)
    np.testing.assert_allclose(plain["bias"], 1.0, atol=0.06)
    mask = decay_mask_of("kernels")({"Conv_0": {"kernel": jnp.ones((3, 3, 1, 4)),
                                                "bias": jnp.ones(4)},
                                     "BatchNorm_0": {"scale": jnp.ones(4)}})  # fmt: skip
    assert mask == {"Conv_0": {"kernel": True, "bias": False}, "BatchNorm_0": {"scale": False}}


def test_an_optax_schedule_by_name_gets_the_peak_and_the_length():
    schedule = make_schedule("exponential_decay", 0.1, 100, keywords={"decay_rate": 0.5})
    assert float(schedule(0)) == pytest.approx(0.1) and float(schedule(100)) == pytest.approx(0.05)
    linear = make_schedule("linear_schedule", 0.1, 10, keywords={"end_value": 0.0})
    assert [round(float(linear(s)), 6) for s in (0, 5, 10)] == [0.1, 0.05, 0.0]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: make_optimizer("lion2", 1e-3),
         r"^`name` \(='lion2'\) is neither a preset \('sgd'.*\) nor an Optax optimizer; Optax "
         r"has adabelief, .*lion, .*contrib.schedule_free_adamw"),
        (lambda: make_optimizer("lion", 1e-3, keywords={"eps": 1e-8}),
         r"^`eps` is not an argument of optax.lion; it takes b1, b2, mu_dtype, weight_decay"),
        (lambda: make_optimizer("lion", 1e-3, momentum=0.9),
         r"^`momentum` \(=0.9\): optax.lion takes no momentum"),
        (lambda: make_optimizer("adamw", 1e-3, decay_mask="biases"),
         r"^`decay_mask` \(='biases'\) must be one of \('all', 'kernels'\)"),
        (lambda: make_schedule("exponential_decay", 0.1, 10, keywords={"rate": 0.5}),
         r"^`rate` is not an argument of optax.exponential_decay; it takes init_value"),
        (lambda: make_schedule("linear", 0.1, 10),
         r"^`name` \(='linear'\) is neither a preset .* nor an Optax schedule; Optax has "
         r"constant_schedule, .*linear_schedule"),
    ],
)  # fmt: skip
def test_refusals_are_one_line_listing_what_exists(call, message):
    with pytest.raises(ValueError, match=message):
        call()
