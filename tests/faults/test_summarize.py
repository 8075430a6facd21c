"""jaxconv-summarize: unreadable inputs are named in one line, exit status 2;
a corrupt result.json is counted as corrupt, never as interrupted."""

import csv
import json

from jaxconv.report.summary import collect_runs

from .conftest import summarize_cli


def job(root, name, result=None, overrides=("model=mlp", "seed=0"), metrics=None):
    path = root / name
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if result is not None:
        (path / "result.json").write_text(result if isinstance(result, str) else json.dumps(result))
    if metrics is not None:
        (path / "metrics.csv").write_text(metrics)
    return path


OK = {"status": "ok", "seed": 0, "test_accuracy": 0.5, "test_loss": 1.0, "wall_seconds": 2.0}


def rows(sweep):
    with open(sweep / "summary.csv", newline="") as handle:
        return {r["config"]: r for r in csv.DictReader(handle)}


def test_result_json_that_is_a_list_is_corrupt(tmp_path):
    job(tmp_path, "0", OK)
    job(tmp_path, "1", "[1, 2]", overrides=("model=cnn1d", "seed=0"))
    proc = summarize_cli(tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"jaxconv-summarize: error: {tmp_path / '1' / 'result.json'} "
        "is corrupt (a JSON list, not an object)"
    ]
    table = rows(tmp_path)
    assert (table["model=cnn1d"]["corrupt"], table["model=cnn1d"]["interrupted"]) == ("1", "0")
    assert table["model=mlp"]["ok"] == "1"  # the readable job is still summarised


def test_unparsable_result_json_is_corrupt_not_interrupted(tmp_path):
    job(tmp_path, "0", '{"status": "ok", "test_acc')
    (run,) = collect_runs(tmp_path)
    assert run.status == "corrupt" and "result.json is corrupt (JSONDecodeError" in run.problem


def test_malformed_metrics_csv_is_named(tmp_path):
    job(tmp_path, "0", OK, metrics="step,epoch,split\n10,1\nnot,a,number\n")
    proc = summarize_cli(tmp_path)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(
        f"jaxconv-summarize: error: {tmp_path / '0' / 'metrics.csv'} is corrupt ("
    )


def test_regular_file_is_not_a_sweep_dir(tmp_path):
    target = tmp_path / "summary.md"
    target.write_text("# not a sweep\n")
    proc = summarize_cli(target)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"jaxconv-summarize: error: {target} is a file, not a sweep directory"
    )
    assert target.read_text() == "# not a sweep\n"


def test_interrupted_statuses_are_counted(tmp_path):
    job(
        tmp_path,
        "0",
        {"status": "interrupted", "seed": 0, "error": "Interrupted: interrupted by SIGINT"},
    )
    job(tmp_path, "1", {"status": "running", "seed": 1}, overrides=("model=mlp", "seed=1"))
    proc = summarize_cli(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert rows(tmp_path)["(all runs alike)"]["interrupted"] == "2"


def test_result_values_that_are_not_what_jaxconv_writes_are_corrupt(tmp_path):
    """Each job is counted in exactly one column: the garbage ones as corrupt, named on
    stderr; the good job is summarised as before."""
    job(tmp_path, "0", OK)
    garbage = [
        '{"status": "ok", "seed": 1, "test_accuracy": 0.5, "test_loss": 1e308, "wall_seconds": 1}',
        '{"status": "ok", "seed": 2, "test_accuracy": NaN, "test_loss": 1.0, "wall_seconds": 1}',
        '{"status": "ok", "seed": 3, "test_accuracy": 0.5, "wall_seconds": Infinity}',
        '{"status": "ok", "seed": 4, "test_accuracy": "0.9", "test_loss": 1.0, "wall_seconds": 1}',
        '{"status": "ok", "seed": 5, "overrides": 5}',
        '{"status": ["ok"], "seed": 6}',
    ]
    for i, text in enumerate(garbage, start=1):
        job(tmp_path, str(i), text, overrides=("model=mlp", f"seed={i}"))
    proc = summarize_cli(tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert [line.split("/")[-2] for line in lines] == [str(i) for i in range(1, 7)]
    assert all(" is corrupt (" in line for line in lines)
    assert "test_loss 1e+308 is not a finite number in [0, 1e+15]" in lines[0]
    assert "test_accuracy NaN is not a finite number" in lines[1]
    assert 'test_accuracy "0.9"' in lines[3] and "overrides 5 is not a list" in lines[4]
    assert 'status ["ok"] is none of ok' in lines[5]
    (row,) = rows(tmp_path).values()
    assert (row["runs"], row["ok"], row["corrupt"]) == ("7", "1", "6")
    assert float(row["test_accuracy_mean"]) == 0.5 and float(row["test_loss_mean"]) == 1.0
