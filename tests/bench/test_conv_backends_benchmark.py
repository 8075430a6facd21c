"""The backend benchmark's own logic (not its timings): the "auto picks" label, read off
a trace of what ``auto`` runs, and the multiply-add count its GFLOP/s columns use."""

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv

conv_module = importlib.import_module("jaxconv.ops.conv")  # the module, not the function


def _benchmark():
    path = Path(__file__).parents[2] / "benchmarks" / "conv_backends.py"
    spec = importlib.util.spec_from_file_location("conv_backends_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "x_shape,k_shape,kw,plan",
    [
        # the decoder layer: its four phases are one stride-1 convolution on window
        (
            (64, 7, 7, 64),
            (4, 4, 64, 32),
            dict(transpose=True, stride=2, padding=1),
            "sub-pixel: window",
        ),
        # one output channel: XLA's own transposed convolution
        ((64, 14, 14, 32), (4, 4, 32, 1), dict(transpose=True, stride=2, padding=1), "lax"),
        ((64, 32, 32, 32), (3, 3, 16, 32), dict(padding="SAME", groups=2), "per group: 2 x lax"),
        ((64, 8, 8, 128), (3, 3, 16, 128), dict(padding="SAME", groups=8), "per group: 8 x lax"),
        ((64, 14, 14, 32), (4, 4, 32, 64), dict(stride=2, padding=1), "space to depth: window"),
        ((64, 32, 32, 64), (3, 3, 64, 64), dict(padding="SAME"), "winograd"),
        ((64, 32, 32, 32), (1, 1, 32, 64), {}, "window"),
    ],
)
def test_auto_plan_names_the_form_and_the_backends(on_cpu, x_shape, k_shape, kw, plan):
    cb = _benchmark()
    x, k = jnp.zeros(x_shape, jnp.float32), jnp.zeros(k_shape, jnp.float32)
    before = conv_module.plan
    assert cb.auto_plan(cb.layer_op(kw), x, k) == plan
    assert conv_module.plan is before  # put back
    # the plan explain_backend derives before running agrees with the one the trace saw
    explained = jaxconv.ops.explain_backend(x, k, **kw)
    inner = explained.inner or explained
    label = f"{cb.FORMS[explained.form]}: " if explained.form in cb.FORMS else ""
    count = int(kw.get("groups", 1)) if explained.form == "by groups" else 1
    assert plan == label + (inner.backend if count == 1 else f"{count} x {inner.backend}")


def test_flops_of_a_transposed_layer_count_each_input_sample_once():
    cb = _benchmark()
    op = cb.layer_op(dict(transpose=True, stride=2, padding=1))
    x, k = jnp.zeros((2, 7, 7, 4), jnp.float32), jnp.zeros((4, 4, 4, 3), jnp.float32)
    out = jax.eval_shape(lambda x, k: op(x, k, "lax"), x, k).shape
    assert out == (2, 14, 14, 3)
    # each of the 2*7*7 input positions meets every tap and channel pair once, whatever
    # the stride: 4x fewer than the same kernel as a stride-1 convolution over the output
    assert cb.flops(x.shape, k.shape, out, transpose=True) == 2 * 98 * 16 * 4 * 3
    assert cb.flops(x.shape, k.shape, out) == 4 * cb.flops(x.shape, k.shape, out, transpose=True)
    assert np.isclose(cb.flops((2, 8, 8, 4), (3, 3, 4, 5), (2, 8, 8, 5)), 2 * 128 * 9 * 4 * 5)
