"""Summaries of a multirun directory: one row per configuration, mean ± std over seeds.

Works from files alone (``.hydra/overrides.yaml``, ``result.json``, ``refused.json``,
``metrics.csv``), so it also summarises sweeps that crashed or were killed: a job without
a result, or whose result says "running", counts as interrupted; a job refused because its
directory holds another run counts as refused; a result.json or metrics.csv that cannot
be read counts as corrupt and is named in :attr:`Run.problem`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import statistics
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import yaml
from matplotlib.figure import Figure

from jaxconv._figure import subplots
from jaxconv.run_layout import (
    CORRUPT,
    FAILED,
    INTERRUPTED,
    OK,
    REFUSED,
    RUNNING,
    RunDir,
    read_metrics,
)

METRICS = ("test_accuracy", "test_loss", "val_accuracy", "wall_seconds", "steps")
STATUSES = (OK, FAILED, INTERRUPTED, REFUSED, CORRUPT)
#: The overrides runs are not grouped by, unless the caller names others: the seed (pooled).
IGNORED_KEYS = ("seed",)


@dataclass
class Run:
    path: Path
    overrides: list[str]
    result: dict
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # split -> (step, acc)
    problem: str | None = None  # why the job is refused or corrupt, one line
    config: str = ""  # the settings that vary across the sweep (collect_runs names them)
    ignored: tuple[str, ...] = IGNORED_KEYS  # override keys that are not settings

    @property
    def status(self) -> str:
        if self.problem is not None:
            return REFUSED if self.problem.startswith(REFUSED) else CORRUPT
        status = self.result.get("status")
        return INTERRUPTED if status in (None, RUNNING) else status

    @property
    def settings(self) -> set[str]:
        return {
            o
            for o in self.overrides
            if o.split("=", 1)[0].lstrip("+~") not in self.ignored and not o.startswith("hydra.")
        }


class CorruptFile(ValueError):
    """A run-dir file that exists but cannot be read as what it should be."""


def _curves(metrics_csv: Path) -> dict[str, list[tuple[int, float]]]:
    """Accuracy against step per split, from a metrics.csv checked row by row."""
    if not metrics_csv.exists():
        return {}
    try:
        rows = read_metrics(metrics_csv)
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as err:
        raise CorruptFile(f"{metrics_csv} is corrupt ({err})") from err
    return {
        split: [(r["step"], r["accuracy"]) for r in rows if r["split"] == split]
        for split in ("train", "val")
    }


def _json_object(path: Path) -> dict | None:
    """The JSON object in ``path``; None if there is no such file; CorruptFile otherwise."""
    if not path.exists():
        return None
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CorruptFile(f"{path} is corrupt ({type(err).__name__}: {err})") from err
    if not isinstance(loaded, dict):
        raise CorruptFile(f"{path} is corrupt (a JSON {type(loaded).__name__}, not an object)")
    return loaded


#: result.json's numbers: each a finite real number in its range, or null. Losses and
#: times beyond 1e15 occur in no run (and 1e308 overflows a sum of two).
NUMBER_RANGES = {
    "test_accuracy": (0.0, 1.0),
    "val_accuracy": (0.0, 1.0),
    "test_loss": (0.0, 1e15),
    "wall_seconds": (0.0, 1e15),
    "steps": (0.0, 1e15),
    "params": (0.0, 1e15),
}


def _check_result(result: dict, path: Path) -> None:
    """CorruptFile when result.json's fields are not what jaxconv writes: the status a
    string, the overrides a list of strings, the numbers finite and in range."""

    def corrupt(why: str) -> CorruptFile:
        return CorruptFile(f"{path} is corrupt ({why})")

    status = result.get("status")
    if status is not None and status not in (OK, FAILED, INTERRUPTED, RUNNING):
        raise corrupt(f"status {json.dumps(status)} is none of ok, failed, interrupted, running")
    overrides = result.get("overrides", [])
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise corrupt(f"overrides {json.dumps(overrides)} is not a list of strings")
    for key, (lo, hi) in NUMBER_RANGES.items():
        value = result.get(key)
        if value is None:
            continue
        real = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not real or not math.isfinite(value) or not lo <= value <= hi:
            raise corrupt(f"{key} {json.dumps(value)} is not a finite number in [{lo:g}, {hi:g}]")


def _overrides(job: Path) -> list[str]:
    path = RunDir(job).hydra / "overrides.yaml"
    if not path.exists():
        return []
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise CorruptFile(f"{path} is corrupt ({type(err).__name__})") from err
    if loaded is not None and not (
        isinstance(loaded, list) and all(isinstance(o, str) for o in loaded)
    ):
        raise CorruptFile(f"{path} is corrupt (not a list of overrides)")
    return list(loaded or [])


def _read_job(job: Path) -> Run:
    """One job directory; what cannot be read is named in ``problem``, never raised."""
    run, files = Run(job, [], {}), RunDir(job)
    try:
        run.overrides = _overrides(job)
        refusal = _json_object(files.refusal)
        if refusal is not None:  # the last command refused this job: its own overrides count
            run.overrides = list(refusal.get("overrides") or run.overrides)
            run.problem = f"{REFUSED}: {refusal.get('error', '(no reason recorded)')}"
        run.result = _json_object(files.result) or {}
        _check_result(run.result, files.result)
        run.overrides = run.overrides or list(run.result.get("overrides", []))
        run.curves = _curves(files.metrics)
    except CorruptFile as err:
        run.problem = str(err)
    return run


def collect_runs(sweep_dir: str | Path, ignored: Sequence[str] = IGNORED_KEYS) -> list[Run]:
    """Every job directory under ``sweep_dir`` (those with ``.hydra/``, ``result.json`` or
    ``refused.json``); overrides of the ``ignored`` keys do not tell configurations apart
    (``jaxconv-summarize`` passes the seed and the keys that never change results)."""
    sweep_dir = Path(sweep_dir)
    if sweep_dir.exists() and not sweep_dir.is_dir():
        raise NotADirectoryError(f"{sweep_dir} is a file, not a sweep directory")
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep directory {sweep_dir} does not exist")
    dirs = {p.parent.parent for p in sweep_dir.rglob(".hydra/overrides.yaml")}
    records = (RunDir(".").result.name, RunDir(".").refusal.name)
    dirs |= {p.parent for name in records for p in sweep_dir.rglob(name)}

    def natural(path: Path):  # job 2 before job 10
        return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in path.parts]

    runs = [
        dataclasses.replace(_read_job(job), ignored=tuple(ignored))
        for job in sorted(dirs, key=natural)
    ]
    common = set.intersection(*(r.settings for r in runs)) if runs else set()
    return [
        dataclasses.replace(
            run, config=" ".join(sorted(run.settings - common)) or "(all runs alike)"
        )
        for run in runs
    ]


def common_settings(runs: list[Run]) -> list[str]:
    return sorted(set.intersection(*(r.settings for r in runs))) if runs else []


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize_runs(runs: list[Run], metric: str = "test_accuracy") -> list[dict]:
    """One row per distinct override set (seeds pooled)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.config, []).append(run)
    rows = []
    for config, members in groups.items():
        ok = [r for r in members if r.status == OK]
        row = {
            "config": config,
            "runs": len(members),
            **{status: sum(r.status == status for r in members) for status in STATUSES},
            "seeds": " ".join(str(r.result.get("seed", "?")) for r in ok),
        }
        for name in METRICS:
            row[f"{name}_mean"], row[f"{name}_std"] = _mean_std([r.result.get(name) for r in ok])
        counts = {r.result.get("params") for r in ok} - {None}
        row["params"] = counts.pop() if len(counts) == 1 else ""  # one model per config
        rows.append(row)
    higher_is_better = not metric.endswith("loss") and metric != "wall_seconds"
    scored = [r for r in rows if not math.isnan(r[f"{metric}_mean"])]
    if scored:
        best = (max if higher_is_better else min)(scored, key=lambda r: r[f"{metric}_mean"])
        best["best"] = True
    return rows


def _count(value) -> str:
    return f"{value:,}" if isinstance(value, int) else "-"


def _fmt(mean: float, std: float, percent: bool) -> str:
    if math.isnan(mean):
        return "-"
    return f"{100 * mean:.2f} ± {100 * std:.2f}" if percent else f"{mean:.4g} ± {std:.2g}"


def markdown(
    rows: list[dict],
    metric: str,
    common: list[str] = (),
    problems: list[str] = (),
    extended: list[str] = (),
    stopped: list[str] = (),
) -> str:
    lines = [
        f"Common to all runs: `{' '.join(common)}`" if common else "No setting common to all runs.",
        "",
        "| config | test accuracy (%) | test loss | val accuracy "
        f"(%) | wall s | steps | params | {' / '.join(STATUSES)} | best |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {_fmt(r['test_accuracy_mean'], r['test_accuracy_std'], True)} | "
            f"{_fmt(r['test_loss_mean'], r['test_loss_std'], False)} | "
            f"{_fmt(r['val_accuracy_mean'], r['val_accuracy_std'], True)} | "
            f"{_fmt(r['wall_seconds_mean'], r['wall_seconds_std'], False)} | "
            f"{_fmt(r['steps_mean'], r['steps_std'], False)} | "
            f"{_count(r['params'])} | "
            f"{' / '.join(str(r[s]) for s in STATUSES)} | {'**best**' if r.get('best') else ''} |"
        )
    lines.append("")
    lines.append(f"mean ± std over the ok runs (seeds pooled); best by {metric}.")
    if problems:
        lines += ["", "Jobs not counted as ok:", ""] + [f"- {p}" for p in problems]
    if extended:
        lines += ["", "Jobs resumed for longer than first planned:", ""]
        lines += [f"- {e}" for e in extended]
    if stopped:
        lines += ["", "Jobs stopped early (ok, at the step given):", ""]
        lines += [f"- {e}" for e in stopped]
    return "\n".join(lines)


def _job_name(run: Run, sweep_dir: Path) -> str:
    return str(run.path.relative_to(sweep_dir)) if run.path != sweep_dir else run.path.name


def stopped_early(runs: list[Run], sweep_dir: Path) -> list[str]:
    """One line per ok job that a callback (early stopping) ended before its last step."""
    return [
        f"{_job_name(run, sweep_dir)}: step {run.result['stopped_early'].get('step')}: "
        f"{run.result['stopped_early'].get('reason')}"
        for run in runs
        if run.status == OK and isinstance(run.result.get("stopped_early"), dict)
    ]


def extensions(runs: list[Run], sweep_dir: Path) -> list[str]:
    """One line per job whose result.json records extensions on resume (from -> to)."""
    lines = []
    for run in runs:
        steps = run.result.get("extended")
        if isinstance(steps, list) and steps:
            said = "; ".join(
                f"{e.get('key')}: {e.get('from')} -> {e.get('to')}"
                for e in steps
                if isinstance(e, dict)
            )
            lines.append(f"{_job_name(run, sweep_dir)}: {said}")
    return lines


def problems(runs: list[Run], sweep_dir: Path) -> list[str]:
    """One line per refused or corrupt job, naming its directory."""
    return [
        f"{_job_name(run, sweep_dir)}: {run.problem}" for run in runs if run.problem is not None
    ]


def _wrapped(config: str, width: int = 32) -> str:
    """A configuration's overrides, one per line, long ones wrapped: readable as a tick
    label or a legend entry however long the override names are."""
    return "\n".join(
        textwrap.fill(part, width, break_on_hyphens=False) for part in config.split(" ")
    )


def summary_figure(rows: list[dict], metric: str) -> Figure:
    """One horizontal bar per configuration from zero (the best in orange) with its
    spread over seeds; the configurations label the bars."""
    labels = [_wrapped(r["config"]) for r in rows]
    height = max(2.5, 0.35 * sum(label.count("\n") + 1 for label in labels) + 1.2)
    fig, ax = subplots(figsize=(8, height))
    means = [r[f"{metric}_mean"] for r in rows]
    stds = [r[f"{metric}_std"] for r in rows]
    colors = ["tab:orange" if r.get("best") else "tab:blue" for r in rows]
    positions = range(len(rows))
    ax.barh(positions, means, xerr=stds, capsize=4, color=colors, left=0)
    ax.set_yticks(positions, labels, fontsize=7)
    ax.invert_yaxis()  # the first configuration on top, as in summary.md
    ax.set_xlabel(metric)
    finite = [m + s for m, s in zip(means, stds) if not math.isnan(m)]
    if metric.endswith("accuracy"):
        ax.set_xlim(0.0, 1.0)
    elif finite:
        ax.set_xlim(0.0, max(finite) * 1.1 or 1.0)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"{metric}: mean ± std over seeds")
    fig.tight_layout()
    return fig


def plot_summary(rows: list[dict], out: Path, metric: str) -> None:
    summary_figure(rows, metric).savefig(out, dpi=110)


def curves_figure(runs: list[Run]) -> Figure:
    """Training and validation accuracy against step, one colour per configuration, a
    marker on every evaluation (a run shorter than ``eval_every`` has one); the legend
    below the axes, its entries wrapped."""
    configs = sorted({r.config for r in runs})
    cmap = matplotlib.colormaps["tab10"]
    fig, axes = subplots(1, 2, figsize=(11, 4.2), sharey=True)
    fig.set_layout_engine("constrained")  # makes room for the legend below
    for ax, split, title in (
        (axes[0], "train", "training accuracy (batches since the last eval)"),
        (axes[1], "val", "validation accuracy"),
    ):
        for i, config in enumerate(configs):
            members = [r for r in runs if r.config == config and r.curves.get(split)]
            for j, run in enumerate(members):
                steps, acc = zip(*run.curves[split])
                ax.plot(steps, acc, "-o", color=cmap(i % 10), alpha=0.8, lw=1.2, markersize=3,
                        label=_wrapped(config, 40) if j == 0 else None)  # fmt: skip
        ax.set(xlabel="step", title=title)
        ax.grid(alpha=0.3)
        if not ax.get_lines():
            ax.text(0.5, 0.5, f"no {split} rows in metrics.csv", ha="center",
                    transform=ax.transAxes)  # fmt: skip
    axes[0].set_ylabel("accuracy")
    handles, labels = axes[1].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)),
                   fontsize=7)  # fmt: skip
    return fig


def plot_curves(runs: list[Run], out: Path) -> None:
    """curves.png: :func:`curves_figure`, the legend kept inside the saved image."""
    curves_figure(runs).savefig(out, dpi=110, bbox_inches="tight")


def summarize(
    sweep_dir: str | Path, metric: str = "test_accuracy", ignored: Sequence[str] = IGNORED_KEYS
) -> tuple[list[dict], str]:
    """Write summary.md, summary.csv, summary.png, curves.png into ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    runs = collect_runs(sweep_dir, ignored)
    if not runs:
        raise FileNotFoundError(
            f"no job directories (with .hydra/ or result.json) under {sweep_dir}"
        )
    rows = summarize_runs(runs, metric)
    table = markdown(
        rows,
        metric,
        common_settings(runs),
        problems(runs, sweep_dir),
        extensions(runs, sweep_dir),
        stopped_early(runs, sweep_dir),
    )
    (sweep_dir / "summary.md").write_text(f"# Summary of {sweep_dir.name}\n\n{table}\n")
    with open(sweep_dir / "summary.csv", "w", newline="") as handle:
        fields = (
            ["config", "runs", *STATUSES, "seeds"]
            + [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
            + ["params", "best"]
        )
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, False) for k in fields})
    plot_summary(rows, sweep_dir / "summary.png", metric)
    plot_curves(runs, sweep_dir / "curves.png")
    return rows, table
