"""Declaring a library option once: its default, its config key and what may change it.

The library's options dataclasses (:class:`jaxconv.train.FitOptions`,
:class:`jaxconv.train.OptimizerOptions`, ...) are the config schema: ``jaxconv-train``
builds its config groups from their fields, and everything the command line needs to
know about a key is the field's metadata, read here:

- ``key``: the dotted config key (``trainer.batch_size``; the default is
  ``<group>.<field name>``), which is also how errors about the field name it;
- ``resume``: ``"fixed"`` (a resume must keep it), ``"extend"`` (it may only grow:
  training continues for longer) or ``"free"`` (it never changes what a run computes:
  how it is shown, saved or where it runs), with the reason in ``why``.

A ``"free"`` key is left out of the config hash and of the settings a sweep summary
groups runs by. Below every layer: it imports only the standard library.

    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class Example:
    ...     steps: int = option(10, resume="extend")
    ...     progress: bool = option(True, resume="free", why="the progress bar")
    >>> [(f.key, f.resume) for f in describe(Example, group="trainer")]
    [('trainer.steps', 'extend'), ('trainer.progress', 'free')]
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable
from typing import Any, Literal

Resume = Literal["fixed", "extend", "free"]
_RESUME = ("fixed", "extend", "free")


def option(
    default: Any = dataclasses.MISSING,
    *,
    key: str | None = None,
    resume: Resume = "fixed",
    why: str = "",
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with its config key and resume rule (see the module docstring)."""
    if resume not in _RESUME:
        raise ValueError(f"`resume` (={resume!r}) must be one of {_RESUME}")
    if resume == "free" and not why:
        raise ValueError("`why` must say why a `resume='free'` option never changes results")
    metadata = {"key": key, "resume": resume, "why": why}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def rest_of_group() -> Any:
    """A ``dict`` field that receives the keys of its config group the schema does not
    declare (``+optimizer.eps=1e-6``): keywords passed through to a function the group
    names, which checks them. It is not itself a config key."""
    return dataclasses.field(default_factory=dict, metadata={"rest": True})


def rest_field(schema: type) -> str | None:
    """The name of ``schema``'s :func:`rest_of_group` field, if it has one."""
    return next((f.name for f in dataclasses.fields(schema) if f.metadata.get("rest")), None)


@dataclasses.dataclass(frozen=True)
class OptionInfo:
    """One option as the command line sees it."""

    name: str  # the field's (and the library argument's) name
    key: str  # the dotted config key
    resume: Resume
    why: str
    field: dataclasses.Field
    owner: type  # the options class that declares it

    @property
    def changes_results(self) -> bool:
        return self.resume != "free"


def describe(schema: type, group: str) -> list[OptionInfo]:
    """Every field of ``schema`` with its key (``<group>.<name>`` unless it names one),
    but the :func:`rest_of_group` one."""
    out = []
    for f in dataclasses.fields(schema):
        meta = f.metadata
        if meta.get("rest"):
            continue
        out.append(
            OptionInfo(
                name=f.name,
                key=meta.get("key") or f"{group}.{f.name}",
                resume=meta.get("resume", "fixed"),
                why=meta.get("why", ""),
                field=f,
                owner=schema,
            )
        )
    return out


def keywords_for(function: Callable, values: Any, skip: Iterable[str] = ()) -> dict[str, Any]:
    """The fields of the dataclass ``values`` that ``function`` takes by name: a config
    group's options reach the library's function as its keywords, with no hand mapping.

    >>> @dataclasses.dataclass
    ... class Opt:
    ...     name: str = "adam"
    ...     lr: float = 0.1
    ...     b1: float = 0.9
    >>> keywords_for(lambda name, *, b1=0.0: None, Opt(), skip=("lr",))
    {'name': 'adam', 'b1': 0.9}
    """
    taken = inspect.signature(function).parameters
    return {
        f.name: getattr(values, f.name)
        for f in dataclasses.fields(values)
        if f.name in taken and f.name not in skip
    }
