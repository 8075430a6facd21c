"""Data parallelism over the devices of one process, simulated on the CPU: the same
training on 1 and on 4 devices, every backend under sharding, and the CLI's topology."""

import json
import signal

import numpy as np
import pytest

from tests.helpers import (
    cli,
    computed_once,
    run_python,
    simulated_devices_env,
    wait_for_checkpoint,
)

#: digits, a CNN with BatchNorm and dropout (both must follow the global batch), three
#: runs in one 4-device process: on 1 device, on 4, on 4 again.
ONE_VS_FOUR = """
import json, jax, numpy as np
from jaxconv.data import load_dataset
from jaxconv.models import CNN
from jaxconv.train import evaluate, fit, make_optimizer, params_sha256

data = load_dataset("digits")
model = CNN(channels=(8, 16), dropout=0.2, num_classes=10)
out = {}
for name, devices in (("one", 1), ("four", 4), ("four_again", 4)):
    state, history = fit(model, data, make_optimizer("adam", 3e-3), max_steps=200,
                         batch_size=32, eval_every=1, progress=False, devices=devices)
    local = jax.device_get(state)  # the same parameters on one device, unsharded
    out[name] = {
        "losses": [r["loss"] for r in history.split("train")],
        "test": evaluate(state, data.x_test, data.y_test),
        "sha": params_sha256(state.params),
        "mesh": dict(state.params["Conv_0"]["kernel"].sharding.mesh.shape),
        # a last batch of 5 of 37 examples, padded to 8 and masked, on 4 devices ...
        "odd_sharded": evaluate(state, data.x_test[:37], data.y_test[:37], batch_size=8),
        # ... and the same on one device, in one batch
        "odd_single": evaluate(local, data.x_test[:37], data.y_test[:37], batch_size=512),
    }
print(json.dumps(out))
"""


@pytest.fixture(scope="session")
def one_vs_four(tmp_path_factory):
    return computed_once(
        tmp_path_factory,
        "one_vs_four",
        lambda: json.loads(run_python(ONE_VS_FOUR, devices=4).strip().splitlines()[-1]),
    )


def test_four_devices_train_like_one(one_vs_four):
    one, four = one_vs_four["one"], one_vs_four["four"]
    assert one["mesh"] == {"data": 1} and four["mesh"] == {"data": 4}
    # Per-step losses over the global batch: equal to float rounding before training
    # amplifies it (BatchNorm statistics, dropout masks and the mean are the global ones).
    np.testing.assert_allclose(four["losses"][:20], one["losses"][:20], rtol=1e-4)
    assert abs(four["test"]["accuracy"] - one["test"]["accuracy"]) <= 0.01
    assert one["test"]["accuracy"] > 0.85  # it learned: the 1-point bound means something


def test_four_devices_rerun_is_bit_identical(one_vs_four):
    assert one_vs_four["four"]["sha"] == one_vs_four["four_again"]["sha"]
    assert one_vs_four["four"]["losses"] == one_vs_four["four_again"]["losses"]


def test_sharded_evaluation_pads_and_masks_the_last_batch(one_vs_four):
    for run in ("one", "four"):
        sharded, single = one_vs_four[run]["odd_sharded"], one_vs_four[run]["odd_single"]
        assert sharded["accuracy"] == single["accuracy"]  # every one of the 37 counted once
        assert sharded["loss"] == pytest.approx(single["loss"], rel=1e-5)


#: ONE_VS_FOUR for an NNX model (the preset's NNX twin: BatchNorm and dropout state in
#: the module), shorter: 1 device, 4, 4 again.
NNX_ONE_VS_FOUR = """
import json, jax
from flax import nnx
from jaxconv.data import load_dataset
from jaxconv.models.nnx import CNN
from jaxconv.train import fit, make_optimizer, params_sha256

data = load_dataset("digits")
model = CNN(channels=(8, 16), dropout=0.2, input_shape=(8, 8, 1), rngs=nnx.Rngs(0))
out = {}
for name, devices in (("one", 1), ("four", 4), ("four_again", 4)):
    state, history = fit(model, data, make_optimizer("adam", 3e-3), max_steps=40,
                         batch_size=32, eval_every=1, progress=False, devices=devices)
    out[name] = {"losses": [r["loss"] for r in history.split("train")],
                 "sha": params_sha256(state.params),
                 "mesh": dict(state.params["Conv_0"]["kernel"].sharding.mesh.shape)}
print(json.dumps(out))
"""


def test_an_nnx_model_on_four_devices_trains_like_on_one():
    runs = json.loads(run_python(NNX_ONE_VS_FOUR, devices=4).strip().splitlines()[-1])
    assert runs["one"]["mesh"] == {"data": 1} and runs["four"]["mesh"] == {"data": 4}
    np.testing.assert_allclose(runs["four"]["losses"][:20], runs["one"]["losses"][:20], rtol=1e-4)
    assert runs["four"]["sha"] == runs["four_again"]["sha"]
    assert runs["four"]["losses"] == runs["four_again"]["losses"]


#: Each backend's conv, transposed conv and pooling on a batch sharded over 2 devices
#: (kernel replicated), values and gradients, against lax on one device.
BACKENDS_SHARDED = """
import json, jax, jax.numpy as jnp, numpy as np
import jaxconv
from jaxconv.train import parallel

mesh = parallel.data_mesh("all")
rng = np.random.default_rng(0)
x = rng.normal(size=(4, 9, 9, 3)).astype(np.float32)
k = rng.normal(size=(3, 3, 3, 5)).astype(np.float32)
kt = rng.normal(size=(4, 4, 5, 3)).astype(np.float32)

def loss(x, k, kt, backend):
    y = jax.nn.relu(jaxconv.conv(x, k, padding="SAME", backend=backend))
    y = jaxconv.max_pool(y, 2, stride=1, backend=backend)
    z = jaxconv.conv_transpose(y, kt, stride=2, padding=1, backend=backend)
    return jnp.sum(z**2), z

grad = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)
(_, ref), ref_grads = jax.jit(grad, static_argnums=3)(x, k, kt, "lax")
xs = parallel.shard_batch(x, mesh, len(x))
ks, kts = parallel.replicate((k, kt), mesh)
out = {}
for backend in jaxconv.backends():
    (_, z), grads = jax.jit(grad, static_argnums=3)(xs, ks, kts, backend)
    out[backend] = {
        "sharding": str(z.sharding.spec),
        "value": float(np.max(np.abs(np.asarray(z) - np.asarray(ref)))),
        "grads": [float(np.max(np.abs(np.asarray(g) - np.asarray(r))) / np.max(np.abs(r)))
                  for g, r in zip(grads, ref_grads)],
        "scale": float(np.max(np.abs(np.asarray(ref)))),
    }
print(json.dumps(out))
"""


def test_every_backend_under_sharding():
    out = json.loads(run_python(BACKENDS_SHARDED, devices=2).strip().splitlines()[-1])
    assert set(out) == {"lax", "window", "fft", "winograd", "auto"}
    for backend, r in out.items():
        assert r["sharding"] in ("P('data',)", "PartitionSpec('data',)"), (backend, r)
        assert r["value"] <= 1e-4 * r["scale"], (backend, r)
        assert max(r["grads"]) <= 1e-4, (backend, r)


TINY = [
    "data=digits",
    "model=cnn2d",
    "model.channels=[8,16]",
    "trainer.batch_size=32",
    "trainer.plots=false",
    "trainer.progress=false",
]


def test_cli_refuses_a_batch_the_devices_do_not_divide(tmp_path):
    for args, expected in (
        (["trainer.batch_size=30"], "trainer.batch_size (=30) must be divisible by the "
         "number of devices (=4)"),
        (["trainer.devices=8"], "trainer.devices (=8) must be 'all' or at most the 4 local"),
    ):  # fmt: skip
        run_dir = tmp_path / "run"
        args = [*TINY, "trainer.max_steps=5", f"hydra.run.dir={run_dir}", *args]
        proc = cli(args, tmp_path, timeout=300, env=simulated_devices_env(4))
        assert proc.returncode == 2, proc.stderr[-2000:]
        lines = proc.stderr.strip().splitlines()
        assert lines == [f"jaxconv-train: error: {lines[-1].split('error: ', 1)[1]}"], lines
        assert expected in lines[0]
        assert not run_dir.exists()  # refused: nothing written


#: The "four" run of ONE_VS_FOUR again, with checkpoints in ``sys.argv[1]`` (resumed
#: from them when ``sys.argv[2]`` is "resume"); checkpointing does not change the numbers.
FOUR_WITH_CHECKPOINTS = """
import sys, jax
from jaxconv.data import load_dataset
from jaxconv.models import CNN
from jaxconv.train import fit, make_optimizer, params_sha256

data = load_dataset("digits")
model = CNN(channels=(8, 16), dropout=0.2, num_classes=10)
state, _ = fit(model, data, make_optimizer("adam", 3e-3), max_steps=200, batch_size=32,
               eval_every=1, progress=False, devices=4, run_dir=sys.argv[1],
               checkpoint_every=50, resume=sys.argv[2] == "resume")
print(params_sha256(state.params))
"""


@pytest.mark.slow
def test_sigkill_and_resume_on_four_devices_equals_the_uninterrupted_run(one_vs_four, tmp_path):
    import subprocess
    import sys

    run_dir = tmp_path / "killed"
    command = [sys.executable, "-c", FOUR_WITH_CHECKPOINTS, str(run_dir)]
    proc = subprocess.Popen(
        [*command, "fresh"],
        env=simulated_devices_env(4),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_checkpoint(run_dir, 100)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL  # killed mid-run, not finished
    assert 100 <= max(int(p.name) for p in (run_dir / "checkpoints" / "last").iterdir()) < 200
    resumed = subprocess.run(
        [*command, "resume"],
        env=simulated_devices_env(4),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.split()[-1] == one_vs_four["four"]["sha"]
    metrics = _numbers(run_dir / "metrics.csv")
    train = [loss for _, split, loss, _ in metrics if split == "train"]
    assert train == one_vs_four["four"]["losses"]  # every step's loss, before and after


def _numbers(path):
    from jaxconv.train import read_metrics

    return [(r["step"], r["split"], r["loss"], r["accuracy"]) for r in read_metrics(path)]


@pytest.mark.parametrize("value", [0, -1, "two"])
def test_a_devices_value_that_cannot_be_is_refused_before_any_device(hydra_compose, value):
    from jaxconv.app.errors import ConfigError
    from jaxconv.app.validate import validate

    with pytest.raises(ConfigError, match=r"^trainer.devices \(=.*\) must be 'all' or an int"):
        validate(hydra_compose([f"trainer.devices={value}"]))
