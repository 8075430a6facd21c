"""The loggers fed by ``fit``: what TensorBoard and MLflow hold, read back with their own
readers (TensorBoard's event accumulator, MLflow's client), equals metrics.csv."""

import io
import sys

import matplotlib.pyplot as plt
import numpy as np
import optax
import pytest

from jaxconv.data import load_dataset
from jaxconv.models import CNN
from jaxconv.train import Interrupted, fit, make_optimizer, read_metrics
from jaxconv.train.loggers import (
    CsvLogger,
    Logger,
    MissingExtra,
    MLflowLogger,
    TensorBoardLogger,
    require,
    scalars,
)
from jaxconv.train.plots import filter_image, first_conv_kernel

pytest.importorskip("tensorboardX")
pytest.importorskip("mlflow")


def tensorboard_scalars(log_dir):
    """``{tag: [(step, value)]}`` and the accumulator, as TensorBoard reads the files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}, acc


def mlflow_history(client, run_id):
    run = client.get_run(run_id)
    return {
        key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        for key in run.data.metrics
    }


def assert_float32_points(seen, points, what=""):
    """TensorBoard keeps float32: the same steps, and each value rounded to float32."""
    assert [s for s, _ in seen] == [s for s, _ in points], what
    np.testing.assert_array_equal(
        np.float32([v for _, v in seen]), np.float32([v for _, v in points]), err_msg=what
    )


def expected_from_csv(rows, schedule):
    """``{name: [(step, value)]}`` of metrics.csv's rows, with the learning rate of the
    last step before each evaluation."""
    out = {}
    for row in rows:
        for name, value in scalars(row).items():
            out.setdefault(name, []).append((row["step"], value))
        if row["split"] == "train":
            out.setdefault("learning_rate", []).append(
                (row["step"], float(schedule(row["step"] - 1)))
            )
    return out


def test_fit_feeds_tensorboard_and_mlflow_the_rows_of_metrics_csv(tmp_path):
    data = load_dataset("shapes", num_train=80, num_test=32, val_fraction=0.2)
    schedule = optax.cosine_decay_schedule(3e-3, 12)
    hparams = {"optimizer.lr": 3e-3, "model.channels": [4, 8], "seed": 0, "augment": True}
    tb = TensorBoardLogger(tmp_path / "tb", hparams=hparams, learning_rate=schedule)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ml = MLflowLogger(uri, "loggers", run_name="fit", params=hparams, learning_rate=schedule)
    with tb, ml:
        state, _ = fit(
            CNN(channels=(4, 8), num_classes=data.num_classes),
            data,
            make_optimizer("adam", schedule),
            run_dir=tmp_path / "run",
            loggers=[tb, ml],
            max_steps=12,
            eval_every=4,
            batch_size=16,
            progress=False,
        )
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    assert [r["step"] for r in rows] == [4, 4, 8, 8, 12, 12]  # train and val at each eval
    expected = expected_from_csv(rows, schedule)
    assert len(expected) == 6  # train/val loss and accuracy, images/s, learning rate

    seen, acc = tensorboard_scalars(tmp_path / "tb")
    assert sorted(seen) == sorted(expected)
    for tag, points in expected.items():
        assert_float32_points(seen[tag], points, tag)
    images = acc.Images("filters")
    assert [im.step for im in images] == [4, 8, 12]
    last = plt.imread(io.BytesIO(images[-1].encoded_image_string))[..., :3]
    want = filter_image(first_conv_kernel(state.params))
    np.testing.assert_array_equal(np.round(last * 255).astype(np.uint8), want)
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    logged = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams
    assert logged["optimizer.lr"].number_value == pytest.approx(3e-3)
    assert logged["model.channels"].string_value == "[4, 8]"
    assert logged["augment"].bool_value is True

    import mlflow

    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("loggers").experiment_id])
    assert len(runs) == 1 and runs[0].info.run_name == "fit"
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.params == {k: str(v) for k, v in hparams.items()}
    assert mlflow_history(client, runs[0].info.run_id) == expected  # float64: exact


def test_a_resumed_run_is_one_run_in_both_trackers(tmp_path):
    """Resumed at step 4: TensorBoard drops what the first process logged after 4, MLflow
    continues the run the run file names."""
    run_file = tmp_path / "mlflow_run.json"
    uri = f"sqlite:///{tmp_path}/mlflow.db"

    def rows(step, loss):
        return [{"step": step, "epoch": 0, "split": "val", "loss": loss, "accuracy": 0.5}]

    first = [TensorBoardLogger(tmp_path, filters=False), MLflowLogger(uri, run_file=run_file)]
    for logger in first:
        logger.start(0)
        logger.log(rows(4, 1.0))
        logger.log(rows(8, 2.0))  # after the checkpoint at 4: lost with the process
        logger.finish("interrupted")
    again = [TensorBoardLogger(tmp_path, filters=False), MLflowLogger(uri, run_file=run_file)]
    for logger in again:
        logger.start(4)
        logger.log(rows(8, 3.0))
        logger.finish("ok")
    assert again[1].run_id == first[1].run_id
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2  # even in the same second
    seen, _ = tensorboard_scalars(tmp_path)
    assert seen["val/loss"] == [(4, 1.0), (8, 3.0)]
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    assert client.get_run(first[1].run_id).info.status == "FINISHED"
    # MLflow cannot drop a point: the lost step 8 stays beside the resumed one
    assert mlflow_history(client, first[1].run_id)["val/loss"] == [(4, 1.0), (8, 2.0), (8, 3.0)]


def test_a_store_moved_between_runs_starts_a_new_run(tmp_path):
    run_file = tmp_path / "mlflow_run.json"
    first = MLflowLogger(f"sqlite:///{tmp_path}/a.db", run_file=run_file)
    first.start(0)
    first.finish("interrupted")
    second = MLflowLogger(f"sqlite:///{tmp_path}/b.db", run_file=run_file)
    second.start(4)
    second.finish()
    assert second.run_id != first.run_id


def test_csv_logger_keeps_the_rows_up_to_the_resumed_step(tmp_path):
    path = tmp_path / "metrics.csv"
    csv = CsvLogger(path)
    csv.start(0)
    for step in (4, 8, 12):
        csv.log([{"step": step, "epoch": 0, "split": "train", "loss": step / 10, "accuracy": 0.5}])
    again = CsvLogger(path)
    again.start(8)
    again.log([{"step": 12, "epoch": 1, "split": "train", "loss": 9.0, "accuracy": 0.25}])
    assert [(r["step"], r["loss"]) for r in read_metrics(path)] == [(4, 0.4), (8, 0.8), (12, 9.0)]


def test_filter_image_colours_and_layout():
    kernel = np.zeros((3, 1, 2))  # 1-D: two filters of three taps
    kernel[:, 0, 0] = [-2.0, 0.0, 2.0]
    kernel[:, 0, 1] = [0.0, 1.0, 0.0]
    image = filter_image(kernel, cell=4)
    assert image.shape == (8, 12, 3)  # a row of 4 px per filter, 4 px per tap
    blue, white, red = image[0, 0], image[0, 4], image[0, 8]
    assert blue[2] > 80 and blue[2] > blue[0] + 60  # the most negative tap: dark blue
    assert red[0] > 80 and red[0] > red[2] + 60  # the most positive: dark red
    assert white.min() > 240  # zero: white
    np.testing.assert_array_equal(image[4, 4], red)  # each filter on its own scale
    square = filter_image(np.ones((2, 2, 3, 9)), cell=4)  # 9 filters: rows of 8, 1 px gaps
    assert square.shape == (2 * 5 - 1, 8 * 5 - 1, 3)
    np.testing.assert_array_equal(square[4, 0], [128, 128, 128])  # a gap between rows


def test_base_logger_finishes_with_the_outcome():
    seen = []

    class Recorder(Logger):
        def finish(self, status="ok", files=()):
            seen.append(status)

    with Recorder():
        pass
    with pytest.raises(KeyboardInterrupt), Recorder():
        raise KeyboardInterrupt
    with pytest.raises(Interrupted), Recorder():  # SIGTERM under stop_on_signals
        raise Interrupted(15, 10, True)
    with pytest.raises(RuntimeError), Recorder():
        raise RuntimeError("boom")
    assert seen == ["ok", "interrupted", "interrupted", "failed"]


def test_a_missing_writer_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import raises ImportError
    with pytest.raises(MissingExtra, match=r"logger=tensorboard needs the `tensorboardX` pack"):
        TensorBoardLogger(tmp_path)
    assert not any(tmp_path.iterdir())
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(MissingExtra, match=r"pip install 'jaxconv\[tracking\]'"):
        MLflowLogger()
    with pytest.raises(ValueError, match=r"`logger` \(='wandb'\) must be one of"):
        require("wandb")


def test_jobs_starting_together_share_a_new_local_store(tmp_path):
    """Sweep jobs in parallel (joblib) start their MLflow runs at once on a store that does
    not exist yet: all must start (without the lock, all but one failed making tables)."""
    import subprocess

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = (  # each process, once it has imported everything, waits for the other two
        "import sys, time, pathlib\n"
        "from jaxconv.train.loggers import MLflowLogger\n"
        f"logger = MLflowLogger({uri!r}, 'race', run_name=sys.argv[1])\n"
        f"ready = pathlib.Path({str(tmp_path)!r})\n"
        "(ready / f'ready{sys.argv[1]}').touch()\n"
        "while len(list(ready.glob('ready*'))) < 3:\n"
        "    time.sleep(0.01)\n"
        "logger.start(0)\n"
        "logger.finish()\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(i)], stderr=subprocess.PIPE, text=True)
        for i in range(3)
    ]
    try:
        errors = [p.communicate(timeout=120)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0, 0], [e[-1500:] for e in errors]
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("race").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["0", "1", "2"]
