"""The ``auto`` policy as a table: a problem, and the backend expected on each platform.

Every row is a full :class:`ConvProblem` (the call sites build one per call), so no rule is
skipped for want of a size; ``platform`` is a field, so GPU and TPU choices are tested on
this CPU machine.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv
from jaxconv.ops import ConvProblem, explain_backend, select_backend
from jaxconv.ops.policy import explain, split_groups, subpixel


def P(
    kernel_size,
    cin,
    cout,
    *,
    groups=1,
    stride=1,
    batch=128,
    spatial=None,
    dtype="float32",
    dilation=1,
    input_dilation=1,
    transposed=False,
    phases=1,
):
    n = len(kernel_size)
    return dict(
        kernel_size=kernel_size,
        in_channels=cin,
        out_channels=cout,
        groups=groups,
        strides=(stride,) * n,
        dilation=(dilation,) * n,
        input_dilation=(input_dilation,) * n,
        batch=batch,
        spatial=spatial or (32,) * n,
        dtype=dtype,
        transposed=transposed,
        phases=phases,
    )


# (what, problem, expected on cpu, expected on gpu and tpu)
TABLE = [
    ("long multi-channel kernel", P((128,), 8, 8), "fft", "fft"),
    ("3x3, 8 channels, small batch", P((3, 3), 8, 8, batch=8), "lax", "lax"),
    ("long kernel, strided", P((128,), 8, 8, stride=2), "lax", "lax"),
    ("depthwise 3x3", P((3, 3), 1, 32, groups=32, stride=2), "window", "window"),
    ("one-channel 16-tap filter", P((16,), 1, 1, batch=1, spatial=(1000,)), "window", "fft"),
    ("one-channel 64-tap filter", P((64,), 1, 8, batch=1, spatial=(1000,)), "window", "fft"),
    ("one-channel 65-tap filter", P((65,), 1, 1, batch=1, spatial=(1000,)), "fft", "fft"),
    ("8 -> 8 channels, 32 taps", P((32,), 8, 8, batch=1), "window", "lax"),
    ("8 -> 8 channels, 64 taps", P((64,), 8, 8, batch=1), "fft", "fft"),
    ("8 -> 16 channels, 32 taps (128 channel pairs)", P((32,), 8, 16, batch=1), "lax", "lax"),
    ("one-channel 16-tap filter, dilated", P((16,), 1, 1, batch=1, dilation=2), "fft", "fft"),
    ("one-channel 7-tap filter", P((7,), 1, 1, batch=1), "lax", "lax"),
    ("RGB first layer", P((3, 3), 3, 32, batch=8), "window", "lax"),
    (
        "32 -> 64, 26x26, batch 128",
        P((3, 3), 32, 64, spatial=(26, 26), dtype="bfloat16"),
        "window",
        "lax",
    ),
    ("16 -> 16, 32x32, batch 128", P((3, 3), 16, 16), "lax", "lax"),
    (
        "64 -> 64, 8x8, batch 128, bfloat16",
        P((3, 3), 64, 64, spatial=(8, 8), dtype="bfloat16"),
        "lax",
        "lax",
    ),
    (
        "64 -> 64, 16x16, batch 16, bfloat16",
        P((3, 3), 64, 64, batch=16, spatial=(16, 16), dtype="bfloat16"),
        "lax",
        "lax",
    ),
    ("strided 3x3 16 -> 32", P((3, 3), 16, 32, stride=2), "window", "lax"),
    ("strided 1x1 shortcut", P((1, 1), 16, 32, stride=2), "window", "lax"),
    ("pointwise 1x1 64 -> 128, 8x8", P((1, 1), 64, 128, spatial=(8, 8)), "window", "lax"),
    ("pointwise 1x1, small batch", P((1, 1), 8, 8, batch=2, spatial=(4, 4)), "window", "lax"),
    ("1x1 to one channel", P((1, 1), 8, 1, batch=2, spatial=(4, 4)), "lax", "lax"),
    ("strided 3x3, batch 8", P((3, 3), 16, 32, stride=2, batch=8), "lax", "lax"),
    ("grayscale first layer", P((3, 3), 1, 32, spatial=(28, 28)), "window", "lax"),
    ("grayscale first layer, batch 8", P((3, 3), 1, 32, batch=8, spatial=(28, 28)), "lax", "lax"),
    ("one channel in and out, 3x3", P((3, 3), 1, 1, spatial=(28, 28)), "lax", "lax"),
    ("winograd 3x3 32 -> 32", P((3, 3), 32, 32), "winograd", "lax"),
    (
        "winograd 5x5 64 -> 64, one 64x64 image",
        P((5, 5), 64, 64, batch=1, spatial=(64, 64)),
        "winograd",
        "lax",
    ),
    (
        "winograd 3x3x3 float64",
        P((3, 3, 3), 32, 32, batch=8, spatial=(8, 8, 8), dtype="float64"),
        "winograd",
        "lax",
    ),
    ("16 channels: not winograd", P((3, 3), 16, 16), "lax", "lax"),
    ("1024 positions: not winograd", P((3, 3), 32, 32, batch=16, spatial=(8, 8)), "lax", "lax"),
    ("1-D 3-tap 64 -> 64: the big-batch rule", P((3,), 64, 64, spatial=(256,)), "window", "lax"),
    ("dilated 3x3 32 -> 32", P((3, 3), 32, 32, dilation=2), "lax", "lax"),
    (
        "half precision 32 -> 64: the big-batch rule",
        P((3, 3), 32, 64, dtype="bfloat16"),
        "window",
        "lax",
    ),
    ("strided 3x3 32 -> 32", P((3, 3), 32, 32, stride=2), "window", "lax"),
    (
        "MNIST-1D CNN strided layer, 40 positions",
        P((5,), 1, 25, stride=2, batch=100, spatial=(40,)),
        "lax",
        "lax",
    ),
    ("transposed stride-1 3x3 32 -> 32", P((3, 3), 32, 32, transposed=True), "lax", "lax"),
    (
        "transposed stride-2 4x4 64 -> 32 (its direct form: XLA's, where not sub-pixel)",
        P((4, 4), 64, 32, input_dilation=2, transposed=True),
        "lax",
        "lax",
    ),
    (
        "sub-pixel phases of a transposed 4x4 s2 64 -> 32",
        P((2, 2), 64, 128, spatial=(7, 7), transposed=True, phases=4),
        "window",
        "lax",
    ),
    (
        "grouped sub-pixel phases",
        P((2, 2), 8, 64, groups=4, spatial=(7, 7), transposed=True, phases=4),
        "lax",
        "lax",
    ),
    ("transposed, RGB", P((3, 3), 3, 8, input_dilation=2, transposed=True), "window", "lax"),
]


@pytest.mark.parametrize("what,problem,cpu,accelerator", TABLE, ids=[row[0] for row in TABLE])
def test_policy_table(what, problem, cpu, accelerator):
    assert select_backend(ConvProblem(**problem, platform="cpu")) == cpu
    for platform in ("gpu", "tpu"):
        assert select_backend(ConvProblem(**problem, platform=platform)) == accelerator


def test_every_pick_has_a_reason():
    for _, problem, _, _ in TABLE:
        backend, reason = explain(ConvProblem(**problem))
        assert backend in jaxconv.backends() and len(reason) > 20


def test_call_sites_describe_the_problem_they_run(on_cpu):
    """conv picks as the table says (the jaxpr shows the backend's own functions)."""
    assert jaxconv.backends() == ("lax", "window", "fft", "winograd", "auto")
    x, k = np.zeros((96, 10, 10, 32), np.float32), np.zeros((3, 3, 32, 64), np.float32)
    auto = str(jax.make_jaxpr(lambda x, k: jaxconv.conv(x, k, backend="auto"))(x, k))
    assert "conv_general_dilated" not in auto and "_chunked_conv" not in auto
    assert "_input_transform" in auto and "f32[36,32,64]" in auto  # winograd's transformed kernel
    in_bf16 = jax.make_jaxpr(lambda x, k: jaxconv.conv(x, k, backend="auto"))(
        x.astype(jnp.bfloat16), k.astype(jnp.bfloat16)
    )
    assert "_chunked_conv" in str(in_bf16)  # window's im2col
    small = jax.make_jaxpr(lambda x, k: jaxconv.conv(x, k, backend="auto"))(x[:8], k[..., :16])
    assert "conv_general_dilated" in str(small)


@pytest.mark.parametrize(
    "cout,groups,stride,dilation,platform,expected",
    [
        (32, 1, 2, 1, "cpu", True),  # the decoder layer
        (8, 1, 2, 1, "cpu", True),
        (4, 1, 2, 1, "cpu", False),  # few output channels: XLA's direct form is faster
        (1, 1, 2, 1, "cpu", False),
        (32, 4, 2, 1, "cpu", True),  # 8 per group
        (32, 8, 2, 1, "cpu", False),  # 4 per group
        (32, 1, 1, 1, "cpu", False),  # stride 1: nothing to decompose
        (32, 1, 2, 2, "cpu", False),  # dilated strided axes: mostly zero sub-kernels
        (32, 1, 2, 1, "gpu", False),  # cuDNN's transposed convolution
        (32, 1, 2, 1, "tpu", False),
    ],
)
def test_subpixel_decision(cout, groups, stride, dilation, platform, expected):
    problem = ConvProblem(
        **P((4, 4), 64 // groups, cout, groups=groups, dilation=dilation, input_dilation=stride),
        platform=platform,
    )
    assert subpixel(dataclasses.replace(problem, transposed=True)) is expected
    assert subpixel(problem) is False  # a forward convolution is never decomposed


def test_grouped_layers_run_group_by_group_under_auto():
    # 2 groups of 4 -> 3 channels: auto splits them into two ungrouped convolutions,
    # which give XLA's grouped convolution's values and gradients
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 7, 7, 8)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(3, 3, 4, 6)), jnp.float32)
    run = lambda backend: (
        lambda x, k: jaxconv.conv(
            x, k, groups=2, padding=1, padding_mode="reflect", backend=backend
        )
    )
    y, vjp = jax.vjp(run("auto"), x, k)
    y_ref, vjp_ref = jax.vjp(run("lax"), x, k)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(vjp(y_ref), vjp_ref(y_ref)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    eqns = jax.make_jaxpr(run("auto"))(x, k).jaxpr.eqns
    assert all(e.params.get("feature_group_count", 1) == 1 for e in eqns)
    problem = ConvProblem(kernel_size=(3, 3), in_channels=4, out_channels=6, groups=2)
    assert split_groups(problem)
    assert not split_groups(dataclasses.replace(problem, platform="gpu"))
    assert not split_groups(dataclasses.replace(problem, in_channels=1, out_channels=2))


def test_explain_backend_takes_conv_arguments_and_prints_the_whole_plan():
    x, k = jnp.ones((8, 16, 16, 64)), jnp.ones((4, 4, 64, 64))
    strided = explain_backend(x, k, stride=2, padding=1)
    assert (strided.form, strided.inner.form, strided.backend) == (
        "space to depth",
        "direct",
        "window",
    )
    text = str(strided).splitlines()
    assert text[0].startswith("space to depth: ") and text[1].startswith("  window: ")
    assert text[2].startswith("    window method batch-chunked im2col: ")
    assert str(explain_backend(x, k, stride=2, padding=1, backend="lax")).startswith("lax: ")
    up = explain_backend(x, jnp.ones((4, 4, 64, 8)), transpose=True, stride=2, padding=1)
    assert up.form == "sub-pixel" and up.inner.problem.phases == 4
    assert explain_backend(jnp.ones((0, 8, 8, 4)), jnp.ones((3, 3, 4, 4))).backend == "lax"
    with pytest.raises(ValueError, match="`groups` \\(=3\\) must divide in_channels"):
        explain_backend(x, k, groups=3)


def test_the_window_backend_runs_the_method_the_plan_names(on_cpu):
    """Each window method's rule, and the jaxpr of the window backend showing it."""
    from jaxconv.ops.policy import window_method

    cases = [
        (P((16,), 2, 2, spatial=(64,)), "block-Toeplitz products"),
        (P((1, 1), 8, 16, spatial=(8, 8)), "one matrix product"),
        (P((3, 3), 8, 16, spatial=(8, 8)), "batch-chunked im2col"),
        (P((3, 3), 1, 8, groups=8, spatial=(8, 8)), "shift and add"),
        (P((3, 3), 8, 16, stride=2, spatial=(8, 8)), "tap-chunked im2col"),
    ]
    for problem, method in cases:
        assert window_method(ConvProblem(**problem))[0] == method, problem
    x, k = jnp.ones((2, 8, 8, 8)), jnp.ones((1, 1, 8, 16))
    jaxpr = str(jax.make_jaxpr(lambda x, k: jaxconv.conv(x, k, backend="window"))(x, k))
    assert "dot_general" in jaxpr and "conv_general_dilated" not in jaxpr


def test_pooling_follows_the_plans_pool_rules():
    from jaxconv.ops.policy import PoolProblem, plan_pool

    assert plan_pool(PoolProblem("max", (2, 2), (2, 2), (1, 1))).backend == "window"
    assert plan_pool(PoolProblem("max", (3, 3), (2, 2), (1, 1))).backend == "lax"  # overlapping
    assert plan_pool(PoolProblem("sum", (2, 2), (2, 2), (1, 1))).backend == "lax"
    assert plan_pool(PoolProblem("max", (2, 2), (2, 2), (1, 1), platform="gpu")).backend == "lax"
