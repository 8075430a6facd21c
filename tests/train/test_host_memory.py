"""reuse_host_memory: XLA's per-step scratch stops costing fresh pages (page faults)."""

import subprocess
import sys

import pytest

from jaxconv.train import reuse_host_memory
from jaxconv.train.host_memory import _mallopt

# A jitted function whose compiled scratch buffer is ~100 MiB (above glibc's largest mmap
# threshold, so by default it is mapped and unmapped on every call); prints the minor page
# faults of a call, the median of ten after the allocator has settled (it may still grow
# the heap now and then while threads interleave their requests differently).
PROGRAM = """
import resource, sys
if sys.argv[1] == "reuse":
    from jaxconv.train import reuse_host_memory
    assert reuse_host_memory()
import jax, jax.numpy as jnp
@jax.jit
def f(x):
    a = jnp.sin(x)
    b = jnp.cos(x).T
    c = jnp.concatenate([a, b, a * b], axis=1)
    return jnp.flip(jnp.cumsum(c, axis=0), 1).sum()
x = jnp.linspace(0.0, 1.0, 2048 * 2048, dtype=jnp.float32).reshape(2048, 2048)
assert f.lower(x).compile().memory_analysis().temp_size_in_bytes > 64 * 2**20
faults = []
for _ in range(20):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sorted(faults[10:])[5])
"""

glibc = pytest.mark.skipif(_mallopt() is None, reason="needs Linux with glibc")


@glibc
def test_settings_apply_and_repeat():
    assert reuse_host_memory() is True
    assert reuse_host_memory() is True


def _faults_per_call(mode: str) -> float:
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode],
        capture_output=True,
        text=True,
        timeout=300,
        env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return float(proc.stdout.split()[-1])


@glibc
def test_scratch_memory_is_reused_instead_of_faulted_in_again():
    default, reused = _faults_per_call("default"), _faults_per_call("reuse")
    # ~100 MiB of scratch is ~25,000 pages of 4 KiB: by default most are faulted in anew
    # on every call; with the setting the heap keeps them.
    assert default > 5000, default
    assert reused < default / 20, (reused, default)


def test_backend_started_reads_jax_truthfully():
    """backend_started() reads JAX's private backend table; if JAX moves it, the answer
    falls back to True (the conservative one) and this test fails loudly."""
    code = (
        "from jax._src import xla_bridge\n"
        "assert hasattr(xla_bridge, '_backends'), 'jax moved xla_bridge._backends'\n"
        "from jaxconv.train.host_memory import backend_started\n"
        "before = backend_started()\n"
        "import jax.numpy as jnp; jnp.ones(2).block_until_ready()\n"
        "print(before, backend_started())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["False", "True"]
