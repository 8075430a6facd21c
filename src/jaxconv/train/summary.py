"""What a model is, as a table: its layers in call order, each one's output shape and
parameter count, the totals, and the floating-point operations of one training step.

Nothing is computed to make it: shapes come from :func:`jax.eval_shape`, and the FLOPs
from XLA's cost analysis of the lowered train step (the step ``fit`` compiles, at the
run's batch size and accumulation; an estimate: XLA counts a multiply-add as two).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxconv.train.modules import api_of, takes_train

#: one table row: the layer's path, its class, its output shape, its parameter count
Row = tuple[str, str, str, int]


@dataclasses.dataclass
class ModelSummary:
    """Layers (:data:`Row` s, in call order), parameter count and FLOPs per step."""

    name: str
    rows: list[Row]
    params: int
    input_shape: tuple[int, ...]
    flops_per_step: float | None = None
    batch_size: int | None = None

    def table(self) -> str:
        """The summary as fixed-width text."""
        head = ("layer", "type", "output shape", "params")
        widths = [max(len(str(r[i])) for r in [head, *self.rows]) for i in range(4)]
        widths[3] = max(widths[3], len(f"{self.params:,}"))
        fmt = "  ".join(f"{{:<{w}}}" for w in widths[:3]) + f"  {{:>{widths[3]}}}"
        lines = [f"{self.name} on inputs {self.input_shape} (one example, channels last)",
                 fmt.format(*head), fmt.format(*("-" * w for w in widths))]  # fmt: skip
        lines += [fmt.format(p, t, s, f"{n:,}") for p, t, s, n in self.rows]
        lines.append(f"parameters: {self.params:,}")
        if self.flops_per_step is not None:
            lines.append(f"FLOPs per training step (batch {self.batch_size}, forward and "
                         f"backward): {self.flops_per_step:.3g}")  # fmt: skip
        return "\n".join(lines)


def count_params(params: Any) -> int:
    """The number of scalars in a parameter pytree."""
    return int(sum(np.prod(np.shape(leaf)) for leaf in jax.tree.leaves(params)))


def summarize(model: Any, example: np.ndarray, *, state: Any = None, batch_size: int | None = None,
              accumulate: int = 1) -> ModelSummary:  # fmt: skip
    """The summary of ``model`` (Linen or NNX) on inputs shaped like the batch
    ``example`` (``(N, *example_shape)``; only its shape is used). With ``state`` (a
    :class:`~jaxconv.train.state.TrainState`, or its :func:`jax.eval_shape`) and
    ``batch_size``, also the FLOPs of one training step."""
    one = jnp.zeros((1, *np.shape(example)[1:]), jnp.float32)
    if api_of(model) == "nnx":
        rows = list(_nnx_rows(model, one))
        params = count_params(nnx.state(model, nnx.Param))
    else:
        rows, params = _linen_rows(model, one)
    summary = ModelSummary(type(model).__name__, rows, params, tuple(one.shape[1:]))
    if state is not None and batch_size:
        summary.flops_per_step = step_flops(state, one, batch_size, accumulate)
        summary.batch_size = batch_size
    return summary


def step_flops(state: Any, one: jax.Array, batch_size: int, accumulate: int = 1) -> float | None:
    """XLA's FLOPs estimate of the lowered train step on a batch of ``batch_size``."""
    from jaxconv.train.state import make_train_step

    abstract = jax.eval_shape(lambda s: s, state)
    x = jax.ShapeDtypeStruct((batch_size, *one.shape[1:]), jnp.float32)
    y = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
    cost = make_train_step(accumulate=accumulate).lower(abstract, x, y).cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"]) if cost and "flops" in cost else None


def _shape(out: Any) -> str:
    shapes = [tuple(a.shape[1:]) for a in jax.tree.leaves(out) if hasattr(a, "shape")]
    return ", ".join(str(s) for s in shapes) if shapes else "-"


def _linen_rows(model, one) -> tuple[list[Row], int]:
    kwargs = {"train": False} if takes_train(type(model).__call__) else {}
    order: list[tuple[tuple[str, ...], str]] = []  # (path, class) of each call, in call order

    def record(module, method: str) -> bool:
        if method == "__call__":
            order.append((tuple(module.path), type(module).__name__))
        return method == "__call__"

    def run():
        variables = model.init(jax.random.PRNGKey(0), one, **kwargs)
        order.clear()  # init called every module once already
        _, state = model.apply(variables, one, capture_intermediates=record,
                               mutable=["intermediates"], **kwargs)  # fmt: skip
        return variables.get("params", {}), state["intermediates"]

    params, captured = jax.eval_shape(run)
    rows, done = [], set()
    for path, kind in order:
        if path in done:  # a module called twice: its first call
            continue
        done.add(path)
        out = _at(captured, path).get("__call__")
        name = "/".join(path) or "(model)"
        rows.append((name, kind, _shape(out), count_params(_at(params, path))))
    return rows, count_params(params)


def _at(tree: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        tree = tree.get(key, {}) if isinstance(tree, dict) else {}
    return tree


def _nnx_rows(model: nnx.Module, one) -> Iterator[Row]:
    """Every submodule's call, recorded by wrapping its class's ``__call__`` for the one
    evaluation-mode forward pass (traced by :func:`jax.eval_shape`: nothing is computed)."""
    seen: dict[int, Any] = {}
    classes = {type(m) for _, m in nnx.iter_modules(model)}
    originals = {cls: cls.__dict__.get("__call__") for cls in classes}

    def recording(call):
        def wrapper(self, *args, **kwargs):
            out = call(self, *args, **kwargs)
            seen.setdefault(id(self), out)
            return out

        return wrapper

    view = nnx.view(model, deterministic=True, use_running_average=True,
                    raise_if_not_found=False)  # fmt: skip
    kwargs = {"train": False} if takes_train(type(model).__call__) else {}
    try:
        for cls in classes:
            cls.__call__ = recording(cls.__call__)
        jax.eval_shape(lambda: view(one, **kwargs))
    finally:
        for cls, call in originals.items():
            if call is None:
                del cls.__call__
            else:
                cls.__call__ = call
    by_id = {id(m): m for _, m in nnx.iter_modules(view)}
    view_paths = {id(m): "/".join(map(str, p)) for p, m in nnx.iter_modules(view)}
    for module_id, out in seen.items():
        module = by_id.get(module_id)
        if module is None:
            continue
        path = view_paths[module_id]
        yield (path or "(model)", type(module).__name__, _shape(out),
               count_params(nnx.state(module, nnx.Param)))  # fmt: skip
