"""The NNX presets are the Linen presets: the same parameter count and names, and, with
the Linen variables loaded by ``from_linen``, the same outputs in eval and train mode
(BatchNorm statistics updated alike); ``to_linen`` gives the variables back."""

import flax.linen as nn
import jax
import numpy as np
import pytest
from flax import nnx

from jaxconv import models
from jaxconv.models import nnx as nnx_models

CASES = [
    ("LogisticRegression", {}, (40, 1)),
    ("MLP", {"hidden": (16, 8)}, (40, 1)),
    ("CNN", {"channels": (8, 16), "kernel_size": 5, "pool": "none", "strides": 2}, (40, 1)),
    (
        "CNN",
        {"channels": (4, 8, 8), "norm": "layer", "head": "flatten", "hidden": (12,)},
        (12, 12, 3),
    ),
    ("CNN", {"channels": (8,), "norm": "group", "padding_mode": "reflect"}, (8, 8, 1)),
    ("MNIST1DCNN", {}, (40, 1)),
    ("LeNet5", {}, (8, 8, 1)),
    ("DepthwiseSeparableCNN", {"stem": 8, "channels": (8, 16), "strides": (1, 2)}, (8, 8, 3)),
    ("ResNet", {"widths": (8, 16), "blocks": (1, 2), "stem_features": 8}, (8, 8, 3)),
    ("VGG", {"widths": (8, 16), "stages": (1, 2), "head": "flatten", "hidden": (16,)}, (8, 8, 3)),
]


def _count(tree):
    return sum(np.size(a) for a in jax.tree.leaves(tree))


@pytest.mark.parametrize(
    ("name", "options", "shape"), CASES, ids=[c[0] + str(i) for i, c in enumerate(CASES)]
)
def test_the_nnx_preset_is_its_linen_twin(name, options, shape):
    options = {**options, "conv_backend": "lax"}  # the backends are tested elsewhere
    linen = getattr(models, name)(**options)
    x = jax.random.normal(jax.random.key(1), (4, *shape))
    variables = jax.jit(lambda k, x: linen.init(k, x, train=False))(jax.random.key(0), x)
    twin = getattr(nnx_models, name)(**options, input_shape=shape, rngs=nnx.Rngs(0))
    fresh = nnx_models.to_linen(twin)
    assert jax.tree.structure(fresh) == jax.tree.structure(dict(variables))
    assert _count(fresh["params"]) == _count(variables["params"])
    nnx_models.from_linen(twin, variables)
    twin.eval()
    np.testing.assert_allclose(
        twin(x), linen.apply(variables, x, train=False), rtol=1e-5, atol=1e-6
    )
    twin.train()
    y, updates = linen.apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(twin(x), y, rtol=1e-5, atol=1e-6)
    back = nnx_models.to_linen(twin)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
        back,
        {**variables, **updates},
    )


@pytest.mark.parametrize("name", ["resnet20", "resnet32", "resnet56"])
def test_the_resnet_presets_have_their_linen_twins_parameters(name):
    x = jax.ShapeDtypeStruct((1, 8, 8, 3), np.float32)
    linen = jax.eval_shape(lambda x: getattr(models, name)().init(jax.random.key(0), x), x)
    twin = getattr(nnx_models, name)(input_shape=(8, 8, 3), rngs=nnx.Rngs(0))
    shapes = jax.tree.map(np.shape, nnx_models.to_linen(twin))
    assert shapes == jax.tree.map(np.shape, dict(linen))


def test_initialisers_match_in_distribution():
    """Not the same numbers (NNX draws from its Rngs), the same initialisers: kernel
    scales agree with Linen's to sampling error, biases and BatchNorm start alike."""
    shape = (16, 16, 3)
    linen = models.resnet20()
    variables = linen.init(jax.random.key(0), np.zeros((1, *shape)), train=False)
    twin = nnx_models.to_linen(nnx_models.resnet20(input_shape=shape, rngs=nnx.Rngs(0)))
    for path, a in jax.tree_util.tree_flatten_with_path(variables["params"])[0]:
        b = twin["params"]
        for key in path:
            b = b[key.key]
        a, b, where = np.asarray(a), np.asarray(b), jax.tree_util.keystr(path)
        if np.std(a) == 0:  # biases, BatchNorm scales: constants
            np.testing.assert_array_equal(b, a, err_msg=where)
        else:
            assert np.std(b) == pytest.approx(np.std(a), rel=0.15), where


def test_loading_variables_of_another_model_names_the_array():
    linen = models.CNN(channels=(8, 16))
    variables = linen.init(jax.random.key(0), np.zeros((1, 8, 8, 1)), train=False)
    twin = nnx_models.CNN(channels=(8, 32), input_shape=(8, 8, 1), rngs=nnx.Rngs(0))
    with pytest.raises(
        ValueError, match=r"params\['BatchNorm_1'\]\['bias'\] is \(16,\) in them and \(32,\)"
    ):
        nnx_models.from_linen(twin, variables)


def test_a_wrong_input_shape_is_one_line():
    with pytest.raises(
        ValueError, match=r"^`input_shape` \(=\(8, 8\)\) must be one example's shape"
    ):
        nnx_models.CNN(input_shape=(8, 8), kernel_size=(3, 3), rngs=nnx.Rngs(0))
    assert isinstance(nnx_models.CNN(input_shape=(8, 8, 1), rngs=nnx.Rngs(0)), nnx.Module)
    assert not isinstance(nnx_models.CNN(input_shape=(8, 8, 1), rngs=nnx.Rngs(0)), nn.Module)
