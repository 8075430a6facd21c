"""A two-second tour: the seed examples, and every backend agreeing on one layer."""

from __future__ import annotations

import time

import jax
import numpy as np

import jaxconv


def _time(fn, *args, repeats: int = 5) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    print("jaxconv", jaxconv.__version__, "on", jax.devices()[0].device_kind)
    a, v = [1.0, 2, 3, 4, 5], [1.0, 1, 1]
    print(f"convolve({a}, {v}) =", jaxconv.convolve(a, v).tolist())
    image = np.arange(25.0).reshape(5, 5)
    sobel = np.array([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])
    print(
        "correlate(5x5 ramp, 3x3 Sobel, 'valid') =",
        jaxconv.correlate(image, sobel, "valid").tolist(),
    )

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 32, 32, 32)).astype(np.float32)
    k = rng.normal(size=(3, 3, 32, 32)).astype(np.float32)
    print("\nconv 16x32x32x32 -> 32, 3x3, SAME, forward (jit, median of 5):")
    ref = None
    for backend in jaxconv.backends():
        f = jax.jit(lambda x, k, b=backend: jaxconv.conv(x, k, padding="SAME", backend=b))
        seconds = _time(f, x, k)
        y = np.asarray(f(x, k))
        ref = y if ref is None else ref
        print(
            f"  {backend:7s} {seconds * 1e3:7.2f} ms   max "
            f"|diff| vs lax: {np.abs(y - ref).max():.1e}"
        )


if __name__ == "__main__":
    main()
