"""A run directory belongs to one experiment.

A resume under a changed config, a rerun without resume into a used directory, a bad
value aimed at a used or a new directory: each is refused in one line with exit status 2
and leaves the disk exactly as it was (same bytes, same mtimes, no new files)."""

import json
import shutil
import subprocess

import pytest

from jaxconv.app.rundir import (
    RESUME_MAY_CHANGE,
    RESUME_MAY_EXTEND,
    RunDirRefused,
    config_differences,
)
from jaxconv.app.train import train
from jaxconv.report.summary import summarize

from .conftest import TINY, cli, error_lines, result, snapshot


@pytest.mark.parametrize(
    "overrides,named",
    [
        (["seed=1", "trainer.resume=true"], "seed: 0 -> 1"),
        (["trainer.batch_size=32", "trainer.resume=true"], "trainer.batch_size: 16 -> 32"),
        (
            ["trainer.max_steps=5", "trainer.resume=true"],
            "trainer.max_steps: 10 -> 5 (resume may only extend it)",
        ),
        (["seed=1"], "already holds checkpoints: pass resume=True"),  # no resume
        (["optimizer.lr=-1", "trainer.resume=true"], "optimizer.lr (=-1.0) must be > 0"),
    ],
)
def test_refused_command_changes_nothing(trained, overrides, named):
    before = snapshot(trained)
    proc = cli(
        [
            *TINY,
            "trainer.max_steps=10",
            "trainer.eval_every=5",
            *overrides,
            f"hydra.run.dir={trained}",
        ],
        cwd=trained.parent,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = error_lines(proc.stderr)
    assert (
        len(lines) == 1 and lines[0].startswith("jaxconv-train: error: ") and named in lines[0]
    ), proc.stderr
    assert snapshot(trained) == before  # .hydra/*.yaml, result.json, metrics.csv, checkpoints, log


def test_resuming_a_finished_run_is_a_no_op(trained):
    before = snapshot(trained)
    proc = cli(
        [
            *TINY,
            "trainer.max_steps=10",
            "trainer.eval_every=5",
            "trainer.resume=true",
            f"hydra.run.dir={trained}",
        ],  # fmt: skip
        cwd=trained.parent,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"nothing to do: {trained} holds this run, finished" in proc.stdout
    assert error_lines(proc.stderr) == []
    assert snapshot(trained) == before  # no second test row, wall_seconds as it was


def test_extending_a_schedule_planned_over_the_total_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    args = [*TINY, "schedule=one_cycle", "trainer.eval_every=2", f"hydra.run.dir={run_dir}"]
    assert cli([*args, "trainer.max_steps=4"], cwd=tmp_path).returncode == 0
    before = snapshot(run_dir)
    proc = cli([*args, "trainer.max_steps=6", "trainer.resume=true"], cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = error_lines(proc.stderr)
    assert "(trainer.max_steps: 4 -> 6): its 'one_cycle' schedule is planned over" in line
    assert snapshot(run_dir) == before


def test_extended_constant_run_equals_a_fresh_run_and_says_so(hydra_compose, tmp_path):
    """A constant schedule may be extended: the result is the fresh run of the new length,
    and result.json, provenance.json and jaxconv-summarize record (from, to)."""
    base = [*TINY, "trainer.eval_every=5"]
    run_dir, fresh_dir = tmp_path / "sweep" / "0", tmp_path / "fresh"
    first = train(hydra_compose([*base, "trainer.max_steps=10"]), run_dir)
    resumed = train(
        hydra_compose(
            [
                *base,
                "trainer.max_steps=14",
                "trainer.resume=true",
                "trainer.keep_checkpoints=2",
                "trainer.plots=true",
            ]
        ),  # fmt: skip
        run_dir,
    )
    fresh = train(hydra_compose([*base, "trainer.max_steps=14"]), fresh_dir)
    assert first["steps"] == 10 and resumed["status"] == "ok" and resumed["steps"] == 14
    assert resumed["params_sha256"] == fresh["params_sha256"] != first["params_sha256"]
    extended = [{"key": "trainer.max_steps", "from": 10, "to": 14}]
    assert result(run_dir)["extended"] == extended and "extended" not in result(fresh_dir)
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["extended"] == extended
    assert "max_steps: 14" in (run_dir / "config.yaml").read_text()  # the record follows
    _, table = summarize(tmp_path / "sweep")
    assert (
        "Jobs resumed for longer than first planned:\n\n- 0: trainer.max_steps: 10 -> 14" in table
    )


def test_differences_name_every_key_and_skip_run_control():
    recorded = {
        "seed": 0,
        "trainer": {"batch_size": 16, "max_steps": 10, "epochs": 10, "progress": True},
        "data": {"root": "/a"},
        "model": {"channels": [4, 8]},
    }
    new = {
        "seed": 1,
        "trainer": {"batch_size": 16, "max_steps": 20, "epochs": 10, "progress": False},
        "data": {"root": "/b"},
        "model": {"channels": [4, 16]},
    }
    assert config_differences(recorded, new) == [
        "model.channels: [4, 8] -> [4, 16]",
        "seed: 0 -> 1",
    ]
    assert config_differences(
        recorded, {**recorded, "trainer": {**recorded["trainer"], "max_steps": None}}
    ) == ["trainer.max_steps: 10 -> null (resume may only extend it)"]
    assert {"trainer.resume", "trainer.progress", "data.root"} <= set(RESUME_MAY_CHANGE)
    assert set(RESUME_MAY_EXTEND) == {"trainer.max_steps", "trainer.epochs"}


def test_python_api_refuses_the_same_way(trained, hydra_compose):
    before = snapshot(trained)
    with pytest.raises(RunDirRefused, match=r"seed: 0 -> 3"):
        train(
            hydra_compose(
                [
                    *TINY,
                    "trainer.max_steps=10",
                    "trainer.eval_every=5",
                    "seed=3",
                    "trainer.resume=true",
                ]
            ),
            trained,
        )
    assert snapshot(trained) == before


def test_bad_value_into_a_new_directory_creates_nothing(tmp_path):
    proc = cli(
        [*TINY, "seed=-1", f"hydra.run.dir={tmp_path / 'new' / 'deep' / 'run'}"], cwd=tmp_path
    )
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == ["jaxconv-train: error: seed (=-1) must be >= 0"]
    assert list(tmp_path.iterdir()) == []


def test_run_dir_that_is_a_file(tmp_path):
    target = tmp_path / "run"
    target.write_text("not a directory\n")
    proc = cli([*TINY, f"hydra.run.dir={target}"], cwd=tmp_path)
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == [
        f"jaxconv-train: error: run directory {target} is a file, not a directory"
    ]
    assert target.read_text() == "not a directory\n"


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nobody may write into: chmod for a normal user; for root, who ignores
    permissions, the immutable attribute (chattr +i, ext2/3/4 and others)."""
    import os

    path = tmp_path / "locked"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    if (
        shutil.which("chattr") is None
        or subprocess.run(["chattr", "+i", str(path)]).returncode != 0
    ):
        pytest.skip(
            "running as root on a file system without chattr +i: no read-only directory possible"
        )
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)])


@pytest.mark.parametrize("sub", ["", "inner"])
def test_run_dir_that_is_read_only(read_only_dir, tmp_path, sub):
    target = read_only_dir / sub if sub else read_only_dir
    proc = cli([*TINY, f"hydra.run.dir={target}"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and f"run directory {target} is not writable" in lines[0], proc.stderr
    assert list(read_only_dir.iterdir()) == []


def test_a_key_added_since_the_run_counts_as_its_default():
    """A run recorded before ``data.workers`` and ``data.transforms`` existed resumes
    under a config that has them at their defaults, and not at other values."""
    recorded = {"seed": 0, "data": {"name": "mnist1d"}}
    new = {"seed": 0, "data": {"name": "mnist1d", "transforms": None, "mix": None, "workers": 0}}
    assert config_differences(recorded, new) == []
    changed = {**new, "data": {**new["data"], "mix": "mixup"}}
    assert config_differences(recorded, changed) == ["data.mix: null -> mixup"]
    assert config_differences(changed, recorded) == ["data.mix: mixup -> null"]
