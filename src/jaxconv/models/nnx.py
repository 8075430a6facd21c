"""The model presets as Flax NNX modules.

Each class here has its Linen twin's name, arguments (plus ``input_shape``, one
example's shape channels last, and ``rngs``), architecture, parameter count and
initialisers. Its layers are named as Linen names them (``Conv_0``, ``BatchNorm_0``,
``Dense_0``, ``BasicBlock_0``...), so a Linen preset's variables and the NNX preset's
state are the same nested dicts, regrouped: :func:`from_linen` and :func:`to_linen`
convert one into the other.

NNX modules have no ``train`` argument: ``model.train()`` / ``model.eval()`` (or
``nnx.view``) switch BatchNorm and dropout, and :func:`jaxconv.train.fit` does it itself.

>>> import jax.numpy as jnp
>>> from flax import nnx
>>> model = CNN(channels=(8, 16), input_shape=(28, 28, 1), rngs=nnx.Rngs(0))
>>> model.eval()
>>> model(jnp.ones((2, 28, 28, 1))).shape
(2, 10)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxconv import nnx as jnnx
from jaxconv.models._blocks import activation, expect_rank
from jaxconv.models.cnn import HEADS, POOLS, _kernels, _per_layer
from jaxconv.models.vgg import HEADS as VGG_HEADS

#: the Linen name of each NNX layer type (Linen numbers children per class name)
_LINEN_NAMES = {nnx.Linear: "Dense"}


def _shape_after(layer: Callable, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The output shape of ``layer`` on a batch of one input of ``shape`` (no FLOPs)."""
    return tuple(jax.eval_shape(layer, jax.ShapeDtypeStruct((1, *shape), jnp.float32)).shape[1:])


class _Preset(nnx.Module):
    """Children added by :meth:`_add` are named as Linen would name them."""

    def _add(self, layer: nnx.Module | None) -> str | None:
        """Add ``layer`` (None: nothing) and return its name."""
        if layer is None:
            return None
        kind = _LINEN_NAMES.get(type(layer), type(layer).__name__)
        taken = sum(1 for name in vars(self) if re.fullmatch(rf"{kind}_\d+", name))
        setattr(self, f"{kind}_{taken}", layer)
        return f"{kind}_{taken}"

    def _run(self, name: str | None, x: jnp.ndarray) -> jnp.ndarray:
        """The child ``name`` applied to ``x`` (None: ``x`` unchanged)."""
        return x if name is None else getattr(self, name)(x)

    def _dense(self, size: int, widths: Sequence[int], rngs: nnx.Rngs) -> tuple[str, ...]:
        """Dense layers of ``widths`` after ``size`` features; their names."""
        names = []
        for width in widths:
            names.append(self._add(nnx.Linear(size, width, rngs=rngs)))
            size = width
        return tuple(names)


def _norm(kind: str, features: int, rngs: nnx.Rngs) -> nnx.Module | None:
    """The layer of ``kind`` (as :func:`jaxconv.models._blocks.normalize`), or None."""
    if kind == "batch":
        return nnx.BatchNorm(features, momentum=0.9, rngs=rngs)
    if kind == "layer":
        return nnx.LayerNorm(features, rngs=rngs)
    if kind == "group":
        groups = next(g for g in (8, 4, 2, 1) if features % g == 0)
        return nnx.GroupNorm(features, num_groups=groups, rngs=rngs)
    if kind == "none":
        return None
    raise ValueError(f"`norm` (={kind!r}) must be one of ('batch', 'layer', 'group', 'none')")


def _pool(x: jnp.ndarray, kind: str, window: int, backend: str) -> jnp.ndarray:
    """As the Linen presets: skipped where the map is smaller than the window."""
    n = x.ndim - 2
    if kind == "none" or any(s < window for s in x.shape[1:-1]):
        return x
    if kind == "max":
        return jnnx.MaxPool((window,) * n, backend=backend)(x)
    if kind == "avg":
        return jnnx.AvgPool((window,) * n, backend=backend)(x)
    raise ValueError(f"`pool` (={kind!r}) must be one of {POOLS}")


def _head(x: jnp.ndarray, head: str) -> jnp.ndarray:
    if head == "global_avg":
        return jnnx.GlobalAvgPool()(x)
    if head == "global_max":
        return jnnx.GlobalMaxPool()(x)
    return x.reshape(x.shape[0], -1)


def _features(shape: tuple[int, ...], head: str) -> int:
    """What a head leaves of a map of ``shape``: channels, or everything flattened."""
    return shape[-1] if head in ("global_avg", "global_max") else _size(shape)


def _check_shape(input_shape: Sequence[int], spatial: int, model: str) -> tuple[int, ...]:
    shape = tuple(input_shape)
    if len(shape) != spatial + 1 or any(not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(
            f"`input_shape` (={input_shape!r}) must be one example's shape, channels last, "
            f"with {spatial} spatial axes for {model}"
        )
    return shape


class LogisticRegression(_Preset):
    """A linear classifier on the flattened input."""

    def __init__(self, num_classes: int = 10, conv_backend: str = "auto", *,
                 input_shape: Sequence[int], rngs: nnx.Rngs):  # fmt: skip
        self.dense = self._dense(_size(input_shape), (num_classes,), rngs)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return self._run(self.dense[0], x.reshape(x.shape[0], -1))


class MLP(_Preset):
    """Dense layers with an activation and dropout, on the flattened input."""

    def __init__(self, num_classes: int = 10, hidden: Sequence[int] = (100, 100),
                 activation: str = "relu", dropout: float = 0.0, conv_backend: str = "auto", *,
                 input_shape: Sequence[int], rngs: nnx.Rngs):  # fmt: skip
        self.act = activation
        self.dense = self._dense(_size(input_shape), (*hidden, num_classes), rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout else None

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        act = activation(self.act)
        x = x.reshape(x.shape[0], -1)
        for name in self.dense[:-1]:
            x = _maybe(self.dropout, act(self._run(name, x)))
        return self._run(self.dense[-1], x)


def _maybe(layer: nnx.Module | None, x: jnp.ndarray) -> jnp.ndarray:
    return x if layer is None else layer(x)


class CNN(_Preset):
    """:class:`jaxconv.models.CNN` in NNX: [conv -> norm -> activation (-> pool)] x
    ``len(channels)`` -> head -> ``hidden`` dense layers -> classifier."""

    def __init__(self, num_classes: int = 10, channels: Sequence[int] = (32, 64),
                 kernel_size: Any = (3, 3), strides: Any = 1, padding: Any = "SAME",
                 padding_mode: str = "zeros", pool: str = "max", pool_window: int = 2,
                 pool_every: int = 1, norm: str = "batch", activation: str = "relu",
                 dropout: float = 0.0, head: str = "global_avg", hidden: Sequence[int] = (),
                 conv_backend: str = "auto", *, input_shape: Sequence[int],
                 rngs: nnx.Rngs):  # fmt: skip
        channels = tuple(channels)
        if not channels or any(isinstance(c, bool) or not isinstance(c, int) or c < 1
                               for c in channels):  # fmt: skip
            raise ValueError(f"`channels` (={list(channels)}) must name at least one layer, "
                             "each an int >= 1")  # fmt: skip
        if head not in HEADS:
            raise ValueError(f"`head` (={head!r}) must be one of {HEADS}")
        kernels = _kernels(kernel_size, len(channels))
        shape = _check_shape(input_shape, len(kernels[0]), "CNN")
        self.act, self.head, self.pool = activation, head, (pool, pool_window, conv_backend)
        layers = []
        for i, (features, ks, st) in enumerate(
            zip(channels, kernels, _per_layer(strides, len(channels), "strides"))
        ):
            conv = self._add(jnnx.Conv(shape[-1], features, ks, st, padding=padding,
                                       padding_mode=padding_mode, use_bias=norm == "none",
                                       backend=conv_backend, rngs=rngs))  # fmt: skip
            shape = _shape_after(getattr(self, conv), shape)
            pooled = (i + 1) % pool_every == 0
            if pooled:
                shape = _shape_after(lambda x: _pool(x, *self.pool), shape)
            layers.append((conv, self._add(_norm(norm, features, rngs)), pooled))
        self.layers = tuple(layers)
        self.dense = self._dense(_features(shape, head), (*hidden, num_classes), rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout else None

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        act = activation(self.act)
        expect_rank(x, len(getattr(self, self.layers[0][0]).kernel_size), "CNN")
        for conv, norm, pooled in self.layers:
            x = act(self._run(norm, self._run(conv, x)))
            x = _pool(x, *self.pool) if pooled else x
        x = _head(x, self.head)
        for name in self.dense[:-1]:
            x = act(self._run(name, _maybe(self.dropout, x)))
        return self._run(self.dense[-1], _maybe(self.dropout, x))


class MNIST1DCNN(_Preset):
    """The MNIST-1D paper's CNN (:class:`jaxconv.models.MNIST1DCNN`) in NNX."""

    def __init__(self, num_classes: int = 10, channels: int = 25, conv_backend: str = "auto", *,
                 input_shape: Sequence[int], rngs: nnx.Rngs):  # fmt: skip
        shape = _check_shape(input_shape, 1, "MNIST1DCNN")
        convs = []
        for ks in (5, 3, 3):
            convs.append(self._add(jnnx.Conv(shape[-1], channels, (ks,), 2, padding=1,
                                             backend=conv_backend, rngs=rngs)))  # fmt: skip
            shape = _shape_after(getattr(self, convs[-1]), shape)
        self.convs = tuple(convs)
        self.dense = self._dense(_size(shape), (num_classes,), rngs)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        expect_rank(x, 1, "MNIST1DCNN")
        for name in self.convs:
            x = jax.nn.relu(self._run(name, x))
        return self._run(self.dense[0], x.reshape(x.shape[0], -1))


class LeNet5(_Preset):
    """LeNet-5 (:class:`jaxconv.models.LeNet5`) in NNX."""

    def __init__(self, num_classes: int = 10, padding: Any = "SAME", pool: str = "avg",
                 activation: str = "tanh", conv_backend: str = "auto", *,
                 input_shape: Sequence[int], rngs: nnx.Rngs):  # fmt: skip
        shape = _check_shape(input_shape, 2, "LeNet5")
        self.act, self.pool = activation, (pool, 2, conv_backend)
        convs = []
        for features in (6, 16):
            convs.append(self._add(jnnx.Conv(shape[-1], features, (5, 5), padding=padding,
                                             backend=conv_backend, rngs=rngs)))  # fmt: skip
            shape = _shape_after(lambda x: _pool(getattr(self, convs[-1])(x), *self.pool), shape)
        self.convs = tuple(convs)
        self.dense = self._dense(_size(shape), (120, 84, num_classes), rngs)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        expect_rank(x, 2, "LeNet5")
        act = activation(self.act)
        for name in self.convs:
            x = _pool(act(self._run(name, x)), *self.pool)
        x = x.reshape(x.shape[0], -1)
        for name in self.dense[:-1]:
            x = act(self._run(name, x))
        return self._run(self.dense[-1], x)


class DepthwiseSeparableCNN(_Preset):
    """:class:`jaxconv.models.DepthwiseSeparableCNN` in NNX."""

    def __init__(self, num_classes: int = 10, stem: int = 32, channels: Sequence[int] = (64, 128),
                 kernel_size: Any = (3, 3), strides: Any = 1, norm: str = "batch",
                 activation: str = "relu", conv_backend: str = "auto", *,
                 input_shape: Sequence[int], rngs: nnx.Rngs):  # fmt: skip
        ks = _kernels(kernel_size, 1)[0]
        shape = _check_shape(input_shape, len(ks), "DepthwiseSeparableCNN")
        self.act, ones, layers = activation, (1,) * len(ks), []

        def conv_norm(c_in, c_out, kernel, st=1, groups=1):
            conv = self._add(jnnx.Conv(c_in, c_out, kernel, st, feature_group_count=groups,
                                       use_bias=False, backend=conv_backend,
                                       rngs=rngs))  # fmt: skip
            layers.append((conv, self._add(_norm(norm, c_out, rngs))))
            return _shape_after(getattr(self, conv), shape)

        shape = conv_norm(shape[-1], stem, ks)
        for features, st in zip(channels, _per_layer(strides, len(channels), "strides")):
            shape = conv_norm(shape[-1], shape[-1], ks, st, groups=shape[-1])
            shape = conv_norm(shape[-1], features, ones)
        self.layers = tuple(layers)
        self.dense = self._dense(shape[-1], (num_classes,), rngs)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        act = activation(self.act)
        expect_rank(x, len(getattr(self, self.layers[0][0]).kernel_size), "DepthwiseSeparableCNN")
        for conv, norm in self.layers:
            x = act(self._run(norm, self._run(conv, x)))
        return self._run(self.dense[0], jnnx.GlobalAvgPool()(x))


class BasicBlock(_Preset):
    """Two 3x3 conv-norm layers and a shortcut (projected when the shape changes)."""

    def __init__(self, in_features: int, features: int, strides: int = 1, norm: str = "batch",
                 conv_backend: str = "auto", *, spatial: int, rngs: nnx.Rngs):  # fmt: skip
        k3, k1 = (3,) * spatial, (1,) * spatial

        def conv_norm(c_in, kernel, st):
            conv = jnnx.Conv(c_in, features, kernel, st, use_bias=False, backend=conv_backend,
                             rngs=rngs)  # fmt: skip
            return self._add(conv), self._add(_norm(norm, features, rngs))

        self.main = (conv_norm(in_features, k3, strides), conv_norm(features, k3, 1))
        project = strides != 1 or in_features != features
        self.shortcut = conv_norm(in_features, k1, strides) if project else None

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        (c1, n1), (c2, n2) = self.main
        y = self._run(n2, self._run(c2, jax.nn.relu(self._run(n1, self._run(c1, x)))))
        if self.shortcut is not None:
            x = self._run(self.shortcut[1], self._run(self.shortcut[0], x))
        return jax.nn.relu(x + y)


class ResNet(_Preset):
    """:class:`jaxconv.models.ResNet` in NNX; use :func:`resnet20` and its siblings."""

    def __init__(self, num_classes: int = 10, widths: Sequence[int] = (16, 32, 64),
                 blocks: Sequence[int] = (3, 3, 3), stem_features: int = 16,
                 norm: str = "batch", conv_backend: str = "auto", *,
                 input_shape: Sequence[int], rngs: nnx.Rngs):  # fmt: skip
        n = len(input_shape) - 1
        _check_shape(input_shape, max(n, 1), "ResNet")
        self.stem = (
            self._add(jnnx.Conv(input_shape[-1], stem_features, (3,) * n, use_bias=False,
                                backend=conv_backend, rngs=rngs)),
            self._add(_norm(norm, stem_features, rngs)),
        )  # fmt: skip
        names, c_in = [], stem_features
        for stage, (width, count) in enumerate(zip(widths, blocks)):
            for b in range(count):
                stride = 2 if stage > 0 and b == 0 else 1
                block = BasicBlock(c_in, width, stride, norm, conv_backend, spatial=n, rngs=rngs)
                names.append(self._add(block))
                c_in = width
        self.blocks = tuple(names)
        self.dense = self._dense(c_in, (num_classes,), rngs)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = jax.nn.relu(self._run(self.stem[1], self._run(self.stem[0], x)))
        for name in self.blocks:
            x = self._run(name, x)
        return self._run(self.dense[0], jnnx.GlobalAvgPool()(x))


def _cifar(depth: int):
    def make(num_classes: int = 10, conv_backend: str = "auto", norm: str = "batch", *,
             input_shape: Sequence[int], rngs: nnx.Rngs) -> ResNet:  # fmt: skip
        per_stage = (depth - 2) // 6
        return ResNet(num_classes, (16, 32, 64), (per_stage,) * 3, 16, norm, conv_backend,
                      input_shape=input_shape, rngs=rngs)  # fmt: skip

    make.__name__ = f"resnet{depth}"
    make.__doc__ = f"CIFAR ResNet-{depth} in NNX (:func:`jaxconv.models.resnet{depth}`)."
    return make


resnet20, resnet32, resnet56 = _cifar(20), _cifar(32), _cifar(56)


def resnet18(num_classes: int = 10, conv_backend: str = "auto", norm: str = "batch", *,
             input_shape: Sequence[int], rngs: nnx.Rngs) -> ResNet:  # fmt: skip
    """ResNet-18 in NNX (:func:`jaxconv.models.resnet18`)."""
    return ResNet(num_classes, (64, 128, 256, 512), (2, 2, 2, 2), 64, norm, conv_backend,
                  input_shape=input_shape, rngs=rngs)  # fmt: skip


class VGG(_Preset):
    """:class:`jaxconv.models.VGG` in NNX."""

    def __init__(self, num_classes: int = 10, widths: Sequence[int] = (32, 64, 128),
                 stages: Sequence[int] = (2, 2, 2), norm: str = "batch", activation: str = "relu",
                 head: str = "global_avg", hidden: Sequence[int] = (), dropout: float = 0.0,
                 conv_backend: str = "auto", *, input_shape: Sequence[int],
                 rngs: nnx.Rngs):  # fmt: skip
        if head not in VGG_HEADS:
            raise ValueError(f"`head` (={head!r}) must be one of {VGG_HEADS}")
        if len(widths) != len(stages):
            raise ValueError(f"`widths` ({len(widths)}) and `stages` ({len(stages)}) must "
                             "have the same length")  # fmt: skip
        n = len(input_shape) - 1
        shape = _check_shape(input_shape, max(n, 1), "VGG")
        self.act, self.head, self.backend, plan = activation, head, conv_backend, []
        for width, depth in zip(widths, stages):
            stage = []
            for _ in range(depth):
                conv = self._add(jnnx.Conv(shape[-1], width, (3,) * n, use_bias=norm == "none",
                                           backend=conv_backend, rngs=rngs))  # fmt: skip
                shape = _shape_after(getattr(self, conv), shape)
                stage.append((conv, self._add(_norm(norm, width, rngs))))
            shape = _shape_after(self._stage_pool, shape)
            plan.append(tuple(stage))
        self.plan = tuple(plan)
        self.dense = self._dense(_features(shape, head), (*hidden, num_classes), rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs) if dropout else None

    def _stage_pool(self, x: jnp.ndarray) -> jnp.ndarray:
        if all(s >= 2 for s in x.shape[1:-1]):
            return jnnx.MaxPool((2,) * (x.ndim - 2), backend=self.backend)(x)
        return x

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        act = activation(self.act)
        for stage in self.plan:
            for conv, norm in stage:
                x = act(self._run(norm, self._run(conv, x)))
            x = self._stage_pool(x)
        x = _head(x, self.head)
        for name in self.dense[:-1]:
            x = _maybe(self.dropout, act(self._run(name, x)))
        return self._run(self.dense[-1], x)


def _size(shape: Sequence[int]) -> int:
    size = 1
    for s in shape:
        size *= int(s)
    return size


def _collections(model: nnx.Module) -> dict:
    _, params, stats, _ = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    return {"params": params, "batch_stats": stats}


def _layout(tree: Any) -> dict:
    return {
        jax.tree_util.keystr(p): jnp.shape(v)
        for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def to_linen(model: nnx.Module) -> dict:
    """The variables of the Linen twin of an NNX preset: ``{"params": ...,
    "batch_stats": ...}`` (``batch_stats`` only when it has BatchNorm), for
    ``linen_model.apply(variables, x, train=False)``."""
    variables = {k: nnx.to_pure_dict(v) for k, v in _collections(model).items()}
    return variables if variables["batch_stats"] else {"params": variables["params"]}


def from_linen(model: nnx.Module, variables: dict) -> nnx.Module:
    """Load a Linen preset's ``variables`` into its NNX twin ``model`` (in place; returned).

    A ``ValueError`` names the first array that is missing or of another shape: the
    two presets were built with different arguments or input shapes.
    """
    for name, state in _collections(model).items():
        given = variables.get(name, {})
        want, have = _layout(nnx.to_pure_dict(state)), _layout(given)
        for path in sorted(set(want) | set(have)):
            if want.get(path) != have.get(path):
                raise ValueError(
                    f"`variables` do not fit {type(model).__name__}: {name}{path} is "
                    f"{have.get(path, 'missing')} in them and {want.get(path, 'absent')} in "
                    "the model"
                )
        nnx.replace_by_pure_dict(state, given)
        nnx.update(model, state)
    return model
