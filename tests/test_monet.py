"""MONet: masks, loss terms against closed forms and NumPy oracles, U-Net shapes and size, the multi-seed step,
the evaluation metrics, the ablation conditions, and a run through the engine with restore. Tiny widths; K = 3 (2 in
the multi-seed step, one U-Net copy less to compile); 8 x 8 images (cheaper to compile), 16 x 16 Multi-dSprites for
the run. The run time is XLA:CPU compilation of the training programs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from noisegroup.engine import checkpoint, loop, runlog
from noisegroup.engine import config as engine_config
from noisegroup.engine.trainer import Trainer
from noisegroup.metrics import segmentation_metrics
from noisegroup.models import FAMILIES
from noisegroup.models import monet as M
from noisegroup.models import monet_losses as L
from noisegroup.models.unet import UNet

TINY = dict(num_slots=3, latent_dim=4, unet_channels=4, unet_mlp_hidden=8, encoder_channels=(4, 4, 8, 8),
            encoder_hidden=16, decoder_channels=(4, 4, 4, 4))
SHAPE = (8, 8, 3)


pytestmark = pytest.mark.usefixtures("highest_precision")  # exact float32 products (tests/conftest.py)


def build(family, seed=0):
    """(graphdef, params) with the parameters initialised under jit (eager initialisation compiles every draw)."""
    graphdef = nnx.split(nnx.eval_shape(lambda: family.build(SHAPE, nnx.Rngs(params=jax.random.key(0)))))[0]
    params = jax.jit(lambda k: nnx.state(family.build(SHAPE, nnx.Rngs(params=k)), nnx.Param))(jax.random.key(seed))
    return graphdef, params


@pytest.fixture(scope="module")
def tiny_outputs():
    family = M.MonetFamily(**TINY)
    graphdef, params = build(family)
    images = jax.random.uniform(jax.random.key(1), (2, *SHAPE))

    @jax.jit
    def run(params, images, key):
        batch = {"images": images}
        return family.outputs(nnx.merge(graphdef, params), batch, family.sample_noise(key, batch))

    return run(params, images, jax.random.key(2))


def _rng(seed):
    return np.random.default_rng(seed)


# --- masks --------------------------------------------------------------------------------------------------------


def test_outputs_have_the_documented_shapes(tiny_outputs):
    b, k, (h, w, c), d = 2, 3, SHAPE, 4
    expected = {"images": (b, h, w, c), "log_masks": (b, k, h, w), "mask_logits": (b, k, h, w),
                "means": (b, k, h, w, c), "latent_mean": (b, k, d), "latent_logvar": (b, k, d),
                "reconstruction": (b, h, w, c), "pixel_std": (b, k), "ir_std": (b,)}
    assert {name: v.shape for name, v in tiny_outputs.items()} == expected
    chex.assert_tree_all_finite(tiny_outputs)
    np.testing.assert_allclose(tiny_outputs["pixel_std"][0], [0.09, 0.11, 0.11], rtol=1e-6)  # first slot: bg


def test_attention_and_decoded_masks_sum_to_one(tiny_outputs):
    attention = jnp.exp(tiny_outputs["log_masks"]).sum(axis=1)
    decoded = jax.nn.softmax(tiny_outputs["mask_logits"], axis=1).sum(axis=1)
    np.testing.assert_allclose(attention, 1.0, atol=1e-5)
    np.testing.assert_allclose(decoded, 1.0, atol=1e-5)
    # x~ = sum_k m_k mu_k
    recon = (jnp.exp(tiny_outputs["log_masks"])[..., None] * tiny_outputs["means"]).sum(1)
    np.testing.assert_allclose(tiny_outputs["reconstruction"], recon, rtol=1e-5, atol=1e-6)


def test_images_enter_in_the_configured_range():
    images = jnp.linspace(0, 1, 2 * 8 * 8 * 3).reshape(2, *SHAPE)
    assert float(M.MonetFamily(**TINY).model_images(images).min()) == -1.0
    np.testing.assert_array_equal(M.MonetFamily(**TINY, input_range="[0,1]").model_images(images), images)


# --- loss terms -----------------------------------------------------------------------------------------------------


def test_mask_losses_vanish_for_identical_masks():
    logits = jnp.asarray(_rng(0).normal(size=(2, 4, 5, 5)) * 3, jnp.float32)
    log_masks = jax.nn.log_softmax(logits, axis=1)
    np.testing.assert_allclose(jax.jit(L.mask_kl)(log_masks, logits), 0.0, atol=1e-5)
    np.testing.assert_allclose(jax.jit(L.mask_mse)(log_masks, logits), 0.0, atol=1e-12)
    assert np.all(np.asarray(jax.jit(L.mask_kl)(log_masks, jnp.zeros_like(logits))) > 0)
    # by hand: m = (1, 0 ...) vs uniform decoded masks over 4 slots: KL = log 4 per pixel, 25 pixels
    hard = jnp.where(jax.nn.one_hot(jnp.zeros((1, 5, 5), int), 4, axis=1) > 0, 0.0, -1e30)  # log of (1, 0, 0, 0)
    uniform = jnp.zeros((1, 4, 5, 5))
    np.testing.assert_allclose(jax.jit(L.mask_kl)(hard, uniform), 25 * np.log(4), rtol=1e-6)
    # (1 - 1/4)^2 + 3 (1/4)^2 = 0.75 per pixel, mean over pixels
    np.testing.assert_allclose(jax.jit(L.mask_mse)(hard, uniform), 0.75, rtol=1e-6)


def test_nll_with_one_slot_is_the_gaussian_closed_form():
    rng = _rng(1)
    x, mu = rng.uniform(-1, 1, (2, 6, 6, 3)), rng.uniform(-1, 1, (2, 1, 6, 6, 3))
    sigma = 0.1
    got = jax.jit(L.mixture_nll)(jnp.asarray(x, jnp.float32), jnp.asarray(mu, jnp.float32), jnp.zeros((2, 1, 6, 6)),
                        jnp.full((2, 1), sigma))
    count = 6 * 6 * 3
    expected = ((x - mu[:, 0]) ** 2).sum((1, 2, 3)) / (2 * sigma**2) + count * np.log(sigma * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_nll_with_two_slots_is_the_per_element_mixture():
    rng = _rng(2)
    x, mu = rng.uniform(-1, 1, (2, 5, 5, 3)), rng.uniform(-1, 1, (2, 2, 5, 5, 3))
    m1 = rng.uniform(0.01, 0.99, (2, 5, 5))
    masks = np.stack([m1, 1 - m1], axis=1)  # [b, 2, h, w]
    sigma = np.array([0.09, 0.11])
    got = jax.jit(L.mixture_nll)(jnp.asarray(x, jnp.float32), jnp.asarray(mu, jnp.float32),
                        jnp.asarray(np.log(masks), jnp.float32), jnp.asarray(np.tile(sigma, (2, 1)), jnp.float32))
    expected = np.zeros(2)
    for b in range(2):  # sum over every pixel and channel of -log sum_k m_k N(x | mu_k, sigma_k^2)
        for i in np.ndindex(5, 5, 3):
            density = sum(masks[b, k, i[0], i[1]] * np.exp(-(x[b][i] - mu[b, k][i]) ** 2 / (2 * sigma[k] ** 2))
                          / (sigma[k] * np.sqrt(2 * np.pi)) for k in range(2))
            expected[b] -= np.log(density)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_ir_loss_is_an_affine_function_of_the_mse():
    rng = _rng(3)
    x, recon = (jnp.asarray(rng.uniform(-1, 1, (3, 4, 4, 3)), jnp.float32) for _ in range(2))
    count, sigma = 4 * 4 * 3, 0.09
    mse = jax.jit(L.reconstruction_mse)(x, recon)
    np.testing.assert_allclose(mse, np.mean((np.asarray(x) - np.asarray(recon)) ** 2, axis=(1, 2, 3)), rtol=1e-6)
    ir = jax.jit(L.integrated_nll)(x, recon, jnp.full((3,), sigma))
    np.testing.assert_allclose(ir, count * mse / (2 * sigma**2) + count * np.log(sigma * np.sqrt(2 * np.pi)), rtol=1e-5)


def test_mw_loss_weights_each_slots_error_by_its_mask():
    rng = _rng(4)
    x, mu = rng.uniform(-1, 1, (2, 4, 4, 3)), rng.uniform(-1, 1, (2, 3, 4, 4, 3))
    masks = rng.dirichlet(np.ones(3), size=(2, 4, 4)).transpose(0, 3, 1, 2)  # [b, k, h, w], sums to 1
    got = jax.jit(L.mask_weighted_error)(jnp.asarray(x, jnp.float32), jnp.asarray(mu, jnp.float32),
                                jnp.asarray(np.log(masks), jnp.float32))
    expected = np.zeros(2)
    for b, k, i, j, c in np.ndindex(2, 3, 4, 4, 3):
        expected[b] += masks[b, k, i, j] * (x[b, i, j, c] - mu[b, k, i, j, c]) ** 2 / (4 * 4 * 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_latent_kl_sums_over_dimensions_and_slots():
    mean, logvar = jnp.ones((2, 3, 4)), jnp.zeros((2, 3, 4))
    np.testing.assert_allclose(jax.jit(L.latent_kl)(mean, logvar), 3 * 4 * 0.5)  # (mu^2 + 1 - 1 - 0) / 2 each


# --- the U-Net ----------------------------------------------------------------------------------------------------


def test_unet_stage_shapes_and_size_at_64():
    def stages(x):
        return UNet(64, 4, 32, rngs=nnx.Rngs(0)).stages(x)

    s = jax.eval_shape(stages, jax.ShapeDtypeStruct((2, 64, 64, 4), jnp.float32))
    for x, side, channels in zip(s["down"], (64, 32, 16, 8, 4), (32, 32, 64, 64, 64)):
        chex.assert_shape(x, (2, side, side, channels))
    chex.assert_shape(s["bottleneck"], (2, 4, 4, 64))
    for x, side, channels in zip(s["up"], (4, 8, 16, 32, 64), (64, 64, 32, 32, 32)):
        chex.assert_shape(x, (2, side, side, channels))
    chex.assert_shape(s["logits"], (2, 64, 64, 1))
    assert len(s["down"]) == len(s["up"]) == 5

    model = nnx.eval_shape(lambda: UNet(64, 4, 32, rngs=nnx.Rngs(0)))
    count = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    convs = 9 * (4 * 32 + 32 * 32 + 32 * 64 + 64 * 64 + 64 * 64  # down, no bias
                 + 128 * 64 + 128 * 64 + 128 * 32 + 64 * 32 + 64 * 32)  # up: inputs [4c, 4c, 4c, 2c, 2c]
    norms = 2 * (32 + 32 + 64 + 64 + 64 + 64 + 64 + 32 + 32 + 32)  # scale and bias
    mlp = (1024 * 128 + 128) + (128 * 128 + 128) + (128 * 1024 + 1024)
    head = 32 + 1
    assert count == convs + norms + mlp + head == 604_513


def test_instance_norm_is_pytorchs_with_the_closed_form_gradient():
    """Against a NumPy statement of PyTorch's InstanceNorm2d(affine=True) (biased variance, eps 1e-5); the
    closed-form gradient against autodiff of the statement, for x, scale and bias, also vmapped over seeds."""
    from noisegroup.models.blocks import InstanceNorm, instance_norm

    x = jnp.asarray(_rng(3).normal(2.0, 3.0, size=(2, 5, 4, 3)), jnp.float32)
    scale, bias = jnp.asarray([0.5, -1.0, 2.0]), jnp.asarray([0.1, 0.0, -0.3])
    xn = np.asarray(x, np.float64)
    mean, var = xn.mean(axis=(1, 2), keepdims=True), xn.var(axis=(1, 2), keepdims=True)
    want = (xn - mean) / np.sqrt(var + 1e-5) * np.asarray(scale) + np.asarray(bias)
    np.testing.assert_allclose(instance_norm(x, scale, bias, 1e-5), want, rtol=1e-5, atol=1e-5)
    norm = InstanceNorm(3, impl="native")
    norm.scale[...], norm.bias[...] = scale, bias
    np.testing.assert_allclose(norm(x), want, rtol=1e-5, atol=1e-5)

    def statement(x, scale, bias):
        mean = jnp.mean(x, axis=(1, 2), keepdims=True)
        return (x - mean) / jnp.sqrt(jnp.var(x, axis=(1, 2), keepdims=True) + 1e-5) * scale + bias

    weights = jnp.asarray(_rng(4).normal(size=x.shape), jnp.float32)
    grad = lambda fn: jax.grad(lambda *a: jnp.sum(jnp.sin(fn(*a)) * weights), argnums=(0, 1, 2))  # noqa: E731
    ours = lambda x, s, b: instance_norm(x, s, b, 1e-5)  # noqa: E731
    chex.assert_trees_all_close(grad(ours)(x, scale, bias), grad(statement)(x, scale, bias), atol=1e-5, rtol=1e-4)
    stacked = (jnp.stack([x, -2 * x]), jnp.stack([scale, bias]), jnp.stack([bias, scale]))
    chex.assert_trees_all_close(jax.vmap(grad(ours))(*stacked), jax.vmap(grad(statement))(*stacked), atol=1e-5,
                                rtol=1e-4)


def test_unet_fast_and_native_convs_are_the_same_function():
    """The U-Net's 3x3 convs through `conv_forms.stride1_conv`, its up blocks' convs split into the sub-pixel
    upsampled part and the skip part, and its norms' closed-form gradient (the CPU default), and all as autodiff of
    the plain statements: the same logits and the same gradients of every parameter and of
    the input."""
    x = jax.random.uniform(jax.random.key(1), (3, 16, 16, 4))
    graphdef, params = nnx.split(UNet(16, 4, 8, 16, conv_impl="fast", rngs=nnx.Rngs(params=0)))

    def loss(params, x, impl):
        model = nnx.merge(graphdef, params)
        for block in (*model.down, *model.up):
            block.conv.impl = block.norm.impl = impl
        return jnp.sum(jnp.sin(model(x)))

    fast = jax.jit(jax.value_and_grad(lambda p, x: loss(p, x, "fast"), argnums=(0, 1)))(params, x)
    native = jax.jit(jax.value_and_grad(lambda p, x: loss(p, x, "native"), argnums=(0, 1)))(params, x)
    chex.assert_trees_all_close(fast, native, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("scheme", ["pytorch", "normal"])
def test_initialisation_schemes(scheme):
    def init(key):
        return nnx.state(UNet(16, 4, 8, 16, init_scheme=scheme, rngs=nnx.Rngs(params=key)), nnx.Param)

    params = jax.jit(init)(jax.random.key(0))
    conv = params["down"][1]["conv"]["kernel"][...]  # 3 x 3 x 16 x 16 (3 blocks: all 2c): fan_in 144
    dense, bias = params["mlp"][0]["kernel"][...], params["mlp"][0]["bias"][...]  # 4 x 4 x 16 -> 16: fan_in 256
    norm = params["up"][0]["norm"]
    assert np.all(norm["scale"][...] == 1.0) and np.all(norm["bias"][...] == 0.0)
    if scheme == "pytorch":  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)), weights and biases
        assert 0.9 / np.sqrt(144) < float(jnp.abs(conv).max()) <= 1 / np.sqrt(144)
        assert 0.9 / np.sqrt(256) < float(jnp.abs(dense).max()) <= 1 / np.sqrt(256)
        assert 0 < float(jnp.abs(bias).max()) <= 1 / np.sqrt(256)
    else:  # N(0, 0.02^2) weights, zero biases
        assert float(jnp.std(dense)) == pytest.approx(0.02, rel=0.05) and float(jnp.abs(bias).max()) == 0.0
    assert not np.allclose(conv, params["down"][2]["conv"]["kernel"][...])  # distinct slices of the one draw


# --- the engine's step ---------------------------------------------------------------------------------------------


def test_vmapped_seeds_equal_single_seed_steps():
    family = M.MonetFamily(**{**TINY, "num_slots": 2})  # one U-Net call: the attention loop, at half the compile time
    trainer = Trainer(family=family, image_shape=SHAPE, optimizer=optax.sgd(1e-3),
                      weights=dict(family.default_weights))
    keys = jnp.stack([jax.random.key(1), jax.random.key(2)])
    images = jax.random.uniform(jax.random.key(3), (2, 4, *SHAPE))
    init, step, _ = trainer.multi_seed("vmap")
    initial = init(keys)
    initial_host = jax.device_get(initial)  # NumPy copies (the vmapped step donates its state); sliced on the host
    single_step = jax.jit(trainer.train_step)
    states, metrics = jax.device_get(step(initial, {"images": images}, keys))
    for s in range(2):
        start = jax.tree.map(lambda x: x[s], initial_host)
        single, single_metrics = jax.device_get(single_step(start, {"images": images[s]}, keys[s]))
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[s], states), single, atol=1e-6, rtol=1e-5)
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[s], metrics), single_metrics, rtol=1e-5)
    assert set(metrics) >= {"loss", "nll", "kl", "mask_kl", "kl_weight"} and "mw" not in metrics
    np.testing.assert_allclose(metrics["mask_kl_weight"], 0.25)


def test_sample_latent_false_means_no_noise():
    assert M.MonetFamily(**TINY, sample_latent=False).sample_noise(jax.random.key(0), {"images": jnp.zeros((2,))}) \
        is None
    noise = M.MonetFamily(**TINY).sample_noise(jax.random.key(0), {"images": jnp.zeros((2, *SHAPE))})
    chex.assert_shape(noise, (2, 3, 4))


# --- segmentation metrics (tests/test_metrics.py checks them against scikit-learn and DeepMind's formula) -----------


def test_eval_metrics_are_the_mse_and_the_segmentation_metrics():
    rng = _rng(5)
    log_masks = jnp.asarray(rng.normal(size=(4, 3, 6, 6)) * 3, jnp.float32)
    masks = jnp.asarray(rng.integers(0, 4, size=(4, 6, 6)), jnp.uint8)
    outputs = {"log_masks": log_masks, "images": jnp.zeros((4, 6, 6, 3)),
               "reconstruction": jnp.full((4, 6, 6, 3), 0.5)}
    scores = jax.jit(M.MonetFamily(**TINY, max_mask_labels=4).eval_metrics)(outputs, {"masks": masks})
    assert float(scores.pop("mse")) == pytest.approx(0.25)
    chex.assert_trees_all_close(scores, segmentation_metrics(log_masks, masks, 4))
    assert set(jax.jit(M.MonetFamily(**TINY).eval_metrics)(outputs, {})) == {"mse"}  # no masks: no ARI


# --- configuration ---------------------------------------------------------------------------------------------------


def test_fewer_than_two_slots_is_an_error_naming_k():
    with pytest.raises(ValueError, match="num_slots=1"):
        M.MonetFamily(num_slots=1)
    with pytest.raises(ValueError, match="num_slots=1"):
        engine_config.parse({"model": "monet", "num_slots": 1})
    with pytest.raises(ValueError, match="power of two >= 8, got 12"):
        M.MonetFamily(**TINY).build((12, 12, 3), nnx.Rngs(0))
    with pytest.raises(ValueError, match="rgb_activation"):
        M.MonetFamily(rgb_activation="relu")


# --- a run through the engine ---------------------------------------------------------------------------------------


def test_a_short_run_through_the_engine_and_restore(tmp_path):
    from datasets import multi_dsprites as md

    def small(split, n):  # nearest 64 -> 16
        data = md.generate(split, n)
        return {"images": np.ascontiguousarray(data.images[:, ::4, ::4]), "masks": data.masks[:, ::4, ::4]}

    config = {"model": "monet", **TINY, "seeds": (0,), "batch_size": 4, "num_steps": 3, "eval_every": 3,
              "log_every": 1, "checkpoint_every": 3, "learning_rate": 1e-3, "progress": False,
              "loss_weights": {"nll": 1.0, "kl": 0.0, "mask_kl": 0.25}, "sample_latent": False}  # condition 01
    state = loop.train(config, tmp_path, small("train", 8), small("valid", 4))
    assert int(state.step[0]) == 3
    records = runlog.read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3]
    last = records[-1]
    for key in ("train/nll", "train/mask_kl", "train/kl", "valid/ari", "valid/fg_ari", "valid/mse",
                "valid/deepmind_fg_ari_nan"):
        assert np.all(np.isfinite(last[key])), key
    assert last["train/kl_weight"] == [0.0]
    assert checkpoint.Checkpointer(tmp_path / "checkpoints").steps() == [3]

    restored_config, restored = loop.restore(tmp_path)
    assert restored_config["model"] == "monet" and restored_config["encoder_channels"] == [4, 4, 8, 8]
    chex.assert_trees_all_equal(jax.device_get(restored.params), jax.device_get(state.params))
    assert FAMILIES["monet"].from_config(restored_config) == M.MonetFamily(**TINY, sample_latent=False)


def test_one_by_one_convs_are_products_that_vmap_over_a_seed_mesh():
    """The U-Net's 1-channel mask head, vmapped over seeds sharded on a device mesh: XLA's partitioner rejected the
    grouped convolution vmap made of it ("feature_group_count"); as a product it compiles, and equals the conv."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from noisegroup.models import blocks
    from noisegroup.models.conv_forms import native_conv

    head = blocks.Conv(16, 1, 1)
    graphdef, _ = nnx.split(head)
    kernels = jnp.asarray(_rng(0).normal(size=(4, 1, 1, 16, 1)), jnp.float32)
    biases = jnp.asarray(_rng(1).normal(size=(4, 1)), jnp.float32)
    x = jnp.asarray(_rng(2).normal(size=(4, 2, 8, 8, 16)), jnp.float32)
    mesh = Mesh(np.array(jax.devices()[:4]), ("seed",))
    seed_sharded = NamedSharding(mesh, PartitionSpec("seed"))
    kernels, biases, x = (jax.device_put(a, seed_sharded) for a in (kernels, biases, x))

    def apply(kernel, bias, images):
        return nnx.merge(graphdef, nnx.State({"kernel": nnx.Param(kernel), "bias": nnx.Param(bias)}))(images)

    got = jax.jit(jax.vmap(apply))(kernels, biases, x)
    want = jnp.stack([native_conv(x[s], kernels[s], 1, 0) + biases[s] for s in range(4)])
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["fast", "native"])
def test_broadcast_decoder_is_the_textbook_statement(impl):
    """The decoder never tiles z; the textbook statement (z tiled over an (s + 8)^2 grid with the coordinate
    channels, then valid 3x3 convs, a 1x1 conv) is the same function, values and gradients, with either conv form."""
    from noisegroup.models import blocks
    from noisegroup.models.conv_forms import native_conv

    decoder = M.BroadcastDecoder(8, 5, (6, 7), 4, init_scheme="pytorch", conv_impl=impl, rngs=nnx.Rngs(params=0))
    graphdef, params = nnx.split(decoder)
    z = jnp.asarray(_rng(0).normal(size=(3, 5)), jnp.float32)

    def textbook(params, z):
        model = nnx.merge(graphdef, params)
        x = model.tiled_input(z)
        for conv in model.convs:
            x = jax.nn.relu(native_conv(x, conv.kernel[...], 1, 0) + conv.bias[...])
        return model.out(x)

    def ours(params, z):
        return nnx.merge(graphdef, params)(z)

    tiled = decoder.tiled_input(z)
    assert tiled.shape == (3, 12, 12, 7) and np.allclose(tiled[1, 4, 7, :5], z[1])
    np.testing.assert_allclose(ours(params, z), textbook(params, z), rtol=1e-5, atol=1e-5)
    assert ours(params, z).shape == (3, 8, 8, 4)
    grad = lambda fn: jax.grad(lambda p, z: jnp.sum(jnp.sin(fn(p, z))), argnums=(0, 1))(params, z)  # noqa: E731
    chex.assert_trees_all_close(grad(ours), grad(textbook), rtol=1e-4, atol=1e-5)
    rows, cols = decoder.coordinates()[0, :, :, 0], decoder.coordinates()[0, :, :, 1]
    assert rows[0, 5] == -1 and rows[-1, 5] == 1 and cols[5, 0] == -1 and cols[5, -1] == 1
    assert isinstance(decoder.convs[1], blocks.Conv) and decoder.convs[1].impl == impl

