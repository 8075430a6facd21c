"""``logger=[tensorboard,mlflow]`` from the command line: a sweep read back with
TensorBoard's and MLflow's own readers, then served by ``tensorboard`` and ``mlflow ui``
as a user would start them; resume; the one-line refusal when a writer is missing."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from jaxconv.app.config import config_sha256, flatten
from jaxconv.app.tracking import chosen
from jaxconv.app.train import train
from jaxconv.train import make_schedule, read_metrics
from tests.helpers import TINY_SHAPES_RUN, cli, cli_env, free_port
from tests.train.test_loggers import (
    assert_float32_points,
    expected_from_csv,
    mlflow_history,
    tensorboard_scalars,
)

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

TINY = [
    *TINY_SHAPES_RUN,
    "trainer.max_steps=12",
    "trainer.eval_every=6",
]


def expected_metrics(run_dir: Path) -> dict:
    """What both trackers should hold for a run: its metrics.csv, and its schedule."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    o, s = config["optimizer"], config["schedule"]
    total = config["trainer"]["max_steps"]
    schedule = make_schedule(
        s["name"], o["lr"], total, warmup_fraction=s["warmup_fraction"],
        final_fraction=s["final_fraction"],
    )  # fmt: skip
    return expected_from_csv(read_metrics(run_dir / "metrics.csv"), schedule)


@contextlib.contextmanager
def serving(command, url, cwd, timeout=120):
    """Start ``command`` (a server) in its own process group, wait until ``url`` answers,
    yield its first answer; stop the whole group whatever happens."""
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env={**cli_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    yield json.loads(answer.read())
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise AssertionError(
                        f"{command[2]} did not serve {url}: {proc.stderr.read()[-2000:]!r}"
                    ) from None
                time.sleep(0.5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
        time.sleep(0.5)  # children leave the group after the parent
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def fetch(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


@pytest.mark.parametrize(
    "overrides,loggers",
    [
        ([], []),
        (["logger=tensorboard"], ["tensorboard"]),
        (["logger=[tensorboard,mlflow]"], ["tensorboard", "mlflow"]),
        (["logger=[mlflow,csv]"], ["mlflow"]),  # csv is always on: it adds nothing
    ],
)
def test_the_logger_group_selects_several_and_leaves_the_config_hash(
    hydra_compose, overrides, loggers
):
    cfg = hydra_compose(overrides)
    assert chosen(cfg) == loggers
    assert config_sha256(cfg) == config_sha256(hydra_compose())  # resume may add a logger


@pytest.mark.slow
def test_a_sweep_read_back_and_served_by_tensorboard_and_mlflow(tmp_path):
    sweep = tmp_path / "multirun" / "lr"
    args = ["-m", *TINY, "seed=0,1", "logger=[tensorboard,mlflow]", f"hydra.sweep.dir={sweep}"]
    proc = cli(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = {p.name: p for p in sorted(sweep.iterdir()) if p.name in ("0", "1")}
    assert sorted(jobs) == ["0", "1"]
    expected = {job: expected_metrics(run) for job, run in jobs.items()}
    for points in expected.values():
        assert {"test/accuracy", "val/loss", "learning_rate"} <= set(points)

    # TensorBoard: event files in each job's directory, the same numbers as metrics.csv
    for job, run in jobs.items():
        seen, acc = tensorboard_scalars(run)
        assert sorted(seen) == sorted(expected[job])
        for tag, points in expected[job].items():
            assert_float32_points(seen[tag], points, tag)
        assert [im.step for im in acc.Images("filters")] == [6, 12]

    # MLflow: the default store is mlflow.db where the sweep ran; one experiment, the sweep
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        runs = mlflow.search_runs(experiment_names=[str(sweep)], output_format="list")
    finally:
        mlflow.set_tracking_uri(previous)
    names = sorted(r.info.run_name for r in runs)  # the job's number and overrides
    assert [n.split(": ")[0] for n in names] == ["0", "1"]
    assert "seed=0" in names[0].split(",") and "seed=1" in names[1].split(",")
    client = mlflow.MlflowClient(uri)
    for run in runs:
        run_dir = Path(run.data.tags["jaxconv.run_dir"])
        job = run_dir.name
        assert run_dir == jobs[job].resolve() and run.info.status == "FINISHED"
        config = flatten(yaml.safe_load((run_dir / "config.yaml").read_text()))
        assert run.data.params == {k: str(v) for k, v in config.items()}
        assert run.data.params["seed"] == job
        assert mlflow_history(client, run.info.run_id) == expected[job]
        stored = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"result.json", "metrics.csv", "learning_curves.png", "filters.png"} <= stored
        copy = client.download_artifacts(run.info.run_id, "result.json", str(tmp_path))
        assert json.loads(Path(copy).read_text()) == json.loads(
            (run_dir / "result.json").read_text()
        )

    # Served as a user would: tensorboard --logdir multirun, mlflow ui in the sweep's directory
    port = free_port()
    tensorboard = [sys.executable, "-m", "tensorboard.main", "--logdir", "multirun"]
    url = f"http://127.0.0.1:{port}"
    with serving([*tensorboard, "--host", "127.0.0.1", "--port", str(port)], url + "/data/runs",
                 tmp_path) as served:  # fmt: skip
        assert sorted(served) == ["lr/0", "lr/1"]
        points = fetch(f"{url}/data/plugin/scalars/scalars?run=lr/1&tag=val/accuracy")
        assert_float32_points([(s, v) for _, s, v in points], expected["1"]["val/accuracy"])
    port = free_port()
    mlflow_ui = [sys.executable, "-m", "mlflow", "ui", "--workers", "1"]
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow"
    found = f"{url}/experiments/get-by-name?experiment_name={urllib.parse.quote(str(sweep))}"
    with serving([*mlflow_ui, "--host", "127.0.0.1", "--port", str(port)], found,
                 tmp_path) as served:  # fmt: skip
        listed = fetch(
            f"{url}/runs/search", {"experiment_ids": [served["experiment"]["experiment_id"]]}
        )
        accuracy = {
            r["info"]["run_name"]: {m["key"]: m["value"] for m in r["data"]["metrics"]}[
                "test/accuracy"
            ]
            for r in listed["runs"]
        }
        # and a run that logs to this server (logger.tracking_uri), artifacts uploaded
        served_run = [
            *TINY,
            "trainer.plots=false",
            "logger=mlflow",
            "hydra.run.dir=served",
            f"logger.tracking_uri=http://127.0.0.1:{port}",
            "logger.experiment=served",
        ]
        proc = cli(served_run, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        experiment = fetch(f"{url}/experiments/get-by-name?experiment_name=served")["experiment"]
        (run,) = fetch(f"{url}/runs/search", {"experiment_ids": [experiment["experiment_id"]]})[
            "runs"
        ]
        result = json.loads((tmp_path / "served" / "result.json").read_text())
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert run["info"]["status"] == "FINISHED"
        assert metrics["test/accuracy"] == result["test_accuracy"]
        files = fetch(f"{url}/artifacts/list?run_id={run['info']['run_id']}")["files"]
        assert {"result.json", "metrics.csv"} <= {f["path"] for f in files}
    for job, run in jobs.items():
        result = json.loads((run / "result.json").read_text())
        name = next(n for n in accuracy if n.startswith(f"{job}: "))
        assert accuracy[name] == result["test_accuracy"]


def test_a_resumed_run_continues_its_mlflow_run(hydra_compose, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    logged = [*TINY, "trainer.plots=false", "schedule=constant", "logger=[tensorboard,mlflow]",
              f"logger.tracking_uri={uri}", "logger.experiment=resumed"]  # fmt: skip
    run_dir = tmp_path / "run"
    train(hydra_compose(logged), run_dir)
    first = json.loads((run_dir / "mlflow_run.json").read_text())["run_id"]
    train(hydra_compose([*logged, "trainer.max_steps=18", "trainer.resume=true"]), run_dir)
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("resumed").experiment_id])
    assert [r.info.run_id for r in runs] == [first] and runs[0].info.status == "FINISHED"
    history = mlflow_history(client, first)
    assert [s for s, _ in history["val/accuracy"]] == [6, 12, 18]
    assert [s for s, _ in history["test/accuracy"]] == [12, 18]  # the first command's test too
    stored = Path(client.get_run(first).info.artifact_uri.removeprefix("file://"))
    assert stored == tmp_path / "mlruns" / first / "artifacts"  # beside the database
    assert (stored / "result.json").is_file()
    seen, _ = tensorboard_scalars(run_dir)
    rows = read_metrics(run_dir / "metrics.csv")
    assert [s for s, _ in seen["val/loss"]] == [r["step"] for r in rows if r["split"] == "val"]


def test_a_missing_writer_is_one_line_and_nothing_is_written(tmp_path):
    shim = tmp_path / "shim" / "mlflow"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('No module named mlflow')\n")
    env = {
        **cli_env(),
        "PYTHONPATH": f"{shim.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    proc = cli([*TINY, "logger=mlflow", "hydra.run.dir=run"], cwd=tmp_path, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "jaxconv-train: error: logger=mlflow needs the `mlflow` package, which is not "
        "installed: pip install 'jaxconv[tracking]'"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shim"]
