"""``jaxconv-summarize DIR``: tables and plots of a multirun directory."""

from __future__ import annotations

import argparse
import sys

from jaxconv.report.summary import METRICS, summarize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="jaxconv-summarize",
        description="Summarise a jaxconv-train multirun directory: summary.md, summary.csv, "
                    "summary.png (final metric per configuration with error bars), curves.png.",
    )
    parser.add_argument("sweep_dir", help="the multirun directory (hydra.sweep.dir)")
    parser.add_argument("--metric", default="test_accuracy", choices=METRICS,
                        help="metric that picks the best row and is plotted (default: test_accuracy)")
    args = parser.parse_args(argv)
    try:
        _, table = summarize(args.sweep_dir, args.metric)
    except FileNotFoundError as err:
        print(f"jaxconv-summarize: error: {err}", file=sys.stderr)
        return 2
    print(table)
    print(f"\nwrote summary.md, summary.csv, summary.png, curves.png in {args.sweep_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
