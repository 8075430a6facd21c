"""The train state and the jit-compiled train and eval steps."""

from __future__ import annotations

import hashlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.training import train_state


class TrainState(train_state.TrainState):
    """params, optimizer state and step (from flax), plus BatchNorm statistics and the
    dropout key; everything a resumed run needs."""

    batch_stats: Any = struct.field(default_factory=dict)
    rng: jax.Array = struct.field(default=None)


def create_state(
    model: nn.Module, example: np.ndarray, tx: optax.GradientTransformation, seed: int
) -> TrainState:
    init_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed))
    variables = model.init(
        {"params": init_key, "dropout": dropout_key}, jnp.asarray(example[:1]), train=False
    )
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        tx=tx,
        batch_stats=variables.get("batch_stats", {}),
        rng=dropout_key,
    )


def variables_of(state: TrainState, params=None) -> dict:
    """The variables ``model.apply`` takes: ``params`` (default: the state's) and any
    BatchNorm statistics."""
    variables = {"params": state.params if params is None else params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    return variables


def make_train_step(label_smoothing: float = 0.0):
    """One optimizer step on a batch; returns the new state and the batch's loss/accuracy."""

    def step(state: TrainState, x: jnp.ndarray, y: jnp.ndarray):
        key = jax.random.fold_in(state.rng, state.step)

        def loss_fn(params):
            mutable = ["batch_stats"] if state.batch_stats else False
            out = state.apply_fn(
                variables_of(state, params), x, train=True, rngs={"dropout": key}, mutable=mutable
            )
            logits, updates = out if mutable else (out, {})
            labels = optax.smooth_labels(jax.nn.one_hot(y, logits.shape[-1]), label_smoothing)
            return optax.softmax_cross_entropy(logits, labels).mean(), (logits, updates)

        (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        state = state.apply_gradients(
            grads=grads, batch_stats=updates.get("batch_stats", state.batch_stats)
        )
        accuracy = jnp.mean(jnp.argmax(logits, -1) == y)
        return state, {"loss": loss, "accuracy": accuracy}

    return jax.jit(step, donate_argnums=0)


@jax.jit
def eval_step(state: TrainState, x: jnp.ndarray, y: jnp.ndarray):
    """Summed loss and number correct on a batch (eval mode: running BatchNorm stats)."""
    logits = state.apply_fn(variables_of(state), x, train=False)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()
    return loss, jnp.sum(jnp.argmax(logits, -1) == y)


def params_sha256(params) -> str:
    """A hash of every parameter's path, dtype, shape and bytes: equal iff bit-identical."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        array = np.asarray(leaf)
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
