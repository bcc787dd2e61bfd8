"""Benchmark: the MONet training step, JAX (the noisegroup engine) vs. PyTorch eager, side by side.

    python -m benchmarks.monet_step                 # needs `pip install torch==2.13.0` for the PyTorch columns
    python -m benchmarks.monet_step --no-torch --repeats 2 --seeds 1 2

The workload is Komatsu et al.'s condition 11 (the original MONet): K = 5 slots, 64 x 64 x 3 images, the light
widths (U-Net base c = 32), loss = NLL + 0.5 KL + 0.25 mask KL, RMSProp lr 1e-4 (PyTorch's flavour), batch 64.
Measures:
  - one optimizer step as the engine runs it (`loop.build(config, (64, 64, 3))` with `model="monet"`): in one pass,
    in passes of 16 and of 8 images (gradients averaged; 8 is MONet's CPU default, `MonetFamily.cpu_micro_batch`)
    and, on CPU, in one pass with the 3x3 convs (U-Net and decoder) and instance norms as XLA's plain ones
    (autodiff); the forward pass alone (the loss, no gradients) as a row of its own.
    Median of `--repeats` runs after a warm-up; compile time apart (`jit(...).lower(...).compile()`).
  - the same network and loss restated in plain PyTorch (below; PyTorch is not a noisegroup requirement) with
    `torch.optim.RMSprop(lr=1e-4)` and PyTorch's defaults, timed the same way twice: in this process, under the malloc
    settings this entry point applies (like for like), and in a fresh process with glibc's defaults (PyTorch as
    usually run; `noisegroup/malloc.py` says why they differ). Both networks must have the same number of
    parameters (printed).
  - the like-for-like ratios: `--interleave` rounds of one JAX step in one pass, one in MONet's CPU passes, and one
    PyTorch step, taken in turn, so that a shared machine's drift (2 s a step over minutes, here) falls on all alike.
  - FLOPs: the convolutions and matrix products of one forward pass per image, counted from the traced programs
    (U-Net call x (K - 1), component encoder x K, broadcast decoder x K); a training step as ~3 x forward x batch
    (forward, then gradients of activations and of weights), against this CPU's float32 matrix-product rate measured
    here (a large jitted matmul): the fraction of it each step reaches.
  - how the step grows with S seeds (batch `--seed-batch` per seed, default micro-batches), seeds mapped by
    `jax.vmap` or by the engine's loop (`noisegroup.engine.parallel`), each cell in a fresh process (same malloc
    settings) whose peak RSS (VmHWM) is reported.
The machine's load average is printed at the start and the end: on a shared CPU the timings move with it.
"""

from __future__ import annotations

from noisegroup import malloc

MALLOC_TUNED = malloc.reuse_freed_memory()  # before JAX starts its threads, as every entry point

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import peak_rss_gb  # noqa: E402
from noisegroup.engine import loop, trainer  # noqa: E402
from noisegroup.models.monet import MonetFamily  # noqa: E402

SIZE, CONDITION, LEARNING_RATE, MATMUL_SIDE = 64, "11", 1e-4, 2048


def timed(fn, repeats: int) -> tuple[float, float]:
    """(seconds of the first call, median seconds of `repeats` further calls); `fn()` must block until done."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


# --- JAX --------------------------------------------------------------------------------------------------------


def step_config(batch: int, seeds: int = 1, micro: int | str = "auto", conv_impl: str = "auto") -> dict:
    """Condition 11 on Multi-dSprites (K = 5) with MONet's optimiser: RMSProp 1e-4, decay 0.99, eps 1e-8 outside
    the square root (PyTorch's defaults), the family's default widths (the light U-Net, c = 32). `conv_impl`
    "native" runs the U-Net's and the broadcast decoder's 3x3 convs as XLA's plain convolutions and the instance
    norms by autodiff."""
    # The family's defaults are condition 11 (MONet's weights, the latent sampled) with Multi-dSprites' K = 5.
    return {"model": "monet", "dataset": "multi_dsprites", "optimizer": "rmsprop",
            "learning_rate": LEARNING_RATE, "rmsprop_decay": 0.99, "rmsprop_eps": 1e-8, "batch_size": batch,
            "seeds": tuple(range(seeds)), "micro_batch_size": micro, "conv_impl": conv_impl, "progress": False}


def jax_step_time(batch: int, seeds: int, repeats: int, batching: str = "vmap", micro: int | str = "auto",
                  conv_impl: str = "auto"):
    """(compile s or None, first call s, median step s, XLA's FLOP count of the step or None) of the engine's step.

    Compile time is measured apart where the step is one jitted program (`lower(...).compile()`, which the calls
    then reuse); the engine's seed loop ("loop") compiles inside its first call."""
    _, trainer, _ = loop.build(step_config(batch, seeds, micro, conv_impl), (SIZE, SIZE, 3), batching)
    init, step, _ = trainer.programs(batching)  # the loss weights an input, as the engine runs it
    weights = trainer.weight_arrays()
    keys = jnp.stack([jax.random.key(s) for s in range(seeds)])
    images = {"images": jax.random.uniform(jax.random.key(1), (seeds, batch, SIZE, SIZE, 3))}
    holder = {"state": jax.block_until_ready(init(keys))}
    compile_s, flops = None, None
    if hasattr(step, "lower"):
        start = time.perf_counter()
        compiled = step.lower(holder["state"], images, keys, weights).compile()
        compile_s = time.perf_counter() - start
        flops = xla_flops(compiled)

    def run():
        holder["state"], metrics = step(holder["state"], images, keys, weights)
        jax.block_until_ready(metrics)

    first, median = timed(run, repeats)
    return compile_s, first, median, flops


def jax_forward_time(batch: int, repeats: int) -> tuple[float, float]:
    """(compile s, median s) of the loss alone (one pass, no gradients) at `batch`."""
    _, tr, _ = loop.build(step_config(batch), (SIZE, SIZE, 3))
    params = tr.init(jax.random.key(0)).params
    images = {"images": jax.random.uniform(jax.random.key(1), (batch, SIZE, SIZE, 3))}
    noise = tr.family.sample_noise(jax.random.key(2), images)
    forward = jax.jit(lambda p, b, n: tr.loss(p, b, n, None)[0])
    start = time.perf_counter()
    forward.lower(params, images, noise).compile()
    compile_s = time.perf_counter() - start
    return compile_s, timed(lambda: jax.block_until_ready(forward(params, images, noise)), repeats)[1]


def xla_flops(compiled) -> float | None:
    """XLA's own FLOP count of a compiled program (its cost analysis), if the backend gives one."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - optional on some backends
        return None
    cost = cost[0] if isinstance(cost, (list, tuple)) and cost else cost
    return float(cost["flops"]) if isinstance(cost, dict) and "flops" in cost else None


def jax_parameter_count() -> int:
    _, tr, _ = loop.build(step_config(64), (SIZE, SIZE, 3))
    params = jax.eval_shape(tr.init, jax.random.key(0)).params
    return sum(math.prod(x.shape) for x in jax.tree.leaves(params))


def product_flops(fn, *args) -> int:
    """FLOPs of the convolutions and matrix products of `fn(*args)` (2 per multiply-add), read off its jaxpr."""

    def count(jaxpr) -> int:
        total = 0
        for eqn in jaxpr.eqns:
            out = eqn.outvars[0].aval.shape
            if eqn.primitive.name == "conv_general_dilated":
                rhs = eqn.invars[1].aval.shape  # each output element: (in channels / groups) x kernel area MACs
                total += 2 * math.prod(out) * math.prod(rhs) // rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
            elif eqn.primitive.name == "dot_general":
                (contracting, _), _ = eqn.params["dimension_numbers"]
                lhs = eqn.invars[0].aval.shape
                total += 2 * math.prod(out) * math.prod(lhs[d] for d in contracting)
            for value in eqn.params.values():  # sub-programs: jit, custom_jvp, ...
                for sub in value if isinstance(value, tuple) else (value,):
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        total += count(inner)
        return total

    return count(jax.make_jaxpr(fn)(*args).jaxpr)


def forward_flops() -> dict[str, int]:
    """Per image: FLOPs of one U-Net call, one encoder call and one decoder call of the benchmarked MONet."""
    _, tr, _ = loop.build(step_config(64), (SIZE, SIZE, 3))
    model = tr.build(jax.random.key(0))
    latent = tr.family.latent_dim
    return {"unet": product_flops(model.attention, jnp.zeros((1, SIZE, SIZE, 4))),
            "encoder": product_flops(model.encoder, jnp.zeros((1, SIZE, SIZE, 4))),
            "decoder": product_flops(model.decoder, jnp.zeros((1, latent)))}


def matmul_rate(repeats: int, side: int = MATMUL_SIDE) -> tuple[float, float]:
    """This CPU's float32 matrix-product rate in GFLOP/s, (median, best) of runs of a jitted `side` x `side`
    product (the best shows the machine when other processes leave it alone)."""
    a = jax.random.normal(jax.random.key(0), (side, side), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (side, side), jnp.float32)
    product = jax.jit(jnp.matmul)
    jax.block_until_ready(product(a, b))
    times = []
    for _ in range(max(2 * repeats, 10)):
        start = time.perf_counter()
        jax.block_until_ready(product(a, b))
        times.append(time.perf_counter() - start)
    flops = 2 * side**3 / 1e9
    return flops / statistics.median(times), flops / min(times)


# --- PyTorch (optional baseline) --------------------------------------------------------------------------------


def torch_monet(num_slots: int = 5, latent: int = 16):
    """MONet (light widths) in plain PyTorch, NCHW, PyTorch's default initialisation; returns (torch, model, loss_fn).

    loss_fn(images `[b, 3, h, w]` in [0, 1]) -> NLL + 0.5 KL + 0.25 mask KL, batch means (condition 11)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def block(c_in, c_out):  # 3x3 conv without bias -> instance norm (learned scale and bias) -> ReLU
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), nn.InstanceNorm2d(c_out, affine=True),
                             nn.ReLU())

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.down = nn.ModuleList([block(4, 32), block(32, 32), block(32, 64), block(64, 64), block(64, 64)])
            self.mlp = nn.Sequential(nn.Linear(1024, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                                     nn.Linear(128, 1024), nn.ReLU())
            self.up = nn.ModuleList([block(128, 64), block(128, 64), block(128, 32), block(64, 32), block(64, 32)])
            self.head = nn.Conv2d(32, 1, 1)

        def forward(self, x):
            skips = []
            for i, down in enumerate(self.down):
                x = down(x)
                skips.append(x)
                if i < len(self.down) - 1:
                    x = x[:, :, ::2, ::2]  # nearest resize by 1/2
            h = self.mlp(x.flatten(1)).view_as(x)
            for i, up in enumerate(self.up):
                h = up(torch.cat([h, skips[-1 - i]], 1))
                if i < len(self.up) - 1:
                    h = F.interpolate(h, scale_factor=2, mode="nearest")
            return self.head(h)

    class Decoder(nn.Module):  # spatial broadcast: tile to 72 x 72 + coordinates, four valid 3x3 convs, 1x1 to 4
        def __init__(self):
            super().__init__()
            self.convs = nn.Sequential(nn.Conv2d(latent + 2, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(),
                                       nn.Conv2d(32, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(),
                                       nn.Conv2d(32, 4, 1))
            grid = torch.linspace(-1, 1, SIZE + 8)
            self.register_buffer("coords", torch.stack(torch.meshgrid(grid, grid, indexing="ij"))[None])

        def forward(self, z):
            n, side = z.shape[0], SIZE + 8
            tiled = z[:, :, None, None].expand(n, latent, side, side)
            return self.convs(torch.cat([tiled, self.coords.expand(n, 2, side, side)], 1))

    class MONet(nn.Module):
        def __init__(self):
            super().__init__()
            self.unet = UNet()
            self.encoder = nn.Sequential(
                nn.Conv2d(4, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 32, 3, 2, 1), nn.ReLU(),
                nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(), nn.Conv2d(64, 64, 3, 2, 1), nn.ReLU(), nn.Flatten(),
                nn.Linear(1024, 256), nn.ReLU(), nn.Linear(256, 2 * latent))
            self.decoder = Decoder()

    model = MONet()
    sigma = torch.tensor([0.09] + [0.11] * (num_slots - 1)).view(1, num_slots, 1, 1, 1)

    def loss_fn(images):
        x = 2 * images - 1  # Komatsu's [-1, 1]
        b, c, h, w = x.shape
        log_scope, log_masks = torch.zeros(b, 1, h, w), []
        for _ in range(num_slots - 1):  # stick-breaking in log space
            alpha = model.unet(torch.cat([x, log_scope], 1))
            log_masks.append(log_scope + F.logsigmoid(alpha))
            log_scope = log_scope + F.logsigmoid(-alpha)
        log_m = torch.stack([*log_masks, log_scope], 1)  # [b, k, 1, h, w]
        slots = torch.cat([x[:, None].expand(b, num_slots, c, h, w), log_m], 2).view(b * num_slots, c + 1, h, w)
        raw = model.encoder(slots).view(b, num_slots, 2 * latent)
        mu, logvar = raw[..., :latent], 2 * raw[..., latent:]  # the second half is log sigma
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        out = model.decoder(z.view(b * num_slots, latent)).view(b, num_slots, c + 1, h, w)
        means, mask_logits = out[:, :, :c], out[:, :, c:]
        log_terms = log_m - torch.log(sigma) - (x[:, None] - means) ** 2 / (2 * sigma**2)
        nll = (-torch.logsumexp(log_terms, 1) + 0.5 * math.log(2 * math.pi)).sum((1, 2, 3)).mean()
        kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp())).sum((1, 2)).mean()
        mask_kl = (log_m.exp() * (log_m - F.log_softmax(mask_logits, 1))).sum((1, 2, 3, 4)).mean()
        return nll + 0.5 * kl + 0.25 * mask_kl

    return torch, model, loss_fn


def torch_times(batch: int, repeats: int) -> dict:
    """PyTorch in this process: {"train", "forward": median seconds, "parameters": count}."""
    torch, model, loss_fn = torch_monet()
    images = torch.rand(batch, 3, SIZE, SIZE)

    def forward():
        with torch.no_grad():
            loss_fn(images)

    return {"train": timed(torch_train_step(torch, model, loss_fn, images), repeats)[1],
            "forward": timed(forward, repeats)[1], "parameters": sum(p.numel() for p in model.parameters())}


def torch_train_step(torch, model, loss_fn, images):
    """PyTorch's training step of `torch_monet`'s model on `images`, as a function of no arguments (RMSProp,
    PyTorch's defaults)."""
    optimizer = torch.optim.RMSprop(model.parameters(), lr=LEARNING_RATE)  # alpha 0.99, eps 1e-8: the defaults

    def train():
        optimizer.zero_grad()
        loss_fn(images).backward()
        optimizer.step()

    return train


def interleaved_steps(batch: int, rounds: int, micros: tuple) -> list[list[float]]:
    """Seconds of `rounds` rounds of training steps, each round one JAX step per micro-batch setting in `micros`
    (`micro_batch_size` values: a number, or "auto", the engine's default) then one PyTorch step, in this process,
    after a warm-up of each: on a shared machine whose speed drifts over minutes, all see the same drift, so the
    per-round ratios are the like-for-like figures. Rows: [JAX s per setting..., PyTorch s]."""
    torch, model, loss_fn = torch_monet()
    torch_step = torch_train_step(torch, model, loss_fn, torch.rand(batch, 3, SIZE, SIZE))
    keys = jnp.stack([jax.random.key(0)])
    images = {"images": jax.random.uniform(jax.random.key(1), (1, batch, SIZE, SIZE, 3))}
    jax_steps = []
    for micro in micros:
        _, _, (init, step, _) = loop.build(step_config(batch, micro=micro), (SIZE, SIZE, 3))
        holder = {"state": jax.block_until_ready(init(keys)), "step": step}

        def jax_step(holder=holder):
            holder["state"], metrics = holder["step"](holder["state"], images, keys)
            jax.block_until_ready(metrics)

        jax_step()  # compile, warm up
        jax_steps.append(jax_step)
    torch_step()
    rows = []
    for _ in range(rounds):
        row = []
        for step in (*jax_steps, torch_step):
            start = time.perf_counter()
            step()
            row.append(time.perf_counter() - start)
        rows.append(row)
    return rows


def torch_times_glibc_defaults(batch: int, repeats: int) -> dict:
    """`torch_times` in a fresh process with glibc's default malloc: PyTorch as a user runs it."""
    env = {**os.environ, malloc.ENV_VAR: "default"}
    command = [sys.executable, "-m", "benchmarks.monet_step", "--torch-only", "--repeats", str(repeats),
               "--batch", str(batch)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# --- report -----------------------------------------------------------------------------------------------------


def report(label: str, jax_s: list[float | None], torch_s: float | None, torch_glibc_s: float | None) -> None:
    """One table row; None is a column that does not apply."""
    cells = " ".join(f"{'-':>13s}" if t is None else f"{t:13.3f}" for t in jax_s)
    best = min(t for t in jax_s if t is not None)
    torch_cells = " ".join(f"{t:{w}.3f}" if t else f"{'-':>{w}s}" for t, w in ((torch_s, 9), (torch_glibc_s, 14)))
    ratios = " ".join(f"{t / best:10.2f}" if t else f"{'-':>10s}" for t in (torch_s, torch_glibc_s))
    print(f"{label:30s} {cells} {torch_cells} {ratios}", flush=True)


def flops_report(flops: dict[str, int], batch: int, rates: tuple[float, float], steps: dict[str, float | None],
                 forwards: dict[str, float | None], xla_step_flops: float | None) -> None:
    """FLOPs per image and per step, the matmul rate, and the fraction of it each step reaches."""
    k = MonetFamily.num_slots
    per_image = (k - 1) * flops["unet"] + k * flops["encoder"] + k * flops["decoder"]
    step = 3 * per_image * batch
    print(f"\nFLOPs (convolutions and matrix products, 2 per multiply-add) of one forward pass per image: "
          f"U-Net {flops['unet'] / 1e6:.1f} M x {k - 1} + encoder {flops['encoder'] / 1e6:.1f} M x {k} + "
          f"decoder {flops['decoder'] / 1e6:.1f} M x {k} = {per_image / 1e9:.3f} GFLOP")
    print(f"train step ~ 3 x forward x batch {batch} = {step / 1e9:.0f} GFLOP"
          + (f" (XLA's cost analysis of the one-pass step: {xla_step_flops / 1e9:.0f} GFLOP)" if xla_step_flops
             else ""))
    rate, best = rates
    print(f"float32 matmul rate here: {rate:.0f} GFLOP/s (jitted {MATMUL_SIDE} x {MATMUL_SIDE} product, median; "
          f"best run {best:.0f}): no float32 program takes the step in less than {step / rate / 1e9:.2f} s "
          f"({step / best / 1e9:.2f} s at the best run's rate)")
    print(f"  {'':22s} {'step s':>8s} {'GFLOP/s':>8s} {'% of matmul':>12s} {'% of best':>10s}")
    for name, seconds in steps.items():
        if seconds:
            achieved = step / seconds / 1e9
            print(f"  {name:22s} {seconds:8.3f} {achieved:8.1f} {100 * achieved / rate:11.1f}% "
                  f"{100 * achieved / best:9.1f}%")
    ratios = [f"{name} {steps[name] / seconds:.1f}" for name, seconds in forwards.items()
              if seconds and steps.get(name)]
    if ratios:
        print("train step / forward pass (the 3x above assumes ~3): " + ", ".join(ratios))


def seed_cell(seeds: int, batching: str, batch: int, repeats: int) -> dict:
    """One cell of the seeds table in this (fresh) process: step seconds, first call, peak RSS."""
    compile_s, first, median, _ = jax_step_time(batch, seeds, repeats, batching)
    return {"seconds": median, "first": first + (compile_s or 0.0), "peak_gb": peak_rss_gb()}


def seed_times(seed_counts: list[int], batch: int, repeats: int) -> None:
    """The step with S seeds, mapped by vmap and by the engine's loop, each cell in a fresh process."""
    micro = trainer.resolve_micro_batch("auto", batch, MonetFamily.cpu_micro_batch)
    print(f"\nMONet train step with S seeds, batch {batch} per seed"
          + (f" (micro-batch {micro})" if micro else " (one pass)")
          + "; seconds per step and per seed, first call (compile included), and the peak RSS of the fresh process "
          "that ran the cell (GB)")
    batchings = ("vmap", "loop")
    print(f"  {'S':>3s} " + " ".join(f"{b:>8s} {'per seed':>9s} {'first':>7s} {'peak GB':>8s}" for b in batchings))
    for s in seed_counts:
        cells = []
        for b in batchings:
            command = [sys.executable, "-m", "benchmarks.monet_step", "--seed-cell", str(s), b, "--batch", str(batch),
                       "--repeats", str(repeats)]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            cells.append(json.loads(out.strip().splitlines()[-1]))
        print(f"  {s:3d} " + " ".join(f"{c['seconds']:8.3f} {c['seconds'] / s:9.3f} {c['first']:7.1f} "
                                      f"{c['peak_gb']:8.2f}" for c in cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up (median)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 4],
                        help="S of the seeds table (timed max(1, repeats // 2) times after a warm-up)")
    parser.add_argument("--seed-batch", type=int, default=16, help="batch per seed in the seeds table")
    parser.add_argument("--no-torch", action="store_true", help="leave the PyTorch columns empty")
    parser.add_argument("--interleave", type=int, default=6, metavar="R",
                        help="rounds of JAX and PyTorch steps taken in turn (the like-for-like ratio); 0: none")
    parser.add_argument("--torch-only", action="store_true", help="print PyTorch's times as JSON (used internally)")
    parser.add_argument("--seed-cell", nargs=2, metavar=("S", "BATCHING"), help="one seeds-table cell (internal)")
    args = parser.parse_args()
    if args.torch_only or args.seed_cell:
        if args.torch_only:
            import torch

            torch.set_num_threads(os.cpu_count())
            result = torch_times(args.batch, args.repeats)
        else:
            result = seed_cell(int(args.seed_cell[0]), args.seed_cell[1], args.batch, args.repeats)
        print(json.dumps(result))
        return

    have_torch = False
    if not args.no_torch:
        try:
            import torch

            torch.set_num_threads(os.cpu_count())
            have_torch = True
        except ImportError:
            print("PyTorch not installed (pip install torch==2.13.0): PyTorch columns left empty")
    load = os.getloadavg()
    print(f"\n{jax.default_backend()} backend, {os.cpu_count()} cores, jax {jax.__version__}"
          + (f", torch {torch.__version__}" if have_torch else "")
          + f", noisegroup malloc settings {'on' if MALLOC_TUNED else 'off'}, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    batch = args.batch
    torch_same = torch_times(batch, args.repeats) if have_torch else {}
    torch_glibc = torch_times_glibc_defaults(batch, args.repeats) if have_torch else {}
    jax_params = jax_parameter_count()
    if have_torch:
        same = "equal" if jax_params == torch_same["parameters"] else "DIFFER"
        print(f"parameters: JAX {jax_params:,}, PyTorch {torch_same['parameters']:,} ({same})")
    else:
        print(f"parameters: JAX {jax_params:,}")

    print(f"\nMONet condition {CONDITION} (NLL + 0.5 KL + 0.25 mask KL), K = 5, {SIZE} x {SIZE}, RMSProp "
          f"{LEARNING_RATE:g}; batch {batch}; median of {args.repeats} after a warm-up, seconds. jax columns: the "
          "engine's step in one pass, in micro-batches (mbN: N images a gradient pass; MONet's CPU default: "
          f"mb{MonetFamily.cpu_micro_batch}), and in one pass with the 3x3 convs and norms as XLA's plain ones "
          "(autodiff); torch: in this process "
          "(same malloc settings) and in a fresh process with glibc's defaults; ratios: torch / best jax")
    columns = [("one pass", batch, "auto")]
    if jax.default_backend() == "cpu":  # passes of 16 and of 8 (the AE's); the 3x3 convs as XLA's plain ones
        columns += [(f"mb{m}", m, "auto") for m in (16, trainer.CPU_MICRO_BATCH)] + [("native conv", batch, "native")]
    print(f"{'workload':30s} " + " ".join(f"{'jax ' + n + ' s':>13s}" for n, _, _ in columns)
          + f" {'torch s':>9s} {'torch glibc s':>14s} {'torch/jax':>10s} {'glibc/jax':>10s}")
    steps = [jax_step_time(batch, 1, args.repeats, micro=m, conv_impl=impl) for _, m, impl in columns]
    report(f"train step, batch {batch}", [s[2] for s in steps], torch_same.get("train"), torch_glibc.get("train"))
    forward_compile, forward_s = jax_forward_time(batch, args.repeats)
    report(f"forward (loss), batch {batch}", [forward_s] + [None] * (len(columns) - 1), torch_same.get("forward"),
           torch_glibc.get("forward"))
    print("compile s: " + ", ".join(f"step {n} {s[0]:.1f}" for (n, _, _), s in zip(columns, steps))
          + f", forward {forward_compile:.1f}; first step (after compiling) "
          + ", ".join(f"{n} {s[1]:.1f}" for (n, _, _), s in zip(columns, steps))
          + f"; peak RSS so far {peak_rss_gb():.2f} GB")

    if have_torch and args.interleave:
        default = trainer.resolve_micro_batch("auto", batch, MonetFamily.cpu_micro_batch)
        micros = (batch,) + ((default,) if default else ())
        rows = interleaved_steps(batch, args.interleave, micros)
        names = [f"mb{m}" if m != batch else "one pass" for m in micros]
        print(f"interleaved, {len(rows)} rounds of one JAX step each ({', '.join(names)}) then one PyTorch step "
              "(same process); medians, and PyTorch / JAX per round (median, range):")
        for i, name in enumerate(names):
            ratios = sorted(row[-1] / row[i] for row in rows)
            print(f"  jax {name:9s} {statistics.median(r[i] for r in rows):6.3f} s   torch "
                  f"{statistics.median(r[-1] for r in rows):6.3f} s   torch/jax {statistics.median(ratios):.2f} "
                  f"({ratios[0]:.2f} to {ratios[-1]:.2f})", flush=True)

    timings = {f"jax {n}": s[2] for (n, _, _), s in zip(columns, steps)}
    timings.update({"torch": torch_same.get("train"), "torch glibc": torch_glibc.get("train")})
    forwards = {"jax one pass": forward_s, "torch": torch_same.get("forward"),
                "torch glibc": torch_glibc.get("forward")}
    flops_report(forward_flops(), batch, matmul_rate(args.repeats), timings, forwards,
                 steps[[n for n, _, _ in columns].index("one pass")][3])

    seed_times(args.seeds, args.seed_batch, max(1, args.repeats // 2))
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
