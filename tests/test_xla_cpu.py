"""XLA:CPU's YNNPACK fusions: what `benchmarks.xla_cpu` switches, and the default's values against float64.

The project compiles with XLA's default (the fusions on), which `benchmarks.xla_cpu` measured fastest; these tests
check that the option the benchmark (and a user's `XLA_FLAGS`) uses does switch them, and that the training
gradients agree with float64 autodiff of XLA's plain convolutions with the fusions on and off (open reports say
the reduction fusion computes wrong values under jit in this jaxlib: jax-ml/jax#39103).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import train as train_configs
from noisegroup.engine import loop

FUSION = '"kind":"__ynn_fusion"'  # how a YNNPACK fusion shows in XLA:CPU's compiled program text
# XLA's default (None: no option) and the fusions off, as `benchmarks.xla_cpu` compiles them (not imported from
# there: a benchmark module sets the process's malloc options when imported).
YNN = {"ynn on": None, "ynn off": {"xla_cpu_experimental_ynn_fusion_type": ""}}
cpu_only = pytest.mark.skipif(jax.default_backend() != "cpu", reason="YNNPACK is XLA:CPU's")


def conv_weight_grad(x, w):
    """The weight gradient of sum(sin(conv(x, w))): a convolution, its gradient and a reduction."""
    def loss(w):
        conv = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(jnp.sin(conv))

    return jax.grad(loss)(w)


@cpu_only
def test_xla_fuses_by_default_and_the_empty_option_turns_the_fusions_off_per_program():
    x, w = jnp.ones((2, 16, 16, 32)), jnp.ones((3, 3, 32, 32))  # large enough for XLA to hand to YNNPACK
    lowered = jax.jit(conv_weight_grad).lower(x, w)
    assert FUSION in lowered.compile().as_text()
    assert FUSION not in lowered.compile(compiler_options=YNN["ynn off"]).as_text()
    assert FUSION in jax.jit(conv_weight_grad).lower(x, w).compile().as_text()  # per program: nothing leaks


def ae_gradient(conv_impl: str):
    """(trainer, gradient of the AE's batch loss in its parameters) for the quick recipe with `conv_impl`."""
    config = {**train_configs.get_config("quick").to_dict(), "conv_impl": conv_impl, "batch_size": 2}
    _, trainer, _ = loop.build(config, (64, 64, 3))
    return trainer, lambda p, b: jax.grad(lambda p: trainer.loss(p, b, None, None)[0])(p)


@cpu_only
@pytest.mark.parametrize("impl", ["fast", "native"])
@pytest.mark.parametrize("ynn", ["ynn on", "ynn off"])
def test_the_ae_loss_gradient_with_the_fusions_on_and_off_matches_float64(impl, ynn):
    """The engine's forms ("fast") and XLA's plain convolutions ("native"), float32, against float64 autodiff of the
    plain convolutions on the same weights and images."""
    trainer, gradient = ae_gradient(impl)
    params = trainer.init(jax.random.key(0)).params
    batch = {"images": jax.random.uniform(jax.random.key(1), (2, 64, 64, 3))}
    got = jax.jit(gradient).lower(params, batch).compile(compiler_options=YNN[ynn])(params, batch)
    _, plain = ae_gradient("native")
    with jax.enable_x64(True):
        want = jax.jit(plain)(*jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), (params, batch)))
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=0, atol=1e-4 * float(np.max(np.abs(w))))
