"""``jaxconv-summarize DIR``: tables and plots of a multirun directory."""

from __future__ import annotations

import argparse
import sys

from jaxconv.app.config import summary_ignored_keys
from jaxconv.report.summary import METRICS, collect_runs, summarize
from jaxconv.run_layout import CORRUPT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="jaxconv-summarize",
        description="Summarise a jaxconv-train multirun directory: summary.md, summary.csv, "
        "summary.png (final metric per configuration with error bars), curves.png. "
        "Exit status 2 when the directory cannot be read or a job's files are corrupt "
        "(named on stderr; the summary is written without them).",
    )
    parser.add_argument("sweep_dir", help="the multirun directory (hydra.sweep.dir)")
    parser.add_argument(
        "--metric",
        default="test_accuracy",
        choices=METRICS,
        help="metric that picks the best row and is plotted (default: test_accuracy)",
    )
    args = parser.parse_args(argv)
    try:
        ignored = summary_ignored_keys()
        runs = collect_runs(args.sweep_dir, ignored)
        _, table = summarize(args.sweep_dir, args.metric, ignored)
    except OSError as err:  # missing, a file, unreadable
        print(f"jaxconv-summarize: error: {err}", file=sys.stderr)
        return 2
    print(table)
    print(f"\nwrote summary.md, summary.csv, summary.png, curves.png in {args.sweep_dir}")
    corrupt = [run for run in runs if run.status == CORRUPT]
    for run in corrupt:  # summarised without them; the exit status tells a script
        print(f"jaxconv-summarize: error: {run.problem}", file=sys.stderr)
    return 2 if corrupt else 0


if __name__ == "__main__":
    sys.exit(main())
