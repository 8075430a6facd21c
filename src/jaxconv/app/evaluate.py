"""``jaxconv-eval RUN_DIR --out DIR``: a run's checkpoint evaluated on a split of its data
(or of the data with overrides), written to ``DIR/eval.json`` and
``DIR/confusion_matrix.png``; the run directory is only read."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from jaxconv._atomic import write_text_atomic
from jaxconv._errors import first_line
from jaxconv.app.config import group_options, unknown_keys
from jaxconv.app.errors import ONE_LINE_ERRORS, as_config_error
from jaxconv.app.load import CHECKPOINTS, load_run
from jaxconv.data.datasets import DataOptions, dataset_from
from jaxconv.report.plots import confusion_figure, confusion_matrix
from jaxconv.train import evaluate

SPLITS = ("test", "val", "train")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxconv-eval",
        description="Evaluate a jaxconv-train run's checkpoint on a split of its data: "
        "DIR/eval.json (accuracy, loss, split, checkpoint, step) and "
        "DIR/confusion_matrix.png. The run directory is only read. Exit status 2 when "
        "the run, the checkpoint or an override cannot be used (one line on stderr).",
    )
    parser.add_argument("run_dir", help="a jaxconv-train run directory")
    parser.add_argument("--out", required=True, help="the folder for eval.json and the picture")
    parser.add_argument("--checkpoint", default="last", choices=CHECKPOINTS,
                        help="last (what result.json reports) or best on validation")  # fmt: skip
    parser.add_argument("--split", default="test", choices=SPLITS, help="default: test")
    parser.add_argument("overrides", nargs="*", metavar="data.KEY=VALUE",
                        help="data config overrides, e.g. data.limit_test=100")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_intermixed_args(argv)
    try:
        report = run(Path(args.run_dir), Path(args.out), args.checkpoint, args.split,
                     args.overrides)  # fmt: skip
    except (*ONE_LINE_ERRORS, FileNotFoundError, NotADirectoryError, PermissionError) as err:
        print(f"jaxconv-eval: error: {first_line(err)}", file=sys.stderr)
        return 2
    print(
        f"{report['split']} accuracy {100 * report['accuracy']:.2f}% (loss "
        f"{report['loss']:.4f}) of the {report['checkpoint']} checkpoint (step "
        f"{report['step']}) on {report['examples']} examples; wrote {args.out}/eval.json"
    )
    return 0


def run(run_dir: Path, out: Path, checkpoint: str, split: str, overrides: list[str]) -> dict:
    """Evaluate and write; everything is checked before ``out`` is made."""
    bad = [o for o in overrides if not o.startswith("data.") or "=" not in o]
    if bad:
        raise as_config_error(ValueError(
            f"`overrides` (={bad[0]!r}) must be data.KEY=VALUE: only the data may change"
        ))  # fmt: skip
    loaded = load_run(run_dir, checkpoint)
    cfg = OmegaConf.merge(loaded.config, OmegaConf.from_dotlist(overrides))
    for key in unknown_keys({"data": OmegaConf.to_container(cfg.data)}):
        raise as_config_error(ValueError(f"`{key}` is not a data config key"))
    try:
        data = dataset_from(group_options(cfg, DataOptions, "data"), split_seed=cfg.seed)
    except ValueError as err:
        raise as_config_error(err, "data") from err
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    if len(x) == 0:
        raise as_config_error(ValueError(f"`split` (={split!r}) of {data.name} is empty"))
    metrics = evaluate(loaded.state, x, y)
    predicted = np.argmax(loaded.predict(x), axis=-1)
    report = {**metrics, "split": split, "checkpoint": checkpoint, "step": loaded.step,
              "examples": int(len(x)), "data": data.name,
              "run_dir": str(run_dir.resolve())}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    matrix = confusion_matrix(y, predicted, data.num_classes)
    title = f"{split} split, {checkpoint} checkpoint: accuracy {100 * metrics['accuracy']:.2f}%"
    confusion_figure(matrix, title).savefig(out / "confusion_matrix.png", dpi=100)
    write_text_atomic(out / "eval.json", json.dumps({**report, "confusion_matrix": matrix},
                                                    indent=2))  # fmt: skip
    return report


if __name__ == "__main__":
    sys.exit(main())
