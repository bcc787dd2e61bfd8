"""Benchmark: the LNS training step and the LNS decode loop, JAX (noisegroup) vs. PyTorch eager, side by side.

    python -m benchmarks.train_step              # needs `pip install torch==2.13.0` for the PyTorch column
    python -m benchmarks.train_step --native     # also time JAX with XLA's native (slow on CPU) conv layers
    python -m benchmarks.train_step --layers     # per layer: forward + backward, fast vs native, batch 32

Measures, at batch 64 on 64 x 64 x 3 images: one optimizer step (Adam; AE: per-image SSE; VAE: SSE + beta KL,
with GECO in JAX; on CPU once as one pass and once in the default micro-batches of `trainer.CPU_MICRO_BATCH`, which
average to the same step), decoding 16 latents x 40 noise samples (the LNS inner loop: one vmapped program in JAX,
a loop over the 40 samples in PyTorch, as the reference), and how the JAX step grows with S seeds (vmap, unroll and
loop: `noisegroup.engine.parallel`) and the process's peak memory with it.
Median of repeated runs after a warm-up (compilation excluded). The PyTorch network below is a plain restatement of the
reference's (`models.py`), kept here as an optional baseline: PyTorch is not a noisegroup requirement. PyTorch is
timed twice: in this process, under the malloc settings this entry point applies (like for like), and in a fresh
process with glibc's defaults (PyTorch as usually run; `noisegroup/malloc.py` says why they differ).
"""

from __future__ import annotations

from noisegroup import malloc

MALLOC_TUNED = malloc.reuse_freed_memory()  # before JAX starts its threads, as every entry point

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from experiments.configs import train as train_configs  # noqa: E402
from noisegroup.engine import loop, trainer  # noqa: E402
from noisegroup.models import layers  # noqa: E402

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


def step_config(model: str, impl: str, seeds: int = 1, micro: int | str = "auto") -> dict:
    """The paper's training config (Adam 5e-5, batch 64, GECO for the VAE) for this benchmark's workloads."""
    config = train_configs.get_config("paper").to_dict()
    config.update(model=model, conv_impl=impl, seeds=tuple(range(seeds)), batch_size=BATCH, micro_batch_size=micro)
    return config


def jax_step_time(model: str, impl: str, seeds: int, repeats: int, batching: str = "vmap", micro="auto") -> float:
    _, _, (init, step, _) = loop.build(step_config(model, impl, seeds, micro), (64, 64, 3), batching)
    keys = jnp.stack([jax.random.key(s) for s in range(seeds)])
    batch = {"images": jax.random.uniform(jax.random.key(1), (seeds, BATCH, 64, 64, 3))}
    holder = {"state": init(keys)}

    def run():
        holder["state"], metrics = step(holder["state"], batch, keys)
        jax.block_until_ready(metrics)

    return timed(run, repeats)


def jax_decode_time(impl: str, repeats: int) -> float:
    _, trainer, _ = loop.build(step_config("ae", impl), (64, 64, 3))
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


LAYERS = [  # name, class, (in, out, kernel, stride, padding), input height and width: the AE's layers in order
    ("enc1", layers.Conv, (3, 32, 3, 1, 1), 64), ("enc2", layers.Conv, (32, 64, 4, 2, 1), 64),
    ("enc3", layers.Conv, (64, 64, 4, 2, 1), 32), ("enc4", layers.Conv, (64, 128, 4, 2, 1), 16),
    ("enc5", layers.Conv, (128, 128, 4, 2, 1), 8), ("enc6", layers.Conv, (128, 256, 4, 1, 0), 4),
    ("dec1", layers.ConvTranspose, (256, 128, 4, 1, 0), 1), ("dec2", layers.ConvTranspose, (128, 128, 4, 2, 1), 4),
    ("dec3", layers.ConvTranspose, (128, 64, 4, 2, 1), 8), ("dec4", layers.ConvTranspose, (64, 64, 4, 2, 1), 16),
    ("dec5", layers.ConvTranspose, (64, 32, 4, 2, 1), 32), ("out", layers.ConvTranspose, (32, 3, 3, 1, 1), 64),
]


def layer_times(batch: int, repeats: int) -> None:
    """Per layer, milliseconds of forward and of forward + gradients (parameters and input), fast vs native."""
    print(f"\nper layer at batch {batch}, milliseconds (forward | forward + gradients of parameters and input)")
    print(f"{'layer':6s} {'fast fwd':>9s} {'fast f+b':>9s} {'native fwd':>11s} {'native f+b':>11s} "
          f"{'native/fast':>12s}")
    totals = {"fast": 0.0, "native": 0.0}
    for name, cls, args, hw in LAYERS:
        cells = []
        for impl in ("fast", "native"):
            graph, params = nnx.split(cls(*args, impl=impl, rngs=nnx.Rngs(0)))
            x = jax.random.normal(jax.random.key(1), (batch, hw, hw, args[0]))
            forward = jax.jit(lambda p, x: nnx.merge(graph, p)(x))
            backward = jax.jit(jax.grad(lambda p, x: jnp.sum(jnp.sin(nnx.merge(graph, p)(x))), argnums=(0, 1)))
            f = timed(lambda: jax.block_until_ready(forward(params, x)), repeats) * 1e3
            b = timed(lambda: jax.block_until_ready(backward(params, x)), repeats) * 1e3
            totals[impl] += b
            cells += [f, b]
        ratio = cells[3] / cells[1]
        print(f"{name:6s} {cells[0]:9.1f} {cells[1]:9.1f} {cells[2]:11.1f} {cells[3]:11.1f} {ratio:12.1f}")
    print(f"{'total':6s} {'':9s} {totals['fast']:9.1f} {'':11s} {totals['native']:11.1f} "
          f"{totals['native'] / totals['fast']:12.1f}")


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
    return timed(torch_step(model), repeats)


def torch_step(model: str):
    """PyTorch's training step of the reference network ("ae" or "vae") at batch 64, as a function of no arguments."""
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

    return run


def torch_decode_time(repeats: int) -> float:
    torch, _, decoder = torch_networks(vae=False)
    means = torch.randn(DECODE_IMAGES, LATENT)

    def run():
        with torch.no_grad():
            for _ in range(NOISE_SAMPLES):
                torch.sigmoid(decoder(means + 1e-3 * torch.randn(1, LATENT)))

    return timed(run, repeats)


def torch_times(repeats: int) -> dict[str, float]:
    """PyTorch seconds per workload in this process."""
    return {"ae": torch_step_time("ae", repeats), "vae": torch_step_time("vae", repeats),
            "decode": torch_decode_time(repeats)}


def torch_times_glibc_defaults(repeats: int) -> dict[str, float]:
    """PyTorch seconds per workload in a fresh process with glibc's default malloc: PyTorch as a user runs it.

    This entry point tunes malloc for the whole process (`noisegroup/malloc.py`), and PyTorch's large tensors
    gain from it too, so the in-process column is the like-for-like one and this column the usual baseline."""
    env = {**os.environ, malloc.ENV_VAR: "default"}
    command = [sys.executable, "-m", "benchmarks.train_step", "--torch-only", "--repeats", str(repeats)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--native", action="store_true", help="also time XLA's native (slow on CPU) conv layers")
    parser.add_argument("--layers", action="store_true", help="only time each layer, fast vs native")
    parser.add_argument("--torch-only", action="store_true", help="print PyTorch's times as JSON (used internally)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--batchings", nargs="+", default=["loop", "unroll", "vmap"],
                        help="ways to map seeds (noisegroup.engine.parallel)")
    parser.add_argument("--seeds-only", action="store_true", help="only the S-seeds table")
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(os.cpu_count())
        have_torch = True
    except ImportError:
        have_torch = False
    if args.torch_only:
        print(json.dumps(torch_times(args.repeats)))
        return
    print(f"\n{jax.default_backend()} backend, {os.cpu_count()} cores, jax {jax.__version__}, "
          f"noisegroup malloc settings {'on' if MALLOC_TUNED else 'off'}")
    if args.layers:
        layer_times(32, args.repeats)
        return
    if args.seeds_only:
        seed_times(args.seeds, args.batchings, max(2, args.repeats // 2), trainer.resolve_micro_batch("auto", BATCH)
                   or BATCH)
        return
    if not have_torch:
        print("PyTorch not installed (pip install torch==2.13.0): PyTorch columns left empty")

    micro = trainer.resolve_micro_batch("auto", BATCH)  # the default: CPU_MICRO_BATCH on CPU, one pass elsewhere
    columns = [("fast", BATCH)] + ([("fast", micro)] if micro else []) + ([("native", BATCH)] if args.native else [])
    names = [f"{impl}" + (f" mb{m}" if m < BATCH else "") for impl, m in columns]
    print(f"batch {BATCH}; jax columns: conv layers (fast/native) and micro-batch (mbN: N images a gradient pass); "
          "torch: in this process (same malloc settings), and in a fresh process with glibc's defaults")
    print(f"{'workload':40s} " + " ".join(f"{'jax ' + n + ' s':>16s}" for n in names)
          + f" {'torch s':>9s} {'torch glibc s':>14s} {'torch/jax':>10s} {'glibc/jax':>10s}")
    torch_same = torch_times(args.repeats) if have_torch else {}
    torch_glibc = torch_times_glibc_defaults(args.repeats) if have_torch else {}
    for model in ("ae", "vae"):
        jax_s = [jax_step_time(model, impl, 1, args.repeats if impl == "fast" else 1, micro=m) for impl, m in columns]
        report(f"train step {model.upper()}", jax_s, torch_same.get(model), torch_glibc.get(model))
    decode = [None if m < BATCH else jax_decode_time(impl, args.repeats) for impl, m in columns]  # no gradients
    report(f"decode {DECODE_IMAGES} latents x {NOISE_SAMPLES} noise samples", decode, torch_same.get("decode"),
           torch_glibc.get("decode"))

    seed_times(args.seeds, args.batchings, max(2, args.repeats // 2), micro or BATCH)


def seed_times(seed_counts: list[int], batchings: list[str], repeats: int, micro: int) -> None:
    """AE train step with S seeds, each way of mapping the seeds, and this process's peak memory so far."""
    print(f"\nAE train step with S seeds (jax fast, micro-batch {micro}), batch {BATCH} per seed; seconds per step, "
          "per seed, and the process's peak RSS after the row (GB)")
    print(f"  {'S':>3s} " + " ".join(f"{b:>8s} {'per seed':>9s}" for b in batchings) + f" {'peak GB':>8s}")
    for s in seed_counts:
        times = [jax_step_time("ae", "fast", s, repeats, b, micro) for b in batchings]
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(f"  {s:3d} " + " ".join(f"{t:8.3f} {t / s:9.3f}" for t in times) + f" {peak:8.2f}", flush=True)


def report(label: str, jax_s: list[float | None], torch_s: float | None, torch_glibc_s: float | None) -> None:
    """One table row; None is a column that does not apply (the micro-batch column of a decode)."""
    cells = " ".join(f"{'-':>16s}" if t is None else f"{t:16.3f}" for t in jax_s)
    best = min(t for t in jax_s if t is not None)
    torch_cells = " ".join(f"{t:{w}.3f}" if t else f"{'-':>{w}s}" for t, w in ((torch_s, 9), (torch_glibc_s, 14)))
    ratios = " ".join(f"{t / best:10.2f}" if t else f"{'-':>10s}" for t in (torch_s, torch_glibc_s))
    print(f"{label:40s} {cells} {torch_cells} {ratios}")


if __name__ == "__main__":
    main()
