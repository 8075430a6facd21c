"""``trainer=debug``: a config tried end to end in seconds, before a long run or a sweep.

The run is the config's own (model, data, optimizer, loss, every option), shortened:
:data:`STEPS` training steps on the first ``2 * batch_size`` training examples, an
evaluation every :data:`EVAL_EVERY` steps, a checkpoint every :data:`CHECKPOINT_EVERY`,
the test, the plots and every record a run writes. Then the same training is run again
in a temporary directory, interrupted after step :data:`CHECKPOINT_EVERY` and resumed
from its checkpoint; it must end with the same parameters. What was checked is printed
and recorded in result.json's ``debug``.
"""

from __future__ import annotations

import dataclasses
import itertools
import signal
import tempfile

import jax
from omegaconf import DictConfig, OmegaConf

from jaxconv.train import Interrupted, fit, params_sha256

STEPS, EVAL_EVERY, CHECKPOINT_EVERY = 6, 2, 3


def debug_config(cfg: DictConfig) -> DictConfig:
    """``cfg`` shortened for a debug run (a copy)."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    OmegaConf.set_struct(out, False)
    limit = 2 * int(cfg.trainer.batch_size)
    if cfg.data.get("limit_train") is not None:
        limit = min(limit, int(cfg.data.limit_train))
    for key, value in {
        "trainer.max_steps": STEPS,
        "trainer.eval_every": EVAL_EVERY,
        "trainer.checkpoint_every": CHECKPOINT_EVERY,
        "trainer.keep_checkpoints": max(int(cfg.trainer.keep_checkpoints), 2),
        "data.limit_train": limit,
    }.items():
        OmegaConf.update(out, key, value)
    OmegaConf.set_struct(out, True)
    return out


def check_resume(prepared, options, trained) -> dict:
    """Train ``prepared`` again with ``options`` in a temporary directory, interrupted
    after step :data:`CHECKPOINT_EVERY` and resumed; the result, and the line saying it.
    Skipped with several processes (each would need the same temporary directory)."""
    model, data, tx = prepared.model, prepared.dataset, prepared.optimizer
    if jax.process_count() > 1:
        return {"resume": "not checked (several processes)"}
    polls = itertools.count()

    def stop() -> int | None:  # polled before each step: stop before step CHECKPOINT_EVERY + 1
        return signal.SIGINT if next(polls) == CHECKPOINT_EVERY else None

    with tempfile.TemporaryDirectory(prefix="jaxconv-debug-") as tmp:
        try:
            fit(model, data, tx, options, run_dir=tmp, should_stop=stop)
        except Interrupted:
            pass
        resumed, _ = fit(model, data, tx, dataclasses.replace(options, resume=True), run_dir=tmp)
    same = params_sha256(resumed.params) == params_sha256(trained.params)
    return {
        "resume": "same parameters" if same else "OTHER parameters",
        "resumed_from": CHECKPOINT_EVERY,
    }


def report(result: dict) -> str:
    """What the debug run checked, in one paragraph."""
    debug = result["debug"]
    evals = ", ".join(map(str, debug["evaluated_at"])) or "(no validation split)"
    checked = (
        f"debug run: {result['steps']} training steps on {debug['train_examples']} examples, "
        f"evaluated at steps {evals}, checkpointed every {CHECKPOINT_EVERY}, tested, records "
        "written"
    )
    if debug["resume"] == "same parameters":
        return (f"{checked}; interrupted after step {CHECKPOINT_EVERY} and resumed, it "
                "reached the same parameters: this config runs end to end")  # fmt: skip
    if debug["resume"].startswith("not checked"):
        return f"{checked}; resume {debug['resume']}"
    return (f"{checked}; BUT interrupted after step {CHECKPOINT_EVERY} and resumed, it "
            "reached other parameters than the uninterrupted run")  # fmt: skip


def checked(prepared, options, state, history) -> dict:
    """result.json's ``debug``: what was trained and evaluated, and the resume check."""
    return {
        "train_examples": len(prepared.dataset.x_train),
        "evaluated_at": sorted({r["step"] for r in history.rows if r["split"] == "val"}),
        **check_resume(prepared, options, state),
    }
