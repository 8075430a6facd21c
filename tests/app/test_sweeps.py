"""Multiruns, summaries, reruns, reproducibility and resume after SIGKILL."""

import csv
import json
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from jaxconv.app.train import train
from tests.helpers import TINY_SHAPES_RUN, cli, start_cli, wait_for_checkpoint

TINY = [
    *TINY_SHAPES_RUN,
    "trainer.plots=false",
]


def results(sweep):
    return {
        p.parent.name: json.loads(p.read_text()) for p in sorted(Path(sweep).glob("*/result.json"))
    }


def without_timing(path):
    with open(path, newline="") as handle:
        return [
            {k: v for k, v in row.items() if k != "images_per_s"} for row in csv.DictReader(handle)
        ]


def test_sweep_with_a_failing_job_then_summary_then_rerun_skip(tmp_path):
    sweep = tmp_path / "sweep"
    # 2 configurations x 2 seeds; a 20x20 VALID kernel does not fit the 16x16 shapes, so
    # one configuration fails (before training) for both seeds.
    args = [
        "-m",
        *TINY,
        "model.kernel_size=[3,3],[20,20]",
        "model.padding=VALID",
        "seed=0,1",
        "trainer.max_steps=12",
        "trainer.eval_every=6",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = cli(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = results(sweep)
    assert sorted(res) == ["0", "1", "2", "3"]
    ok = {k: r for k, r in res.items() if r["status"] == "ok"}
    failed = {k: r for k, r in res.items() if r["status"] == "failed"}
    assert len(ok) == 2 and len(failed) == 2
    for r in failed.values():
        assert "larger than the padded input" in r["error"] and r["overrides"]
    for k in ok:
        assert (sweep / k / "metrics.csv").exists() and (sweep / k / "provenance.json").exists()

    summary = subprocess.run(
        [sys.executable, "-m", "jaxconv.app.summarize", str(sweep)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert summary.returncode == 0, summary.stderr
    with open(sweep / "summary.csv", newline="") as handle:
        rows = {r["config"]: r for r in csv.DictReader(handle)}
    good = rows["model.kernel_size=[3,3]"]
    bad = rows["model.kernel_size=[20,20]"]
    assert (good["ok"], good["failed"], bad["ok"], bad["failed"]) == ("2", "0", "0", "2")
    expected = statistics.fmean(r["test_accuracy"] for r in ok.values())
    assert float(good["test_accuracy_mean"]) == pytest.approx(expected)
    assert float(good["test_accuracy_std"]) == pytest.approx(
        statistics.stdev(r["test_accuracy"] for r in ok.values())
    )
    assert good["best"] == "True"
    for name in ("summary.md", "summary.png", "curves.png"):
        assert (sweep / name).stat().st_size > 0
    assert "model.kernel_size=[3,3]" in summary.stdout and "**best**" in summary.stdout

    # rerun into the same directory: ok jobs are skipped, failed ones run again
    stamps = {k: (sweep / k / "result.json").stat().st_mtime_ns for k in ok}
    again = cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skipping") == 2
    assert {k: (sweep / k / "result.json").stat().st_mtime_ns for k in ok} == stamps
    assert again.stderr.count("failed: ConfigError") == 2


def test_interrupted_sweep_is_summarised(tmp_path):
    from jaxconv.report.summary import summarize

    job = tmp_path / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("- model=mlp\n- seed=0\n")
    (job / "result.json").write_text(json.dumps({"status": "running", "seed": 0}))
    done = tmp_path / "1"
    (done / ".hydra").mkdir(parents=True)
    (done / ".hydra" / "overrides.yaml").write_text("- model=logreg\n- seed=0\n")
    (done / "result.json").write_text(
        json.dumps(
            {"status": "ok", "seed": 0, "test_accuracy": 0.3, "test_loss": 1.7, "wall_seconds": 5.0}
        )
    )
    rows, table = summarize(tmp_path)
    by = {r["config"]: r for r in rows}
    assert by["model=mlp"]["interrupted"] == 1 and by["model=logreg"]["ok"] == 1
    assert by["model=logreg"].get("best") and "30.00 ± 0.00" in table


@pytest.mark.parametrize("backend", ["lax", "window", "fft"])
def test_same_config_and_seed_are_bit_identical(hydra_compose, tmp_path, backend):
    overrides = [
        *TINY,
        "trainer.max_steps=10",
        "trainer.eval_every=5",
        "model.dropout=0.2",
        f"conv_backend={backend}",
        "seed=7",
    ]
    first = train(hydra_compose(overrides), tmp_path / "a", overrides)
    second = train(hydra_compose(overrides), tmp_path / "b")
    assert first["params_sha256"] == second["params_sha256"]
    assert first["config_sha256"] == second["config_sha256"]
    assert without_timing(tmp_path / "a" / "metrics.csv") == without_timing(
        tmp_path / "b" / "metrics.csv"
    )
    other = train(hydra_compose([*overrides[:-1], "seed=8"]), tmp_path / "c")
    assert other["params_sha256"] != first["params_sha256"]
    provenance = json.loads((tmp_path / "a" / "provenance.json").read_text())
    assert provenance["config_sha256"] == first["config_sha256"]
    assert f"conv_backend={backend}" in provenance["overrides"]
    assert {"XLA_FLAGS", "XLA_PYTHON_CLIENT_MEM_FRACTION"} <= set(provenance["env"])
    assert "jax_enable_x64" in provenance["jax_config"] and provenance["device"]
    assert set(provenance["git"]) == {"commit", "dirty"}


#: Early stopping that ends the run at step 250 (the validation loss of the averaged
#: weights, 1.66 0.80 0.41 0.35 0.35 at steps 50..250, improves by 0.5 or more up to step
#: 100 and not after: three evaluations without stop it), and weight EMA.
RECIPE = [
    "trainer.early_stopping.monitor=val/loss",
    "trainer.early_stopping.mode=min",
    "trainer.early_stopping.patience=3",
    "trainer.early_stopping.min_delta=0.5",
    "trainer.ema_decay=0.9",
]


@pytest.mark.parametrize(
    "api,workers,recipe", [("linen", 0, []), ("nnx", 0, RECIPE), ("linen", 2, [])]
)
def test_sigkill_then_resume_equals_the_uninterrupted_run(tmp_path, api, workers, recipe):
    """Killed at a checkpoint mid-epoch (5 steps an epoch, one every 7), resumed: the
    uninterrupted run's parameters, also when Grain workers computed the batches (the
    uninterrupted run computes them itself), and with early stopping and a moving
    average of the weights: the resumed run stops at the same step, its average equal."""
    common = [
        *TINY,
        *recipe,
        f"model.api={api}",
        "trainer.max_steps=300",
        "trainer.eval_every=50",
        "trainer.checkpoint_every=7",
        "model.dropout=0.1",
        "trainer.progress=false",
    ]
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full = cli([*common, f"hydra.run.dir={full_dir}"], cwd=tmp_path)
    assert full.returncode == 0, full.stderr[-3000:]

    common.append(f"data.workers={workers}")
    proc = start_cli(
        [*common, f"hydra.run.dir={cut_dir}"],
        tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_checkpoint(cut_dir, 36)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = json.loads((cut_dir / "result.json").read_text())
    assert killed_at["status"] == "running"  # killed mid-training

    resumed = cli([*common, "trainer.resume=true", f"hydra.run.dir={cut_dir}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = json.loads((full_dir / "result.json").read_text())
    b = json.loads((cut_dir / "result.json").read_text())
    assert b["status"] == "ok" and b["steps"] == (250 if recipe else 300)
    if recipe:
        assert b["stopped_early"] == a["stopped_early"]
        assert b["stopped_early"]["step"] == 250
        assert b["stopped_early"]["reason"].startswith("early stopping: val/loss did not improve")
        assert (b["evaluated_weights"], b["ema_decay"]) == ("ema", 0.9)
        assert a["ema_params_sha256"] == b["ema_params_sha256"] != b["params_sha256"]
    assert a["params_sha256"] == b["params_sha256"]
    assert (a["test_accuracy"], a["test_loss"]) == (b["test_accuracy"], b["test_loss"])
    assert without_timing(full_dir / "metrics.csv") == without_timing(cut_dir / "metrics.csv")


def test_optuna_sweep_of_two_trials(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "optuna"
    proc = cli(
        [
            "-m",
            "hparams_search=mnist1d_optuna",
            "hydra.sweeper.n_trials=2",
            "trainer.max_steps=10",
            "trainer.eval_every=5",
            "data.options.num_samples=400",
            "model.channels=[8,8,8,8]",
            "trainer.plots=false",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = results(sweep)
    assert len(res) == 2 and all(r["status"] == "ok" for r in res.values())
    best = (sweep / "optimization_results.yaml").read_text()
    assert "best_params" in best and "optimizer.lr" in best
    best_value = float(best.split("best_value:")[1].split()[0])
    assert best_value == max(r["val_accuracy"] for r in res.values())


@pytest.mark.slow
def test_joblib_launcher_applies_per_job_xla_flags(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "joblib"
    flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    proc = cli(
        [
            "-m",
            "hydra/launcher=joblib_cpu",
            "hydra.launcher.n_jobs=2",
            *TINY,
            "seed=0,1",
            "trainer.max_steps=6",
            "trainer.eval_every=3",
            f"hydra.sweep.dir={sweep}",
            f"+hydra.job.env_set.XLA_FLAGS='{flags}'",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job in ("0", "1"):
        assert json.loads((sweep / job / "result.json").read_text())["status"] == "ok"
        provenance = json.loads((sweep / job / "provenance.json").read_text())
        assert provenance["env"]["XLA_FLAGS"] == flags
        assert (
            provenance["xla_flags_at_backend_start"]["XLA_FLAGS"] == flags
        )  # the job's own process
