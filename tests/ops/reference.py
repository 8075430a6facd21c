"""Straightforward numpy references for conv and pooling (loops over output positions).

Deliberately independent of jaxconv: no shared helpers, the formulas written out.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

NP_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def conv(x, k, stride, pads, dilation, input_dilation, groups, modes=None):
    """Channels-last cross-correlation. pads: (lo, hi) per axis, already resolved."""
    x = np.asarray(x, np.float64)
    k = np.asarray(k, np.float64)
    n = x.ndim - 2
    modes = modes or ["zeros"] * n
    # input dilation: zeros between samples
    shape = (
        [x.shape[0]]
        + [(s - 1) * d + 1 for s, d in zip(x.shape[1:-1], input_dilation)]
        + [x.shape[-1]]
    )
    xd = np.zeros(shape)
    xd[(slice(None), *(slice(None, None, d) for d in input_dilation), slice(None))] = x
    for axis, ((lo, hi), mode) in enumerate(zip(pads, modes)):
        widths = [(0, 0)] * xd.ndim
        widths[axis + 1] = (lo, hi)
        xd = np.pad(xd, widths, mode=NP_MODE[mode])
    ksize = k.shape[:n]
    cin_g, cout = k.shape[-2], k.shape[-1]
    cout_g = cout // groups
    out = [
        (p - (ks - 1) * d - 1) // s + 1
        for p, ks, d, s in zip(xd.shape[1:-1], ksize, dilation, stride)
    ]
    y = np.zeros((x.shape[0], *out, cout))
    for pos in itertools.product(*(range(o) for o in out)):
        for tap in itertools.product(*(range(ks) for ks in ksize)):
            src = tuple(p * s + t * d for p, s, t, d in zip(pos, stride, tap, dilation))
            v = xd[(slice(None), *src, slice(None))]  # (N, C)
            for g in range(groups):
                xs = v[:, g * cin_g : (g + 1) * cin_g]
                ws = k[(*tap, slice(None), slice(g * cout_g, (g + 1) * cout_g))]
                y[(slice(None), *pos, slice(g * cout_g, (g + 1) * cout_g))] += xs @ ws
    return y


def conv_transpose(y, k, stride, padding, output_padding, dilation, groups):
    """PyTorch ConvTranspose by scattering: every input sample adds k times it to the output."""
    y = np.asarray(y, np.float64)
    k = np.asarray(k, np.float64)  # (*ks, C_in, C_out_g)
    n = y.ndim - 2
    ksize = k.shape[:n]
    cin, cout_g = k.shape[-2], k.shape[-1]
    cin_g = cin // groups
    full = [
        (s - 1) * st + (ks - 1) * d + 1 + op
        for s, st, ks, d, op in zip(y.shape[1:-1], stride, ksize, dilation, output_padding)
    ]
    out = np.zeros((y.shape[0], *full, cout_g * groups))
    for pos in itertools.product(*(range(s) for s in y.shape[1:-1])):
        for tap in itertools.product(*(range(ks) for ks in ksize)):
            dst = tuple(p * st + t * d for p, st, t, d in zip(pos, stride, tap, dilation))
            for g in range(groups):
                v = y[(slice(None), *pos, slice(g * cin_g, (g + 1) * cin_g))]
                w = k[(*tap, slice(g * cin_g, (g + 1) * cin_g), slice(None))]
                out[(slice(None), *dst, slice(g * cout_g, (g + 1) * cout_g))] += v @ w
    crop = tuple(slice(lo, f - hi) for (lo, hi), f in zip(padding, full))
    return out[(slice(None), *crop, slice(None))]


def pool(x, kind, window, stride, padding, dilation, ceil_mode, count_include_pad=True, p=2.0):
    """PyTorch pooling semantics, written out per output position (channels-last)."""
    x = np.asarray(x, np.float64)
    sizes = x.shape[1:-1]
    out = []
    for L, k, s, pd, d in zip(sizes, window, stride, padding, dilation):
        e = (k - 1) * d + 1
        num = L + 2 * pd - e
        o = (math.ceil(num / s) if ceil_mode else num // s) + 1
        if ceil_mode and (o - 1) * s >= L + pd:
            o -= 1
        out.append(o)
    y = np.zeros((x.shape[0], *out, x.shape[-1]))
    for pos in itertools.product(*(range(o) for o in out)):
        vals, inside_pad = [], 0
        for tap in itertools.product(*(range(k) for k in window)):
            idx = tuple(
                q * s - pd + t * d for q, s, pd, t, d in zip(pos, stride, padding, tap, dilation)
            )
            if all(0 <= i < L for i, L in zip(idx, sizes)):
                vals.append(x[(slice(None), *idx, slice(None))])
                inside_pad += 1
            elif all(-pd <= i < L + pd for i, L, pd in zip(idx, sizes, padding)):
                inside_pad += 1
        if not vals:  # a dilated window that sees only padding
            empty = {"max": -np.inf, "min": np.inf, "lp": 0.0}
            fill = empty.get(kind, 0.0 if count_include_pad else np.nan)
            y[(slice(None), *pos, slice(None))] = fill
            continue
        vals = np.stack(vals)
        if kind == "max":
            r = vals.max(0)
        elif kind == "min":
            r = vals.min(0)
        elif kind == "avg":
            r = vals.sum(0) / (inside_pad if count_include_pad else len(vals))
        else:
            r = (vals**p).sum(0) ** (1 / p)
        y[(slice(None), *pos, slice(None))] = r
    return y


def adaptive(x, out, kind):
    x = np.asarray(x, np.float64)
    sizes = x.shape[1:-1]
    y = np.zeros((x.shape[0], *out, x.shape[-1]))
    for pos in itertools.product(*(range(o) for o in out)):
        sl = tuple(slice((i * L) // o, -(-((i + 1) * L) // o)) for i, L, o in zip(pos, sizes, out))
        block = x[(slice(None), *sl, slice(None))].reshape(x.shape[0], -1, x.shape[-1])
        y[(slice(None), *pos, slice(None))] = block.max(1) if kind == "max" else block.mean(1)
    return y
