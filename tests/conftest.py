"""Test configuration: float64 is enabled so parity can be checked to 1e-10."""

import os

# Tests must see one CPU device unless a test module forces more (sharding
# tests run in a subprocess with XLA_FLAGS set).
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
