"""What :func:`~jaxconv.train.fit` minimises and reports: a loss and metrics, per example.

The contract (``fit(..., loss=..., metrics=...)``, :func:`~jaxconv.train.evaluate` too):

- ``loss(outputs, targets)`` returns one float per example, shape ``(batch,)``: the
  training step minimises its mean over the (global) batch, an evaluation averages it
  over every example of the split.
- ``metrics`` maps names to functions of the same form, averaged the same way; each is
  a column of ``metrics.csv`` and a ``split/name`` value in the loggers.
- ``outputs`` is what the model returns (float32), ``targets`` the rows of the
  dataset's ``y`` arrays: class indices for the default, any numeric array with one row
  per example for a loss of one's own (a regression's values, a multi-label 0/1 matrix).

The default is softmax cross-entropy on integer class indices (with ``label_smoothing``
in training) and ``accuracy``. The best checkpoint follows validation ``accuracy`` when
it is one of the metrics, otherwise the lowest validation loss.

    >>> import jax.numpy as jnp
    >>> objective = Objective.of(loss=squared_error, metrics={"mae": absolute_error})
    >>> objective.names, objective.best
    (('loss', 'mae'), ('loss', 'min'))
    >>> outputs, targets = jnp.array([[1.0], [3.0]]), jnp.array([[0.0], [1.0]])
    >>> objective.losses(outputs, targets).tolist(), objective.values(outputs, targets)
    ([1.0, 4.0], {'mae': Array([1., 2.], dtype=float32)})
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

#: A loss or metric: ``(outputs, targets) -> (batch,)`` values.
PerExample = Callable[[jax.Array, jax.Array], jax.Array]

#: Column names of metrics.csv a metric may not take.
RESERVED = ("step", "epoch", "split", "loss", "images_per_s")


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross-entropy of integer class ``labels`` (or of class probabilities, one row per
    example: mixed labels) under ``softmax(logits)``, per example."""
    if labels.ndim == logits.ndim:
        return optax.softmax_cross_entropy(logits, labels)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """1.0 where the largest logit is the label's (the likeliest class of mixed labels),
    else 0.0."""
    if labels.ndim == logits.ndim:
        labels = jnp.argmax(labels, -1)
    return (jnp.argmax(logits, -1) == labels).astype(jnp.float32)


def squared_error(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Squared error summed over each example's values (a regression's loss)."""
    diff = outputs - jnp.asarray(targets, outputs.dtype).reshape(outputs.shape)
    return jnp.sum(diff.reshape(len(diff), -1) ** 2, axis=-1)


def absolute_error(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Absolute error averaged over each example's values."""
    diff = outputs - jnp.asarray(targets, outputs.dtype).reshape(outputs.shape)
    return jnp.mean(jnp.abs(diff.reshape(len(diff), -1)), axis=-1)


def sigmoid_binary_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Independent binary cross-entropies summed over each example's labels (multi-label
    targets of 0s and 1s, one column per label)."""
    losses = optax.sigmoid_binary_cross_entropy(logits, jnp.asarray(targets, logits.dtype))
    return jnp.sum(losses.reshape(len(losses), -1), axis=-1)


@functools.cache  # one function per value: an Objective is a jit cache key
def _smoothed_cross_entropy(label_smoothing: float) -> PerExample:
    """The default training loss: cross-entropy against one-hot targets smoothed by
    ``label_smoothing`` (the form every recorded default run was trained with)."""

    def loss(logits, labels):
        hot = labels if labels.ndim == logits.ndim else jax.nn.one_hot(labels, logits.shape[-1])
        return optax.softmax_cross_entropy(logits, optax.smooth_labels(hot, label_smoothing))

    return loss


@dataclasses.dataclass(frozen=True)
class Objective:
    """A loss and named metrics, each ``(outputs, targets) -> (batch,)``.

    Attributes:
      loss: what evaluations report (and training minimises, without ``train_loss``).
      metrics: ``(name, function)`` pairs, in metrics.csv's column order.
      train_loss: what training minimises when it differs (label smoothing).
      class_labels: the targets are class indices, checked against ``num_classes``.
    """

    loss: PerExample = softmax_cross_entropy
    metrics: tuple[tuple[str, PerExample], ...] = (("accuracy", accuracy),)
    train_loss: PerExample | None = None
    class_labels: bool = True

    @classmethod
    def of(
        cls,
        loss: PerExample | None = None,
        metrics: Mapping[str, PerExample] | None = None,
        label_smoothing: float = 0.0,
    ) -> Objective:
        """``fit``'s ``loss=`` and ``metrics=``, checked: None is the default for each."""
        if loss is not None and not callable(loss):
            raise TypeError(f"`loss` (={loss!r}) must be a function (outputs, targets) -> (batch,)")
        if loss is not None and label_smoothing:
            raise ValueError(
                f"`label_smoothing` (={label_smoothing}) applies to the default cross-entropy "
                "only: smooth the targets in your own `loss`"
            )
        pairs = cls.metrics if metrics is None else tuple(_checked_metrics(metrics))
        if loss is None:
            smoothed = _smoothed_cross_entropy(label_smoothing)
            return cls(softmax_cross_entropy, pairs, smoothed, class_labels=True)
        return cls(loss, pairs, None, class_labels=False)

    @property
    def names(self) -> tuple[str, ...]:
        """``loss`` and the metrics' names: the values of every metrics row."""
        return ("loss", *(name for name, _ in self.metrics))

    @property
    def best(self) -> tuple[str, str]:
        """What the best checkpoint follows: ``("accuracy", "max")`` when accuracy is a
        metric, else ``("loss", "min")``."""
        return ("accuracy", "max") if "accuracy" in self.names else ("loss", "min")

    def losses(self, outputs: jax.Array, targets: jax.Array, *, train: bool = False) -> jax.Array:
        """Each example's loss (the training loss when ``train``), checked ``(batch,)``."""
        loss_fn = self.train_loss if train and self.train_loss is not None else self.loss
        return _one_per_example("loss", loss_fn(outputs, targets), len(outputs))

    def values(self, outputs: jax.Array, targets: jax.Array) -> dict[str, jax.Array]:
        """Each example's value of every metric, each checked ``(batch,)``."""
        return {
            name: _one_per_example(f"metrics[{name!r}]", fn(outputs, targets), len(outputs))
            for name, fn in self.metrics
        }


def _checked_metrics(metrics: Any):
    if not isinstance(metrics, Mapping):
        raise TypeError(
            f"`metrics` (={metrics!r}) must be a dict of name -> function (outputs, targets) "
            "-> (batch,)"
        )
    for name, fn in metrics.items():
        if not isinstance(name, str) or not name.isidentifier() or name in RESERVED:
            raise ValueError(
                f"`metrics` key {name!r} must be an identifier other than {', '.join(RESERVED)}"
            )
        if not callable(fn):
            raise TypeError(f"`metrics[{name!r}]` (={fn!r}) must be a function")
        yield name, fn


def _one_per_example(what: str, values: Any, batch: int) -> jax.Array:
    values = jnp.asarray(values)
    if values.shape != (batch,):
        raise ValueError(
            f"`{what}` must return one value per example, shape ({batch},); got shape "
            f"{tuple(values.shape)}"
        )
    return values.astype(jnp.float32)
