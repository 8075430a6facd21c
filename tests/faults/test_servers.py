"""Tracking stores that cannot be used are refused in seconds, before anything is
written; a tracking logger that fails mid-run does not lose the run."""

import time

import pytest

from jaxconv.app import tracking
from jaxconv.app.train import train
from jaxconv.run_layout import read_metrics
from tests.helpers import cli_env, free_port

from .conftest import TINY, cli, error_lines, result

STEPS = ["trainer.max_steps=6", "trainer.eval_every=3"]


@pytest.mark.parametrize(
    "uri,env,line",
    [
        ("http://127.0.0.1:{port}", None, "no MLflow server answered within 5 s ("),
        ("sqlite:///{tmp}/a_file/mlflow.db", None, "a_file is a file, not a directory"),
        (None, "file://{tmp}/mlruns", "names MLflow's file store, which MLflow has retired"),
    ],
    ids=["nothing-listening", "sqlite-under-a-file", "retired-file-store"],
)
def test_an_unusable_tracking_store_is_one_line_in_seconds(tmp_path, uri, env, line):
    (tmp_path / "a_file").write_text("")
    fill = {"port": free_port(), "tmp": tmp_path}
    args = [*TINY, *STEPS, "logger=mlflow", "hydra.run.dir=run"]
    if uri:
        args.append(f"logger.tracking_uri={uri.format(**fill)}")
    environment = {**cli_env(), **({"MLFLOW_TRACKING_URI": env.format(**fill)} if env else {})}
    start = time.perf_counter()
    proc = cli(args, cwd=tmp_path, env=environment, timeout=120)
    took = time.perf_counter() - start
    assert proc.returncode == 2, proc.stderr[-2000:]
    (said,) = error_lines(proc.stderr)
    assert said.startswith("jaxconv-train: error: ") and line in said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # nothing written
    assert took < 60  # the command's start-up and one 5 s probe, not MLflow's retries


class _GoesAway(tracking.Logger):
    """A tracking writer whose server disappears after the first evaluation."""

    def __init__(self, *args, **kwargs):
        self.calls = 0

    def log(self, rows, params=None):
        self.calls += 1
        if self.calls > 1:
            raise ConnectionError("Connection refused (the tracking server went away)")


def test_a_tracking_server_gone_mid_run_does_not_lose_the_run(
    hydra_compose, tmp_path, monkeypatch, capfd
):
    monkeypatch.setattr(tracking, "MLflowLogger", _GoesAway)
    monkeypatch.setattr(tracking, "check_tracking_store", lambda cfg: None)
    cfg = hydra_compose([*TINY, *STEPS, "trainer.max_steps=9", "logger=mlflow"])
    outcome = train(cfg, tmp_path / "run")
    assert outcome["status"] == "ok" and outcome["steps"] == 9
    assert result(tmp_path / "run")["logger_errors"] == [
        "_GoesAway stopped: Connection refused (the tracking server went away)"
    ]
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert [r["step"] for r in rows if r["split"] == "val"] == [3, 6, 9]  # metrics.csv goes on
    assert (tmp_path / "run" / "checkpoints" / "manifest" / "last-9.json").is_file()
    warnings = [line for line in capfd.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [
        "jaxconv-train: warning: _GoesAway stopped: Connection refused (the tracking server "
        "went away); the run goes on without it"
    ]
