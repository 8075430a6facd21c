"""A sweep rerun with other overrides never relabels old results; and the
multirun side of divergence (a diverged job fails, the sweep goes on, the summary says so)."""

import csv

from .conftest import TINY, cli, result, snapshot, summarize_cli

STEPS = ["trainer.max_steps=6", "trainer.eval_every=3"]


def test_rerun_with_other_overrides_refuses_the_job_and_keeps_its_files(tmp_path):
    sweep = tmp_path / "sweep"
    first = cli(["-m", *TINY, *STEPS, "seed=0,1", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    old = result(sweep / "0")
    before = snapshot(sweep / "0")

    again = cli(["-m", *TINY, *STEPS, "seed=5,1", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (
        "job 0 failed: RunDirRefused: cannot resume" in again.stderr
        and "seed: 0 -> 5" in again.stderr
    )
    after = snapshot(sweep / "0")
    assert set(after) - set(before) == {"refused.json"}  # the refusal, beside untouched files
    assert {k: v for k, v in after.items() if k != "refused.json"} == before
    assert result(sweep / "0") == old and old["seed"] == 0
    assert "skipping" in again.stdout  # job 1 (seed 1) is the same experiment: kept as ok

    summary = summarize_cli(sweep)
    assert summary.returncode == 0, summary.stderr
    assert (
        "0: refused: RunDirRefused: cannot resume" in summary.stdout
        and "seed: 0 -> 5" in summary.stdout
    )
    with open(sweep / "summary.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert (row["ok"], row["refused"], row["seeds"]) == ("1", "1", "1")

    # the original command again: both jobs are the same experiments, skipped; the refusal is gone
    third = cli(["-m", *TINY, *STEPS, "seed=0,1", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert third.returncode == 0 and third.stdout.count("skipping") == 2
    assert not (sweep / "0" / "refused.json").exists()


def test_diverged_job_fails_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    proc = cli(
        ["-m", *TINY, *STEPS, "optimizer.lr=1e6,1e-3", f"hydra.sweep.dir={sweep}"], cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    diverged, fine = result(sweep / "0"), result(sweep / "1")
    assert diverged["status"] == "failed" and "non-finite loss" in diverged["error"]
    assert "test_accuracy" not in diverged and "params_sha256" not in diverged
    assert fine["status"] == "ok"
    summary = summarize_cli(sweep)
    with open(sweep / "summary.csv", newline="") as handle:
        rows = sorted((r["config"], r["ok"], r["failed"]) for r in csv.DictReader(handle))
    assert [(ok, failed) for _, ok, failed in rows] == [("1", "0"), ("0", "1")], (
        rows
    )  # 0.001 sorts first
    assert summary.returncode == 0
