"""Benchmark: the LNS training step and the LNS decode loop, JAX (noisegroup) vs. PyTorch eager, side by side.

    python -m benchmarks.train_step              # needs `pip install torch==2.13.0` for the PyTorch column
    python -m benchmarks.train_step --native     # also time JAX with XLA's native (slow on CPU) conv layers

Measures, at batch 64 on 64 x 64 x 3 images: one optimizer step (Adam; AE: per-image SSE; VAE: SSE + beta KL,
with GECO in JAX), decoding 16 latents x 40 noise samples (the LNS inner loop: one vmapped program in JAX, a loop
over the 40 samples in PyTorch, as the reference), and how the JAX step grows with S vmapped seeds. Median of
repeated runs after a warm-up (compilation excluded). The PyTorch network below is a plain restatement of the
reference's (`models.py`), kept here as an optional baseline: PyTorch is not a noisegroup requirement.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from noisegroup import train

BATCH, LATENT, NOISE_SAMPLES, DECODE_IMAGES, DECODE_CHUNK = 64, 15, 40, 16, 8


def timed(fn, repeats: int) -> float:
    """Median seconds of `fn()` (which must block until done) after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- JAX ------------------------------------------------------------------------------------------------------


def jax_step_time(model: str, impl: str, seeds: int, repeats: int, batching: str = "vmap") -> float:
    trainer = train.Trainer(model=model, optimizer=optax.adam(5e-5), conv_impl=impl)
    init, step, _ = trainer.multi_seed(batching)
    keys = jnp.stack([jax.random.key(s) for s in range(seeds)])
    images = jax.random.uniform(jax.random.key(1), (seeds, BATCH, 64, 64, 3))
    holder = {"state": init(keys)}

    def run():
        holder["state"], metrics = step(holder["state"], images, keys)
        jax.block_until_ready(metrics)

    return timed(run, repeats)


def jax_decode_time(impl: str, repeats: int) -> float:
    trainer = train.Trainer(model="ae", conv_impl=impl)
    params = trainer.init(jax.random.key(0)).params

    @jax.jit
    def decode_noisy(params, means, key):  # [b, z] -> [n * b, 64, 64, 3]
        model = trainer.model_fn(params)
        noise = 1e-3 * jax.random.normal(key, (NOISE_SAMPLES, *means.shape))
        latents = (means[None] + noise).reshape(-1, DECODE_CHUNK, LATENT)
        # lax.map over chunks of 8 latents: on XLA:CPU a 640-image batch is ~2x slower than 80 batches of 8
        # (cache), and memory stays bounded for any number of samples.
        return jax.lax.map(lambda z: jax.nn.sigmoid(model.decode(z)), latents).reshape(-1, 64, 64, 3)

    means = jax.random.normal(jax.random.key(2), (DECODE_IMAGES, LATENT))
    return timed(lambda: jax.block_until_ready(decode_noisy(params, means, jax.random.key(3))), repeats)


# --- PyTorch (optional baseline) ------------------------------------------------------------------------------


def torch_networks(vae: bool):
    import torch
    from torch import nn

    z = LATENT
    encoder = nn.Sequential(
        nn.Conv2d(3, 32, 3, 1, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
        nn.Conv2d(64, 64, 4, 2, 1), nn.ReLU(), nn.Conv2d(64, 128, 4, 2, 1), nn.ReLU(),
        nn.Conv2d(128, 128, 4, 2, 1), nn.ReLU(), nn.Conv2d(128, 256, 4, 1), nn.ReLU(), nn.Flatten(),
        nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 2 * z if vae else z),
    )
    decoder = nn.Sequential(
        nn.Linear(z, 128), nn.ReLU(), nn.Linear(128, 256), nn.Unflatten(1, (256, 1, 1)), nn.ReLU(),
        nn.ConvTranspose2d(256, 128, 4), nn.ReLU(), nn.ConvTranspose2d(128, 128, 4, 2, 1), nn.ReLU(),
        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),
        nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 3, 3, 1, 1),
    )
    for m in [*encoder, *decoder]:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)
            nn.init.zeros_(m.bias)
    return torch, encoder, decoder


def torch_step_time(model: str, repeats: int) -> float:
    torch, encoder, decoder = torch_networks(vae=model == "vae")
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=5e-5)
    x = torch.rand(BATCH, 3, 64, 64)

    def run():
        h = encoder(x)
        if model == "vae":
            mu, logvar = h[:, :LATENT], h[:, LATENT:]
            z = mu + torch.exp(logvar / 2) * torch.randn_like(mu)
            kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp())).sum(1).mean()
        else:
            z, kl = h, 0.0
        recon = ((torch.sigmoid(decoder(z)) - x) ** 2).sum() / BATCH
        loss = recon + 1.0 * kl
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return timed(run, repeats)


def torch_decode_time(repeats: int) -> float:
    torch, _, decoder = torch_networks(vae=False)
    means = torch.randn(DECODE_IMAGES, LATENT)

    def run():
        with torch.no_grad():
            for _ in range(NOISE_SAMPLES):
                torch.sigmoid(decoder(means + 1e-3 * torch.randn(1, LATENT)))

    return timed(run, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--native", action="store_true", help="also time XLA's native conv layers (minutes)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(os.cpu_count())
        have_torch = True
    except ImportError:
        have_torch = False
        print("PyTorch not installed (pip install torch==2.13.0): PyTorch column left empty")

    print(f"\n{jax.default_backend()} backend, {os.cpu_count()} cores, batch {BATCH}, jax {jax.__version__}")
    impls = ["fast"] + (["native"] if args.native else [])
    print(f"{'workload':40s} " + " ".join(f"{'jax ' + i + ' s':>14s}" for i in impls) + f" {'torch s':>9s} {'torch/jax':>10s}")
    rows = [(f"train step {m.upper()}", lambda i, m=m: jax_step_time(m, i, 1, args.repeats if i == "fast" else 1),
             (lambda m=m: torch_step_time(m, args.repeats)) if have_torch else None) for m in ("ae", "vae")]
    rows.append((f"decode {DECODE_IMAGES} latents x {NOISE_SAMPLES} noise samples",
                 lambda i: jax_decode_time(i, args.repeats), (lambda: torch_decode_time(args.repeats)) if have_torch else None))
    for label, jax_fn, torch_fn in rows:
        jax_s = [jax_fn(i) for i in impls]
        torch_s = torch_fn() if torch_fn else None
        cells = " ".join(f"{s:14.3f}" for s in jax_s)
        ratio = f"{torch_s / jax_s[0]:10.2f}" if torch_s else f"{'-':>10s}"
        print(f"{label:40s} {cells} {torch_s if torch_s is None else round(torch_s, 3)!s:>9s} {ratio}")

    print(f"\nAE train step with S seeds in one program (jax fast), batch {BATCH} per seed; seconds per step")
    print(f"  {'S':>3s} {'vmap':>8s} {'per seed':>9s} {'unroll':>8s} {'per seed':>9s}")
    for s in args.seeds:
        times = [jax_step_time("ae", "fast", s, max(2, args.repeats // 2), b) for b in ("vmap", "unroll")]
        print(f"  {s:3d} " + " ".join(f"{t:8.3f} {t / s:9.3f}" for t in times))


if __name__ == "__main__":
    main()
