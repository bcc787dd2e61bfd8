"""Training configs for the LNS paper's baselines, GENESIS and GENESIS-v2 (`noisegroup.models.genesis`, `genesis_v2`).

    python -m experiments.train --config=experiments/configs/genesis.py:default --config.dataset=proximity \\
        --workdir=workdirs/genesis_proximity
    python -m experiments.train --config=experiments/configs/genesis.py:default,genesis_v2 \\
        --config.dataset=closure --workdir=workdirs/genesis_v2_closure
    python -m experiments.train --config=experiments/configs/genesis.py:multi_dsprites --workdir=workdirs/genesis_md

The argument is "<mode>" (GENESIS) or "<mode>,genesis_v2" (the config then holds GENESIS-v2's keys).
Modes (K = 5 slots everywhere, as the LNS paper):
    quick                 seconds (tests): 32 Good Gestalt images, 2 steps at batch 4.
    default               a 2-core CPU budget on a Good Gestalt dataset: 300 steps at batch 16 (4,800 images, 0.015 %
                          of the paper's 5e5 x 64; GENESIS ~3.6 s a step, GENESIS-v2 ~1.9 s: ~18 and ~10 minutes).
                          Resumable: re-running continues from the last checkpoint (every 50 steps).
    paper                 the LNS paper's setting for an accelerator: batch 64, 5e5 steps, Adam 1e-4, the official GECO.
    multi_dsprites        the CPU budget on Multi-dSprites (colored_on_colored at 64 x 64, 1-4 sprites, K = 5).
    multi_dsprites_paper  the official data config: batch 32 (the code's default), 5e5 steps.

The official optimiser and GECO (spec `genesis_reference.md` C.1-C.2) in every mode: Adam 1e-4 (PyTorch defaults), no
schedule or clipping; GECO on the mixture NLL with goal 0.5655 nats per pixel value (6,948.9 per 64 x 64 x 3 image),
step 1e-5 at 64 x 64, moving average 0.99, 10x faster rise, beta from 1 clamped to [1e-10, 1e10], beta weighting the
KL; validation batches do not move GECO (the official loop; `geco_tracks_validation=False`).

Switches where the sources disagree (spec Part D), official behaviour first:
    batch_size        64 (LNS, the `paper` mode) / 32 (the official code, `multi_dsprites_paper`).
    eval_norm         (GENESIS) "population": scoring normalises with batch statistics averaged over training batches,
                      the limit of the official running averages (the engine keeps no running statistics); "batch".
    kernel            (GENESIS-v2) "gaussian" / "laplacian" / "epanechnikov"; semiconv True; mask_consistency False
                      (the official `klm_loss`).
    Which GENESIS-v2 masks segment: both are scored (`noisegroup.baselines`); the table's row uses the IC-SBP masks
                      (the official main metric), the decoder masks are the "-R" column.
"""

import ml_collections

from experiments.configs import defaults
from noisegroup.baselines import BASELINES, BUDGETS, OFFICIAL_TRAINING
from noisegroup.engine.config import TrainConfig
from noisegroup.models import get_family

MODES = ("quick", "default", "paper", "multi_dsprites", "multi_dsprites_paper")


def training(mode: str = "default") -> dict:
    """The engine's keys of a mode: the official settings (`noisegroup.baselines.OFFICIAL_TRAINING`) and the mode's
    budget (the LNS experiment's baseline rows train with the `default` budget)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    c = dict(OFFICIAL_TRAINING, model="genesis", dataset="multi_dsprites" if mode.startswith("multi") else "kanizsa")
    if mode.endswith("paper"):
        c.update(BUDGETS["paper"], batch_size=32 if mode.startswith("multi") else 64)
    elif mode == "quick":
        c.update(BUDGETS["quick"], progress=False)
    else:
        c.update(BUDGETS["default"], train_limit=6_400 if mode.startswith("multi") else 0)
    return c


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
    mode, _, model = arg.partition(",")
    model = model or "genesis"
    if model not in BASELINES:
        raise ValueError(f"unknown model {model!r} in {arg!r}; expected one of {BASELINES}")
    # Every key of the engine and of the family at its schema's default, then the mode's.
    c = ml_collections.ConfigDict(defaults(TrainConfig, get_family(model)))
    c.update(training(mode), model=model)
    return c
