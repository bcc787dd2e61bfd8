"""Test set-up: four fake CPU devices for the mesh tests (must be set before JAX is imported), and the fixture of
exact float32 products that modules comparing formulations use (`pytestmark = pytest.mark.usefixtures(...)`)."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()

import jax  # noqa: E402  (after XLA_FLAGS)
import pytest  # noqa: E402


@pytest.fixture
def highest_precision():
    """Exact float32 products while a test compares formulations or float64 oracles (a fixture: no session-wide
    state)."""
    with jax.default_matmul_precision("highest"):
        yield
