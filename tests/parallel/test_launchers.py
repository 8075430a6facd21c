"""Hydra launchers for several processes: the SLURM config renders one multi-process job
per sweep point (SLURM itself cannot run here); submitit's local launcher runs a sweep."""

import json
import subprocess
import sys

import pytest

from tests.helpers import cli, cli_env

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")


#: hydra-submitit-launcher's names -> submitit's sbatch parameters (what its AutoExecutor
#: translates: the rest keep their names).
_SUBMITIT_NAMES = {"timeout_min": "time", "tasks_per_node": "ntasks_per_node", "name": "job_name"}
#: launcher keys that are not sbatch lines
_NOT_SBATCH = {"_target_", "submitit_folder", "max_num_timeout", "stderr_to_stdout"}


def _sbatch(overrides, tmp_path) -> str:
    """The sbatch script hydra-submitit-launcher would submit for ``overrides``, rendered
    by submitit from the launcher config the way submitit's executor renders it."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf
    from submitit.slurm.slurm import _make_sbatch_string

    from jaxconv.app.config import register

    register()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="jaxconv.conf", version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", *overrides],
                      return_hydra_config=True)  # fmt: skip
    GlobalHydra.instance().clear()
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert launcher["_target_"].endswith("SlurmLauncher")
    params = {
        _SUBMITIT_NAMES.get(k, k): v
        for k, v in launcher.items()
        if k not in _NOT_SBATCH and v is not None
    }
    params["mem"] = f"{params.pop('mem_gb')}GB"
    return _make_sbatch_string("python -u -m submitit.core._submit", tmp_path, **params)


def test_slurm_launcher_makes_one_multi_process_job_per_sweep_point(tmp_path):
    script = _sbatch(["hydra.launcher.nodes=2", "hydra.launcher.partition=gpu"], tmp_path)
    lines = script.splitlines()
    assert "#SBATCH --nodes=2" in lines
    assert "#SBATCH --ntasks-per-node=4" in lines and "#SBATCH --gpus-per-node=4" in lines
    assert "#SBATCH --partition=gpu" in lines
    assert "export XLA_PYTHON_CLIENT_MEM_FRACTION=0.9" in lines
    assert any(line.startswith("srun ") for line in lines)  # one task per GPU, 8 in all


def test_submitit_local_runs_a_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    proc = cli(
        ["-m", "hydra/launcher=submitit_local", "data=digits", "model=cnn2d",
         "model.channels=[8,16]", "trainer.max_steps=10", "trainer.batch_size=32",
         "trainer.plots=false", "seed=0,1", f"hydra.sweep.dir={sweep}"],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads((sweep / str(job) / "result.json").read_text()) for job in (0, 1)]
    assert [r["status"] for r in results] == ["ok", "ok"]
    assert [r["seed"] for r in results] == [0, 1]
    summary = subprocess.run(
        [sys.executable, "-m", "jaxconv.app.summarize", str(sweep)],
        env=cli_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert summary.returncode == 0, summary.stderr[-2000:]
    assert "| 2 / 0 / 0 / 0 / 0 |" in summary.stdout  # ok / failed / ... counts
