"""Slot Attention (`noisegroup.models.slot_attention`): the symmetries the paper proves, the K = 1 closed form, the
masks, the parameter count of the paper's layers, and a short training run on two coloured squares."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from noisegroup.metrics import batch_ari
from noisegroup.models.genesis_parts import parameter_count
from noisegroup.models.slot_attention import (
    GRUCell,
    SlotAttention,
    SlotAttentionAutoEncoder,
    SlotAttentionFamily,
    position_grid,
)

pytestmark = pytest.mark.usefixtures("highest_precision")

B, N, D_IN, K, D = 2, 10, 6, 4, 8


@pytest.fixture(scope="module")
def forward_and_inputs():
    """(jitted Slot Attention `(inputs, noise) -> (slots, attention)`, inputs `[b, n, d_in]`, noise `[b, K, d]`)."""
    module = SlotAttention(K, D_IN, D, 16, num_iterations=3, rngs=nnx.Rngs(params=jax.random.key(0)))
    inputs = jax.random.normal(jax.random.key(1), (B, N, D_IN))
    noise = jax.random.normal(jax.random.key(2), (B, K, D))
    return jax.jit(lambda x, e: module(x, e)), inputs, noise


def test_slots_are_permutation_equivariant_in_the_initial_noise(forward_and_inputs):
    forward, inputs, noise = forward_and_inputs
    perm = np.array([2, 0, 3, 1])
    slots, attention = forward(inputs, noise)
    slots_p, attention_p = forward(inputs, noise[:, perm])
    chex.assert_trees_all_close(slots_p, slots[:, perm], atol=1e-5)
    chex.assert_trees_all_close(attention_p, attention[:, :, perm], atol=1e-6)


def test_slots_are_invariant_to_the_order_of_the_inputs(forward_and_inputs):
    forward, inputs, noise = forward_and_inputs
    perm = np.random.default_rng(0).permutation(N)
    slots, attention = forward(inputs, noise)
    slots_p, attention_p = forward(inputs[:, perm], noise)
    chex.assert_trees_all_close(slots_p, slots, atol=1e-5)
    chex.assert_trees_all_close(attention_p, attention[:, perm], atol=1e-6)  # attention follows its inputs


def test_attention_is_a_softmax_over_slots(forward_and_inputs):
    forward, inputs, noise = forward_and_inputs
    slots, attention = forward(inputs, noise)
    chex.assert_shape((slots, attention), [(B, K, D), (B, N, K)])
    assert float(jnp.min(attention)) >= 0.0
    chex.assert_trees_all_close(jnp.sum(attention, axis=-1), jnp.ones((B, N)), atol=1e-6)


def test_one_slot_updates_are_the_mean_of_the_values():
    """At K = 1 the softmax over slots is 1 at every input, so the weighted mean is the plain mean of v."""
    module = SlotAttention(1, D_IN, D, 16, rngs=nnx.Rngs(params=jax.random.key(3)))
    inputs = jax.random.normal(jax.random.key(4), (B, N, D_IN))
    noise = jax.random.normal(jax.random.key(5), (B, 1, D))
    # v by hand: LayerNorm (eps 1e-5, scale 1, bias 0 at initialisation) then the bias-free value projection.
    normalised = (inputs - inputs.mean(-1, keepdims=True)) / jnp.sqrt(inputs.var(-1, keepdims=True) + 1e-5)
    v = normalised @ module.project_v.kernel[...]
    k, v_module = module.keys_values(inputs)
    chex.assert_trees_all_close(v_module, v, atol=1e-5)
    _, attention, updates = jax.jit(lambda e: module.step(module.initial_slots(e), k, v_module))(noise)
    chex.assert_trees_all_close(attention, jnp.ones((B, N, 1)))
    chex.assert_trees_all_close(updates[:, 0], v.mean(axis=1), atol=1e-5)


def test_gru_cell_matches_its_equations():
    """PyTorch's GRU with its two biases, against the gates written out from the four blocks of weights."""
    cell = GRUCell(3, 5)
    keys = jax.random.split(jax.random.key(6), 6)
    for layer, (kk, kb) in ((cell.input, keys[:2]), (cell.recurrent, keys[2:4])):
        layer.kernel[...] = jax.random.normal(kk, layer.kernel.shape)
        layer.bias[...] = jax.random.normal(kb, layer.bias.shape)
    x, h = jax.random.normal(keys[4], (2, 3)), jax.random.normal(keys[5], (2, 5))
    wi, bi, wh, bh = cell.input.kernel[...], cell.input.bias[...], cell.recurrent.kernel[...], cell.recurrent.bias[...]
    gate = lambda i: (x @ wi[:, 5 * i:5 * i + 5] + bi[5 * i:5 * i + 5], h @ wh[:, 5 * i:5 * i + 5] + bh[5 * i:5 * i + 5])
    (xr, hr), (xz, hz), (xn, hn) = gate(0), gate(1), gate(2)
    r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
    expected = (1 - z) * jnp.tanh(xn + r * hn) + z * h
    chex.assert_trees_all_close(cell(x, h), expected, atol=1e-5)


def test_position_grid_corners():
    grid = position_grid(4, 6)
    chex.assert_trees_all_close(grid[0, 0], jnp.array([0.0, 0.0, 1.0, 1.0]))
    chex.assert_trees_all_close(grid[-1, -1], jnp.array([1.0, 1.0, 0.0, 0.0]))
    chex.assert_trees_all_close(grid[..., :2] + grid[..., 2:], jnp.ones((4, 6, 2)))


def _closed_form_count(c: int, hidden: int, slot_dim: int, mlp_hidden: int, ups: int) -> int:
    """The paper's layers, counted by hand (weights + biases), for ups >= 1 stride-2 decoder layers."""
    conv = lambda k, i, o: k * k * i * o + o
    dense = lambda i, o, bias=True: i * o + (o if bias else 0)
    encoder = conv(5, c, hidden) + 3 * conv(5, hidden, hidden) + dense(4, hidden) + 2 * hidden  # + LayerNorm
    encoder += 2 * dense(hidden, hidden)  # the MLP
    slot_attention = (2 * hidden + 2 * 2 * slot_dim  # three LayerNorms
                      + 2 * dense(hidden, slot_dim, False) + dense(slot_dim, slot_dim, False)  # k, v, q
                      + 2 * dense(slot_dim, 3 * slot_dim)  # the GRU's input and recurrent halves, two biases
                      + dense(slot_dim, mlp_hidden) + dense(mlp_hidden, slot_dim)
                      + 2 * slot_dim)  # mu, log sigma
    decoder = (dense(4, slot_dim) + conv(5, slot_dim, hidden) + (ups - 1) * conv(5, hidden, hidden)
               + conv(5, hidden, hidden) + conv(3, hidden, c + 1))
    return encoder + slot_attention + decoder


def test_default_model_builds_through_the_family_with_softmax_masks():
    family = SlotAttentionFamily.from_config({"num_slots": 3, "model": "slot_attention", "batch_size": 64})
    assert isinstance(family, SlotAttentionFamily) and family.num_slots == 3
    model = family.build((64, 64, 3), nnx.Rngs(params=jax.random.key(7)))
    count = parameter_count(model)
    print(f"Slot Attention autoencoder at 64 x 64: {count:,} parameters")
    assert count == _closed_form_count(3, 64, 64, 128, ups=3) == 787_844
    images = jax.random.uniform(jax.random.key(8), (2, 64, 64, 3))
    batch = {"images": images}
    noise = family.sample_noise(jax.random.key(9), batch)
    chex.assert_shape(noise, (2, 3, 64))
    outputs = jax.jit(lambda x, e: family.outputs(model, {"images": x}, e))(images, noise)
    chex.assert_shape([outputs["masks"], outputs["means"], outputs["reconstruction"], outputs["attention"]],
                      [(2, 3, 64, 64), (2, 3, 64, 64, 3), (2, 64, 64, 3), (2, 64 * 64, 3)])
    chex.assert_trees_all_close(outputs["masks"].sum(axis=1), jnp.ones((2, 64, 64)), atol=1e-5)
    chex.assert_trees_all_close(outputs["reconstruction"], jnp.sum(outputs["masks"][..., None] * outputs["means"], 1),
                                atol=1e-5)
    loss = family.loss_terms["reconstruction"](outputs)
    chex.assert_shape(loss, (2,))
    chex.assert_tree_all_finite(loss)
    assert set(family.segmentation_masks(outputs)) == {"masks"}
    metrics = family.eval_metrics(outputs, {**batch, "masks": jnp.zeros((2, 64, 64), jnp.int32)})
    chex.assert_tree_all_finite(metrics)


@pytest.mark.parametrize("shape", [(48, 48, 3), (4, 4, 3), (32, 16, 3)])
def test_unsupported_image_shapes_are_named(shape):
    with pytest.raises(ValueError, match=str(shape[0])):
        SlotAttentionFamily().build(shape, nnx.Rngs(params=jax.random.key(0)))


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="input_range"):
        SlotAttentionFamily(input_range="[0,255]")
    with pytest.raises(ValueError, match="num_slots"):
        SlotAttentionFamily(num_slots=0)


def test_smaller_image_sizes_take_fewer_upsamplings():
    model = SlotAttentionAutoEncoder(16, 2, hidden_dim=8, slot_dim=8, mlp_hidden=8,
                                     rngs=nnx.Rngs(params=jax.random.key(0)))
    assert parameter_count(model) == _closed_form_count(3, 8, 8, 8, ups=1)
    out = jax.jit(lambda x, e: model(x, e))(jnp.zeros((1, 16, 16, 3)), jnp.zeros((1, 2, 8)))
    chex.assert_shape(out["log_masks"], (1, 2, 16, 16))


def test_autoencoder_masks_follow_a_permutation_of_the_slot_noise():
    model = SlotAttentionAutoEncoder(8, 3, hidden_dim=8, slot_dim=8, mlp_hidden=8,
                                     rngs=nnx.Rngs(params=jax.random.key(1)))
    images = jax.random.uniform(jax.random.key(2), (2, 8, 8, 3))
    noise = jax.random.normal(jax.random.key(3), (2, 3, 8))
    perm = np.array([1, 2, 0])
    forward = jax.jit(lambda e: model(images, e))
    out, out_p = forward(noise), forward(noise[:, perm])
    chex.assert_trees_all_close(out_p["log_masks"], out["log_masks"][:, perm], atol=1e-5)
    chex.assert_trees_all_close(out_p["reconstruction"], out["reconstruction"], atol=1e-5)  # a sum over slots

# --- a short training run -----------------------------------------------------------------------------------------


def two_squares(rng: np.random.Generator, n: int, size: int = 8, side: int = 3):
    """Images `[n, size, size, 3]` of a red and a blue side x side square on black, not overlapping, and their
    label maps `[n, size, size]` (0 background, 1 red, 2 blue)."""
    images = np.zeros((n, size, size, 3), np.float32)
    labels = np.zeros((n, size, size), np.int32)
    for i in range(n):
        for label, colour in ((1, (1.0, 0.0, 0.0)), (2, (0.0, 0.0, 1.0))):
            while True:
                y, x = rng.integers(0, size - side + 1, 2)
                if not labels[i, y:y + side, x:x + side].any():
                    break
            images[i, y:y + side, x:x + side] = colour
            labels[i, y:y + side, x:x + side] = label
    return images, labels


def test_short_training_run_reduces_the_reconstruction_error():
    """400 Adam steps (lr 1e-3, batch 16) on 8 x 8 images of a red and a blue square, K = 3, width 16.

    A weaker property than separation, on purpose: in this budget (about 10 s on 2 CPU cores) the model learns to
    reconstruct (held-out MSE falls about 3x) but does NOT yet segment: runs of 2,000-3,000 steps reached held-out
    FG-ARI 0.10-0.15 only (the paper trains 500k steps). The FG-ARI is printed, not asserted.

    No short setting that separates was found either (seed 0, Adam, batch 16, K = 3 unless said, held-out FG-ARI of
    the alpha masks' argmax): 16 x 16 images with 4 x 4 squares in [-1, 1], width 16, lr 1e-3: 0.08 after 2,000
    steps (the MSE sits at the predict-the-background plateau for about 1,000 steps); 5 x 5 squares in [0, 1], width
    16, lr 2e-3: 0.24 / 0.19 / 0.19 at 250 / 500 / 1,000 steps, and 0.14 with K = 2 at 600 steps; in [-1, 1] with
    K = 2 the MSE did not move in 750 steps; width 32, lr 4e-4 with a 100-step warm-up: 0.10 at 800 steps (MSE 0.012);
    one iteration, batch 32, lr 1e-3: 0.18 at 800 steps. The slots collapse: at 600 steps (lr 2e-3) their pairwise
    distance is 0.19 against a norm of 1.8 (1.76 against 2.2 at initialisation, though the learned sigma stays about
    1), the attention and the masks are nearly uniform over the slots (mean max 0.36 at K = 3): a symmetric solution
    (all slots alike, each decoding the whole image) that none of these runs left.
    """
    family = SlotAttentionFamily(num_slots=3, slot_dim=16, hidden_dim=16, mlp_hidden=32, input_range="[0,1]")
    model = family.build((8, 8, 3), nnx.Rngs(params=jax.random.key(0)))
    graphdef, params = nnx.split(model)
    optimizer = optax.adam(1e-3)
    train, _ = two_squares(np.random.default_rng(0), 512)
    test_images, test_labels = two_squares(np.random.default_rng(1), 64)
    test_batch = {"images": jnp.asarray(test_images)}
    test_noise = family.sample_noise(jax.random.key(9), test_batch)

    def loss(params, images, key):
        batch = {"images": images}
        outputs = family.outputs(nnx.merge(graphdef, params), batch, family.sample_noise(key, batch))
        return jnp.mean(family.loss_terms["reconstruction"](outputs))

    @jax.jit
    def train_step(state, images, key):
        params, opt_state = state
        value, grads = jax.value_and_grad(loss)(params, images, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    evaluate = jax.jit(lambda params: family.outputs(nnx.merge(graphdef, params), test_batch, test_noise))
    before = float(jnp.mean(evaluate(params)["mse"]))
    state, rng, run_key = (params, optimizer.init(params)), np.random.default_rng(2), jax.random.key(3)
    for step in range(400):
        state, _ = train_step(state, jnp.asarray(train[rng.integers(0, len(train), 16)]), jax.random.fold_in(run_key, step))
    outputs = evaluate(state[0])
    after = float(jnp.mean(outputs["mse"]))
    fg_ari = batch_ari(np.argmax(np.asarray(outputs["log_masks"]), axis=1), test_labels, foreground=True)
    print(f"held-out MSE {before:.4f} -> {after:.4f}; FG-ARI {fg_ari.mean():.3f}")
    assert np.all(np.isfinite(fg_ari))
    assert after < before / 2.5, (before, after)


def test_slot_attention_trains_resumes_and_restores_through_the_engine(tmp_path):
    """The family as config `model=slot_attention`: two engine steps then a third by resuming equal three straight
    ones; `restore` reads the run back; its masks score through the baselines' evaluation (labels in [0, K))."""
    from noisegroup import baselines
    from noisegroup.engine import loop
    from noisegroup.models import FAMILIES

    assert FAMILIES["slot_attention"] is SlotAttentionFamily
    rng = np.random.default_rng(0)
    train, valid = rng.random((8, 16, 16, 3), np.float32), rng.random((4, 16, 16, 3), np.float32)
    config = {"model": "slot_attention", "num_slots": 3, "slot_dim": 16, "hidden_dim": 16, "mlp_hidden": 16,
              "batch_size": 2, "learning_rate": 4e-4, "geco": False, "eval_every": 100, "log_every": 1,
              "checkpoint_every": 1, "progress": False}
    loop.train({**config, "num_steps": 2}, tmp_path / "resumed", train, valid)
    resumed = loop.train({**config, "num_steps": 3}, tmp_path / "resumed", train, valid)
    straight = loop.train({**config, "num_steps": 3}, tmp_path / "straight", train, valid)
    for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(straight.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    restored_config, restored = loop.restore(tmp_path / "resumed")
    assert restored_config["model"] == "slot_attention" and int(restored.step[0]) == 3
    _, trainer, _ = loop.build(restored_config, (16, 16, 3))
    family = FAMILIES["slot_attention"].from_config(restored_config)
    params = jax.tree.map(lambda x: x[0], restored.params)
    masks = baselines.object_masks(family, trainer.graphdef, params, valid, jax.random.key(0))
    assert masks["masks"].shape == (4, 3, 16, 16) and masks["reconstructions"].shape == (4, 16, 16, 3)
    np.testing.assert_allclose(np.exp(masks["masks"]).sum(axis=1), 1.0, rtol=1e-5)  # log masks, a softmax over slots
    labels = baselines.labels(masks["masks"])
    assert labels.shape == (4, 16, 16) and labels.min() >= 0 and labels.max() < 3
