"""The config schema, built from the library's options dataclasses.

Each config group is the fields of the library class that takes it (the ``trainer``
group is :class:`~jaxconv.train.FitOptions` plus :class:`RunOptions`, the ``optimizer``
group :class:`~jaxconv.train.optim.OptimizerOptions`, ...), so an option is declared once,
in the library, with its default, its key and its resume rule
(:func:`jaxconv._options.option`). Hydra's structured configs made from them refuse a
wrong type or an unknown key before anything runs. Everything else the command needs to
know about a key is read here: which keys a resume may change or extend, which are left
out of the config hash, and the config key of a library argument named in an error.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from jaxconv._options import OptionInfo, describe, option, rest_field
from jaxconv.data.datasets import DataOptions
from jaxconv.train.loggers import LoggerOptions
from jaxconv.train.loop import FitOptions
from jaxconv.train.optim import OptimizerOptions, ScheduleOptions
from jaxconv.train.parallel import DistributedOptions


@dataclasses.dataclass
class RunOptions:
    """What the command does around :func:`~jaxconv.train.fit`."""

    plots: bool = option(
        True, key="trainer.plots", resume="free", why="whether plots are drawn at the end"
    )
    reuse_host_memory: bool = option(  # jaxconv.train.reuse_host_memory
        True,
        key="trainer.reuse_host_memory",
        resume="free",
        why="a host-allocator setting; numbers are unchanged",
    )
    conv_backend: str = option("auto", key="conv_backend")  # every conv and pooling layer's
    #: ``trainer=debug``: a short run that checks the config end to end (jaxconv.app.debug)
    debug: bool = option(False, key="trainer.debug")


#: The library classes whose fields are config keys, by the group a field belongs to
#: unless its metadata names another key.
SCHEMAS: dict[str, tuple[type, ...]] = {
    "data": (DataOptions,),
    "optimizer": (OptimizerOptions,),
    "schedule": (ScheduleOptions,),
    "trainer": (FitOptions, RunOptions),
    "distributed": (DistributedOptions,),
    "logger": (LoggerOptions,),
}


def options(schemas: Mapping[str, tuple[type, ...]] = SCHEMAS) -> list[OptionInfo]:
    """Every option of every schema, with its config key."""
    return [
        info for group, classes in schemas.items() for c in classes for info in describe(c, group)
    ]


def _hydra_type(hint: Any) -> Any:
    """The annotation as OmegaConf takes it: a union other than ``X | None`` is Any."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return hint if len(args) == 1 else Any
    return hint


def _group_class(name: str, infos: list[OptionInfo]) -> type:
    """A structured-config dataclass of these options (named by their keys' last part)."""
    fields = []
    for info in infos:
        f = info.field
        default = (
            dataclasses.field(default_factory=f.default_factory)
            if f.default_factory is not dataclasses.MISSING
            else dataclasses.field(default=f.default)
        )
        hint = _hydra_type(typing.get_type_hints(info.owner)[f.name])
        fields.append((info.key.rsplit(".", 1)[-1], hint, default))
    return dataclasses.make_dataclass(name, fields)


def _group(info: OptionInfo) -> str:
    return info.key.rsplit(".", 1)[0] if "." in info.key else ""


def schema_classes(schemas: Mapping[str, tuple[type, ...]] = SCHEMAS) -> dict[str, type]:
    """One structured-config dataclass per group, and under ``""`` the whole config:
    the groups, ``model`` (any module's constructor arguments) and the top-level keys."""
    infos = options(schemas)
    names = dict.fromkeys(_group(i) for i in infos if _group(i))
    groups = {
        g: _group_class(f"{g.capitalize()}Config", [i for i in infos if _group(i) == g])
        for g in names
    }
    top = [(g, cls, dataclasses.field(default_factory=cls)) for g, cls in groups.items()]
    top.insert(1, ("model", Any, dataclasses.field(default=MISSING)))  # after data
    root = _group_class("Top", [i for i in infos if not _group(i)])
    top += [
        (f.name, f.type, dataclasses.field(default=f.default)) for f in dataclasses.fields(root)
    ]
    return {**groups, "": dataclasses.make_dataclass("Config", top)}


def register(schemas: Mapping[str, tuple[type, ...]] = SCHEMAS) -> None:
    """Store the schema in Hydra's ConfigStore as ``base_config``: every group's options
    (the YAML files of ``conf/``) merge into its typed node, so a wrong type or an unknown
    key is refused whichever option is chosen."""
    ConfigStore.instance().store(name="base_config", node=schema_classes(schemas)[""])


@dataclasses.dataclass(frozen=True)
class ResumeRules:
    """Which keys a resume may change (with why) or only extend, and every key's
    default (a run recorded before a key existed ran with its default)."""

    may_change: dict[str, str]
    may_extend: tuple[str, ...]
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)


def resume_rules(schemas: Mapping[str, tuple[type, ...]] = SCHEMAS) -> ResumeRules:
    infos = options(schemas)
    return ResumeRules(
        may_change={i.key: i.why for i in infos if i.resume == "free"},
        may_extend=tuple(i.key for i in infos if i.resume == "extend"),
        defaults=_defaults(infos),
    )


def _defaults(infos: list[OptionInfo]) -> dict[str, Any]:
    """Every key's default, a nested options dataclass's as its own dotted keys."""
    out: dict[str, Any] = {}
    for info in infos:
        if not _has_default(info.field):
            continue
        value = _default(info.field)
        if dataclasses.is_dataclass(value):
            out.update(flatten(dataclasses.asdict(value), info.key + "."))
        else:
            out[info.key] = value
    return out


def _has_default(field: dataclasses.Field) -> bool:
    return (field.default, field.default_factory) != (dataclasses.MISSING, dataclasses.MISSING)


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def library_keys(schemas: Mapping[str, tuple[type, ...]] = SCHEMAS) -> dict[str, str]:
    """A library argument's name -> its config key, for the names only one option has
    (the library names the others by their key already: ``optimizer.name``)."""
    infos = options(schemas)
    counts = {}
    for info in infos:
        counts[info.name] = counts.get(info.name, 0) + 1
    return {i.name: i.key for i in infos if counts[i.name] == 1 and i.name != i.key}


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values.

    >>> flatten({"seed": 0, "trainer": {"batch_size": 16, "resume": False}})
    {'seed': 0, 'trainer.batch_size': 16, 'trainer.resume': False}
    """
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


#: Keys the schema leaves open: the model's (its class's own arguments, checked when it is
#: made) and the dataset generator's options (checked by the library's data checks).
OPEN_KEYS = ("model", "data.options")


def unknown_keys(config: Mapping[str, Any]) -> dict[str, str | None]:
    """Keys of ``config`` (hydra's left out) the schema does not have, each with the
    schema key it most resembles (None when none is close): a ``+key=value`` typo.

    >>> unknown_keys({"seed": 0, "trainer": {"maxsteps": 5}, "model": {"depth": 3}})
    {'trainer.maxsteps': 'trainer.max_steps'}
    """
    known = list(flatten(OmegaConf.to_container(OmegaConf.structured(schema_classes()[""]))))
    open_keys = (*OPEN_KEYS, *open_groups())
    out = {}
    for key in flatten({k: v for k, v in config.items() if k != "hydra"}):
        if key in known or any(key == o or key.startswith(o + ".") for o in open_keys):
            continue
        group, _, leaf = key.rpartition(".")
        siblings = {k.rpartition(".")[2]: k for k in known if k.rpartition(".")[0] == group}
        close = difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.7)
        out[key] = siblings[close[0]] if close else None
    return out


def open_groups(schemas: Mapping[str, tuple[type, ...]] = SCHEMAS) -> tuple[str, ...]:
    """The groups whose undeclared keys are keywords for the function they name
    (:func:`jaxconv._options.rest_of_group`): ``optimizer`` and ``schedule``."""
    return tuple(g for g, classes in schemas.items() if any(rest_field(c) for c in classes))


def task_config(cfg: DictConfig) -> dict:
    """The resolved config without Hydra's own node: what a run records and compares."""
    return {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "hydra"}


def config_sha256(cfg: DictConfig) -> str:
    """SHA-256 of the resolved config without the keys that never change what a run
    computes (``resume="free"``: resume, progress, plots, checkpointing, where the data
    lives): a resumed or re-run job has the original's hash."""
    return hash_of(task_config(cfg))


def hash_of(config: Mapping[str, Any]) -> str:
    """:func:`config_sha256` of a resolved config given as plain containers."""
    free = resume_rules().may_change
    kept = {k: v for k, v in flatten(config).items() if k not in free}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def group_options(cfg: DictConfig, schema: type, group: str) -> Any:
    """An instance of the library class ``schema`` from the config's keys for its fields."""
    values = {}
    for info in describe(schema, group):
        value = OmegaConf.select(cfg, info.key)
        if isinstance(value, DictConfig) or OmegaConf.is_list(value):
            value = OmegaConf.to_container(value, resolve=True)
        values[info.name] = value
    rest = rest_field(schema)
    node = OmegaConf.select(cfg, group) if rest else None
    if isinstance(node, DictConfig):
        declared = {info.key.rpartition(".")[2] for info in describe(schema, group)}
        extra = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items()
                 if k not in declared}  # fmt: skip
        values[rest] = extra
    return schema(**values)


def summary_ignored_keys() -> tuple[str, ...]:
    """The overrides a sweep summary does not group runs by: the seed (pooled) and the
    keys that never change results."""
    return ("seed", *resume_rules().may_change)
