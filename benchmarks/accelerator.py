"""One accelerator job: the paper-scale checks of issue 33, in a time budget it enforces itself (default 10 minutes).

    python -m benchmarks.accelerator OUT_DIR                      # on one GPU: every stage, 10 minutes of wall time
    python -m benchmarks.accelerator OUT_DIR --budget-minutes 14  # a longer budget (the shares below scale with it)
    python -m benchmarks.accelerator OUT_DIR --resume             # go on in a folder a stopped run left
    python -m benchmarks.accelerator OUT_DIR --smoke              # every stage at a tiny size on CPU (CI; < 1 minute)
    python -m benchmarks.accelerator OUT_DIR --monet-variant colored_on_grayscale   # stage 4 on the other variant

Writes OUT_DIR/results.json (rewritten atomically after every stage: what each stage measured, what it skipped and
why, the device, versions, elapsed seconds), OUT_DIR/steps.png, OUT_DIR/lns_curve.png, OUT_DIR/monet.png, and the
training workdirs of stages 3 and 4 (OUT_DIR/lns_curve/run, OUT_DIR/monet/<condition>: checkpoints and
metrics.jsonl, so `--resume` trains on from them).

Stages, in order; each gets a share of the budget (the time one leaves unused passes to the next), checks the clock
before every cell, segment or evaluation it starts, and the script stops itself `RESERVE_S` before the budget:
  1. steps (20 %): training steps per second at the paper's size, the engine's jitted step as `loop.build` binds it
     (and `loop.train` runs it: stages 3 and 4 reuse the compiled program where the config is the same), timed in
     shuffled rounds (`benchmarks.shuffled_rounds`; each call k steps, ~0.2 s) after a warm-up; compile seconds
     (first call less the second), XLA's FLOP count of the lowered step (`benchmarks.xla_cost`) and the GPU's peak
     memory so far apart: the LNS autoencoder (64 x 64, batch 64, Adam 5e-5) and MONet (condition 11, the original
     MONet as `benchmarks.monet_step` times it: K = 5, 64 x 64, batch 64, RMSProp 1e-4), each with S = 1, 2, 4, 8
     seeds vmapped (per-seed cost against S one-seed steps), against PyTorch (`benchmarks.train_step.torch_networks`,
     `benchmarks.monet_step.torch_monet` / `torch_train_step`, on CUDA where PyTorch sees a GPU) when PyTorch is
     importable; otherwise the PyTorch cells are skipped with a note. A cell that fails (e.g. out of GPU memory at
     S = 8) or would not fit in the stage's time is skipped with the reason.
  2. lns_features (5 %): LNS features of the first 100 Proximity test images at one setting (sigma 0.1, N = 20) with
     the shipped `pretrained/ae_proximity.npz` (`noisegroup.lns.sweep.setting_features`: first call, compile
     included, and the median of repeats), against the reference's loop (`benchmarks.lns.reference_features`,
     PyTorch on the CPU, one image and one decode at a time, timed on 10 images and scaled to 100) when PyTorch is
     importable.
  3. lns_curve (45 %): the Proximity AE at the paper's recipe (Adam 5e-5, batch 64, 5 seeds vmapped, the whole
     30,000-image train split) trained with `loop.train` in segments to log-spaced step targets (100, 200, 500,
     1,000, 2,000, ...; a last target sized to the time left), resuming each time; after each segment the ARI of
     that checkpoint as `experiments.lns_curve.evaluate_step` measures it (seed 0, 100 test images, sigma in
     {0.01, 0.1, 0.5}, N = 20, k-means, the best setting), with the test MSE.
  4. monet (the rest): MONet NLL+M and IR+M (`experiments/configs/monet.py`'s weights) at the paper's size (64 x 64,
     K = 5, batch 64, RMSProp 1e-4), 2 seeds each vmapped, trained in turns of 1,000 steps (both conditions reach the
     same step) for the minutes left; the engine validates every 1,000 steps on 256 held-out images with masks and
     logs the attention masks' ARI and FG-ARI per seed (`valid/ari`, `valid/fg_ari` in metrics.jsonl). On
     colored_on_colored (1-4 sprites) by default; `--monet-variant colored_on_grayscale` trains on 2-5 sprites on
     grey with K = 6, the variant on which the CPU studies found the paper's order (docs/monet.md, issue 33).
`--smoke` runs the same code at a tiny size on the CPU (batch 2, S = 1 / 2, MONet at 16 x 16 with K = 3 and narrow
widths, 4 test images, a few steps) so CI proves every path; its numbers mean nothing.

Bad input (one line on stderr, `error: ...`, exit status 2): an OUT_DIR that exists and is not empty (unless
--resume), a budget below what the first stage needs (`MIN_FIRST_STAGE_MINUTES`), no GPU
(`jax.default_backend() != "gpu"`) without --smoke.

Dependencies on the accelerator machine. It has Python 3.12 with jax (CUDA), flax, optax, orbax-checkpoint, chex,
torch, numpy, scikit-learn, matplotlib (and pillow with it), tqdm and pytest, and no network. What this script
imports beyond those at run time (checked here by blocking imports):
  - scipy (with scikit-learn), absl-py and PyYAML (with orbax-checkpoint): there already;
  - ml-collections (pure Python): `noisegroup.cli` imports it, and through it `experiments.lns_curve` (stage 3's
    measure), and `benchmarks.train_step` / `benchmarks.lns` import `experiments.configs.train`. Carry it (below);
    without it stage 3 fails with the ImportError recorded, and stage 1's PyTorch AE cell and stage 2's reference
    loop are skipped with it noted;
  - not needed: tensorflow-datasets, array_record, importlib_resources (the datasets are generated procedurally and
    cached under $NOISEGROUP_DATA_DIR or the default cache; the Good Gestalt and Multi-dSprites generators need only
    numpy and pillow).
Carry the wheel (here, with the network), then install it there without one:

    pip download -d wheels --no-deps ml-collections==1.1.0          # pure Python: one wheel for every platform
    pip install --no-index --find-links wheels --no-deps ml-collections
    python -m benchmarks.accelerator /tmp/accel_out

(the device tool carries untracked files of the repository: put `wheels/` in the working tree, or pass it in
`carry`; if the machine lacks absl-py or PyYAML, `pip download` them too, PyYAML for the machine's platform and
Python: `--only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64`).
JAX is told not to preallocate GPU memory (XLA_PYTHON_CLIENT_PREALLOCATE=false unless set) so that PyTorch's cells
share the GPU with it.
"""

from __future__ import annotations

import time

START = time.monotonic()  # the budget counts from here: imports included

import os  # noqa: E402

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from noisegroup import malloc  # noqa: E402

malloc.reuse_freed_memory()  # before JAX starts its threads, as every entry point

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

STAGES = ("steps", "lns_features", "lns_curve", "monet")
SHARES = {"steps": 0.20, "lns_features": 0.05, "lns_curve": 0.45, "monet": 0.30}
MIN_FIRST_STAGE_MINUTES = {"gpu": 1.0, "smoke": 0.25}  # the first stage's least useful time (one cell, compiled)
RESERVE_S = {"gpu": 20.0, "smoke": 2.0}  # kept back from the budget for the figures and the last write
REPO = Path(__file__).resolve().parents[1]
REFERENCE_IMAGES = 10  # images the reference LNS loop is timed on (stage 2)


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Everything that differs between a GPU run and `--smoke`."""

    batch: int
    seed_counts: tuple[int, ...]
    monet_size: int
    monet_fields: dict  # MONet family fields over its (paper) defaults
    lns_images: int
    lns_setting: tuple[float, int]
    curve_seeds: tuple[int, ...]
    curve_targets: tuple[int, ...]
    curve_grid: tuple[tuple[float, ...], tuple[int, ...]]
    curve_train_limit: int  # 0: the whole split
    monet_seeds: tuple[int, ...]
    monet_segment: int  # steps per training segment (the clock is checked between segments)
    monet_eval_every: int  # steps between validations (ARI, FG-ARI)
    monet_max_steps: int
    monet_train_images: int
    monet_valid_images: int
    monet_first_segment_s: float  # the first MONet segment's estimate when stage 1 measured no MONet step
    steps_condition: str  # stage 1's MONet condition (smoke: stage 4's first, so that stage 4 reuses its program)
    conv_impl: str  # MONet's: "auto" (the engine's choice); smoke: XLA's plain convolutions, the fastest to compile
    rounds: tuple[int, int]  # (least, most) shuffled rounds
    cell_seconds: float  # one timed call lasts about this long (steps per call chosen from the warm-up)


GPU = Sizes(batch=64, seed_counts=(1, 2, 4, 8), monet_size=64, monet_fields={}, lns_images=100,
            lns_setting=(0.1, 20), curve_seeds=(0, 1, 2, 3, 4),
            curve_targets=tuple(m * 10**e for e in range(2, 8) for m in (1, 2, 5)),
            curve_grid=((0.01, 0.1, 0.5), (20,)), curve_train_limit=0, monet_seeds=(1, 2), monet_segment=1000,
            monet_eval_every=1000, monet_max_steps=1_000_000, monet_train_images=20_000, monet_valid_images=256,
            monet_first_segment_s=150.0, steps_condition="11", conv_impl="auto", rounds=(3, 10), cell_seconds=0.2)
SMOKE = Sizes(batch=2, seed_counts=(1, 2), monet_size=16,
              monet_fields={"num_slots": 3, "latent_dim": 4, "unet_channels": 4, "unet_mlp_hidden": 8,
                            "encoder_channels": (4, 4, 8, 8), "encoder_hidden": 16, "decoder_channels": (4, 4)},
              lns_images=4, lns_setting=(0.1, 5), curve_seeds=(0, 1), curve_targets=(2, 4),
              curve_grid=((0.1,), (5,)), curve_train_limit=32, monet_seeds=(0, 1), monet_segment=2,
              monet_eval_every=1, monet_max_steps=2, monet_train_images=32, monet_valid_images=4,
              monet_first_segment_s=0.0, steps_condition="nll_m", conv_impl="native", rounds=(2, 2), cell_seconds=0.0)


MONET_VARIANTS = ("colored_on_colored", "colored_on_grayscale")  # `datasets.multi_dsprites.GENERATED_VARIANTS`


class BadInput(Exception):
    pass


# --- the clock ----------------------------------------------------------------------------------------------------


class Clock:
    """The budget: each stage may run until its cumulative share of (budget - reserve) from the start."""

    def __init__(self, budget_s: float, reserve_s: float):
        self.usable = max(budget_s - reserve_s, 1.0)
        self.budget_s = budget_s

    @staticmethod
    def elapsed() -> float:
        return time.monotonic() - START

    def stage_end(self, stage: str) -> float:
        share = sum(SHARES[s] for s in STAGES[:STAGES.index(stage) + 1])
        return share * self.usable

    def left(self, stage: str) -> float:
        """Seconds this stage may still use."""
        return self.stage_end(stage) - self.elapsed()


# --- results ------------------------------------------------------------------------------------------------------


class Results:
    def __init__(self, out: Path, data: dict):
        self.out, self.data = out, data

    def write(self) -> None:
        from noisegroup import atomic

        self.data["elapsed_s"] = round(Clock.elapsed(), 2)
        atomic.write_json(self.out / "results.json", self.data)


def skip(record: dict, what: str, why: str) -> None:
    record.setdefault("skipped", []).append({"what": what, "why": why})


# --- configs --------------------------------------------------------------------------------------------------------


def ae_config(seeds, sizes: Sizes, **overrides) -> dict:
    """The paper's AE recipe (the engine's and the family's defaults: Adam 5e-5, batch 64) as a flat config, the
    seeds vmapped (the same program in stages 1 and 3)."""
    from experiments.configs import defaults
    from noisegroup.engine.config import TrainConfig
    from noisegroup.models.autoencoder import AutoEncoderFamily

    config = defaults(TrainConfig, AutoEncoderFamily, leave_out=("loss_weights",))
    config.update(model="ae", dataset="proximity", seeds=tuple(seeds), batch_size=sizes.batch, learning_rate=5e-5,
                  seed_batching="vmap", progress=False, **overrides)
    return config


def monet_config(condition: str, seeds, sizes: Sizes, **overrides):
    """The engine's RunConfig of a MONet condition ("11", "nll_m", "ir_m"): the paper's training (as
    `experiments/configs/monet.py:monet_paper`: RMSProp 1e-4, PyTorch's flavour) under the condition's weights, the
    family's paper widths (or `sizes.monet_fields`), built through `AblationConfig` without ml_collections."""
    from experiments.configs import defaults
    from noisegroup.engine.config import TrainConfig
    from noisegroup.komatsu.pipeline import AblationConfig
    from noisegroup.models.monet import MonetFamily

    train = defaults(TrainConfig, MonetFamily, leave_out=AblationConfig.SET_BY_PIPELINE)
    train.update(optimizer="rmsprop", learning_rate=1e-4, batch_size=sizes.batch, seed_batching="vmap",
                 conv_impl=sizes.conv_impl, eval_every=sizes.monet_eval_every, **sizes.monet_fields, **overrides)
    terms, monet = MonetFamily.loss_terms, MonetFamily.default_weights

    def row(**weights):
        return {"loss_weights": {t: float(weights.get(t, 0.0)) for t in terms}, "sample_latent": None}

    conditions = {"11": row(**monet), "nll_m": row(**{**monet, "kl": 0.0}),
                  "ir_m": row(ir=1.0, mask_kl=monet["mask_kl"])}
    ablation = AblationConfig.from_mapping({"conditions": conditions, "selected": (condition,), "seeds": tuple(seeds),
                                            "train": train, "image_size": sizes.monet_size, "progress": False})
    return ablation.train_config(condition)


# --- stage 1: steps per second --------------------------------------------------------------------------------------


def jax_cell(config, image_shape, seeds: int, batch: int) -> dict:
    """One engine step of S seeds (vmapped) as a timed cell: {"run", "compile_s", "flops", "device_peak_gb"}.

    The step is the one `loop.build` binds and `loop.train` runs (the engine memoises its programs by config), so a
    later stage that trains the same config reuses this compiled program. Compile seconds: the first call less a
    later one; FLOPs: XLA's cost analysis of the lowered program (`Trainer.programs`' step, not compiled again)."""
    import jax
    import jax.numpy as jnp

    from benchmarks import xla_cost
    from noisegroup.engine import config as engine_config
    from noisegroup.engine import loop

    _, trainer, (init, step, _) = loop.build(config, image_shape, "vmap")
    keys = jnp.stack([jax.random.key(s) for s in range(seeds)])
    images = {"images": jax.random.uniform(jax.random.key(1), (seeds, batch, *image_shape))}
    holder = {"state": jax.block_until_ready(init(keys))}

    def run():
        holder["state"], metrics = step(holder["state"], images, keys)  # the state is donated
        jax.block_until_ready(metrics)

    tic = time.perf_counter()
    run()
    first = time.perf_counter() - tic
    tic = time.perf_counter()
    run()
    one_s = time.perf_counter() - tic
    compile_s = max(first - one_s, 0.0)
    # The memoised multi-seed programs `build` bound (`loop._programs`), lowered only, for XLA's FLOP count.
    raw_step = loop._programs(engine_config.as_run_config(config), tuple(image_shape), "vmap")[1]
    try:
        flops = xla_cost(raw_step.lower(holder["state"], images, keys, trainer.weight_arrays()))
    except Exception:  # noqa: BLE001 - optional
        flops = None
    return {"run": run, "one_s": one_s, "compile_s": compile_s, "flops": flops, "device_peak_gb": device_peak_gb()}


def device_peak_gb() -> float | None:
    """The accelerator's peak bytes in use so far (GB), where the backend reports it (GPUs; not the CPU)."""
    import jax

    try:
        return jax.devices()[0].memory_stats()["peak_bytes_in_use"] / 1e9
    except Exception:  # noqa: BLE001 - optional
        return None


def torch_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_ae_cell(batch: int) -> dict:
    """PyTorch's AE step (`benchmarks.train_step.torch_networks`, the reference network; Adam 5e-5, per-image SSE)."""
    import torch

    from benchmarks.train_step import torch_networks

    device = torch_device()
    _, encoder, decoder = torch_networks(vae=False)
    encoder, decoder = encoder.to(device), decoder.to(device)
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=5e-5)
    x = torch.rand(batch, 3, 64, 64, device=device)

    def step():
        loss = ((torch.sigmoid(decoder(encoder(x))) - x) ** 2).sum() / batch
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return {"run": synced(step, device), "device": str(device)}


def torch_monet_cell(batch: int) -> dict:
    """PyTorch's MONet step (`benchmarks.monet_step.torch_monet`, condition 11, light widths, 64 x 64, K = 5;
    `torch_train_step`: RMSProp 1e-4), built and run with the GPU as PyTorch's default device where there is one."""
    import torch

    from benchmarks import monet_step

    device = torch_device()
    with torch.device(device):  # torch_monet makes its tensors (sigma, scope, noise) on the default device
        _, model, loss_fn = monet_step.torch_monet()
        images = torch.rand(batch, 3, monet_step.SIZE, monet_step.SIZE)
        step = monet_step.torch_train_step(torch, model, loss_fn, images)

    def run():
        with torch.device(device):
            step()

    return {"run": synced(run, device), "device": str(device)}


def synced(fn, device):
    import torch

    def run():
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return run


def repeated(run, target_s: float, one_s: float | None = None) -> tuple[callable, int]:
    """(a call of `run` k times, k): k such that a call lasts about `target_s`, from `one_s`, the seconds of one
    warm call (or two warm-up calls made here, the second timed)."""
    if one_s is None:  # the first call warms up (CUDA, cuDNN's choices); the second is timed
        run()
        tic = time.perf_counter()
        run()
        one_s = time.perf_counter() - tic
    one = max(one_s, 1e-6)
    k = max(1, min(200, int(target_s / one)))

    def many():
        for _ in range(k):
            run()

    return many, k


def stage_steps(sizes: Sizes, clock: Clock, record: dict, out: Path, have_torch: bool) -> None:
    from benchmarks import peak_rss_gb, shuffled_rounds

    b = sizes.batch
    ae_shape, monet_shape = (64, 64, 3), (sizes.monet_size, sizes.monet_size, 3)
    plan = [("ae", 1), ("torch ae", None), ("monet", 1), ("torch monet", None)]
    plan += [("ae", s) for s in sizes.seed_counts if s > 1] + [("monet", s) for s in sizes.seed_counts if s > 1]
    record.update(batch=b, ae_image=list(ae_shape), monet_image=list(monet_shape),
                  monet_condition=sizes.steps_condition,
                  monet_slots=sizes.monet_fields.get("num_slots", 5), seed_batching="vmap", cells={})
    cells, runs = {}, {}
    longest = {}  # per model, the longest cell set-up so far (compile + warm-up): the next one's estimate
    for model, seeds in plan:
        name = model if seeds is None else f"{model} S={seeds}"
        if model.startswith("torch") and not have_torch:
            skip(record, name, "PyTorch is not importable here")
            continue
        rounds_s = sizes.rounds[0] * sizes.cell_seconds * (len(runs) + 1)  # the least rounds, after the set-ups
        need = 1.5 * longest.get(model, 0.0) + 1.0 + rounds_s
        if clock.left("steps") < need:
            skip(record, name, f"out of the stage's time ({clock.left('steps'):.0f} s left, ~{need:.0f} s needed)")
            continue
        tic = time.perf_counter()
        try:
            if model == "ae":
                cell = jax_cell(ae_config(range(seeds), sizes), ae_shape, seeds, b)
            elif model == "monet":
                cell = jax_cell(monet_config(sizes.steps_condition, range(seeds), sizes), monet_shape, seeds, b)
            elif model == "torch ae":
                cell = torch_ae_cell(b)
            else:
                cell = torch_monet_cell(b)
            cell["run"], cell["steps_per_call"] = repeated(cell["run"], sizes.cell_seconds, cell.pop("one_s", None))
        except Exception as error:  # noqa: BLE001 - e.g. out of GPU memory at S = 8: say so, go on
            skip(record, name, f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}")
            continue
        longest[model] = max(longest.get(model, 0.0), time.perf_counter() - tic)
        runs[name] = cell.pop("run")
        cells[name] = {**cell, "setup_s": time.perf_counter() - tic, "seeds": seeds or 1}
    if not runs:
        return
    # Rounds: as many as fit in the stage's time (one round's cost measured by the first), within sizes.rounds.
    least, most = sizes.rounds
    tic = time.perf_counter()
    times = shuffled_rounds(runs, 1)
    per_round = time.perf_counter() - tic
    extra = int(max(0.0, clock.left("steps")) / max(per_round, 1e-6))
    more = max(least - 1, min(most - 1, extra))
    if more > extra:
        skip(record, "rounds", f"ran the least rounds ({least}) past the stage's share")
    if more:
        for key, values in shuffled_rounds(runs, more).items():
            times[key] += values
    del runs
    for name, values in times.items():
        c = cells[name]
        step_s = statistics.median(values) / c["steps_per_call"]
        c.update(step_s=step_s, steps_per_s=1.0 / step_s, images_per_s=c["seeds"] * b / step_s,
                 rounds=len(values))
    for model in ("ae", "monet"):
        one = cells.get(f"{model} S=1")
        if not one:
            continue
        torch_cell = cells.get(f"torch {model}")
        if torch_cell:
            record[f"{model}_torch_over_jax"] = torch_cell["step_s"] / one["step_s"]
        for s in sizes.seed_counts:
            c = cells.get(f"{model} S={s}")
            if c:  # below 1: S seeds in one program cost less than S one-seed steps
                c["per_seed_cost_vs_one"] = c["step_s"] / (s * one["step_s"])
    record["cells"] = cells
    record["peak_rss_gb"] = peak_rss_gb()
    plot_steps(cells, sizes, out / "steps.png")
    gc.collect()


def plot_steps(cells: dict, sizes: Sizes, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, model in zip(axes, ("ae", "monet")):
        side = 64 if model == "ae" else sizes.monet_size
        points = [(s, cells[f"{model} S={s}"]["images_per_s"]) for s in sizes.seed_counts if f"{model} S={s}" in cells]
        if points:
            ax.plot(*zip(*points), marker="o", label="JAX (engine step, seeds vmapped)")
        torch_cell = cells.get(f"torch {model}")
        if torch_cell:
            ax.axhline(torch_cell["images_per_s"], color="C1", ls="--",
                       label=f"PyTorch ({torch_cell['device']}), S = 1, 64 x 64")
        ax.set(xscale="log", xlabel="seeds S in one program", ylabel="training images / s (all seeds)",
               title=f"{model.upper()} step, batch {sizes.batch} per seed, JAX at {side} x {side}")
        ax.set_xticks(list(sizes.seed_counts), [str(s) for s in sizes.seed_counts])
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# --- stage 2: LNS features ------------------------------------------------------------------------------------------


def stage_lns_features(sizes: Sizes, clock: Clock, record: dict, have_torch: bool) -> None:
    import jax

    from datasets import good_gestalt as gg
    from noisegroup import lns
    from noisegroup.lns import sweep

    sigma, n = sizes.lns_setting
    graphdef, params = lns.load_model(REPO / "pretrained" / "ae_proximity.npz")
    images = gg.load("proximity", "test").images[:sizes.lns_images]
    record.update(model="pretrained/ae_proximity.npz", images=len(images), noise_std=sigma, num_noise_samples=n)

    def features():
        return jax.block_until_ready(sweep.setting_features(graphdef, params, images, jax.random.key(0), sigma, n))

    tic = time.perf_counter()
    shape = features().shape
    record.update(first_call_s=time.perf_counter() - tic, feature_shape=list(shape))
    times = []
    while len(times) < 3 and clock.left("lns_features") > 2 * (times[-1] if times else record["first_call_s"]):
        tic = time.perf_counter()
        features()
        times.append(time.perf_counter() - tic)
    if times:
        record.update(jax_s=statistics.median(times), repeats=len(times))
    else:
        skip(record, "repeats", "out of the stage's time after the first call")
    if not have_torch:
        skip(record, "reference loop", "PyTorch is not importable here")
        return
    if clock.left("lns_features") < 5.0:
        skip(record, "reference loop", f"out of the stage's time ({clock.left('lns_features'):.0f} s left)")
        return
    try:
        from benchmarks.lns import reference_features  # imports experiments.configs.train: ml-collections
    except ImportError as error:
        skip(record, "reference loop", f"{error} (carry ml-collections as a wheel: the module docstring)")
        return
    timed = min(len(images), REFERENCE_IMAGES)  # one image at a time: a few images give its rate
    seconds = reference_features(images[:timed], sigma, n, 15)
    record.update(reference_images_timed=timed, reference_s=seconds * len(images) / timed,
                  reference="PyTorch on the CPU, one image and one decode at a time "
                            "(benchmarks.lns.reference_features), timed on the first images, scaled to all")
    if "jax_s" in record:
        record["reference_over_jax"] = record["reference_s"] / record["jax_s"]


# --- stage 3: the Proximity AE at the paper's recipe, ARI against steps ---------------------------------------------


def curve_functions():
    """(evaluate_step, plot) of `experiments.lns_curve`: the curve is measured as that command measures it (it needs
    ml-collections: carry its wheel, see the module docstring)."""
    from experiments import lns_curve

    return lns_curve.evaluate_step, lns_curve.plot


def stage_lns_curve(sizes: Sizes, clock: Clock, record: dict, out: Path) -> None:
    from datasets import good_gestalt as gg
    from noisegroup.engine import loop
    from noisegroup.lns import sweep

    workdir = out / "lns_curve" / "run"
    limit = sizes.curve_train_limit
    if limit:
        train = gg.generate("proximity", "train", limit=limit).images
        valid = gg.generate("proximity", "valid", limit=max(4, limit // 4)).images
    else:
        train, valid = gg.training_images("proximity")
    test = gg.load("proximity", "test")
    images, masks = test.images[:sizes.lns_images], test.masks[:sizes.lns_images]
    stds, ns = sizes.curve_grid
    settings = sweep.SweepSettings(noise_stds=stds, num_noise_samples=ns, method="kmeans", kmeans_restarts=1,
                                   workers=1)
    record.update(dataset="proximity", seeds=len(sizes.curve_seeds), batch=sizes.batch, learning_rate=5e-5,
                  train_images=len(train), test_images=len(images), noise_stds=list(stds), num_noise_samples=list(ns),
                  measure="experiments.lns_curve.evaluate_step (seed 0, best setting, k-means)")
    evaluate_step, plot = curve_functions()
    points = {p["step"]: p for p in record.get("points", [])}
    done = max(points, default=0)
    rate, eval_s = None, None  # steps/s of the last segment (restore and logs included), seconds per evaluation
    targets = [t for t in sizes.curve_targets if t > done]
    while targets:
        target = targets[0]
        left = clock.left("lns_curve")
        if rate is not None:
            budget = left - 1.5 * eval_s - 5.0  # time for training after the evaluation that follows it
            affordable = done + int(budget * rate * 0.9)
            if affordable < target:
                last = (affordable // 100) * 100 if affordable > 1000 else affordable
                if last > done * 1.2 and last > done:
                    target = last
                else:
                    skip(record, f"step {targets[0]}", f"out of the stage's time ({left:.0f} s left at "
                                                       f"{rate:.0f} steps/s)")
                    break
        elif left < 10.0:
            skip(record, f"step {target}", f"out of the stage's time ({left:.0f} s left)")
            break
        config = ae_config(sizes.curve_seeds, sizes, num_steps=target, checkpoint_every=10**9,
                           keep_checkpoints=100, log_every=min(100, target))
        tic = time.perf_counter()
        loop.train(config, workdir, train, valid)
        seconds = time.perf_counter() - tic
        rate = (target - done) / max(seconds, 1e-6)
        done = target
        tic = time.perf_counter()
        point = evaluate_step(workdir, target, settings, images, masks)
        eval_s = time.perf_counter() - tic
        point.update(train_s=seconds, eval_s=eval_s, steps_per_s=rate)
        points[target] = point
        record["points"] = [points[s] for s in sorted(points)]
        targets = [t for t in targets if t > done]
    record["steps"] = done
    if points:
        plot({f"proximity AE, paper recipe, {len(sizes.curve_seeds)} seeds (seed 0 scored)":
              record["points"]}, out / "lns_curve.png")


# --- stage 4: MONet NLL+M and IR+M ------------------------------------------------------------------------------------


def read_validations(workdir: Path) -> list[dict]:
    """[{"step", "ari": [per seed], "fg_ari": [per seed], "mse": [per seed]}] of a run's metrics.jsonl."""
    rows = {}
    path = workdir / "metrics.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if "valid/ari" in row:
                rows[row["step"]] = {"step": row["step"], "ari": row["valid/ari"], "fg_ari": row["valid/fg_ari"],
                                     "mse": row.get("valid/mse")}
    return [rows[s] for s in sorted(rows)]


def monet_slots(sizes: Sizes, variant: str) -> tuple[int, int]:
    """(K, most sprites per scene) of stage 4: K the variant's most sprites + 1 (5, or 6 on grey) unless the sizes
    fix it (--smoke: 3), and scenes of at most K - 1 sprites."""
    from noisegroup.komatsu import data

    most = data.most_sprites(variant)
    slots = sizes.monet_fields.get("num_slots", most + 1)
    return slots, min(most, slots - 1)


def monet_data(sizes: Sizes, variant: str) -> tuple[dict, dict]:
    """Stage 4's (train, valid) splits of `variant` at `sizes.monet_size`."""
    from noisegroup.komatsu import data

    _, sprites = monet_slots(sizes, variant)
    return tuple(data.load_split(split, count, sizes.monet_size, max_sprites=sprites, variant=variant)
                 for split, count in (("train", sizes.monet_train_images), ("valid", sizes.monet_valid_images)))


def stage_monet(sizes: Sizes, clock: Clock, record: dict, out: Path, hint_s: float | None = None,
                variant: str = "colored_on_colored") -> None:
    """`hint_s`: an estimate of the first segment's seconds (compile + steps), from stage 1's MONet cells."""
    from noisegroup.engine import loop

    conditions = ("nll_m", "ir_m")
    train, valid = monet_data(sizes, variant)
    slots, sprites = monet_slots(sizes, variant)
    record.update(conditions=list(conditions), seeds=list(sizes.monet_seeds), image_size=sizes.monet_size,
                  variant=variant, max_sprites=sprites, slots=slots, batch=sizes.batch, learning_rate=1e-4,
                  train_images=len(train["images"]), valid_images=len(valid["images"]),
                  eval_every=sizes.monet_eval_every, segment=sizes.monet_segment, runs={})
    seg = sizes.monet_segment
    steps = {c: 0 for c in conditions}
    for c in conditions:
        rows = read_validations(out / "monet" / c)
        steps[c] = max((r["step"] for r in rows), default=0)
    seconds = {}  # per condition: seconds of its last segment
    while True:
        target = min(steps.values()) + seg
        if target > sizes.monet_max_steps:
            break
        stop = False
        for c in conditions:
            if steps[c] >= target:
                continue
            left = clock.left("monet")
            first = sizes.monet_first_segment_s if hint_s is None else hint_s
            last = seconds.get(c, max(seconds.values(), default=first))
            need = last * 1.1 + 2.0
            if left < need:
                skip(record, f"{c} to step {target}", f"out of the budget ({left:.0f} s left, ~{need:.0f} s needed)")
                stop = True
                break
            config = monet_config(c, sizes.monet_seeds, sizes, num_steps=target, log_every=sizes.monet_eval_every,
                                  checkpoint_every=seg, keep_checkpoints=2,
                                  **({} if "num_slots" in sizes.monet_fields else {"num_slots": slots}))
            tic = time.perf_counter()
            loop.train(config, out / "monet" / c, train, valid)
            seconds[c] = time.perf_counter() - tic
            steps[c] = target
        if stop:
            break
    for c in conditions:
        record["runs"][c] = {"steps": steps[c], "validations": read_validations(out / "monet" / c),
                             "last_segment_s": seconds.get(c)}
    plot_monet(record["runs"], out / "monet.png")


def monet_hint(steps: dict, sizes: Sizes) -> float | None:
    """Stage 1's estimate of a MONet training segment: compile + `monet_segment` steps of len(monet_seeds) seeds."""
    cells = steps.get("cells", {})
    seeds = len(sizes.monet_seeds)
    cell = cells.get(f"monet S={seeds}") or cells.get("monet S=1")
    if not cell or "step_s" not in cell:
        return None
    step_s = cell["step_s"] * (1 if f"monet S={seeds}" in cells else seeds)
    return 2 * cell.get("compile_s", 0.0) + sizes.monet_segment * step_s  # the eval program compiles too


def plot_monet(runs: dict, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("ari", "fg_ari")):
        for i, (name, run) in enumerate(runs.items()):
            rows = run["validations"]
            if not rows:
                continue
            steps = [r["step"] for r in rows]
            values = [list(map(float, r[metric])) for r in rows]
            for s in range(len(values[0])):
                ax.plot(steps, [v[s] for v in values], color=f"C{i}", marker="o", ms=3,
                        label=name if s == 0 else None, alpha=0.8)
        ax.set(xlabel="training step", ylabel=f"validation {metric.upper().replace('_', '-')} (attention masks)",
               ylim=(0, 1))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- the run ----------------------------------------------------------------------------------------------------------


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accelerator", description=__doc__.splitlines()[0])
    parser.add_argument("out", metavar="OUT_DIR", help="output folder (must be new or empty unless --resume)")
    parser.add_argument("--budget-minutes", type=float, default=10.0, help="wall-time budget, imports included")
    parser.add_argument("--smoke", action="store_true", help="every stage at a tiny size, on the CPU (CI)")
    parser.add_argument("--resume", action="store_true", help="go on in OUT_DIR: finished stages are kept")
    parser.add_argument("--monet-variant", default="colored_on_colored", choices=MONET_VARIANTS,
                        help="stage 4's Multi-dSprites variant (colored_on_grayscale: 2-5 sprites on grey, K = 6)")
    return parser.parse_args(argv)


def check_args(args) -> Path:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"output folder {str(out)!r} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.resume:
        raise BadInput(f"output folder {str(out)!r} exists and is not empty (give --resume to go on in it, or a new "
                       f"folder)")
    mode = "smoke" if args.smoke else "gpu"
    least = MIN_FIRST_STAGE_MINUTES[mode]
    if not math.isfinite(args.budget_minutes) or SHARES[STAGES[0]] * args.budget_minutes < least:
        minimum = least / SHARES[STAGES[0]]
        raise BadInput(f"--budget-minutes {args.budget_minutes:g} is below what the first stage needs: at least "
                       f"{minimum:g} minutes{' with --smoke' if args.smoke else ''} (the first stage gets "
                       f"{SHARES[STAGES[0]]:.0%} of the budget and needs {least:g} min)")
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        out = check_args(args)
    except BadInput as error:
        fail(str(error))
    if args.smoke:  # before JAX starts: the smoke run is the CPU's, its programs compiled with the least effort
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
    import jax

    backend = jax.default_backend()
    if backend != "gpu" and not args.smoke:
        fail(f"no GPU here (JAX's default backend is {backend!r}); this job is for one GPU. Run with --smoke for the "
             f"tiny CPU check")
    try:
        from noisegroup.cli import quiet_orbax_logs  # absl-py and ml-collections

        quiet_orbax_logs()
    except ImportError:
        pass
    sizes = SMOKE if args.smoke else GPU
    clock = Clock(args.budget_minutes * 60.0, RESERVE_S["smoke" if args.smoke else "gpu"])
    try:
        import torch

        have_torch, torch_version = True, torch.__version__
        if args.smoke:
            torch.set_num_threads(1)
    except ImportError:
        have_torch, torch_version = False, None
    out.mkdir(parents=True, exist_ok=True)
    previous = {}
    if args.resume and (out / "results.json").exists():
        previous = json.loads((out / "results.json").read_text())
        if previous.get("smoke") != args.smoke:
            fail(f"{str(out)!r} holds a {'smoke' if previous.get('smoke') else 'GPU'} run; resume it the same way")
        if previous.get("monet_variant", MONET_VARIANTS[0]) != args.monet_variant:  # its MONet runs' data
            fail(f"{str(out)!r} holds a run with --monet-variant {previous.get('monet_variant', MONET_VARIANTS[0])}; "
                 f"resume it with that variant, or use a new folder")
    device = jax.devices()[0]
    results = Results(out, {
        "smoke": args.smoke, "budget_minutes": args.budget_minutes, "shares": SHARES,
        "device": f"{device.platform}: {getattr(device, 'device_kind', str(device))}", "devices": jax.device_count(),
        "python": platform.python_version(), "jax": jax.__version__, "torch": torch_version,
        "torch_cuda": bool(have_torch and torch.cuda.is_available()),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "sizes": dataclasses.asdict(sizes),
        "stage_order": list(STAGES), "stages": {}, "runs": previous.get("runs", 0) + 1,
        "monet_variant": args.monet_variant,
    })
    if not have_torch:
        results.data["torch_note"] = "PyTorch is not importable here: the PyTorch cells are skipped"
    for stage in STAGES:
        before = previous.get("stages", {}).get(stage)
        if before and before.get("status") == "done":
            results.data["stages"][stage] = {**before, "kept_from_earlier_run": True}
            continue
        record = {"status": "running", "share": SHARES[stage], "started_s": round(clock.elapsed(), 2)}
        if stage == "lns_curve" and before:  # evaluated checkpoints of the stopped run
            record["points"] = before.get("points", [])
        results.data["stages"][stage] = record
        left = clock.left(stage)
        if left < 1.0:
            record.update(status="skipped")
            skip(record, stage, f"no time left in the budget for it ({left:.0f} s)")
            results.write()
            continue
        results.write()
        print(f"[{clock.elapsed():6.1f} s] {stage}: up to {left:.0f} s", flush=True)
        tic = time.perf_counter()
        try:
            if stage == "steps":
                stage_steps(sizes, clock, record, out, have_torch)
            elif stage == "lns_features":
                stage_lns_features(sizes, clock, record, have_torch)
            elif stage == "lns_curve":
                stage_lns_curve(sizes, clock, record, out)
            else:
                stage_monet(sizes, clock, record, out, monet_hint(results.data["stages"].get("steps", {}), sizes),
                            args.monet_variant)
            record["status"] = "partial" if record.get("skipped") else "done"
        except Exception as error:  # noqa: BLE001 - one stage's failure must not lose the others
            record.update(status="failed", error=f"{type(error).__name__}: {error}"[:2000],
                          traceback=traceback.format_exc()[-4000:])
            print(f"  {stage} failed: {type(error).__name__}: {str(error)[:300]}", file=sys.stderr, flush=True)
        record["seconds"] = round(time.perf_counter() - tic, 2)
        results.write()
        print(f"[{clock.elapsed():6.1f} s] {stage}: {record['status']} in {record['seconds']:.1f} s", flush=True)
    results.data["finished_under_budget"] = clock.elapsed() <= clock.budget_s
    results.write()
    print(f"[{clock.elapsed():6.1f} s] done: {out / 'results.json'}", flush=True)


if __name__ == "__main__":
    main()
