"""Your own model from the command line (the README's ``mynets.py`` and commands, run),
and a finished run back: ``jaxconv.load_run`` and ``jaxconv-eval`` reproduce the test
accuracy result.json recorded, for a Linen and an NNX run, touching none of its files."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import cli_env, computed_once

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SHORT = ["trainer.max_steps=30", "trainer.eval_every=15", "trainer.progress=false"]


def readme_module() -> str:
    """The README's ``# mynets.py`` block."""
    return next(
        b for b in re.findall(r"```python\n(.*?)```", README, re.S) if b.startswith("# mynets.py")
    )


def readme_commands() -> list[list[str]]:
    """The README's ``model=custom`` commands, as arguments."""
    lines = [ln for ln in README.splitlines() if "model=custom" in ln and "jaxconv-train" in ln]
    return [shlex.split(ln.split("jaxconv-train", 1)[1], comments=True) for ln in lines]


def train(args, cwd: Path, run_dir: Path) -> subprocess.CompletedProcess:
    env = {**cli_env(), "PYTHONPATH": str(cwd)}
    command = [sys.executable, "-m", "jaxconv", *args, *SHORT, f"hydra.run.dir={run_dir}"]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def own_runs(tmp_path_factory):
    """The README's two custom commands, run (30 steps each): {class: run directory}."""

    def make():
        work = tmp_path_factory.mktemp("own")
        (work / "mynets.py").write_text(readme_module())
        runs = {}
        for args in readme_commands():
            name = next(a for a in args if a.startswith("model.target=")).rsplit(".", 1)[1]
            proc = train(args, work, work / name)
            assert proc.returncode == 0, proc.stderr[-3000:]
            runs[name] = str(work / name)
        return runs

    return {k: Path(v) for k, v in computed_once(tmp_path_factory, "own_runs", make).items()}


def test_the_readme_commands_train_a_linen_and_an_nnx_class(own_runs):
    assert set(own_runs) == {"TinyNet", "TinyLinen"}
    for name, run_dir in own_runs.items():
        result = json.loads((run_dir / "result.json").read_text())
        assert result["status"] == "ok" and result["model"] == name
        assert result["model_api"] == ("nnx" if name == "TinyNet" else "linen")
        assert result["test_accuracy"] > 0.6  # chance is 0.1 on digits


def _snapshot(run_dir: Path) -> dict:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(run_dir.rglob("*"))}


@pytest.mark.parametrize("name", ["TinyNet", "TinyLinen"])
def test_load_run_and_jaxconv_eval_reproduce_the_recorded_accuracy(
    own_runs, name, tmp_path, monkeypatch
):
    import jaxconv
    from jaxconv.app.evaluate import main

    run_dir = own_runs[name]
    monkeypatch.syspath_prepend(str(run_dir.parent))  # mynets importable, as PYTHONPATH=.
    before = _snapshot(run_dir)
    recorded = json.loads((run_dir / "result.json").read_text())
    run = jaxconv.load_run(run_dir)
    assert run.step == 30 and type(run.model).__name__ == name
    from jaxconv.app.config import group_options
    from jaxconv.data.datasets import DataOptions, dataset_from

    options = group_options(run.config, DataOptions, "data")
    data = dataset_from(options, split_seed=run.config.seed)  # as jaxconv-train made it
    predicted = np.argmax(run.predict(data.x_test, batch_size=100), axis=-1)
    assert np.mean(predicted == data.y_test) == recorded["test_accuracy"]
    assert main([str(run_dir), "--out", str(tmp_path / "eval")]) == 0
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert (report["accuracy"], report["loss"]) == (
        recorded["test_accuracy"],
        recorded["test_loss"],
    )
    assert report["split"] == "test" and report["checkpoint"] == "last" and report["step"] == 30
    assert np.trace(np.array(report["confusion_matrix"])) == round(
        report["accuracy"] * len(data.y_test)
    )
    assert (tmp_path / "eval" / "confusion_matrix.png").stat().st_size > 0
    assert main([str(run_dir), "--out", str(tmp_path / "best"), "--checkpoint", "best"]) == 0
    assert _snapshot(run_dir) == before  # the run is only read


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("mynets.Nope", r"model.target \(='mynets.Nope'\) cannot be imported"),
        (
            "os.path.join",
            r"model.target \(='os.path.join'\) must be a flax.linen.Module or flax.nnx.Module",
        ),
        (
            "mynets.TinyNet +model.depth=3",
            r"model.target mynets.TinyNet cannot be constructed with "
            r"\(depth, input_shape, num_classes, rngs\)",
        ),
    ],
)
def test_a_target_that_cannot_be_used_is_one_line_and_writes_nothing(tmp_path, target, message):
    (tmp_path / "mynets.py").write_text(readme_module())
    args = ["model=custom", f"model.target={target.split()[0]}", *target.split()[1:], "data=digits"]
    proc = train(args, tmp_path, tmp_path / "run")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), lines
    assert not (tmp_path / "run").exists()


def test_jaxconv_eval_refuses_in_one_line(own_runs, tmp_path):
    from jaxconv.app.evaluate import main

    run_dir = own_runs["TinyLinen"]
    env = {**cli_env(), "PYTHONPATH": str(run_dir.parent)}
    for args, message in [
        ([str(tmp_path), "--out", str(tmp_path / "o")], "is not a jaxconv run directory"),
        ([str(run_dir), "--out", str(tmp_path / "o"), "model.width=3"], "must be data.KEY=VALUE"),
        (
            [str(run_dir), "--out", str(tmp_path / "o"), "data.limit_tset=3"],
            "data.limit_tset is not a data config key",
        ),
    ]:
        proc = subprocess.run([sys.executable, "-m", "jaxconv.app.evaluate", *args], env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert message in proc.stderr
        assert not (tmp_path / "o").exists()
    assert main is not None and os.path.isdir(run_dir)
