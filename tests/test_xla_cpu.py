"""XLA:CPU's YNNPACK fusions: what `benchmarks.xla_cpu` switches, and the default's values against float64.

The project compiles with XLA's default (the fusions on), which `benchmarks.xla_cpu` measured fastest; these tests
check that the option the benchmark (and a user's `XLA_FLAGS`) uses does switch them, and that what the fast CPU
paths compute under jit agrees with float64 autodiff of XLA's plain convolutions, and with the same program compiled
with the fusions off (open reports say the fusions compute wrong values under jit in this jaxlib: jax-ml/jax#39103,
#39257, #40412): the AE's loss gradient, MONet's (through all its fast forms: the U-Net's patch weight gradients,
the up blocks' sub-pixel form, the closed-form instance norm, the decoder's unpadded convolutions) and the LNS
features of a small AE (through every fast form of the LNS layers).

Tolerance: float32 noise, at sizes small enough that no ReLU input lies within float32's rounding of 0. At MONet's
64 x 64 benchmark size some do: a few ReLU inputs in 10^8 fall on the other side of 0 than in float64 (30 of 2.9e8 on
the fast path, 21 on XLA's plain one, measured once), each switching one term of a gradient sum, so there the float32
gradients of every implementation differ from float64 by 1e-3 to 1e-2 of a tensor's largest entry; with a smooth
stand-in for ReLU by at most 1.5e-4, the same for all.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments.configs import train as train_configs
from noisegroup.engine import loop
from noisegroup.lns import features
from noisegroup.models.layers import Conv, ConvTranspose, Linear
from noisegroup.models.monet import MonetFamily

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


# --- MONet's loss gradient and the LNS features through the fast forms ----------------------------------------------

RELATIVE_TOLERANCE = 1e-4  # float32 noise at these sizes: measured 1.5e-6 (MONet's gradient), 1.5e-7 (LNS decodes)


def largest_relative_error(got, want) -> float:
    """max over tensors of max|got - want| / max|want|: the relative error of the worst tensor."""
    return max(float(np.max(np.abs(np.asarray(g, np.float64) - w)) / float(np.max(np.abs(w))))
               for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)))


def float64(tree):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)


def compiled_both_ways(program, args):
    """(result with XLA's default, result with the fusions off) of one lowering, after checking that the default
    does hand work to YNNPACK (else the comparison would be empty)."""
    lowered = jax.jit(program).lower(*args)
    fused = lowered.compile()
    assert FUSION in fused.as_text()
    return fused(*args), lowered.compile(compiler_options=YNN["ynn off"])(*args)


def tiny_monet(conv_impl: str) -> MonetFamily:
    """MONet at its narrowest: K = 2, one U-Net call; every fast form still runs."""
    return MonetFamily(num_slots=2, latent_dim=4, unet_channels=4, unet_mlp_hidden=8, encoder_channels=(4, 8),
                       encoder_hidden=8, decoder_channels=(4, 4), conv_impl=conv_impl)


def monet_loss(family: MonetFamily):
    """The loss of condition 11 (nll + 0.5 kl + 0.25 mask_kl) as a function of (params, images, noise)."""
    graphdef = nnx.split(nnx.eval_shape(lambda: family.build((8, 8, 3), nnx.Rngs(params=jax.random.key(0)))))[0]

    def loss(params, images, noise):
        outputs = family.outputs(nnx.merge(graphdef, params), {"images": images}, noise)
        weights = {"nll": 1.0, "kl": 0.5, "mask_kl": 0.25}
        return sum(w * jnp.mean(family.loss_terms[name](outputs)) for name, w in weights.items())

    return loss


@cpu_only
def test_the_monet_loss_gradient_through_the_fast_forms_matches_float64_and_the_fusions_off():
    """One step's gradient, jitted through the fast forms with the fusions on (XLA's default), against float64
    autodiff of the plain computation (conv_impl "native") and against the same program with the fusions off: every
    tensor within `RELATIVE_TOLERANCE` of its largest entry."""
    family = tiny_monet("fast")
    params = jax.jit(lambda key: nnx.split(family.build((8, 8, 3), nnx.Rngs(params=key)))[1])(jax.random.key(0))
    images = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
    noise = jax.random.normal(jax.random.key(2), (2, 2, 4))
    fused, unfused = compiled_both_ways(jax.grad(monet_loss(family)), (params, images, noise))
    with jax.enable_x64(True):
        want = jax.device_get(jax.jit(jax.grad(monet_loss(tiny_monet("native"))))(*float64((params, images, noise))))
    assert largest_relative_error(fused, want) < RELATIVE_TOLERANCE
    assert largest_relative_error(unfused, want) < RELATIVE_TOLERANCE
    assert largest_relative_error(fused, jax.device_get(unfused)) < RELATIVE_TOLERANCE


class SmallAE(nnx.Module):
    """An 8 x 8 autoencoder with a layer of each kind of the LNS AE (`noisegroup.models.autoencoder`), so each of
    their fast forms: 'same' conv from RGB, stride-2 conv, k x k -> 1 x 1 conv, 1 x 1 -> k x k and stride-2
    transposed convs, 'same' transposed conv to RGB."""

    def __init__(self, latent_dim: int = 4, *, impl: str, rngs: nnx.Rngs):
        self.encoder = nnx.List([Conv(3, 8, 3, 1, 1, impl=impl, rngs=rngs), Conv(8, 16, 4, 2, 1, impl=impl, rngs=rngs),
                                 Conv(16, 16, 4, 1, 0, impl=impl, rngs=rngs)])
        self.mean = Linear(16, latent_dim, rngs=rngs)
        self.project = Linear(latent_dim, 16, rngs=rngs)
        self.decoder = nnx.List([ConvTranspose(16, 16, 4, 1, 0, impl=impl, rngs=rngs),
                                 ConvTranspose(16, 8, 4, 2, 1, impl=impl, rngs=rngs)])
        self.out = ConvTranspose(8, 3, 3, 1, 1, impl=impl, rngs=rngs)

    def encode(self, images: jax.Array) -> dict[str, jax.Array]:
        x = images
        for conv in self.encoder:
            x = jax.nn.relu(conv(x))
        return {"mean": self.mean(x.reshape(x.shape[0], -1))}

    def decode(self, latents: jax.Array) -> jax.Array:
        x = jax.nn.relu(self.project(latents)).reshape(latents.shape[0], 1, 1, -1)
        for deconv in self.decoder:
            x = jax.nn.relu(deconv(x))
        return self.out(x)


@cpu_only
def test_the_lns_features_through_the_fast_forms_match_float64_and_the_fusions_off():
    """`features.perturbed_decodes` and `difference_features` of a small AE, jitted through the fast forms with the
    fusions on, against float64 with XLA's plain convolutions and against the fusions off. The decodes within
    `RELATIVE_TOLERANCE`; a feature divides a (pixel, channel)'s differences by their norm, which multiplies their
    float32 rounding by 1 / norm, so features are compared where that norm is at least 1e-3 (error ~1e-7 / 1e-3)."""
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: SmallAE(impl="fast", rngs=nnx.Rngs(0))), nnx.Param)
    native = nnx.split(nnx.eval_shape(lambda: SmallAE(impl="native", rngs=nnx.Rngs(0))), nnx.Param)[0]
    rng = np.random.default_rng(0)  # NumPy draws (a jitted initialisation compiles for seconds): fan-in scaled

    def draw(leaf):
        scale = 0.1 if len(leaf.shape) == 1 else 1.0 / math.sqrt(math.prod(leaf.shape[:-1]))
        return jnp.asarray(scale * rng.normal(size=leaf.shape), jnp.float32)

    params = jax.tree.map(draw, abstract)
    images = jax.random.uniform(jax.random.key(1), (4, 8, 8, 3))
    keys = features.image_keys(jax.random.key(2), jnp.arange(4))
    noise_stds, num_noise_samples = jnp.asarray([0.1, 0.5]), 5

    def lns(params, images, keys):
        outputs, _ = features.perturbed_decodes(graphdef, params, images, keys, noise_stds, num_noise_samples)
        return outputs, features.difference_features(outputs)

    def plain(params, images, eps, noise_stds):  # perturbed_decodes restated, its draws given (float64 draws others)
        model = nnx.merge(native, params)
        latents = model.encode(images)["mean"][None, :, None] + noise_stds[:, None, None, None] * eps  # [s, b, n, z]
        outputs = jax.nn.sigmoid(model.decode(latents.reshape(-1, latents.shape[-1])))
        outputs = outputs.reshape(*latents.shape[:3], *outputs.shape[1:])
        return outputs, features.difference_features(outputs)

    with jax.default_matmul_precision("highest"):  # as `features.noisy_decodes` runs
        fused, unfused = compiled_both_ways(lns, (params, images, keys))
        eps = features.standard_noise(keys, num_noise_samples, 4)
        with jax.enable_x64(True):
            want = jax.device_get(jax.jit(plain)(*float64((params, images, eps, noise_stds))))
    differences = want[0][:, :, :-1] - want[0][:, :, 1:]  # [s, b, n - 1, h, w, c]
    norms = np.broadcast_to(np.sqrt(np.sum(differences**2, axis=2, keepdims=True)), differences.shape)
    s, b, steps, h, w, c = norms.shape  # to the features' layout [s, b, h w, (step, channel)]
    conditioned = np.moveaxis(norms, 2, 4).reshape(s, b, h * w, steps * c) >= 1e-3
    assert conditioned.mean() > 0.5, conditioned.mean()  # the comparison covers most entries
    for got in (fused, jax.device_get(unfused)):
        assert largest_relative_error(got[0], want[0]) < RELATIVE_TOLERANCE
        assert np.max(np.abs(got[1] - want[1])[conditioned]) < 1e-3
    assert largest_relative_error(fused[0], jax.device_get(unfused[0])) < RELATIVE_TOLERANCE
