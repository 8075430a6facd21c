"""The train state and the jit-compiled train and eval steps."""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.training import train_state

from jaxconv.train.modules import functional
from jaxconv.train.objectives import Objective


def check_compute_dtype(compute_dtype: str | None) -> None:
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(
            f"`compute_dtype` (={compute_dtype!r}) must be one of {sorted(COMPUTE_DTYPES)}"
        )


#: The dtypes layers may compute in; parameters, optimizer state, BatchNorm statistics
#: and the loss stay float32.
COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}


class TrainState(train_state.TrainState):
    """params, optimizer state and step (from flax), plus BatchNorm statistics and the
    dropout key; everything a resumed run needs."""

    batch_stats: Any = struct.field(default_factory=dict)
    rng: jax.Array = struct.field(default=None)
    #: what the layers compute in (see :data:`COMPUTE_DTYPES`); a static field
    compute_dtype: str = struct.field(pytree_node=False, default="float32")
    #: the exponential moving average of ``{"params", "batch_stats"}`` when ``ema_decay``
    #: is set (:func:`with_ema`), updated after every optimizer step; None without
    ema: Any = struct.field(default=None)
    ema_decay: float = struct.field(pytree_node=False, default=0.0)


def check_ema_decay(decay: float) -> None:
    if not 0 <= decay < 1:
        raise ValueError(f"`ema_decay` (={decay}) must be in [0, 1)")


def with_ema(state: TrainState, decay: float) -> TrainState:
    """``state`` keeping an exponential moving average of its weights (parameters and
    BatchNorm statistics), ``ema <- decay * ema + (1 - decay) * weights`` after each
    step, starting from the weights as they are (``decay`` 0: no average)."""
    check_ema_decay(decay)
    if not decay:
        return state
    weights = {"params": state.params, "batch_stats": state.batch_stats}
    return state.replace(ema=jax.tree.map(jnp.copy, weights), ema_decay=float(decay))


def ema_weights(state: TrainState) -> TrainState:
    """``state`` with its averaged weights in place of the trained ones (for evaluation);
    ``state`` itself without an average."""
    if state.ema is None:
        return state
    return state.replace(params=state.ema["params"], batch_stats=state.ema["batch_stats"])


def _update_ema(state: TrainState) -> TrainState:
    if state.ema is None:
        return state
    d = state.ema_decay
    weights = {"params": state.params, "batch_stats": state.batch_stats}
    ema = jax.tree.map(lambda e, w: d * e + (1.0 - d) * w, state.ema, weights)
    return state.replace(ema=ema)


def create_state(
    model: Any,
    example: np.ndarray,
    tx: optax.GradientTransformation,
    seed: int,
    compute_dtype: str = "float32",
) -> TrainState:
    """The state of ``model`` (a Linen or NNX module, see :mod:`jaxconv.train.modules`):
    a Linen module's parameters initialised from ``seed`` on one row of ``example``, an
    NNX module's as it holds them; float32 whatever ``compute_dtype`` the layers run in.
    The dropout key follows from ``seed`` either way."""
    check_compute_dtype(compute_dtype)
    init_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed))
    apply, variables = functional(
        model, jnp.asarray(example[:1]), {"params": init_key, "dropout": dropout_key}
    )
    return TrainState.create(
        apply_fn=apply,
        params=variables["params"],
        tx=tx,
        batch_stats=variables.get("batch_stats", {}),
        rng=dropout_key,
        compute_dtype=compute_dtype,
    )


def variables_of(state: TrainState, params=None) -> dict:
    """The variables ``model.apply`` takes: ``params`` (default: the state's) and any
    BatchNorm statistics."""
    variables = {"params": state.params if params is None else params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    return variables


def _cast(tree, dtype):
    """Floating leaves of ``tree`` in ``dtype`` (None: unchanged)."""
    if dtype is None:
        return tree
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


def _logits(state: TrainState, params, x, compute_dtype, **kwargs):
    """The model applied in ``compute_dtype`` (parameters and inputs cast on the way in;
    their gradients arrive float32), its logits in float32."""
    out = state.apply_fn(
        variables_of(state, _cast(params, compute_dtype)), _cast(x, compute_dtype), **kwargs
    )
    if isinstance(out, tuple):
        logits, updates = out
        return logits.astype(jnp.float32), updates
    return out.astype(jnp.float32)


def make_train_step(objective: Objective | None = None, mesh=None, accumulate: int = 1):
    """One optimizer step on a batch; returns the new state and the batch's mean loss and
    metrics (``objective``'s: by default cross-entropy and accuracy).

    With a ``mesh`` (:func:`jaxconv.train.parallel.data_mesh`) the step expects the state
    replicated and the batch sharded along ``data``, and keeps them so: XLA inserts the
    reductions over devices (gradients, BatchNorm statistics, metrics), and the result is
    that of one device on the whole batch. The layers compute in the state's
    ``compute_dtype``.

    ``accumulate=k`` splits the batch into k equal micro-batches (rows ``i, i + k, ...``,
    so each device keeps its own rows) whose gradients are averaged before the one
    optimizer step: the same step as on the whole batch, to float rounding, for a model
    without BatchNorm or dropout. BatchNorm normalises each micro-batch by its own
    statistics and updates its running ones once per micro-batch, in order; micro-batch
    ``i`` draws dropout from the step's key folded with ``i``.
    """
    objective = objective or Objective()

    def grads_of(state: TrainState, batch_stats, x, y, key):
        """The loss, logits, new BatchNorm statistics and gradient of ``state.params`` on
        one (micro-)batch, normalised with (and updating) ``batch_stats``."""

        def loss_fn(params):
            mutable = ["batch_stats"] if batch_stats else False
            inner = state.replace(batch_stats=batch_stats)
            out = _logits(inner, params, x, COMPUTE_DTYPES[state.compute_dtype], train=True,
                          rngs={"dropout": key}, mutable=mutable)  # fmt: skip
            logits, updates = out if mutable else (out, {})
            return objective.losses(logits, y, train=True).mean(), (logits, updates)

        (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return loss, logits, updates.get("batch_stats", batch_stats), grads

    def step(state: TrainState, x: jnp.ndarray, y: jnp.ndarray):
        key = jax.random.fold_in(state.rng, state.step)
        if accumulate == 1:
            loss, logits, stats, grads = grads_of(state, state.batch_stats, x, y, key)
        else:
            loss, logits, stats, grads = _accumulated(grads_of, state, x, y, key, accumulate)
        state = _update_ema(state.apply_gradients(grads=grads, batch_stats=stats))
        metrics = {k: v.mean() for k, v in objective.values(logits, y).items()}
        return state, {"loss": loss, **metrics}

    if mesh is None:
        return jax.jit(step, donate_argnums=0)
    from jaxconv.train.parallel import batch_sharding, replicated

    rep, rows = replicated(mesh), batch_sharding(mesh)
    return jax.jit(step, in_shardings=(rep, rows, rows), out_shardings=(rep, rep), donate_argnums=0)


def _micro(a: jnp.ndarray, k: int) -> jnp.ndarray:
    """``(B, ...)`` as ``(k, B // k, ...)``, micro-batch ``i`` the rows ``i, i + k, ...``."""
    return jnp.swapaxes(a.reshape(a.shape[0] // k, k, *a.shape[1:]), 0, 1)


def _accumulated(grads_of, state: TrainState, x, y, key, k: int):
    """The mean loss and gradient over ``k`` micro-batches (a scan, unrolled), the
    BatchNorm statistics after the last, and the logits in the batch's row order."""

    def body(carry, micro):
        stats, total = carry
        i, xm, ym = micro
        loss, logits, stats, grads = grads_of(state, stats, xm, ym, jax.random.fold_in(key, i))
        total = jax.tree.map(jnp.add, total, (loss, grads))
        return (stats, total), logits

    zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, state.params))
    (stats, (loss, grads)), logits = jax.lax.scan(
        body, (state.batch_stats, zeros), (jnp.arange(k), _micro(x, k), _micro(y, k)),
        unroll=True,  # XLA:CPU runs the convolutions of a loop body far slower (benchmarks/)
    )  # fmt: skip
    loss, grads = jax.tree.map(lambda t: t / k, (loss, grads))
    logits = jnp.swapaxes(logits, 0, 1).reshape(-1, *logits.shape[2:])  # rows in order
    return loss, logits, stats, grads


def make_eval_step(objective: Objective | None = None, mesh=None):
    """The loss and every metric summed over the rows of a batch where ``mask`` is true
    (eval mode: running BatchNorm statistics); padded rows count for nothing."""
    objective = objective or Objective()

    def step(state: TrainState, x, y, mask):
        dtype = COMPUTE_DTYPES[state.compute_dtype]
        logits = _logits(state, state.params, x, dtype, train=False)
        values = {"loss": objective.losses(logits, y), **objective.values(logits, y)}
        return {k: jnp.where(mask, v, 0.0).sum() for k, v in values.items()}

    if mesh is None:
        return jax.jit(step)
    from jaxconv.train.parallel import batch_sharding, replicated

    rep, rows = replicated(mesh), batch_sharding(mesh)
    return jax.jit(step, in_shardings=(rep, rows, rows, rows), out_shardings=rep)


def params_sha256(params) -> str:
    """A hash of every parameter's path, dtype, shape and bytes: equal iff bit-identical."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        array = np.asarray(leaf)
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
