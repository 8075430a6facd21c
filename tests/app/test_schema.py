"""The config schema is the library's options dataclasses: an option added to one (a field
and its default) is composed, type-checked, classified for resume and hashed by the app
without any change to app/."""

from __future__ import annotations

import dataclasses

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from jaxconv._options import option
from jaxconv.app import config
from jaxconv.app.build import fit_options
from jaxconv.app.rundir import config_differences
from jaxconv.train import FitOptions


@dataclasses.dataclass(frozen=True)
class WithWarmup(FitOptions):
    """A copy of the trainer schema with one option more, as a developer would add it."""

    warmup_steps: int = 7
    log_every: int = option(50, resume="free", why="how often the loss is printed")


SCHEMAS = {**config.SCHEMAS, "trainer": (WithWarmup, config.RunOptions)}


def compose_with(overrides, schemas=SCHEMAS):
    config.register(schemas)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="jaxconv.conf", version_base="1.3"):
            return compose("config", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()
        config.register()  # the real schema back for the other tests


def test_a_new_option_is_composed_with_its_default_and_overridable():
    cfg = compose_with([])
    assert cfg.trainer.warmup_steps == 7 and cfg.trainer.log_every == 50
    assert compose_with(["trainer.warmup_steps=3"]).trainer.warmup_steps == 3


def test_a_new_option_is_type_checked():
    with pytest.raises((ConfigCompositionException, ValidationError), match="warmup_steps"):
        compose_with(["trainer.warmup_steps=soon"])


def test_a_new_option_reaches_the_library_class():
    cfg = compose_with(["trainer.warmup_steps=3"])
    options = config.group_options(cfg, WithWarmup, "trainer")
    assert options.warmup_steps == 3 and options.batch_size == cfg.trainer.batch_size
    assert dataclasses.asdict(fit_options(cfg)).items() <= dataclasses.asdict(options).items()


def test_a_new_option_is_classified_for_resume():
    rules = config.resume_rules(SCHEMAS)
    assert rules.may_change["trainer.log_every"] == "how often the loss is printed"
    assert "trainer.warmup_steps" not in rules.may_change
    old = {"trainer": {"warmup_steps": 7, "log_every": 50}}
    new = {"trainer": {"warmup_steps": 9, "log_every": 10}}
    assert config_differences(old, new, rules) == ["trainer.warmup_steps: 7 -> 9"]
    assert config.library_keys(SCHEMAS)["warmup_steps"] == "trainer.warmup_steps"


def test_the_real_rules_are_those_the_schema_declares():
    rules = config.resume_rules()
    assert set(rules.may_extend) == {"trainer.max_steps", "trainer.epochs"}
    free = {"trainer.resume", "trainer.progress", "trainer.plots", "data.root", "logger.mlflow"}
    assert free <= set(rules.may_change)
    assert not {"seed", "trainer.batch_size", "optimizer.lr"} & set(rules.may_change)


def test_the_config_hash_ignores_free_keys_only():
    base = compose_with([], config.SCHEMAS)
    same = compose_with(["trainer.progress=false", "data.root=/elsewhere"], config.SCHEMAS)
    other = compose_with(["trainer.label_smoothing=0.2"], config.SCHEMAS)
    assert config.config_sha256(base) == config.config_sha256(same)
    assert config.config_sha256(base) != config.config_sha256(other)


def test_option_refuses_a_free_key_without_a_reason():
    with pytest.raises(ValueError, match="`why` must say why"):
        option(1, resume="free")
    with pytest.raises(ValueError, match="`resume` \\(='later'\\) must be one of"):
        option(1, resume="later")


def test_every_shipped_config_has_only_schema_keys(hydra_compose):
    """The unknown-key check (a `+key=value` typo) refuses nothing jaxconv ships."""
    from pathlib import Path

    from omegaconf import OmegaConf

    import jaxconv.conf

    conf = Path(jaxconv.conf.__file__).parent
    choices = [f"experiment={p.stem}" for p in sorted((conf / "experiment").glob("*.yaml"))]
    choices += [f"{group}={p.stem}" for group in ("model", "data", "logger", "hparams_search")
                for p in sorted((conf / group).glob("*.yaml"))]  # fmt: skip
    for choice in choices:
        cfg = OmegaConf.to_container(hydra_compose([choice]), resolve=False)
        assert config.unknown_keys(cfg) == {}, choice
    assert config.unknown_keys({"trainer": {"maxsteps": 5}}) == {
        "trainer.maxsteps": "trainer.max_steps"
    }
