"""Slot Attention's object-discovery autoencoder (Locatello et al., NeurIPS 2020) in plain PyTorch, for benchmarks.

    python -m benchmarks.slot_attention_torch     # the check: JAX vs. PyTorch on identical weights, images and noise

Written from the paper (Algorithm 1, appendix E.1) and the statement in `noisegroup.models.slot_attention`'s
docstring, the way PyTorch users write it (nn.Conv2d, nn.GRUCell, nn.LayerNorm, nn.ConvTranspose2d, NCHW inside), not
by translating the JAX code. PyTorch is not a noisegroup requirement: only benchmarks import this module.

`SlotAttentionAutoEncoder.forward` takes NHWC float32 images in the model's input range (`[b, s, s, c]`, [-1, 1] by
default) and the slots' initial noise eps `[b, K, d]` (drawn by the caller: house style), and returns NHWC / `[b, K,
...]` outputs laid out as the JAX model's. `load_jax_params` copies one seed's JAX parameters (an `nnx.State`, or its
pure dict, from `SlotAttentionFamily.build` + `nnx.split`) into it; `check` compares the two.

Layout conversions (`noisegroup.models.blocks`): a JAX `Conv` kernel is HWIO cross-correlation -> Conv2d's
`[o, i, kh, kw]` is a transpose; a JAX `ConvTranspose` kernel is HWIO applied as a cross-correlation of the
stride-dilated input, while ConvTranspose2d's `[i, o, kh, kw]` scatters, i.e. correlates with the flipped kernel ->
flip both spatial axes and transpose; a `Dense` kernel `[in, out]` -> Linear's `[out, in]`; the JAX GRU's input and
recurrent Dense layers hold the gates in PyTorch's order (r, z, n) -> weight_ih / weight_hh are their transposes.
"""

from __future__ import annotations

import argparse
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DECODER_INIT_SIZE = 8


def build_grid(height: int, width: int) -> torch.Tensor:
    """`[h, w, 4]` position grid (y, x, 1 - y, 1 - x), y down the rows and x along the columns, both in [0, 1]."""
    ranges = [np.linspace(0.0, 1.0, num=n) for n in (height, width)]
    grid = np.stack(np.meshgrid(*ranges, sparse=False, indexing="ij"), axis=-1).astype(np.float32)
    return torch.from_numpy(np.concatenate([grid, 1.0 - grid], axis=-1))


class SoftPositionEmbed(nn.Module):
    """Adds a learned linear function of the position grid to NHWC features."""

    def __init__(self, hidden_size: int, resolution: tuple[int, int]):
        super().__init__()
        self.embedding = nn.Linear(4, hidden_size)
        self.register_buffer("grid", build_grid(*resolution), persistent=False)

    def forward(self, inputs):  # [b, h, w, c]
        return inputs + self.embedding(self.grid)


class SlotAttention(nn.Module):
    """Algorithm 1 of the paper: K slots of dimension `dim` attend over `[b, n, dim]` inputs for `iters` rounds."""

    def __init__(self, num_slots: int, dim: int, iters: int = 3, eps: float = 1e-8, hidden_dim: int = 128):
        super().__init__()
        self.num_slots, self.iters, self.eps, self.scale = num_slots, iters, eps, dim ** -0.5
        self.slots_mu = nn.Parameter(torch.empty(1, 1, dim))
        self.slots_log_sigma = nn.Parameter(torch.empty(1, 1, dim))
        nn.init.xavier_uniform_(self.slots_mu)
        nn.init.xavier_uniform_(self.slots_log_sigma)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.gru = nn.GRUCell(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, dim))
        self.norm_input = nn.LayerNorm(dim)
        self.norm_slots = nn.LayerNorm(dim)
        self.norm_pre_ff = nn.LayerNorm(dim)

    def forward(self, inputs, noise):
        """inputs `[b, n, d]`, noise `[b, K, d]` ~ N(0, I) -> (slots `[b, K, d]`, attention `[b, n, K]`)."""
        b, _, d = inputs.shape
        slots = self.slots_mu + self.slots_log_sigma.exp() * noise
        inputs = self.norm_input(inputs)
        k, v = self.to_k(inputs), self.to_v(inputs)
        attn = None
        for _ in range(self.iters):
            slots_prev = slots
            q = self.to_q(self.norm_slots(slots))
            dots = torch.einsum("bid,bjd->bij", q, k) * self.scale  # [b, K, n]
            attn = dots.softmax(dim=1)  # normalised over the slots
            weights = attn + self.eps
            weights = weights / weights.sum(dim=-1, keepdim=True)  # weighted mean over the inputs
            updates = torch.einsum("bjd,bij->bid", v, weights)
            slots = self.gru(updates.reshape(-1, d), slots_prev.reshape(-1, d)).reshape(b, -1, d)
            slots = slots + self.mlp(self.norm_pre_ff(slots))
        return slots, attn.transpose(1, 2)


class SlotAttentionAutoEncoder(nn.Module):
    """The object-discovery autoencoder (appendix E.1) for square images of side `resolution` (a power of 2 >= 8):
    CNN encoder + position embedding + MLP, Slot Attention, spatial-broadcast decoder to RGB and an alpha logit per
    slot, masks the softmax of the alphas over the slots."""

    def __init__(self, resolution: int = 64, num_slots: int = 7, num_iterations: int = 3, channels: int = 3,
                 hid_dim: int = 64, slot_dim: int = 64, mlp_hidden: int = 128):
        super().__init__()
        assert resolution >= DECODER_INIT_SIZE and resolution & (resolution - 1) == 0
        self.resolution, self.num_slots, self.channels = resolution, num_slots, channels
        self.encoder_cnn = nn.Sequential(
            nn.Conv2d(channels, hid_dim, 5, padding=2), nn.ReLU(inplace=True),
            nn.Conv2d(hid_dim, hid_dim, 5, padding=2), nn.ReLU(inplace=True),
            nn.Conv2d(hid_dim, hid_dim, 5, padding=2), nn.ReLU(inplace=True),
            nn.Conv2d(hid_dim, hid_dim, 5, padding=2), nn.ReLU(inplace=True))
        self.encoder_pos = SoftPositionEmbed(hid_dim, (resolution, resolution))
        self.layer_norm = nn.LayerNorm(hid_dim)
        self.mlp = nn.Sequential(nn.Linear(hid_dim, hid_dim), nn.ReLU(inplace=True), nn.Linear(hid_dim, hid_dim))
        self.slot_attention = SlotAttention(num_slots, slot_dim, num_iterations, hidden_dim=mlp_hidden)
        self.decoder_pos = SoftPositionEmbed(slot_dim, (DECODER_INIT_SIZE, DECODER_INIT_SIZE))
        layers, c_in = [], slot_dim
        for _ in range(int(math.log2(resolution // DECODER_INIT_SIZE))):  # 8 -> 16 -> ... -> resolution
            layers += [nn.ConvTranspose2d(c_in, hid_dim, 5, stride=2, padding=2, output_padding=1),
                       nn.ReLU(inplace=True)]
            c_in = hid_dim
        layers += [nn.ConvTranspose2d(c_in, hid_dim, 5, stride=1, padding=2), nn.ReLU(inplace=True),
                   nn.ConvTranspose2d(hid_dim, channels + 1, 3, stride=1, padding=1)]
        self.decoder_cnn = nn.Sequential(*layers)

    def forward(self, image, noise):
        """image `[b, s, s, c]` (model range), noise `[b, K, d]` -> dict of slots, attention `[b, s s, K]`, means
        `[b, K, s, s, c]`, log_masks `[b, K, s, s]`, reconstruction `[b, s, s, c]`."""
        b = image.shape[0]
        x = self.encoder_cnn(image.permute(0, 3, 1, 2))  # NCHW
        x = self.encoder_pos(x.permute(0, 2, 3, 1))  # NHWC
        x = self.mlp(self.layer_norm(torch.flatten(x, 1, 2)))  # [b, s s, c]
        slots, attention = self.slot_attention(x, noise)
        # Spatial broadcast decoder: every slot to an 8 x 8 grid, all b K slots in one batch.
        d = slots.shape[-1]
        z = slots.reshape(-1, 1, 1, d).repeat(1, DECODER_INIT_SIZE, DECODER_INIT_SIZE, 1)
        z = self.decoder_pos(z).permute(0, 3, 1, 2)
        out = self.decoder_cnn(z).permute(0, 2, 3, 1)  # [b K, s, s, c + 1]
        out = out.reshape(b, self.num_slots, *out.shape[1:])
        recons, alpha = out.split([self.channels, 1], dim=-1)
        log_masks = F.log_softmax(alpha[..., 0], dim=1)
        reconstruction = (recons * log_masks.exp().unsqueeze(-1)).sum(dim=1)
        return {"slots": slots, "attention": attention, "means": recons, "log_masks": log_masks,
                "reconstruction": reconstruction}


def model_images(images, input_range: str = "[-1,1]"):
    """[0, 1] images in the model's range (the paper's pipeline: 2x - 1)."""
    return 2.0 * images - 1.0 if input_range == "[-1,1]" else images


def mse_loss(net, images, noise, input_range: str = "[-1,1]"):
    """(per-example MSE `[b]`, outputs) of [0, 1] images `[b, s, s, c]`."""
    x = model_images(images, input_range)
    out = net(x, noise)
    return ((out["reconstruction"] - x) ** 2).mean(dim=(1, 2, 3)), out


def make_optimizer(net: nn.Module, lr: float = 4e-4, warmup_steps: int = 10_000, decay_rate: float = 0.5,
                   decay_steps: int = 100_000):
    """The paper's schedule: Adam, lr linear warm-up then exponential decay (E.1). (optimizer, scheduler)."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)

    def factor(step):
        return min(1.0, (step + 1) / warmup_steps) * decay_rate ** (step / decay_steps)

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_step(net, optimizer, scheduler, images, noise) -> float:
    """One Adam step on the batch-mean MSE of [0, 1] images; returns the loss (`.item()` blocks)."""
    optimizer.zero_grad(set_to_none=True)
    mse, _ = mse_loss(net, images, noise)
    loss = mse.mean()
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss.item()


# ---------------------------------------------------------------- JAX parameters -> PyTorch

def _conv(a):  # HWIO -> [o, i, kh, kw]
    return a.transpose(3, 2, 0, 1)


def _conv_transpose(a):  # HWIO (correlation of the dilated input) -> [i, o, kh, kw] (scatter): flip and transpose
    return a[::-1, ::-1].transpose(2, 3, 0, 1)


def _linear(a):  # [in, out] -> [out, in]
    return a.T


def _same(a):
    return a


def parameter_map(net: SlotAttentionAutoEncoder) -> dict[str, tuple[str, callable]]:
    """{JAX parameter path 'a/b/c': (PyTorch parameter name, layout conversion JAX -> PyTorch)}."""
    table = {}
    convs = [i for i, m in enumerate(net.encoder_cnn) if isinstance(m, nn.Conv2d)]
    for j, i in enumerate(convs):
        table[f"encoder/{j}/kernel"] = (f"encoder_cnn.{i}.weight", _conv)
        table[f"encoder/{j}/bias"] = (f"encoder_cnn.{i}.bias", _same)
    for ours, theirs in (("encoder_position", "encoder_pos"), ("decoder_position", "decoder_pos")):
        table[f"{ours}/dense/kernel"] = (f"{theirs}.embedding.weight", _linear)
        table[f"{ours}/dense/bias"] = (f"{theirs}.embedding.bias", _same)
    table["norm/scale"], table["norm/bias"] = ("layer_norm.weight", _same), ("layer_norm.bias", _same)
    for ours, i in (("mlp_hidden", 0), ("mlp_out", 2)):
        table[f"{ours}/kernel"], table[f"{ours}/bias"] = (f"mlp.{i}.weight", _linear), (f"mlp.{i}.bias", _same)
    deconvs = [i for i, m in enumerate(net.decoder_cnn) if isinstance(m, nn.ConvTranspose2d)]
    for j, i in enumerate(deconvs):
        ours = f"decoder/{j}" if j < len(deconvs) - 1 else "decoder_out"
        table[f"{ours}/kernel"] = (f"decoder_cnn.{i}.weight", _conv_transpose)
        table[f"{ours}/bias"] = (f"decoder_cnn.{i}.bias", _same)
    sa = "slot_attention"
    for ours, theirs in (("norm_inputs", "norm_input"), ("norm_slots", "norm_slots"), ("norm_mlp", "norm_pre_ff")):
        table[f"{sa}/{ours}/scale"] = (f"{sa}.{theirs}.weight", _same)
        table[f"{sa}/{ours}/bias"] = (f"{sa}.{theirs}.bias", _same)
    for x in "qkv":
        table[f"{sa}/project_{x}/kernel"] = (f"{sa}.to_{x}.weight", _linear)
    for ours, theirs in (("input", "ih"), ("recurrent", "hh")):
        table[f"{sa}/gru/{ours}/kernel"] = (f"{sa}.gru.weight_{theirs}", _linear)
        table[f"{sa}/gru/{ours}/bias"] = (f"{sa}.gru.bias_{theirs}", _same)
    for ours, i in (("mlp_hidden", 0), ("mlp_out", 2)):
        table[f"{sa}/{ours}/kernel"] = (f"{sa}.mlp.{i}.weight", _linear)
        table[f"{sa}/{ours}/bias"] = (f"{sa}.mlp.{i}.bias", _same)
    table[f"{sa}/slots_mu"] = (f"{sa}.slots_mu", _same)
    table[f"{sa}/slots_log_sigma"] = (f"{sa}.slots_log_sigma", _same)
    return table


def flat_jax_params(params) -> dict[str, np.ndarray]:
    """{'a/b/c': float32 array} of an nnx State (or its pure dict, or any nested mapping of arrays)."""
    from flax import nnx, traverse_util

    if isinstance(params, nnx.State):
        params = nnx.to_pure_dict(params)
    flat = traverse_util.flatten_dict(params)
    return {"/".join(str(k) for k in path): np.array(v, np.float32) for path, v in flat.items() if v is not None}


def load_jax_params(net: SlotAttentionAutoEncoder, params) -> None:
    """Copies one seed's JAX parameters into `net` (every parameter on both sides, shapes checked)."""
    flat, table = flat_jax_params(params), parameter_map(net)
    theirs = dict(net.named_parameters())
    if set(flat) != set(table) or {name for name, _ in table.values()} != set(theirs):
        raise ValueError(f"parameter sets differ: JAX-only {sorted(set(flat) - set(table))}, map-only "
                         f"{sorted(set(table) - set(flat))}, torch-only "
                         f"{sorted(set(theirs) - {n for n, _ in table.values()})}")
    with torch.no_grad():
        for path, (name, convert) in table.items():
            value = torch.from_numpy(np.array(convert(flat[path]), np.float32))  # a writable copy
            if value.shape != theirs[name].shape:
                raise ValueError(f"{path} -> {name}: shape {tuple(value.shape)} vs {tuple(theirs[name].shape)}")
            theirs[name].copy_(value)


# ---------------------------------------------------------------- the check

def _diff(a, b) -> tuple[float, float]:
    """(max |a - b|, max |a - b| / max |b|) of two arrays (b the JAX side)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    err = float(np.max(np.abs(a - b)))
    return err, err / max(float(np.max(np.abs(b))), 1e-30)


def check(sizes=(64, 16), batch: int = 4, num_slots: int = 7, seed: int = 0, rtol: float = 1e-4,
          verbose: bool = True) -> dict:
    """Asserts the PyTorch statement equals the JAX model on identical weights, images and slot noise: the
    reconstruction, log masks, per-example MSE, and the gradient of the batch-mean MSE w.r.t. every parameter
    (max |diff| / max |JAX value| <= rtol per tensor; float32). Returns {size: {quantity: (abs, rel)}}.

    One gradient is zero in exact arithmetic: the bias of the LayerNorm before q (norm_slots) adds the same vector
    to every slot's query, which shifts each input's logits by one constant across the slots, and the softmax over
    the slots removes it. Both sides give it rounding noise (~1e-14), so a gradient tensor also passes when its
    difference is within rtol x 1e-3 x the largest gradient entry of the model (an absolute floor)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from noisegroup.models.slot_attention import LOSS_TERMS, SlotAttentionFamily

    family = SlotAttentionFamily(num_slots=num_slots)
    report = {}
    for size in sizes:
        model = family.build((size, size, 3), nnx.Rngs(params=jax.random.key(seed)))
        graphdef, params = nnx.split(model, nnx.Param)
        images = jax.random.uniform(jax.random.key(seed + 1), (batch, size, size, 3))
        batch_ = {"images": images}
        noise = family.sample_noise(jax.random.key(seed + 2), batch_)

        def loss_fn(p, graphdef=graphdef, batch_=batch_, noise=noise):
            out = family.outputs(nnx.merge(graphdef, p), batch_, noise)
            mse = LOSS_TERMS["reconstruction"](out)
            return jnp.mean(mse), (out, mse)

        (_, (out, mse)), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)

        net = SlotAttentionAutoEncoder(size, num_slots)
        load_jax_params(net, params)
        t_images = torch.from_numpy(np.array(images))  # writable copies
        t_noise = torch.from_numpy(np.array(noise))
        net.zero_grad(set_to_none=True)
        t_mse, t_out = mse_loss(net, t_images, t_noise)
        t_mse.mean().backward()

        rows = {}
        for key in ("reconstruction", "log_masks", "attention", "slots"):
            rows[key] = _diff(t_out[key].detach().numpy(), out[key])
        rows["mse"] = _diff(t_mse.detach().numpy(), mse)
        theirs = dict(net.named_parameters())
        flat_grads = flat_jax_params(grads)
        worst = ("", 0.0, 0.0)
        grad_rows = {}
        for path, (name, convert) in parameter_map(net).items():
            err, rel = _diff(theirs[name].grad.numpy(), np.ascontiguousarray(convert(flat_grads[path])))
            grad_rows[path] = (err, rel)
            if rel > worst[2]:
                worst = (path, err, rel)
        rows["grad (worst tensor)"] = worst[1:]
        report[size] = {**rows, "grads": grad_rows, "worst_grad": worst[0]}
        if verbose:
            print(f"{size} x {size}, batch {batch}, K = {num_slots}: max |torch - jax| (relative to max |jax|)")
            for key, (err, rel) in rows.items():
                print(f"  {key:22s} {err:.3e}  ({rel:.2e})" + (f"  [{worst[0]}]" if key.startswith("grad") else ""))
            print(f"  gradients of the mean MSE, {len(grad_rows)} tensors: median relative "
                  f"{np.median([r for _, r in grad_rows.values()]):.2e}", flush=True)
        scale = max(float(np.max(np.abs(g))) for g in flat_grads.values())
        floor = rtol * 1e-3 * scale
        failures = {k: v for k, v in rows.items() if v[1] > rtol and not k.startswith("grad")}
        failures.update({k: v for k, v in grad_rows.items() if v[1] > rtol and v[0] > floor})
        if verbose:
            floored = sorted(k for k, v in grad_rows.items() if v[1] > rtol and v[0] <= floor)
            print(f"  largest gradient entry {scale:.3e}; below the absolute floor {floor:.1e} (relative error "
                  f"meaningless): {floored or 'none'}")
            name, (err, rel) = max(((k, v) for k, v in grad_rows.items() if k not in floored), key=lambda kv: kv[1][1])
            print(f"  worst gradient tensor otherwise: {err:.3e}  ({rel:.2e})  [{name}]", flush=True)
        assert not failures, f"{size} x {size}: torch and JAX differ beyond rtol {rtol}: {failures}"
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--sizes", default="64,16")
    parser.add_argument("--rtol", type=float, default=1e-4)
    args = parser.parse_args()
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    print(f"torch {torch.__version__}, {threads} threads")
    check(tuple(int(s) for s in args.sizes.split(",")), args.batch, rtol=args.rtol)
    print("agree: reconstruction, log masks, per-example MSE and every gradient within rtol", args.rtol)


if __name__ == "__main__":
    main()
