"""fit / evaluate / checkpoints / optimizers on small real problems."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxconv import models
from jaxconv.data import load_dataset
from jaxconv.train import Checkpoints, evaluate, fit, make_optimizer, make_schedule, params_sha256
from jaxconv.train.optim import OPTIMIZERS, SCHEDULES


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", val_fraction=0.1)


def test_digits_cnn_reaches_a_real_accuracy(digits, tmp_path):
    model = models.CNN(channels=(16, 32), kernel_size=(3, 3), pool="max", norm="batch")
    steps = 300
    opt = make_optimizer("adamw", make_schedule("one_cycle", 1e-2, steps), weight_decay=1e-4)
    state, history = fit(
        model,
        digits,
        opt,
        max_steps=steps,
        batch_size=64,
        eval_every=100,
        run_dir=tmp_path,
        progress=False,
        augment_shift=1,
    )
    test = evaluate(state, digits.x_test, digits.y_test)
    assert test["accuracy"] >= 0.95, test
    assert [r["step"] for r in history.split("val")] == [100, 200, 300]
    assert history.split("val")[-1]["accuracy"] >= 0.93
    assert (tmp_path / "metrics.csv").read_text().splitlines()[
        0
    ] == "step,epoch,split,loss,accuracy,images_per_s"
    assert sorted(
        p.name for p in (tmp_path / "checkpoints" / "last").iterdir() if p.name.isdigit()
    ) == ["100", "200", "300"]
    assert [p.name for p in (tmp_path / "checkpoints" / "best").iterdir() if p.name.isdigit()]


def test_evaluate_known_values():
    model = models.LogisticRegression(num_classes=10)
    data = load_dataset("digits", val_fraction=0.0)
    state, _ = fit(model, data, optax.sgd(0.0), max_steps=1, batch_size=8, progress=False)
    zero = jax.tree.map(jnp.zeros_like, state.params)
    result = evaluate(state.replace(params=zero), data.x_test, data.y_test, batch_size=7)
    np.testing.assert_allclose(result["loss"], np.log(10), rtol=1e-6)  # uniform logits
    np.testing.assert_allclose(result["accuracy"], np.mean(data.y_test == 0))  # argmax picks 0


def test_same_seed_same_parameters_different_seed_different(digits):
    def run(seed):
        model = models.CNN(channels=(8,), kernel_size=(3, 3), dropout=0.2)
        state, _ = fit(
            model,
            digits,
            optax.adam(1e-3),
            max_steps=15,
            batch_size=32,
            seed=seed,
            progress=False,
            augment_shift=1,
        )
        return params_sha256(state.params)

    assert run(0) == run(0)
    assert run(0) != run(1)


def _without_timing(rows):
    return [{k: v for k, v in r.items() if k != "images_per_s"} for r in rows]


def test_resume_equals_the_uninterrupted_run_bit_for_bit(digits, tmp_path, monkeypatch):
    import jaxconv.train.loop as loop

    model = models.CNN(channels=(8,), kernel_size=(3, 3), dropout=0.2)
    opt = make_optimizer("adamw", make_schedule("one_cycle", 0.01, 40))
    kwargs = dict(
        max_steps=40, batch_size=32, eval_every=10, progress=False, augment_shift=1, seed=3
    )
    full, full_history = fit(model, digits, opt, run_dir=tmp_path / "full", **kwargs)

    # Interrupt during step 26: the last checkpoint (step 25) is mid-way through an
    # evaluation window.
    real = loop.make_train_step

    def dying(*args):
        step_fn, calls = real(*args), []

        def wrapped(*a):
            calls.append(1)
            if len(calls) > 25:
                raise KeyboardInterrupt
            return step_fn(*a)

        return wrapped

    monkeypatch.setattr(loop, "make_train_step", dying)
    monkeypatch.setattr(loop, "_TRAIN_STEPS", {})  # fit's compiled steps: made anew
    with pytest.raises(KeyboardInterrupt):
        fit(model, digits, opt, run_dir=tmp_path / "cut", checkpoint_every=5, **kwargs)
    monkeypatch.setattr(loop, "make_train_step", real)
    loop._TRAIN_STEPS.clear()
    resumed, history = fit(
        model, digits, opt, run_dir=tmp_path / "cut", resume=True, checkpoint_every=5, **kwargs
    )
    assert int(resumed.step) == 40
    assert params_sha256(resumed.params) == params_sha256(full.params)
    assert _without_timing(history.rows) == _without_timing(full_history.rows)


def test_corrupt_checkpoint_falls_back_to_the_previous_one(digits, tmp_path):
    model = models.CNN(channels=(4,), kernel_size=(3, 3))
    fit(
        model,
        digits,
        optax.adam(1e-3),
        max_steps=30,
        batch_size=16,
        eval_every=10,
        run_dir=tmp_path,
        progress=False,
    )
    step_dir = tmp_path / "checkpoints" / "last" / "30"
    for path in step_dir.rglob("*"):  # truncate every data file of the newest step
        if path.is_file() and path.stat().st_size > 64:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    messages = []
    fresh, _ = fit(model, digits, optax.adam(1e-3), max_steps=1, batch_size=16, progress=False)
    restored, _ = Checkpoints(tmp_path).restore(fresh, log=messages.append)
    assert int(restored.step) == 20
    assert "checkpoint at step 30" in messages[0] and messages[0].endswith(
        "falling back to step 20"
    )


def test_checkpoint_round_trip(digits, tmp_path):
    model = models.CNN(channels=(4,), kernel_size=(3, 3))
    state, _ = fit(model, digits, optax.adam(1e-3), max_steps=3, batch_size=16, progress=False)
    ckpt = Checkpoints(tmp_path, keep=2)
    ckpt.save(state, metric=0.5)
    fresh, _ = fit(
        model, digits, optax.adam(1e-3), max_steps=1, batch_size=16, seed=9, progress=False
    )
    restored, extras = ckpt.restore(fresh)
    assert extras is None
    assert int(restored.step) == 3
    assert params_sha256(restored.params) == params_sha256(state.params)
    ckpt.close()


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_lowers_the_loss(name, digits):
    lr = 1e-2 if name.startswith("adam") else 5e-2
    opt = make_optimizer(name, make_schedule("constant", lr, 100), weight_decay=1e-4, clip_norm=1.0)
    model = models.LogisticRegression()
    state, history = fit(
        model, digits, opt, max_steps=60, batch_size=64, eval_every=20, progress=False
    )
    losses = [r["loss"] for r in history.split("val")]
    assert losses[-1] < losses[0] < np.log(10) + 0.5


def test_schedules_shapes():
    peak = 0.1
    values = {
        name: [float(make_schedule(name, peak, 100)(s)) for s in (0, 5, 30, 99)]
        for name in SCHEDULES
    }
    assert values["constant"] == [peak] * 4
    assert values["cosine"][0] == pytest.approx(peak) and values["cosine"][-1] < 1e-3
    assert values["warmup_cosine"][0] == 0.0 and values["warmup_cosine"][1] == pytest.approx(
        peak, rel=1e-6
    )
    assert values["one_cycle"][0] < peak / 10 and values["one_cycle"][-1] < peak / 100
    with pytest.raises(ValueError, match="`lr` \\(=-1\\) must be > 0"):
        make_schedule("constant", -1, 10)
    with pytest.raises(ValueError, match="`name` \\(='linear'\\) is neither a preset"):
        make_schedule("linear", 0.1, 10)


def test_fit_rejects_bad_sizes(digits):
    with pytest.raises(ValueError, match="`batch_size` \\(=0\\) must be >= 1"):
        fit(models.LogisticRegression(), digits, optax.sgd(0.1), batch_size=0)


def test_plots_for_conv_and_conv_free_models(digits, tmp_path):
    from jaxconv.train.plots import plot_feature_maps, plot_filters

    for model in (models.CNN(channels=(4,), kernel_size=(3, 3)), models.LogisticRegression()):
        state, _ = fit(model, digits, optax.sgd(0.1), max_steps=2, batch_size=16, progress=False)
        variables = {
            "params": state.params,
            **({"batch_stats": state.batch_stats} if state.batch_stats else {}),
        }
        filters = plot_filters(state.params, tmp_path / "f.png")
        maps = plot_feature_maps(model, variables, digits.x_test[0], tmp_path / "m.png")
        if isinstance(model, models.CNN):
            assert filters.stat().st_size > 0 and maps.stat().st_size > 0
        else:
            assert filters is None and maps is None  # nothing to draw, and no error
