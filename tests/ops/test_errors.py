"""Bad input raises ValueError/TypeError naming the argument, before any maths."""

import jax.numpy as jnp
import pytest

import jaxconv

X = jnp.ones((2, 8, 8, 4))
K = jnp.ones((3, 3, 4, 6))


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: jaxconv.conv(jnp.ones((8, 8)), K), ValueError, r"`x` has shape \(8, 8\)"),
        (lambda: jaxconv.conv(X, jnp.ones((3, 3))), ValueError, r"`kernel` must have rank >= 3"),
        (
            lambda: jaxconv.conv(X, jnp.ones((3, 3, 5, 6))),
            ValueError,
            r"`x` must have 5 channels, got 4",
        ),
        (
            lambda: jaxconv.conv(X, jnp.ones((3, 3, 4, 6)), groups=3),
            ValueError,
            r"`groups` \(=3\) must divide in_channels \(=4\)",
        ),
        (
            lambda: jaxconv.conv(X, jnp.ones((3, 3, 2, 5)), groups=2),
            ValueError,
            r"`groups` \(=2\) must divide out_channels \(=5\)",
        ),
        (lambda: jaxconv.conv(X, K, groups=0), ValueError, r"`groups` \(=0\) must be >= 1"),
        (lambda: jaxconv.conv(X, K, groups=1.5), TypeError, r"`groups` \(=1.5\) must be an int"),
        (lambda: jaxconv.conv(X, K, stride=0), ValueError, r"`stride` \(=0\) must be >= 1"),
        (
            lambda: jaxconv.conv(X, K, stride=(1, 2, 3)),
            ValueError,
            r"`stride` .* one entry per spatial axis \(2\)",
        ),
        (lambda: jaxconv.conv(X, K, stride="2"), TypeError, r"`stride` \(='2'\) must be an int"),
        (lambda: jaxconv.conv(X, K, dilation=-1), ValueError, r"`dilation` \(=-1\) must be >= 1"),
        (
            lambda: jaxconv.conv(X, K, input_dilation=0),
            ValueError,
            r"`input_dilation` \(=0\) must be >= 1",
        ),
        (
            lambda: jaxconv.conv(X, K, padding="HALF"),
            ValueError,
            r"`padding` \(='HALF'\) must be one of",
        ),
        (lambda: jaxconv.conv(X, K, padding=-1), ValueError, r"`padding` \(=-1\) must be >= 0"),
        (
            lambda: jaxconv.conv(X, K, padding=[(1, 2, 3), 1]),
            TypeError,
            r"`padding` .* \(lo, hi\) pairs",
        ),
        (
            lambda: jaxconv.conv(X, K, padding_mode="mirror"),
            ValueError,
            r"`padding_mode` \(='mirror'\) must be one of",
        ),
        (
            lambda: jaxconv.conv(X, K, padding_mode=("zeros",)),
            ValueError,
            r"`padding_mode` .* one entry per spatial axis",
        ),
        (
            lambda: jaxconv.conv(X, K, backend="cudnn"),
            ValueError,
            r"`backend` \(='cudnn'\) must be one of",
        ),
        (
            lambda: jaxconv.conv(X, K, layout="NCHW"),
            ValueError,
            r"`layout` \(='NCHW'\) must be one of",
        ),
        (
            lambda: jaxconv.conv(X, K, padding=8, padding_mode="reflect"),
            ValueError,
            r"`padding` \(=8\) on spatial axis 0 must be smaller "
            r"than the input size \(=8\) for padding_mode='reflect'",
        ),
        (
            lambda: jaxconv.conv(X, K, padding=9, padding_mode="circular"),
            ValueError,
            r"at most the input size \(=8\) for padding_mode='circular'",
        ),
        (
            lambda: jaxconv.conv(jnp.ones((1, 2, 2, 4)), K),
            ValueError,
            r"`kernel` \(effective size 3 with dilation\) "
            r"is larger than the padded input \(size 2\)",
        ),
        (
            lambda: jaxconv.conv(X, K, dilation=4),
            ValueError,
            r"effective size 9 .* larger than the padded input \(size 8\)",
        ),
        (lambda: jaxconv.conv(X, "kernel"), TypeError, r"`kernel` must be an array"),
        (
            lambda: jaxconv.conv_transpose(X, jnp.ones((3, 3, 5, 2))),
            ValueError,
            r"`kernel` has 5 input channels but `y` has 4",
        ),
        (
            lambda: jaxconv.conv_transpose(X, K, stride=2, output_padding=2),
            ValueError,
            r"`output_padding` \(=2\) on spatial axis 0 must be "
            r"smaller than either `stride` \(=2\) or `dilation` \(=1\)",
        ),
        (
            lambda: jaxconv.conv_transpose(X, K, output_padding=-1),
            ValueError,
            r"`output_padding` \(=-1\) must be >= 0",
        ),
        (
            lambda: jaxconv.conv_transpose(X, K, groups=3),
            ValueError,
            r"`groups` \(=3\) must divide in_channels \(=4\)",
        ),
        (
            lambda: jaxconv.conv_transpose(jnp.ones((1, 1, 4)), jnp.ones((1, 4, 1)), padding=1),
            ValueError,
            r"`padding` \(=1\) leaves an empty output",
        ),
        (
            lambda: jaxconv.convolve([1.0, 2], [[1.0]]),
            ValueError,
            r"`a` \(shape \(2,\)\) and `v` \(shape \(1, "
            r"1\)\) must have the same number of dimensions",
        ),
        (
            lambda: jaxconv.convolve([1.0, 2], [1.0], mode="middle"),
            ValueError,
            r"`mode` \(='middle'\) must be one of",
        ),
        (
            lambda: jaxconv.convolve(jnp.ones((3, 1)), jnp.ones((1, 3)), "valid"),
            ValueError,
            r"mode='valid' needs one of `a`",
        ),
        (lambda: jaxconv.convolve([], [1.0]), ValueError, r"`a` must not be empty"),
        (lambda: jaxconv.correlate(1.0, 2.0), ValueError, r"at least one dimension"),
        (
            lambda: jaxconv.convolve([1.0], [1.0], backend="gpu"),
            ValueError,
            r"`backend` \(='gpu'\)",
        ),
        (lambda: jaxconv.max_pool(jnp.ones((4, 4)), 2), ValueError, r"`x` must have rank >= 3"),
        (lambda: jaxconv.max_pool(X, 0), ValueError, r"`window` \(=0\) must be >= 1"),
        (lambda: jaxconv.max_pool(X, 2, stride=0), ValueError, r"`stride` \(=0\) must be >= 1"),
        (
            lambda: jaxconv.max_pool(X, 3, padding=2),
            ValueError,
            r"`padding` \(=2\) on spatial axis 0 must be at most half the effective window \(=3\)",
        ),
        (
            lambda: jaxconv.max_pool(X, 9),
            ValueError,
            r"`window` \(effective size 9\) is larger than the padded input \(size 8\)",
        ),
        (
            lambda: jaxconv.max_pool(X, 2, ceil_mode=1),
            TypeError,
            r"`ceil_mode` \(=1\) must be a bool",
        ),
        (
            lambda: jaxconv.avg_pool(X, 2, backend="fast"),
            ValueError,
            r"`backend` \(='fast'\) must be one of",
        ),
        (
            lambda: jaxconv.avg_pool(X, 2, count_include_pad="yes"),
            TypeError,
            r"`count_include_pad`",
        ),
        (
            lambda: jaxconv.lp_pool(X, 2, norm_type=0),
            ValueError,
            r"`norm_type` \(=0\) must be a positive finite number",
        ),
        (
            lambda: jaxconv.adaptive_avg_pool(X, (2, 2, 2)),
            ValueError,
            r"`output_size` .* one int \(or None\) per spatial axis \(2\)",
        ),
        (
            lambda: jaxconv.adaptive_max_pool(X, 0),
            ValueError,
            r"`output_size` \(=0\) entries must be ints >= 1",
        ),
        (lambda: jaxconv.global_avg_pool(X, layout="nhwc"), ValueError, r"`layout` \(='nhwc'\)"),
        (lambda: jaxconv.pad(X, 1, mode="edge"), ValueError, r"`mode` \(='edge'\) must be one of"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_errors_raise_at_trace_time_under_jit():
    import jax

    f = jax.jit(lambda x: jaxconv.conv(x, K, groups=3))
    with pytest.raises(ValueError, match=r"`groups` \(=3\)"):
        f(X)
