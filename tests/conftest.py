"""Test set-up: four fake CPU devices for the mesh tests (must be set before JAX is imported)."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
