"""Benchmark: MONet's convolutions one at a time, JAX against PyTorch, kernel by kernel.

    python -m benchmarks.monet_layers                  # needs `pip install torch==2.13.0` for the PyTorch column
    python -m benchmarks.monet_layers --rounds 5 --no-torch
    python -m benchmarks.monet_layers --onednn --no-torch  # also compiled with XLA:CPU's oneDNN convolution options

`benchmarks.monet_step` times the whole training step; this one shows where the difference comes from. For the
largest convolutions of the step, at the sizes of one pass of MONet's CPU step (`MonetFamily.cpu_micro_batch`
images: the U-Net at 8, the component VAE at 8 x K = 40), it times the three computations of a training step
apart: the forward convolution, its input gradient and its weight gradient, each as

    engine   what the engine runs on CPU (`noisegroup.models.conv_forms`: `stride1_conv`, `upsampled_conv`; the
             stride-2 encoder conv is XLA's own);
    xla      XLA's plain convolution and its autodiff (the layers' impl "native");
    torch    PyTorch's (oneDNN) `conv2d` and its autograd, NCHW, in this process (same malloc settings);

and with `--onednn` also "engine onednn" and "xla onednn": the same programs compiled with XLA:CPU's oneDNN
convolution path asked for (`ONEDNN`: `xla_cpu_experimental_onednn_custom_call`, openxla/xla PR 31511, with the
YNNPACK and XNNPACK fusions off), given per program (`lower(...).compile(compiler_options=...)`, as
`benchmarks.xla_cpu` gives its options). The output counts the oneDNN custom calls in those compiled programs: in
jaxlib 0.10.2 there are none, per program or through `XLA_FLAGS` alike (its XLA:CPU rewrites to oneDNN only when
built with asynchronous oneDNN, `IsOneDnnCompatible` in `cpu_compiler.cc`), so these columns measure XLA's own
convolutions and dots with the fusions off.

The engine's and XLA's values are checked equal first. Every cell is timed once per round, in a new random order
each round (a shared machine's drift falls on all alike), after a warm-up. Printed: median milliseconds, GFLOP/s
(the layer's useful products, 2 per multiply-add, the same count for the three computations), and torch / engine,
the median of the per-round ratios (below 1: PyTorch is faster).
"""

from __future__ import annotations

from noisegroup import malloc

MALLOC_TUNED = malloc.reuse_freed_memory()  # before JAX starts its threads, as every entry point

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import shuffled_rounds  # noqa: E402
from noisegroup.models.blocks import upsample  # noqa: E402
from noisegroup.models.conv_forms import native_conv, stride1_conv, upsampled_conv  # noqa: E402
from noisegroup.models.monet import MonetFamily  # noqa: E402

PASS = MonetFamily.cpu_micro_batch  # images in one pass of the CPU step
SLOTS = MonetFamily.num_slots  # K of the benchmarked step (`benchmarks.monet_step`)

# name, batch, input side, c_in, c_out, kind: "same" (3x3, padding 1), "valid" (3x3, padding 0), "upsampled"
# (nearest x2, then 3x3 padding 1: the input side is the low resolution), "stride2" (3x3, stride 2, padding 1).
LAYERS = (
    ("U-Net D1 64x64 4->32", PASS, 64, 4, 32, "same"),
    ("U-Net U5 skip 64x64 32->32", PASS, 64, 32, 32, "same"),
    ("U-Net U5 upsampled 32->64 32->32", PASS, 32, 32, 32, "upsampled"),
    ("U-Net D2 32x32 32->32", PASS, 32, 32, 32, "same"),
    ("decoder 68->66 32->32", PASS * SLOTS, 68, 32, 32, "valid"),
    ("encoder E1 64->32 4->32 stride 2", PASS * SLOTS, 64, 4, 32, "stride2"),
)
COMPUTATIONS = ("forward", "input grad", "weight grad")
ONEDNN = {"xla_cpu_experimental_onednn_custom_call": True, "xla_cpu_experimental_ynn_fusion_type": "",
          "xla_cpu_experimental_xnn_fusion_type": ""}  # XLA's debug options: oneDNN convolutions, no fusions before
ONEDNN_CALL = "__onednn$"  # how a oneDNN custom call shows in a compiled program's text
IMPLS = {"engine": (True, None), "xla": (False, None), "engine onednn": (True, ONEDNN), "xla onednn": (False, ONEDNN)}


def output_side(side: int, kind: str) -> int:
    return {"same": side, "valid": side - 2, "upsampled": 2 * side, "stride2": (side - 1) // 2 + 1}[kind]


def jax_layer(kind: str, engine: bool):
    """f(x `[b, s, s, c_in]`, w `[3, 3, c_in, c_out]`) -> y, the engine's form or XLA's plain one."""
    if kind == "upsampled":
        return upsampled_conv if engine else (lambda x, w: native_conv(upsample(x), w, 1, 1))
    if kind == "stride2":
        return lambda x, w: native_conv(x, w, 2, 1)
    padding = 1 if kind == "same" else 0
    return (lambda x, w: stride1_conv(x, w, padding)) if engine else (lambda x, w: native_conv(x, w, 1, padding))


def jax_cells(layer, engine: bool, options: dict | None = None) -> tuple[dict[str, callable], int]:
    """({computation: a function of no arguments that runs it and blocks}, oneDNN custom calls in the programs),
    compiled with XLA's debug `options` (None: XLA's defaults) and warmed up."""
    _, batch, side, c_in, c_out, kind = layer
    f = jax_layer(kind, engine)
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], (batch, side, side, c_in))
    w = jax.random.normal(keys[1], (3, 3, c_in, c_out)) / math.sqrt(9 * c_in)
    out = output_side(side, kind)
    g = jax.random.normal(keys[2], (batch, out, out, c_out))
    programs = {"forward": (jax.jit(f), (x, w)),
                "input grad": (jax.jit(lambda x, w, g: jax.vjp(lambda x: f(x, w), x)[1](g)[0]), (x, w, g)),
                "weight grad": (jax.jit(lambda x, w, g: jax.vjp(lambda w: f(x, w), w)[1](g)[0]), (x, w, g))}
    cells, onednn_calls = {}, 0
    for name, (program, args) in programs.items():
        compiled = program.lower(*args).compile(compiler_options=options)
        onednn_calls += compiled.as_text().count(ONEDNN_CALL)
        jax.block_until_ready(compiled(*args))
        cells[name] = lambda compiled=compiled, args=args: jax.block_until_ready(compiled(*args))  # returns the value
    return cells, onednn_calls


def check_same(layer, engine: dict, other: dict, name: str = "XLA") -> None:
    """The engine's cells and another implementation's compute the same values (the same inputs): a benchmark of
    equals."""
    for computation in COMPUTATIONS:
        a, b = np.asarray(engine[computation]()), np.asarray(other[computation]())
        error = float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-12))
        if error > 1e-4:
            raise AssertionError(f"{layer[0]}, {computation}: engine and {name} differ (relative error {error:.2e})")


def torch_cells(layer) -> dict[str, callable]:
    """`jax_cells` for PyTorch: NCHW, `conv2d` and autograd (only the asked-for gradient is computed)."""
    import torch
    import torch.nn.functional as F

    _, batch, side, c_in, c_out, kind = layer
    x = torch.randn(batch, c_in, side, side, requires_grad=True)
    w = (torch.randn(c_out, c_in, 3, 3) / math.sqrt(9 * c_in)).requires_grad_()

    def f(x, w):
        if kind == "upsampled":
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return F.conv2d(x, w, stride=2 if kind == "stride2" else 1, padding=0 if kind == "valid" else 1)

    y = f(x, w)
    g = torch.randn_like(y)

    def forward():
        with torch.no_grad():
            f(x, w)

    cells = {"forward": forward,
             "input grad": lambda: torch.autograd.grad(y, x, g, retain_graph=True),
             "weight grad": lambda: torch.autograd.grad(y, w, g, retain_graph=True)}
    for cell in cells.values():
        cell()
    return cells


def measure(rounds: int, impls: tuple[str, ...], with_torch: bool) -> tuple[dict, int]:
    """({(layer name, computation, implementation): [seconds per round]}, all cells shuffled within each round;
    the oneDNN custom calls counted in the compiled programs)."""
    cells, onednn_calls = {}, 0
    for layer in LAYERS:
        made = {}
        for impl in impls:
            made[impl], calls = jax_cells(layer, *IMPLS[impl])
            onednn_calls += calls
        for impl in impls[1:]:
            check_same(layer, made["engine"], made[impl], impl)
        if with_torch:
            made["torch"] = torch_cells(layer)
        for impl, impl_cells in made.items():
            for computation, cell in impl_cells.items():
                cells[(layer[0], computation, impl)] = cell
    return shuffled_rounds(cells, rounds), onednn_calls


def report(times: dict, impls: tuple[str, ...]) -> None:
    """The table: per cell median ms and GFLOP/s, then per-round median ratios (torch / engine; each oneDNN
    column / its default-options twin: below 1, the oneDNN options are faster)."""
    ratios = [(a, b) for a, b in (("torch", "engine"), ("engine onednn", "engine"), ("xla onednn", "xla"))
              if a in impls and b in impls]
    widths = {impl: max(10, len(impl) + 3) for impl in impls}
    print(f"{'layer':34s} {'computation':12s} " + " ".join(f"{i + ' ms':>{widths[i]}s} {'GFLOP/s':>8s}" for i in impls)
          + "".join(f" {a + ' / ' + b:>20s}" for a, b in ratios))
    for name, batch, side, c_in, c_out, kind in LAYERS:
        out = output_side(side, kind)
        gflop = 2 * batch * out * out * 9 * c_in * c_out / 1e9
        for computation in COMPUTATIONS:
            cells = {impl: times[(name, computation, impl)] for impl in impls}
            row = " ".join(f"{1e3 * statistics.median(t):{widths[i]}.2f} {gflop / statistics.median(t):8.1f}"
                           for i, t in cells.items())
            row += "".join(f" {statistics.median(x / y for x, y in zip(cells[a], cells[b])):20.2f}" for a, b in ratios)
            print(f"{name:34s} {computation:12s} {row}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds after the warm-up (medians)")
    parser.add_argument("--no-torch", action="store_true", help="leave the PyTorch column out")
    parser.add_argument("--onednn", action="store_true",
                        help="also compile every JAX cell with XLA:CPU's oneDNN convolution options (ONEDNN)")
    args = parser.parse_args()
    if args.rounds < 1:
        raise SystemExit(f"--rounds must be at least 1, got {args.rounds}")
    print(f"jax {jax.__version__} on {jax.default_backend()}, malloc settings: {MALLOC_TUNED}; batch {PASS} for the "
          f"U-Net, {PASS * SLOTS} for the component VAE; {args.rounds} rounds; load average "
          f"{open('/proc/loadavg').read().split()[:3]}", flush=True)
    impls = tuple(IMPLS) if args.onednn else ("engine", "xla")
    times, onednn_calls = measure(args.rounds, impls, not args.no_torch)
    if args.onednn:
        print(f"oneDNN options {ONEDNN}: {onednn_calls} oneDNN custom calls in the compiled programs"
              + ("" if onednn_calls else " (so the onednn columns are XLA's own kernels with the fusions off)"))
    report(times, impls + (("torch",) if not args.no_torch else ()))
    print(f"load average at the end {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
