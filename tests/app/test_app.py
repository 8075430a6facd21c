"""The Hydra application: every config composes and instantiates; the CLI runs end to
end; bad values fail in one line before training."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flax import nnx
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from jaxconv.app.build import build_model, check_model_fits
from jaxconv.app.config import register
from jaxconv.app.errors import ConfigError
from jaxconv.app.rundir import RunDirRefused
from jaxconv.app.train import train
from jaxconv.app.validate import validate
from jaxconv.train.modules import api_of
from tests.helpers import cli

CONF = Path(__file__).resolve().parents[2] / "src" / "jaxconv" / "conf"
INPUT_SHAPES = {
    "mnist1d": (40, 1),
    "digits": (8, 8, 1),
    "shapes": (16, 16, 1),
    "mnist": (28, 28, 1),
    "fashion_mnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
}
ONE_D_MODELS = {"cnn1d", "mnist1d_paper_cnn", "logreg", "mlp"}


def options(group):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def fits(cfg, shape):
    model = build_model(cfg, 10, shape)
    check_model_fits(model, np.zeros((1, *shape), np.float32))
    return model


def test_default_config(hydra_compose):
    cfg = hydra_compose()
    assert cfg.data.name == "mnist1d" and cfg.conv_backend == "auto"
    assert cfg.model._target_ == "jaxconv.models.CNN"
    for key in (
        "epochs",
        "max_steps",
        "batch_size",
        "eval_every",
        "checkpoint_every",
        "resume",
        "progress",
    ):
        assert key in cfg.trainer
    validate(cfg)
    fits(cfg, INPUT_SHAPES["mnist1d"])


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_and_instantiates(hydra_compose, experiment):
    cfg = hydra_compose([f"experiment={experiment}"])
    validate(cfg)
    model = fits(cfg, INPUT_SHAPES[cfg.data.name])
    assert model.conv_backend == "auto"


@pytest.mark.parametrize("api", ["linen", "nnx"])
@pytest.mark.parametrize("model", [m for m in options("model") if m != "custom"])
def test_every_model_config_instantiates(hydra_compose, model, api):
    data = "mnist1d" if model in ONE_D_MODELS else "digits"
    cfg = hydra_compose(
        [f"model={model}", f"data={data}", "conv_backend=window", f"model.api={api}"]
    )
    instance = fits(cfg, INPUT_SHAPES[data] if model not in {"vgg", "resnet18"} else (16, 16, 3))
    assert api_of(instance) == api
    convs = (
        [m for _, m in nnx.iter_graph(instance) if isinstance(m, nnx.Conv)] if api == "nnx" else []
    )
    assert (
        instance.conv_backend == "window"
        if api == "linen"
        else all(c.backend == "window" for c in convs)
    )


#: The values a group option needs from the command line (a source of one's own names it).
REQUIRED = {
    "image_folder": ["data.root=photos"],
    "array_record": ["data.root=photos_ar"],
    "arrays": ["data.path=arrays.npz"],
    "custom": ["data.target=mypkg.sources.Stripes"],
}


@pytest.mark.parametrize("group", ["data", "optimizer", "schedule", "trainer", "logger"])
def test_every_group_option_composes(hydra_compose, group):
    for option in options(group):
        cfg = hydra_compose([f"{group}={option}", *REQUIRED.get(option, [])])
        validate(cfg)
        OmegaConf.to_container(cfg, resolve=True)
        if option in REQUIRED:  # without the value: one line naming the key
            key = REQUIRED[option][0].split("=")[0]
            with pytest.raises(Exception, match=rf"^{key} must name "):
                validate(hydra_compose([f"{group}={option}"]))


def test_wrong_type_and_unknown_key_are_rejected_by_hydra(hydra_compose):
    from hydra.errors import ConfigCompositionException as HydraComposition

    with pytest.raises(HydraComposition, match="trainer.epochs"):
        hydra_compose(["trainer.epochs=many"])
    with pytest.raises(HydraComposition, match="epochz"):
        hydra_compose(["trainer.epochz=3"])


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["optimizer.lr=0"], "optimizer.lr \\(=0.0\\) must be > 0"),
        (["trainer.batch_size=0"], "trainer.batch_size \\(=0\\) must be >= 1"),
        (["conv_backend=cudnn"], "conv_backend \\(='cudnn'\\) must be one of"),
        (["model=cnn2d"], "model CNN does not fit inputs of shape \\(40, 1\\)"),
        (
            ["model.kernel_size=64", "model.padding=VALID"],
            "kernel` \\(effective size 64 with dilation\\) "
            "is larger than the padded input \\(size 40\\)",
        ),
    ],
)
def test_wrong_values_fail_before_training(hydra_compose, tmp_path, overrides, message):
    cfg = hydra_compose(overrides)
    with pytest.raises(ConfigError, match=message):
        train(cfg, tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_train_function_without_the_cli(hydra_compose, tmp_path):
    cfg = hydra_compose(
        [
            "experiment=shapes_cnn",
            "trainer.max_steps=40",
            "trainer.eval_every=20",
            "data.options.num_train=200",
            "data.options.num_test=100",
            "trainer.progress=false",
        ]
    )
    result = train(cfg, tmp_path)
    assert result["status"] == "ok" and result["steps"] == 40
    assert result["test_accuracy"] > 0.4  # 4 classes: well above chance after 40 steps
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk["params_sha256"] == result["params_sha256"]
    for name in ("metrics.csv", "learning_curves.png", "filters.png", "feature_maps.png"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_rerun_into_a_used_directory_keeps_what_is_there(hydra_compose, tmp_path):
    overrides = [
        "experiment=shapes_cnn",
        "trainer.max_steps=4",
        "trainer.eval_every=2",
        "trainer.batch_size=16",
        "data.options.num_train=64",
        "data.options.num_test=16",
        "trainer.plots=false",
        "schedule=constant",  # a run may be extended on resume under a constant schedule
    ]
    first = train(hydra_compose(overrides), tmp_path)
    before = (tmp_path / "result.json").read_text()
    with pytest.raises(RunDirRefused, match="already holds checkpoints: pass resume=True"):
        train(hydra_compose(overrides + ["seed=1"]), tmp_path)
    assert (tmp_path / "result.json").read_text() == before
    resumed = train(
        hydra_compose(overrides + ["trainer.resume=true", "trainer.max_steps=6"]), tmp_path
    )
    assert resumed["steps"] == 6 and first["steps"] == 4


def _cli(args, cwd, timeout=300):
    return cli(args, cwd, timeout=timeout)


def test_cli_end_to_end(tmp_path):
    run_dir = tmp_path / "run"
    proc = _cli(
        [
            "trainer.max_steps=30",
            "trainer.eval_every=15",
            "model.channels=[8,8]",
            "model.strides=[1,2]",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "ok" and result["steps"] == 30 and result["seed"] == 0
    assert len(result["params_sha256"]) == 64 and len(result["config_sha256"]) == 64
    assert {"python", "jax", "jaxlib", "flax", "optax"} <= set(result["versions"])
    assert result["device"] and result["wall_seconds"] > 0
    for name in (
        "learning_curves.png",
        "filters.png",
        "feature_maps.png",
        "metrics.csv",
        ".hydra/config.yaml",
    ):
        assert (run_dir / name).exists(), name
    assert (run_dir / "checkpoints" / "last" / "30").is_dir()
    assert "test accuracy" in proc.stdout
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert (
        provenance["host_memory_reused"] is True
    )  # a fresh process: applied before the backend started
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,split,loss,accuracy,images_per_s"
    assert [r.split(",")[2] for r in rows[1:]] == ["train", "val", "train", "val", "test"]


def test_cli_bad_value_is_one_line_and_nonzero(tmp_path):
    proc = _cli(["optimizer.lr=-1", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().splitlines()[-1]
        == "jaxconv-train: error: optimizer.lr (=-1.0) must be > 0"
    )
    assert "Traceback" not in proc.stderr
    bad_type = _cli(["trainer.batch_size=big"], cwd=tmp_path)
    assert bad_type.returncode != 0 and "trainer.batch_size" in bad_type.stderr
    assert "Traceback" not in bad_type.stderr


@pytest.mark.slow
def test_non_editable_install_ships_the_configs(tmp_path):
    """A wheel (not the source tree) composes the default config from any directory."""
    root = Path(__file__).resolve().parents[2]
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheel_dir), str(root)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(wheel_dir.glob("jaxconv-*.whl"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    code = (
        "import jaxconv, sys; assert jaxconv.__file__.startswith(sys.argv[1]), jaxconv.__file__\n"
        "from hydra import compose, initialize_config_module\n"
        "from jaxconv.app.config import register; register()\n"
        "with initialize_config_module('jaxconv.conf', version_base='1.3'):\n"
        "    cfg = compose('config', overrides=['experiment=digits_cnn'])\n"
        "print(cfg.data.name, cfg.model._target_)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(target)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["digits", "jaxconv.models.CNN"]


@pytest.mark.parametrize(
    "launcher,key,value", [("slurm", "tasks_per_node", 4), ("joblib_cpu", "n_jobs", 2)]
)
def test_launcher_configs_compose(launcher, key, value):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    register()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="jaxconv.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    assert cfg.hydra.launcher[key] == value
    assert "_target_" in cfg.hydra.launcher


def test_help_names_the_app_and_lists_only_options(tmp_path):
    proc = _cli(["--help"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("jaxconv-train: train, evaluate, checkpoint and plot")
    assert "powered by Hydra" not in proc.stdout and "base_" not in proc.stdout
    listing = proc.stdout.split("== Config groups: group=option ==")[1].split("== Config (")[0]
    groups = dict(line.split(": ", 1) for line in listing.strip().splitlines())
    assert "schema" not in groups  # the typed schema is the base config, not a group
    for group in ("data", "model", "optimizer", "schedule", "trainer", "logger", "experiment"):
        assert groups[group].split(", ") == options(group), group
