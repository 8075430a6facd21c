"""The training recipe in ``fit``: callbacks, early stopping and what the best checkpoint
follows, a moving average of the weights, gradient accumulation."""

import json
import signal

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from jaxconv import models
from jaxconv.data import load_dataset
from jaxconv.models import nnx as nnx_models
from jaxconv.train import Checkpoints, Interrupted, evaluate, fit, params_sha256
from jaxconv.train.callbacks import Callback, EarlyStopping
from jaxconv.train.state import create_state


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", val_fraction=0.1)


def _plain_cnn():
    """No BatchNorm, no dropout: a step is a function of the batch's mean gradient."""
    return models.CNN(channels=(8,), kernel_size=(3, 3), pool="max", norm="none",
                      conv_backend="lax")  # fmt: skip


def _max_difference(a, b) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_accumulated_micro_batches_equal_the_whole_batch(digits):
    whole, _ = fit(_plain_cnn(), digits, optax.sgd(0.1), max_steps=6, batch_size=32,
                   progress=False)  # fmt: skip
    for k in (2, 4):
        split, _ = fit(_plain_cnn(), digits, optax.sgd(0.1), max_steps=6, batch_size=32,
                       progress=False, accumulate_steps=k)  # fmt: skip
        assert _max_difference(whole.params, split.params) < 1e-6

    # an NNX model through the same step (a fresh module per run: fit trains a copy's state)
    def nnx_cnn():
        return nnx_models.CNN(channels=(8,), kernel_size=(3, 3), pool="max", norm="none",
                              conv_backend="lax", input_shape=(8, 8, 1),
                              rngs=nnx.Rngs(0))  # fmt: skip

    whole, _ = fit(nnx_cnn(), digits, optax.sgd(0.1), max_steps=6, batch_size=32,
                   progress=False)  # fmt: skip
    split, _ = fit(nnx_cnn(), digits, optax.sgd(0.1), max_steps=6, batch_size=32,
                   progress=False, accumulate_steps=4)  # fmt: skip
    assert _max_difference(whole.params, split.params) < 1e-6
    with pytest.raises(ValueError, match=r"`accumulate_steps` \(=3\) must divide `batch_size`"):
        fit(_plain_cnn(), digits, optax.sgd(0.1), max_steps=1, batch_size=32, accumulate_steps=3)


def test_the_moving_average_is_of_every_step_and_is_what_is_evaluated(digits):
    """EMA after 3 steps = d^3 p0 + (1 - d)(d^2 p1 + d p2 + p3), from runs of 1, 2, 3 steps
    (their prefixes are bit-identical) and the initial parameters."""
    d, opt = 0.5, optax.sgd(0.1)
    model = models.CNN(channels=(4,), kernel_size=(3, 3), pool="max", conv_backend="lax")
    kept = [create_state(model, digits.x_train, opt, 0).params]
    for steps in (1, 2, 3):
        kept.append(fit(model, digits, opt, max_steps=steps, batch_size=32, progress=False)[0])
    state = fit(model, digits, opt, max_steps=3, batch_size=32, progress=False, ema_decay=d)[0]
    p = [kept[0], *(s.params for s in kept[1:])]
    expected = jax.tree.map(
        lambda p0, p1, p2, p3: d**3 * p0 + (1 - d) * (d**2 * p1 + d * p2 + p3), *p
    )
    assert _max_difference(state.ema["params"], expected) < 1e-6
    assert params_sha256(state.params) == params_sha256(kept[3].params)  # training unchanged
    # BatchNorm's running statistics are averaged as well
    stats = [s.batch_stats for s in kept[1:]]
    first = create_state(model, digits.x_train, opt, 0).batch_stats
    expected = jax.tree.map(lambda a, b, c, e: d**3 * a + (1 - d) * (d**2 * b + d * c + e),
                            first, *stats)  # fmt: skip
    assert _max_difference(state.ema["batch_stats"], expected) < 1e-6
    averaged = state.replace(params=state.ema["params"], batch_stats=state.ema["batch_stats"],
                             ema=None)  # fmt: skip
    assert evaluate(state, digits.x_test, digits.y_test) == evaluate(
        averaged, digits.x_test, digits.y_test
    )


def _first_stop(values, mode, patience, min_delta, steps):
    """Where early stopping must stop, computed from the recorded values alone."""
    best, bad = None, 0
    for value, step in zip(values, steps):
        better = best is None or (value - best if mode == "max" else best - value) > min_delta
        best, bad = (value, 0) if better else (best, bad + 1)
        if bad >= patience:
            return step
    return None


class _Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_start(self, step, rows):
        self.calls.append(("start", step))

    def on_eval(self, step, rows, state):
        self.calls.append(("eval", step))

    def on_checkpoint(self, step, state):
        self.calls.append(("checkpoint", step))

    def on_end(self, state, rows):
        self.calls.append(("end", int(state.step)))


def test_early_stopping_stops_where_the_rule_says_and_resumes_to_the_same_step(digits, tmp_path):
    model = models.CNN(channels=(8,), kernel_size=(3, 3), pool="max", conv_backend="lax")
    rule = {"monitor": "val/accuracy", "mode": "max", "patience": 2, "min_delta": 0.01}
    common = dict(max_steps=600, batch_size=32, eval_every=10, progress=False,
                  early_stopping=rule, seed=3)  # fmt: skip
    recorder = _Recorder()
    state, history = fit(model, digits, optax.adam(1e-2), callbacks=[recorder], **common)
    val = history.split("val")
    stop = _first_stop([r["accuracy"] for r in val], "max", 2, 0.01, [r["step"] for r in val])
    assert stop is not None and stop < 600
    assert history.stopped["step"] == int(state.step) == stop == val[-1]["step"]
    assert recorder.calls[0] == ("start", 0) and recorder.calls[-1] == ("end", stop)
    assert [c for c in recorder.calls if c[0] == "eval"] == [("eval", r["step"]) for r in val]

    # Interrupted before the stop (checkpoints every 7 steps) and resumed: the same stop
    calls = iter(range(10**6))
    with pytest.raises(Interrupted):
        fit(model, digits, optax.adam(1e-2), run_dir=tmp_path / "run", checkpoint_every=7,
            should_stop=lambda: signal.SIGINT if next(calls) == stop - 15 else None,
            **common)  # fmt: skip
    resumed, again = fit(model, digits, optax.adam(1e-2), run_dir=tmp_path / "run",
                         checkpoint_every=7, resume=True, **common)  # fmt: skip
    assert again.stopped == history.stopped
    assert params_sha256(resumed.params) == params_sha256(state.params)
    # resuming the stopped run trains no further
    after, _ = fit(model, digits, optax.adam(1e-2), run_dir=tmp_path / "run",
                   checkpoint_every=7, resume=True, **common)  # fmt: skip
    assert int(after.step) == stop
    with pytest.raises(ValueError, match=r"holds the states of 1 callback\(s\); this run has 2"):
        fit(model, digits, optax.adam(1e-2), run_dir=tmp_path / "run", checkpoint_every=7,
            resume=True, callbacks=[EarlyStopping()], **common)  # fmt: skip


def test_a_stop_asked_between_evaluations_is_checkpointed_at_its_step(digits, tmp_path):
    """A callback that stops in ``on_step`` (no evaluation at that step) ends training
    there with a checkpoint of that step, which a resume does not train past."""

    class StopAt(Callback):
        def on_step(self, step, metrics):
            if step == 7:
                self.stop_reason = "enough"

        def state_dict(self):
            return {"stop_reason": self.stop_reason}

        def load_state_dict(self, state):
            self.stop_reason = state["stop_reason"]

    model = models.LogisticRegression()
    common = dict(max_steps=30, batch_size=32, eval_every=10, progress=False,
                  run_dir=tmp_path)  # fmt: skip
    state, history = fit(model, digits, optax.sgd(0.1), callbacks=[StopAt()], **common)
    assert int(state.step) == 7 and history.stopped == {"step": 7, "reason": "enough"}
    ckpt = Checkpoints(tmp_path)
    try:
        assert ckpt.latest_step() == 7
    finally:
        ckpt.close()
    resumed, _ = fit(model, digits, optax.sgd(0.1), callbacks=[StopAt()], resume=True, **common)
    assert int(resumed.step) == 7


def test_the_best_checkpoint_follows_the_monitor_chosen(digits, tmp_path):
    model = models.CNN(channels=(8,), kernel_size=(3, 3), pool="max", conv_backend="lax")
    _, history = fit(model, digits, optax.adam(3e-2), max_steps=60, batch_size=32,
                     eval_every=10, progress=False, run_dir=tmp_path,
                     best={"monitor": "val/loss"})  # fmt: skip
    val = history.split("val")
    lowest = min(val, key=lambda r: r["loss"])["step"]
    ckpt = Checkpoints(tmp_path)
    try:
        assert ckpt.best.latest_step() == lowest
    finally:
        ckpt.close()
    for bad, message in [
        ({"monitor": "val/acc"}, r"`best.monitor` \(='val/acc'\) must be split/metric"),
        ({"monitor": "val/loss", "mode": "up"}, r"`best.mode` \(='up'\) must be one of"),
    ]:
        with pytest.raises(ValueError, match=message):
            fit(model, digits, optax.adam(3e-2), max_steps=1, best=bad, progress=False)


def test_callback_states_are_json_in_the_checkpoint(digits, tmp_path):
    """What a callback returns from state_dict is what the checkpoint holds."""

    class Counter(Callback):
        def __init__(self):
            self.evals = 0

        def on_eval(self, step, rows, state):
            self.evals += 1

        def state_dict(self):
            return {"evals": self.evals}

        def load_state_dict(self, state):
            self.evals = state["evals"]

    counter = Counter()
    model = models.LogisticRegression()
    fit(model, digits, optax.sgd(0.1), max_steps=20, batch_size=32, eval_every=5,
        progress=False, run_dir=tmp_path, callbacks=[counter])  # fmt: skip
    ckpt = Checkpoints(tmp_path)
    try:
        _, extras = ckpt.restore(create_state(model, digits.x_train, optax.sgd(0.1), 0))
    finally:
        ckpt.close()
    assert json.loads(str(extras["callbacks"])) == [{"evals": 4}]
    again = Counter()
    fit(model, digits, optax.sgd(0.1), max_steps=30, batch_size=32, eval_every=5,
        progress=False, run_dir=tmp_path, resume=True, callbacks=[again])  # fmt: skip
    assert again.evals == 6


def test_the_summary_of_a_linen_preset_and_of_its_nnx_twin(digits):
    """The same layers with the same parameter counts and output shapes, in call order;
    the counts add up to the parameters the model holds."""
    from jaxconv.train.summary import count_params, summarize

    linen = models.CNN(channels=(8, 16), kernel_size=(3, 3), pool="max")
    twin = nnx_models.CNN(channels=(8, 16), kernel_size=(3, 3), pool="max",
                          input_shape=(8, 8, 1), rngs=nnx.Rngs(0))  # fmt: skip
    a, b = summarize(linen, digits.x_train[:1]), summarize(twin, digits.x_train[:1])
    layers = [r for r in a.rows if r[1] in ("Conv", "BatchNorm", "Dense")]
    assert [(r[0], r[2], r[3]) for r in layers] == [
        ("Conv_0", "(8, 8, 8)", 72), ("BatchNorm_0", "(8, 8, 8)", 16),
        ("Conv_1", "(4, 4, 16)", 1152), ("BatchNorm_1", "(4, 4, 16)", 32),
        ("Dense_0", "(10,)", 170),
    ]  # fmt: skip
    assert [(r[0], r[2], r[3]) for r in b.rows if r[0] != "(model)"] == [
        (r[0], r[2], r[3]) for r in layers
    ]
    state = create_state(linen, digits.x_train, optax.sgd(0.1), 0)
    assert a.params == b.params == count_params(state.params) == 72 + 16 + 1152 + 32 + 170
