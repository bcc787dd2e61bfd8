"""Benchmark: XLA:CPU's YNNPACK fusions on and off, the engine's convolution forms and XLA's plain ones, side by side.

    python -m benchmarks.xla_cpu                              # PyTorch columns: `pip install torch==2.13.0`
    python -m benchmarks.xla_cpu --rounds 3 --only ae_step kernels --no-torch
    python -m benchmarks.xla_cpu --variants "ynn on,engine" "ynn no reduce,engine" --only ae_step

jaxlib 0.10.2's XLA:CPU sends dot products, convolutions and reductions to its YNNPACK fusions by default
(`xla_cpu_experimental_ynn_fusion_type`); the project keeps XLA's default, which this benchmark measured fastest
(README, "XLA:CPU's YNNPACK fusions"). Each workload below is compiled once per variant in this one
process, by default {YNN fusions on (XLA's default list), off} x {engine forms (conv_impl "fast": the
custom-gradient forms of `noisegroup.models.conv_forms`), XLA's plain convolutions and autodiff ("native")}; "ynn no
reduce" keeps the dot and convolution fusions without the reduction one. The option is given per program
(`lower(...).compile(compiler_options=...)`), and the variants are checked to compute the same values before they
are timed. Every cell (and PyTorch's same computation, in this process under the same malloc settings) is
timed once per round, in a new random order each round, after a warm-up, so a shared machine's drift falls on all
alike. Printed: the median seconds of each cell, and the median over rounds of torch / cell (below 1: PyTorch is
faster).

    monet_step       MONet training step (condition 11, K = 5), batch 64, in one pass
    monet_step_mb8   the same in passes of 8 images (MONet's CPU default, `MonetFamily.cpu_micro_batch`)
    ae_step          the LNS autoencoder's training step, batch 64 (the engine's CPU passes)
    vae_step         the LNS beta-VAE's, the same
    lns_features     noisy decodes of 100 images x N = 40 at one sigma (`features.perturbed_decodes`; PyTorch: the
                     reference's decoder on the same 4,000 latents in chunks of 8)
    tangent          output Jacobians of 100 images (`tangent.output_jacobians`; no PyTorch counterpart)
    kernels          `benchmarks.monet_layers`'s convolutions: forward, input gradient, weight gradient apart
"""

from __future__ import annotations

from noisegroup import malloc

MALLOC_TUNED = malloc.reuse_freed_memory()  # before JAX starts its threads, as every entry point

import argparse  # noqa: E402
import statistics  # noqa: E402
from typing import Callable  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import monet_layers, monet_step, shuffled_rounds, train_step  # noqa: E402
from noisegroup.engine import loop  # noqa: E402
from noisegroup.lns import features, tangent  # noqa: E402

YNN_FUSION_TYPE = "xla_cpu_experimental_ynn_fusion_type"  # XLA:CPU's option: which ops go to YNNPACK
YNN = {"ynn on": {YNN_FUSION_TYPE: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION,"
                                   "LIBRARY_FUSION_TYPE_REDUCE"},  # XLA's own default in jaxlib 0.10.2
       "ynn off": {YNN_FUSION_TYPE: ""},  # XLA's documented "no fusion types" (no log line; "invalid" logs one)
       "ynn no reduce": {YNN_FUSION_TYPE: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,"
                                          "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION"}}
VARIANTS = (("ynn on", "engine"), ("ynn on", "plain"), ("ynn off", "engine"), ("ynn off", "plain"))
IMPL = {"engine": "fast", "plain": "native"}
WORKLOADS = ("monet_step", "monet_step_mb8", "ae_step", "vae_step", "lns_features", "tangent", "kernels")
FEATURE_IMAGES, NOISE_SAMPLES, SIGMA = 100, 40, 1e-3


def compile_with(program, args, ynn: str):
    """`program` (a jitted function) compiled for `args` with the YNN fusions on or off."""
    with jax.default_matmul_precision("highest"):  # as the LNS features run; no effect on float32 convs on CPU
        return program.lower(*args).compile(compiler_options=YNN[ynn])


def step_cell(config: dict, ynn: str) -> tuple[Callable[[], None], Callable[[], np.ndarray]]:
    """(run one training step and block, the first step's loss) of a training config, one seed."""
    _, trainer, _ = loop.build(config, (64, 64, 3), "vmap")
    init, step, _ = trainer.programs("vmap")  # the jitted step, the loss weights an input
    weights = trainer.weight_arrays()
    keys = jnp.stack([jax.random.key(0)])
    batch = {"images": jax.random.uniform(jax.random.key(1), (1, config["batch_size"], 64, 64, 3))}
    holder = {"state": jax.block_until_ready(init(keys))}
    program = compile_with(step, (holder["state"], batch, keys, weights), ynn)
    first = {}

    def run():
        holder["state"], metrics = program(holder["state"], batch, keys, weights)
        first.setdefault("loss", np.asarray(metrics["loss"]))
        jax.block_until_ready(metrics)

    return run, lambda: first["loss"]


def workload_cells(name: str, ynn: str, impl: str) -> list[tuple[str, Callable[[], None], Callable[[], np.ndarray]]]:
    """[(cell name, run, value)] of one workload in one variant; `value()` gives what the variants must agree on."""
    if name in ("monet_step", "monet_step_mb8"):
        config = monet_step.step_config(64, micro=64 if name == "monet_step" else 8, conv_impl=IMPL[impl])
        return [(name, *step_cell(config, ynn))]
    if name in ("ae_step", "vae_step"):
        return [(name, *step_cell(train_step.step_config(name[:-5], IMPL[impl]), ynn))]
    _, trainer, _ = loop.build(train_step.step_config("ae", IMPL[impl]), (64, 64, 3))
    params = trainer.init(jax.random.key(0)).params
    images = jax.random.uniform(jax.random.key(1), (FEATURE_IMAGES, 64, 64, 3))
    if name == "lns_features":
        graphdef = trainer.graphdef
        program = jax.jit(lambda p, x, k, s: features.perturbed_decodes(graphdef, p, x, k, s, NOISE_SAMPLES)[0])
        args = (params, images, jax.random.split(jax.random.key(2), FEATURE_IMAGES), jnp.array([SIGMA]))
    elif name == "tangent":
        graphdef, conv_impl = trainer.graphdef, IMPL[impl]
        program = jax.jit(lambda p, x: tangent.output_jacobians(graphdef, p, x, conv_impl=conv_impl))
        args = (params, images)
    else:
        return kernel_cells(ynn, impl)
    compiled = compile_with(program, args, ynn)
    return [(name, lambda: jax.block_until_ready(compiled(*args)), lambda: flat(compiled(*args)))]


def flat(tree) -> np.ndarray:
    """Every array of a result, flattened into one vector (what the variants must agree on)."""
    return np.concatenate([np.ravel(np.asarray(leaf)) for leaf in jax.tree.leaves(tree)])


def kernel_cells(ynn: str, impl: str) -> list:
    """`benchmarks.monet_layers`'s table: each convolution's forward, input gradient and weight gradient."""
    cells = []
    for layer in monet_layers.LAYERS:
        _, batch, side, c_in, c_out, kind = layer
        f = monet_layers.jax_layer(kind, impl == "engine")
        keys = jax.random.split(jax.random.key(0), 3)
        x = jax.random.normal(keys[0], (batch, side, side, c_in))
        w = jax.random.normal(keys[1], (3, 3, c_in, c_out)) / np.sqrt(9 * c_in)
        out = monet_layers.output_side(side, kind)
        g = jax.random.normal(keys[2], (batch, out, out, c_out))
        programs = {"forward": (jax.jit(f), (x, w)),
                    "input grad": (jax.jit(lambda x, w, g, f=f: jax.vjp(lambda x: f(x, w), x)[1](g)[0]), (x, w, g)),
                    "weight grad": (jax.jit(lambda x, w, g, f=f: jax.vjp(lambda w: f(x, w), w)[1](g)[0]), (x, w, g))}
        for computation, (program, args) in programs.items():
            compiled = compile_with(program, args, ynn)
            cells.append((f"{layer[0]} {computation}", lambda c=compiled, a=args: jax.block_until_ready(c(*a)),
                          lambda c=compiled, a=args: flat(c(*a))))
    return cells


def torch_cells(name: str) -> dict[str, Callable[[], None]]:
    """{cell name: PyTorch's same computation}, or {} where there is none."""
    if name in ("monet_step", "monet_step_mb8"):
        torch, model, loss_fn = monet_step.torch_monet()
        return {name: monet_step.torch_train_step(torch, model, loss_fn, torch.rand(64, 3, 64, 64))}
    if name in ("ae_step", "vae_step"):
        return {name: train_step.torch_step(name[:-5])}
    if name == "lns_features":
        torch, encoder, decoder = train_step.torch_networks(vae=False)
        images = torch.rand(FEATURE_IMAGES, 3, 64, 64)

        def decodes():
            with torch.no_grad():
                means = encoder(images)
                latents = (means[:, None] + SIGMA * torch.randn(FEATURE_IMAGES, NOISE_SAMPLES, means.shape[1]))
                for chunk in latents.reshape(-1, 8, means.shape[1]):
                    torch.sigmoid(decoder(chunk))

        return {name: decodes}
    if name == "kernels":
        cells = {}
        for layer in monet_layers.LAYERS:
            for computation, cell in monet_layers.torch_cells(layer).items():
                cells[f"{layer[0]} {computation}"] = cell
        return cells
    return {}


def check_agree(name: str, values: dict[tuple, np.ndarray]) -> None:
    """The variants of a cell compute the same values (relative 1e-4 of the largest; a step's first loss)."""
    first, reference = next(iter(values.items()))
    for variant, value in values.items():
        error = float(np.max(np.abs(value - reference)) / max(float(np.max(np.abs(reference))), 1e-12))
        if error > 1e-4:
            raise AssertionError(f"{name}: {variant} and {first} differ (relative error {error:.2e})")


def measure(names: list[str], rounds: int, with_torch: bool, variants=VARIANTS) -> tuple[dict, list[str]]:
    """({(cell, variant or "torch"): [seconds per round]}, cell names in order)."""
    from tqdm.auto import tqdm

    cells, order = {}, []
    for name in tqdm(names, desc="compiling", unit="workload"):
        made = {variant: workload_cells(name, *variant) for variant in variants}
        for variant, variant_cells in made.items():
            for cell, run, _ in variant_cells:
                run()  # warm-up (and the steps' first loss)
                cells[(cell, variant)] = run
        for i, (cell, _, _) in enumerate(made[variants[0]]):
            check_agree(cell, {variant: made[variant][i][2]() for variant in variants})
            order.append(cell)
        if with_torch:
            for cell, run in torch_cells(name).items():
                run()
                cells[(cell, "torch")] = run
    return shuffled_rounds(cells, rounds, progress=True), order


def report(times: dict, order: list[str], variants=VARIANTS) -> None:
    columns = [f"{ynn}, {impl}" for ynn, impl in variants]
    print(f"\n{'cell (median s)':44s} " + " ".join(f"{c:>20s}" for c in columns) + f" {'torch':>8s}"
          + "   torch / cell, per round (median)")
    for cell in order:
        row = [times[(cell, variant)] for variant in variants]
        torch = times.get((cell, "torch"))
        text = " ".join(f"{statistics.median(t):20.4f}" for t in row)
        text += f" {statistics.median(torch):8.4f}" if torch else f" {'-':>8s}"
        if torch:
            text += "   " + " ".join(f"{statistics.median(a / b for a, b in zip(torch, t)):.2f}" for t in row)
        print(f"{cell:44s} {text}", flush=True)
    base = variants[0]
    print(f"\neach column / {base[0]}, {base[1]}, per round (median):")
    for cell in order:
        ratios = [statistics.median(a / b for a, b in zip(times[(cell, v)], times[(cell, base)])) for v in variants]
        print(f"{cell:44s} " + " ".join(f"{r:20.2f}" for r in ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds after the warm-up (medians)")
    parser.add_argument("--only", nargs="+", choices=WORKLOADS, default=list(WORKLOADS), help="workloads to run")
    parser.add_argument("--no-torch", action="store_true", help="leave the PyTorch column out")
    parser.add_argument("--variants", nargs="+", metavar="YNN,IMPL", default=[",".join(v) for v in VARIANTS],
                        help=f"variants to compile, e.g. 'ynn on,engine' (YNN: {', '.join(YNN)}; IMPL: engine, plain)")
    args = parser.parse_args()
    variants = tuple(tuple(v.split(",")) for v in args.variants)
    for ynn, impl in variants:
        if ynn not in YNN or impl not in IMPL:
            raise SystemExit(f"unknown variant {ynn},{impl}; YNN one of {list(YNN)}, IMPL one of {list(IMPL)}")
    if args.rounds < 1:
        raise SystemExit(f"--rounds must be at least 1, got {args.rounds}")
    print(f"jax {jax.__version__} on {jax.default_backend()}, malloc settings: {MALLOC_TUNED}; {args.rounds} rounds; "
          f"load average {open('/proc/loadavg').read().split()[:3]}", flush=True)
    times, order = measure(args.only, args.rounds, not args.no_torch, variants)
    report(times, order, variants)
    print(f"load average at the end {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
