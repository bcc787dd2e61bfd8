"""noisegroup.malloc: with the settings, XLA:CPU's per-call temporary buffer is reused, not page-faulted in anew."""

import os
import subprocess
import sys

import pytest

from noisegroup import malloc

# A jitted call whose ~128 MB intermediate is XLA's temporary buffer; minor page faults over 30 calls after
# 6 warm-up calls (the heap grows to its working size in the first few). 30, not 10: the tuned heap still grows
# now and then, a one-off of up to ~4 x 32,768 pages in a busy test run, which 10 calls' bound did not absorb.
PROBE = """
from noisegroup import malloc
tuned = malloc.reuse_freed_memory()  # as the entry points do, before JAX starts
import resource, jax, jax.numpy as jnp
f = jax.jit(lambda x, w: ((x @ w) ** 2) @ w.T)  # [4096, 8192] intermediate
x, w = jnp.ones((4096, 64)), jnp.ones((64, 8192)) / 64
for _ in range(6):
    f(x, w).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    f(x, w).block_until_ready()
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def probe(mode: str) -> tuple[str, int]:
    env = {**os.environ, malloc.ENV_VAR: mode, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    tuned, faults = out.stdout.split()
    return tuned, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings apply on Linux only")
def test_settings_stop_the_temporary_buffer_faulting_in_at_every_call():
    tuned, faults = probe("reuse")
    default_tuned, default_faults = probe("default")
    assert (tuned, default_tuned) == ("True", "False")
    pages = 30 * 4096 * 8192 * 4 // 4096  # 30 calls x 128 MB in 4 KiB pages
    assert default_faults > pages // 2, default_faults  # glibc's defaults: mmap and munmap at every call
    # Seen: 0 in most runs; now and then the heap grows once to four times more (32,768 pages each).
    assert faults < default_faults // 3, (faults, default_faults)


def test_bad_mode_is_named(monkeypatch):
    monkeypatch.setenv(malloc.ENV_VAR, "fast")
    with pytest.raises(ValueError, match="'fast'"):
        malloc.reuse_freed_memory()
