"""``compute_dtype="bfloat16"``: the layers compute in bfloat16, the state stays float32,
and the digits CNN trains as well as in float32."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconv.data import load_dataset
from jaxconv.models import CNN
from jaxconv.train import evaluate, fit, make_optimizer
from jaxconv.train.state import create_state, make_train_step


def _jaxpr_of_step(dtype):
    model = CNN(channels=(8, 16), num_classes=10)
    x, y = np.zeros((4, 8, 8, 1), np.float32), np.zeros(4, np.int32)
    state = create_state(model, x, make_optimizer("adam", 1e-3), 0, dtype)
    return state, jax.make_jaxpr(make_train_step())(state, x, y)


def _products(jaxpr, dtype: str) -> int:
    """Convolutions and matmuls in the step whose result is ``dtype`` ("bf16", "f32")."""
    return len(re.findall(rf"{dtype}\[[^\]]*\] = (?:dot_general|conv_general_dilated)",
                          str(jaxpr)))  # fmt: skip


def test_bfloat16_layers_float32_state():
    state, jaxpr = _jaxpr_of_step("bfloat16")
    assert _products(jaxpr, "bf16") >= 4  # two convs and the head, forward and backward
    x, y = np.zeros((4, 8, 8, 1), np.float32), np.zeros(4, np.int32)
    after = jax.eval_shape(make_train_step(), state, x, y)[0]
    for s in (state, after):  # parameters, optimizer state, BatchNorm statistics: float32
        for leaf in jax.tree.leaves((s.params, s.opt_state, s.batch_stats)):
            assert leaf.dtype in (jnp.float32, jnp.int32), leaf.dtype
    _, float32 = _jaxpr_of_step("float32")
    assert _products(float32, "bf16") == 0 and _products(float32, "f32") >= 4


def test_bfloat16_trains_the_digits_cnn_within_a_point_of_float32():
    data = load_dataset("digits")
    model = CNN(channels=(16, 32), num_classes=10)
    accuracy = {}
    for dtype in ("float32", "bfloat16"):
        state, _ = fit(model, data, make_optimizer("adam", 3e-3), max_steps=300, batch_size=64,
                       progress=False, compute_dtype=dtype)  # fmt: skip
        accuracy[dtype] = evaluate(state, data.x_test, data.y_test)["accuracy"]
    assert accuracy["float32"] > 0.95
    assert abs(accuracy["bfloat16"] - accuracy["float32"]) <= 0.01, accuracy


def test_unknown_compute_dtype_is_refused():
    with pytest.raises(ValueError, match=r"`compute_dtype` \(='float16'\) must be one of"):
        fit(CNN(num_classes=10), load_dataset("digits"), make_optimizer("adam", 1e-3),
            max_steps=1, compute_dtype="float16")  # fmt: skip
