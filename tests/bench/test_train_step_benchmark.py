"""The training-step benchmark's own logic (not its timings): the "(same program)" check."""

import importlib.util
import sys
from functools import partial
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv
from jaxconv import nn as jnn


def _benchmark():
    path = Path(__file__).parents[2] / "benchmarks" / "train_step.py"
    spec = importlib.util.spec_from_file_location("train_step_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses (Flax modules) look themselves up there
    spec.loader.exec_module(module)
    return module


def test_same_program_check_tells_identical_steps_apart():
    ts = _benchmark()
    net_cls, _, shape = ts.NETS["mnist1d"]
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(4, *shape)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, 4))

    def program(backend):
        conv = partial(jnn.Conv, backend=backend)
        pool = partial(jaxconv.max_pool, window=2, backend=backend)
        run, scratch, text = ts.jax_step(net_cls, conv, pool, ts.jaxconv_deconv(backend), x, y)
        assert np.isfinite(float(run())) and scratch is not None
        return text

    lax_program = program("lax")
    assert "metadata" not in lax_program and "ENTRY" in lax_program
    assert program("lax") == lax_program  # a second build of the same step
    # auto sends the MNIST-1D CNN's short 1-D kernels to lax on CPU: the very same program
    assert program("auto") == lax_program
    assert program("window") != lax_program


@pytest.mark.parametrize("name", ["autoencoder", "mobilenet"])
def test_new_networks_step_alike_on_auto_and_lax(name):
    # the networks of the transposed / depthwise / pointwise paths: auto (sub-pixel
    # transposed convolutions, window's depthwise and 1x1 layers) against XLA's own
    ts = _benchmark()
    net_cls, _, shape = ts.NETS[name]
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(4, *shape)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, 4))
    losses = {}
    for backend in ("lax", "auto"):
        conv = partial(jnn.Conv, backend=backend)
        pool = partial(jaxconv.max_pool, window=2, backend=backend)
        run, _, _ = ts.jax_step(net_cls, conv, pool, ts.jaxconv_deconv(backend), x, y)
        losses[backend] = [float(run()) for _ in range(3)]  # the loss before each update
    assert np.isfinite(losses["lax"]).all()
    np.testing.assert_allclose(losses["auto"], losses["lax"], rtol=1e-4)
    assert losses["lax"][2] != losses["lax"][0]  # the steps did update the parameters


def test_the_nnx_benchmark_runs_the_same_program_as_linen():
    """benchmarks/nnx_step.py's own logic: the NNX twin's step is the Linen step's
    program (instructions compared, names aside), and a step of another model is not."""
    import subprocess

    bench = Path(__file__).parents[2] / "benchmarks"
    proc = subprocess.run([sys.executable, "nnx_step.py", "--repeats", "1", "--nets", "mnist1d"],
                          cwd=bench, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = proc.stdout.strip().splitlines()[-1]
    assert row.startswith("| mnist1d (100) |") and row.endswith("| yes |"), row
    sys.path.insert(0, str(bench))
    try:
        from nnx_step import _ops
    finally:
        sys.path.remove(str(bench))
    assert _ops("%a.1 = f32[] add(%b.2, %c.3)") == _ops("%a.7 = f32[] add(%b.8, %c.9)")
    assert _ops("%a.1 = f32[] add(%b.2, %c.3)") != _ops("%a.1 = f32[] multiply(%b.2, %c.3)")
