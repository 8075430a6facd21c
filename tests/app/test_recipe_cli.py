"""The training recipe from the command line: a sweep over Optax optimizers summarised,
the model summary in the run directory and result.json, and ``trainer=debug``."""

import csv
import json
import subprocess
import sys

import jax
import numpy as np

from jaxconv import load_run
from tests.helpers import TINY_SHAPES_RUN, cli

TINY = [*TINY_SHAPES_RUN, "trainer.plots=false", "trainer.progress=false"]


def test_a_sweep_over_three_optax_optimizers_is_summarised(tmp_path):
    sweep = tmp_path / "sweep"
    proc = cli(["-m", *TINY, "trainer.max_steps=30", "optimizer=optax",
                "optimizer.name=lion,lamb,contrib.schedule_free_adamw", "optimizer.lr=3e-3",
                "optimizer.weight_decay=1e-4", "optimizer.b1=0.95", f"hydra.sweep.dir={sweep}"],
               cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/result.json"))]
    assert [r["status"] for r in results] == ["ok"] * 3
    # each job trained its own optimizer: three different trained models, each with the
    # parameter count of its (one) model and the FLOPs of its step
    assert len({r["params_sha256"] for r in results}) == 3
    assert len({r["params"] for r in results}) == 1 and results[0]["params"] > 0
    assert all(r["flops_per_step"] > 0 for r in results)
    summary = subprocess.run([sys.executable, "-m", "jaxconv.app.summarize", str(sweep)],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert summary.returncode == 0, summary.stderr
    with open(sweep / "summary.csv", newline="") as handle:
        rows = {r["config"]: r for r in csv.DictReader(handle)}
    assert set(rows) == {f"optimizer.name={n}" for n in
                         ("lion", "lamb", "contrib.schedule_free_adamw")}  # fmt: skip
    for row in rows.values():
        assert row["ok"] == "1" and float(row["steps_mean"]) == 30
        assert row["params"] == str(results[0]["params"])
    table = (sweep / "summary.md").read_text()
    assert f"| {results[0]['params']:,} |" in table


def test_the_model_summary_is_printed_saved_and_recorded(tmp_path):
    run = tmp_path / "run"
    proc = cli([*TINY, "trainer.max_steps=2", f"hydra.run.dir={run}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (run / "model.txt").read_text()
    assert table.strip() in proc.stdout
    result = json.loads((run / "result.json").read_text())
    lines = table.splitlines()
    assert lines[0].startswith("CNN on inputs (16, 16, 1)")
    assert lines[-2] == f"parameters: {result['params']:,}"
    # the layers' counts add up to the model's, which is the checkpoint's parameter count
    params = load_run(run).variables["params"]
    total = sum(int(np.prod(np.shape(a))) for a in jax.tree.leaves(params))
    assert result["params"] == total
    layers = [line for line in lines[3:-2] if not line.startswith("(model)")]
    assert sum(int(line.split()[-1].replace(",", "")) for line in layers) == total
    assert result["flops_per_step"] > 0 and "FLOPs per training step (batch 16" in lines[-1]


def test_trainer_debug_checks_the_config_end_to_end_in_seconds(tmp_path):
    run = tmp_path / "debug"
    proc = cli([*TINY, "trainer=debug", "experiment=shapes_cnn", f"hydra.run.dir={run}"],
               cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "ok" and result["steps"] == 6
    assert result["debug"] == {"train_examples": 29, "evaluated_at": [2, 4, 6],
                               "resume": "same parameters", "resumed_from": 3}  # fmt: skip
    assert proc.stdout.strip().splitlines()[-1] == (
        "debug run: 6 training steps on 29 examples, evaluated at steps 2, 4, 6, checkpointed "
        "every 3, tested, records written; interrupted after step 3 and resumed, it reached "
        "the same parameters: this config runs end to end"
    )
    rows = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert [int(r[0]) for r in rows if r[2] == "val"] == [2, 4, 6]
    assert sorted(p.name for p in (run / "checkpoints" / "last").iterdir()) == ["3", "6"]
