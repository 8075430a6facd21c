"""Any Flax module as the pure ``apply`` function the training loop compiles.

The loop's state holds plain pytrees (``params``, and ``batch_stats`` for every other
variable a model updates as it trains) and calls ``apply(variables, x, train=...,
rngs=..., mutable=...)`` with :meth:`flax.linen.Module.apply`'s conventions. A Linen
module whose ``__call__`` takes ``train`` is used as it is; one without it is called as
``model(x)``. An NNX module is split once into its graph (one for training, one for
evaluation: ``deterministic`` and ``use_running_average`` set accordingly) and its state
as nested dicts, and merged again inside the compiled step, so no Python object graph is
walked per step: the step is the same jitted function of arrays as for Linen.
"""

from __future__ import annotations

import inspect
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx


def takes_train(fn: Any) -> bool:
    """Whether ``fn`` (a module's ``__call__``) accepts a ``train`` argument."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "train" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def is_module(model: Any) -> bool:
    """A Linen or NNX module instance."""
    return isinstance(model, nn.Module | nnx.Module)


def api_of(model: Any) -> str:
    """``"nnx"`` or ``"linen"``; a TypeError for anything else."""
    if isinstance(model, nnx.Module):
        return "nnx"
    if isinstance(model, nn.Module):
        return "linen"
    raise TypeError(
        f"`model` must be a flax.linen.Module or a flax.nnx.Module instance; got "
        f"{type(model).__name__}"
    )


class LinenApply:
    """``model.apply`` with ``train`` dropped, for a Linen module whose ``__call__`` has
    no ``train`` argument."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LinenApply) and other.model == self.model

    def __hash__(self) -> int:
        return hash((LinenApply, id(type(self.model))))

    def __call__(self, variables, x, *, train: bool = False, **kwargs):
        del train
        return self.model.apply(variables, x, **kwargs)


class NNXApply:
    """An NNX module as ``apply(variables, x, train=..., rngs=..., mutable=...)``.

    ``variables`` is ``{"params": ..., "batch_stats": ...}``: the module's ``nnx.Param``
    values and the values of every other variable but its random streams (BatchNorm
    statistics, say), each as nested dicts. The random streams are reseeded on every
    call from ``rngs["dropout"]``, so dropout follows the loop's key as in Linen.
    """

    def __init__(self, model: nnx.Module):
        self.graphs = {
            train: nnx.graphdef(
                nnx.view(
                    model,
                    deterministic=not train,
                    use_running_average=not train,
                    raise_if_not_found=False,
                )  # fmt: skip
            )
            for train in (True, False)
        }
        _, params, streams, rest = nnx.split(model, nnx.Param, nnx.RngState, ...)
        self.params, self.rest = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
        self.streams = nnx.to_pure_dict(streams)
        self.tags = sorted({v.tag for _, v in nnx.to_flat_state(streams) if hasattr(v, "tag")})
        self.train_arg = takes_train(type(model).__call__)
        self.name = type(model).__name__

    def variables(self) -> dict:
        """The module's variables as the loop keeps them."""
        return {"params": self.params, "batch_stats": self.rest}

    def module(self, variables: dict, train: bool = False) -> nnx.Module:
        """A new module of this graph holding ``variables``."""
        return nnx.merge(
            self.graphs[train], variables["params"], self.streams, variables.get("batch_stats", {})
        )

    def __call__(self, variables, x, *, train: bool = False, rngs=None, mutable=False):
        model = self.module(variables, train)
        if rngs is not None and self.tags:
            keys = {tag: jax.random.fold_in(rngs["dropout"], i) for i, tag in enumerate(self.tags)}
            nnx.reseed(model, policy="match_shape", **keys)
        out = model(x, train=train) if self.train_arg else model(x)
        if not mutable:
            return out
        _, _, _, rest = nnx.split(model, nnx.Param, nnx.RngState, ...)
        return out, {"batch_stats": nnx.to_pure_dict(rest)}


def functional(model: Any, example: jnp.ndarray, rngs: dict) -> tuple[Any, dict]:
    """``(apply, variables)`` for ``model``: Linen modules are initialised with ``rngs``
    (``params`` and ``dropout`` keys) on ``example``; an NNX module already holds its
    variables."""
    if api_of(model) == "nnx":
        apply = NNXApply(model)
        return apply, apply.variables()
    if takes_train(type(model).__call__):
        return model.apply, dict(model.init(rngs, example, train=False))
    return LinenApply(model), dict(model.init(rngs, example))
