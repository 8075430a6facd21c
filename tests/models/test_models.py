"""Every model: shapes, one training step on every backend, train vs eval behaviour."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxconv import models
from jaxconv.train.state import create_state, make_train_step
from tests.conftest import BACKENDS

TINY = {
    "logreg": (lambda b: models.LogisticRegression(conv_backend=b), (40, 1)),
    "mlp": (lambda b: models.MLP(hidden=(16,), dropout=0.1, conv_backend=b), (40, 1)),
    "cnn1d": (
        lambda b: models.CNN(
            channels=(8, 8), kernel_size=5, strides=(1, 2), pool="none", dropout=0.1, conv_backend=b
        ),
        (40, 1),
    ),
    "cnn2d": (
        lambda b: models.CNN(
            channels=(4, 8),
            kernel_size=(3, 3),
            norm="group",
            head="flatten",
            hidden=(8,),
            conv_backend=b,
        ),
        (8, 8, 1),
    ),
    "cnn_layernorm_avgpool": (
        lambda b: models.CNN(
            channels=(4,),
            kernel_size=(3, 3),
            norm="layer",
            pool="avg",
            head="global_max",
            conv_backend=b,
        ),
        (8, 8, 2),
    ),
    "mnist1d_cnn": (lambda b: models.MNIST1DCNN(conv_backend=b), (40, 1)),
    "lenet5": (lambda b: models.LeNet5(conv_backend=b), (8, 8, 1)),
    "vgg": (lambda b: models.VGG(widths=(4, 8), stages=(1, 1), conv_backend=b), (8, 8, 3)),
    "resnet": (
        lambda b: models.ResNet(widths=(4, 8), blocks=(1, 1), stem_features=4, conv_backend=b),
        (8, 8, 3),
    ),
    "dsconv": (
        lambda b: models.DepthwiseSeparableCNN(stem=4, channels=(8,), strides=(2,), conv_backend=b),
        (8, 8, 1),
    ),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(TINY))
def test_one_training_step_every_model_every_backend(name, backend):
    make, shape = TINY[name]
    model = make(backend)
    x = jax.random.normal(jax.random.key(0), (4, *shape))
    y = jnp.array([0, 1, 2, 3])
    state = create_state(model, np.asarray(x), optax.sgd(0.1), seed=0)
    logits = model.apply(
        {
            "params": state.params,
            **({"batch_stats": state.batch_stats} if state.batch_stats else {}),
        },
        x,
    )
    assert logits.shape == (4, 10)
    before = jax.tree.map(np.array, state.params)
    state, metrics = make_train_step()(state, x, y)
    assert int(state.step) == 1
    assert np.isfinite(float(metrics["loss"]))
    changed = jax.tree.map(lambda a, b: bool(np.any(a != np.asarray(b))), before, state.params)
    assert all(jax.tree.leaves(changed)), "every parameter receives a gradient"


def test_backends_give_the_same_model_outputs():
    x = jax.random.normal(jax.random.key(0), (3, 8, 8, 3))
    outs = []
    for backend in BACKENDS:
        model = models.ResNet(widths=(4, 8), blocks=(1, 1), stem_features=4, conv_backend=backend)
        variables = model.init(jax.random.key(1), x)
        outs.append(np.asarray(model.apply(variables, x)))
    np.testing.assert_allclose(outs[1], outs[0], atol=2e-4)
    np.testing.assert_allclose(outs[2], outs[0], atol=2e-4)


def test_batchnorm_and_dropout_train_vs_eval():
    model = models.CNN(channels=(8,), kernel_size=5, pool="none", dropout=0.5)
    x = jax.random.normal(jax.random.key(0), (16, 20, 1)) * 3 + 1
    variables = model.init(jax.random.key(1), x)
    eval1 = model.apply(variables, x, train=False)
    eval2 = model.apply(variables, x, train=False)
    np.testing.assert_array_equal(eval1, eval2)  # deterministic in eval
    out, updates = model.apply(
        variables, x, train=True, rngs={"dropout": jax.random.key(2)}, mutable=["batch_stats"]
    )
    before = variables["batch_stats"]["BatchNorm_0"]["mean"]
    after = updates["batch_stats"]["BatchNorm_0"]["mean"]
    assert not np.allclose(before, after), "training updates the running statistics"
    other = model.apply(
        variables, x, train=True, rngs={"dropout": jax.random.key(3)}, mutable=["batch_stats"]
    )[0]
    assert not np.allclose(out, other), "dropout differs with the key in training"


def test_presets():
    assert models.resnet20().blocks == (3, 3, 3)
    assert models.resnet56().blocks == (9, 9, 9)
    r18 = models.resnet18()
    assert r18.widths == (64, 128, 256, 512) and r18.blocks == (2, 2, 2, 2)
    x = jnp.ones((1, 16, 16, 3))
    count = sum(
        p.size
        for p in jax.tree.leaves(
            jax.eval_shape(models.resnet20().init, jax.random.key(0), x)["params"]
        )
    )
    assert 265_000 < count < 275_000  # ResNet-20 has ~0.27M parameters (He et al. 2016)
    variables = models.DepthwiseSeparableCNN().init(jax.random.key(0), x)
    depthwise = variables["params"]["Conv_1"]["kernel"]
    assert depthwise.shape == (3, 3, 1, 32)  # groups == channels


def test_model_errors():
    with pytest.raises(ValueError, match="`norm` \\(='weird'\\)"):
        models.CNN(norm="weird").init(jax.random.key(0), jnp.ones((1, 8, 8, 1)))
    with pytest.raises(ValueError, match="`activation` \\(='swish2'\\)"):
        models.MLP(activation="swish2").init(jax.random.key(0), jnp.ones((1, 4)))
    with pytest.raises(ValueError, match="`strides` .* one entry per layer \\(2\\)"):
        models.CNN(channels=(4, 4), strides=(1, 2, 2)).init(
            jax.random.key(0), jnp.ones((1, 8, 8, 1))
        )
