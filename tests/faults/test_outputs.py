"""The outputs say what they claim: train.log holds the run's records, and the figures
draw what their names promise (tested on the artists drawn, not on a file existing)."""

import json

from matplotlib.backends.backend_agg import FigureCanvasAgg

from jaxconv.report.plots import learning_curves_figure
from jaxconv.report.summary import collect_runs, curves_figure, summarize_runs, summary_figure
from jaxconv.run_layout import read_metrics, write_metrics

from .conftest import TINY, cli, error_lines

LONG = "model.channels=[16,32,64,128,256] model.kernel_size=[5,5] optimizer.weight_decay=0.0001"


def test_train_log_holds_the_run(trained):
    log = (trained / "train.log").read_text().splitlines()
    rows = read_metrics(trained / "metrics.csv")
    assert any(line.endswith("shapes: train 86, val 10, test 48, input (16, 16, 1), 4 classes")
               for line in log)  # fmt: skip
    evaluations = [line for line in log if "[jaxconv.run][INFO] - step " in line]
    assert len(evaluations) == len(rows) and all(
        f"step {r['step']} epoch {r['epoch']} {r['split']}: loss {r['loss']:.4f}" in line
        for r, line in zip(rows, evaluations)
    )
    assert "test accuracy" in log[-1] and "after 10 steps" in log[-1]


def test_train_log_of_a_failed_run_ends_with_its_error(tmp_path):
    proc = cli([*TINY, "optimizer.lr=1e9", "trainer.max_steps=10", "hydra.run.dir=run"],
               cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1
    (line,) = error_lines(proc.stderr)
    log = (tmp_path / "run" / "train.log").read_text().splitlines()
    assert log[-1].endswith("[jaxconv.run][ERROR] - " + line.removeprefix("jaxconv-train: "))


def _run(root, name, config, curves, result=None):
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in config.split()))
    base = {"status": "ok", "seed": 0, "test_accuracy": 0.9, "test_loss": 0.3, "wall_seconds": 2}
    (job / "result.json").write_text(json.dumps({**base, **(result or {})}))
    write_metrics(job / "metrics.csv", curves)
    return job


ONE_EVAL = [
    dict(step=4, epoch=1, split="train", loss=1.2, accuracy=0.5, images_per_s=100),
    dict(step=4, epoch=1, split="val", loss=1.1, accuracy=0.6),
    dict(step=4, epoch=1, split="test", loss=1.0, accuracy=0.62),
]


def test_learning_curves_of_a_run_shorter_than_eval_every(tmp_path):
    job = _run(tmp_path, "2026-12-02_16-00-00", "seed=0", ONE_EVAL,
               {"model": "CNN", "data": "shapes"})  # fmt: skip
    fig = learning_curves_figure(job)
    assert fig._suptitle.get_text() == "CNN on shapes"  # not the directory's timestamp
    for ax in fig.axes:
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert sorted(lines) == ["test", "train", "val"]
        for line in lines.values():  # one point each: visible only as a marker
            assert len(line.get_xdata()) == 1 and line.get_marker() not in (None, "", "None")


def _sweep(tmp_path):
    configs = [LONG, "model.channels=[8,16] model.kernel_size=[3,3] optimizer.weight_decay=0"]
    for i, config in enumerate(configs):
        acc = {"test_accuracy": 0.95 - 0.1 * i}
        _run(tmp_path, str(i), config, ONE_EVAL, acc)
    return collect_runs(tmp_path)


def test_sweep_bars_start_at_zero_and_name_each_configuration(tmp_path):
    runs = _sweep(tmp_path)
    fig = summary_figure(summarize_runs(runs), "test_accuracy")
    (ax,) = fig.axes
    bars = ax.patches
    assert [round(b.get_width(), 6) for b in bars] == [0.95, 0.85]
    assert all(b.get_x() == 0 for b in bars) and ax.get_xlim() == (0.0, 1.0)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert [label.split("\n") for label in labels][0] == [
        "model.channels=[16,32,64,128,256",
        "]",
        "model.kernel_size=[5,5]",
        "optimizer.weight_decay=0.0001",
    ]
    assert all(len(part) <= 32 for label in labels for part in label.split("\n"))


def test_sweep_curves_show_one_point_runs_and_keep_the_legend_inside(tmp_path):
    fig = curves_figure(_sweep(tmp_path))
    FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    for ax in fig.axes:
        lines = ax.get_lines()
        assert len(lines) == 2 and all(line.get_marker() == "o" for line in lines)
    (legend,) = fig.legends
    box, page = legend.get_window_extent(), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1
    for ax in fig.axes:  # the legend sits below the plots, over none of them
        assert box.y1 <= ax.get_window_extent().y0
