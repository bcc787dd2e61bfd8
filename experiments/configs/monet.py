"""Configs of the MONet loss ablation (`python -m experiments.monet`): Komatsu, Ohmura & Kuniyoshi on Multi-dSprites.

    python -m experiments.monet                                            # default: a 2-core CPU, see below
    python -m experiments.monet --config=experiments/configs/monet.py:paper --workdir=workdirs/monet_paper
    python -m experiments.monet --config.seeds="(1, 2, 3, 4, 5, 6, 7, 8)" --config.train.num_steps=4000
    python -m experiments.monet --config.selected="('11', '01', '10', '00')"        # other rows of the table
    python -m experiments.monet --config.conditions.ir_m.loss_weights.mask_kl=0.5     # any weight of any condition

Modes:
    quick    seconds (tests): 8 x 8 images of 1-2 sprites, K = 3, narrow widths, nll_m and ir_m, 2 seeds, 6 steps.
    default  CPU minutes: the four conditions of sections 3.2-3.3 (nll_m, ir_m, mse_m, mw_m) x 6 seeds (the fewest
             with which an exact two-sided Wilcoxon p can fall below 0.05: 2 / 2^6 = 0.031; Holm over section 3.3's
             three tests needs 7: 2 / 2^7 < 0.05 / 3), 16 x 16 images of 1-2
             sprites (64 x 64 nearest-downsampled) with K = 3 = 1 + 2 slots, narrow widths (U-Net c = 8, MLP 64;
             encoder (16, 16, 32, 32) -> 64; latent 8; decoder two 16-channel convs), batch 8 in one pass, RMSProp
             1e-3 (10x the paper's rate), 400 steps, validation every 100 steps on 128 images, 500 held-out images.
             Measured on 2 CPU cores shared with other jobs (load 4-8): 13.1 min end to end, of which ~1 min per
             condition is XLA compilation. It reaches an early-training snapshot, not the paper's end point: median
             ARI (FG-ARI) NLL+M 0.006 (0.22), IR+M 0.40 (0.53), MSE+M 0.39 (0.57), MW+M 0.035 (0.36): the losses of
             the integrated reconstruction x~ (IR, MSE) reconstruct and split the scene by colour first, while the
             mixture-NLL and MW conditions have not left their start in 400 steps (RMSProp 3e-3 or Adam 1e-3 did not
             change that); every seed differs the same way, so NLL+M vs IR+M gives p = 0.031 in the opposite
             direction to the paper's.
    paper    the paper's protocol for accelerators: 64 x 64, K = 5, U-Net c = 32 and the MONet widths, batch 64,
             RMSProp 1e-4 (PyTorch's: decay 0.99, eps 1e-8 outside the root), 1e6 steps with Komatsu's early
             termination (every 100,000 steps: stop a seed once its validation MSE, in [-1, 1] units, is below 0.001
             and improved by less than 1 %), seeds 1..100, the 2x2 conditions (11, 01, 10, 00) and nll_m, ir_m,
             mse_m, mw_m (nll_m is 01: trained once), 1,000 held-out images. Trained on the 60,000 images of the
             generator's train split (the paper: 1e6; as float32 in host memory 1e6 images need 49 GB), in programs
             of 10 seeds (`seeds_per_run`; unmeasured: 100 MONets at batch 64 in one program risk one GPU's memory).
             Not run here (Komatsu: ~20 A100-hours per seed).

Fields:
    conditions: the condition table (below): {name: {"loss_weights": {term: weight}, "sample_latent": None}}, one
        weight for each of MONet's seven loss terms (0: the condition drops the term; its value is still logged).
        sample_latent None applies the eps = 0 rule (the latent is sampled exactly when beta, the "kl" weight, is
        > 0); True / False overrides it. Conditions with the same training config share one run (nll_m is 01),
        and the weights are an input of the compiled step: conditions that differ only in weights compile once.
    selected: the names of the table to run, in this order (() runs all of them, in the table's key order).
    seeds: the training seeds, the same in every condition (the tests pair them).
    train: the flat training config of every condition: the MONet family's fields (num_slots, widths, sigmas,
        input_range, ...) and the engine's keys (`noisegroup.engine.config`; optimizer, learning_rate, batch_size,
        num_steps, eval_every, early_stop_*, train_limit / valid_limit: a prefix of the train / valid split, 0 the
        whole split). The pipeline sets model, loss_weights, sample_latent, seeds, dataset and progress. Every key
        starts at its schema's default (`noisegroup.engine.config.TrainConfig`, `MonetFamily`).
    dataset: "multi_dsprites" (generated procedurally, `datasets.multi_dsprites`).
    image_size: 64 (the paper's) or a smaller power of two: the 64 x 64 images downsampled, downsample = "nearest"
        (image and labels take the pixel nearest each block's centre) or "area" (the image averages each block).
    max_sprites: scenes of 1 to max_sprites sprites (4: DeepMind's colored_on_colored, with K = 5 = 1 + 4 slots).
    variant: "colored_on_colored" (default) or "colored_on_grayscale" (2 to max_sprites <= 5 HSV-coloured sprites on
        a grey background; DeepMind's has 5, with K = 6; `datasets.multi_dsprites`). A workdir keeps its data
        (dataset, image_size, downsample, max_sprites, variant in data.json): other data is refused.
    eval_images: held-out images (the `test` split) scored per seed; training validates on the `valid` split.
    seeds_per_run: seeds per training program (0: all of a condition's seeds in one).
    test_metrics: per-seed metrics the tests run on, "ari" (the paper's) and/or "fg_ari".
    slot_images: held-out images shown in slots.png; figures; progress.

The condition table (Komatsu et al., spec sections 2.2-2.4; `conditions`):

    condition  weights                           latent sampled   paper
    11         nll 1, kl 0.5, mask_kl 0.25       yes              3.1, the original MONet (`MonetFamily.default_weights`)
    01         nll 1, kl 0,   mask_kl 0.25       no               3.1 (beta = 0 -> eps = 0)
    10         nll 1, kl 0.5, mask_kl 0          yes              3.1
    00         nll 1, kl 0,   mask_kl 0          no               3.1
    nll_m      = 01                                               3.2 / 3.3 NLL+M
    ir_m       ir 1, mask_kl 0.25                no               3.2 IR+M (sigma_x = 0.09: train.sigma_ir)
    mse_m      mse 1, mask_mse gamma             no               3.3 MSE+M
    mw_m       mw 1, mask_mse gamma              no               3.3 MW+M

Every other term of a row has weight 0. Sigma per slot (train.sigma_bg 0.09 for the first slot, train.sigma_fg 0.11
for the others, train.sigma_ir 0.09 for IR) is the same in every condition. gamma of mask_mse: 0.01 on
Multi-dSprites, 0.1 on Objects Room (`MASK_MSE_GAMMA`: "best under MW+M in preliminary experiments"). The paper does
not state beta for IR+M, MSE+M and MW+M; beta = 0 (and so eps = 0) is the reading of spec 2.3-2.4. The sums and
means of the terms differ in scale by ~10^4 (`noisegroup.models.monet_losses`): gammas compare only within a group.

Figures: boxplots.png (per-seed ARI and FG-ARI per condition, the paper's medians marked), slots.png (images,
reconstructions, masks and masked components), training.png (validation ARI, FG-ARI and MSE against the step).
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import defaults
from noisegroup.engine.config import TrainConfig
from noisegroup.komatsu.pipeline import AblationConfig
from noisegroup.models.monet import MonetFamily

MASK_MSE_GAMMA = {"multi_dsprites": 0.01, "objects_room": 0.1}


def condition(**weights: float) -> ml_collections.ConfigDict:
    """One row of the table: `weights` for the terms it uses, 0 for every other MONet term; the eps = 0 rule."""
    return ml_collections.ConfigDict({
        "loss_weights": {term: float(weights.get(term, 0.0)) for term in MonetFamily.loss_terms},
        "sample_latent": config_dict.placeholder(bool)})


def ablation_conditions(gamma: float) -> ml_collections.ConfigDict:
    """The paper's eight conditions (the table in the module docstring), mask_mse weighted by `gamma`."""
    monet = MonetFamily.default_weights  # the original MONet: nll 1, kl (beta) 0.5, mask_kl (gamma) 0.25
    beta_gamma = {"11": condition(**monet), "01": condition(**{**monet, "kl": 0.0}),
                  "10": condition(**{**monet, "mask_kl": 0.0}), "00": condition(nll=monet["nll"])}
    return ml_collections.ConfigDict({
        **beta_gamma,
        "nll_m": condition(**{**monet, "kl": 0.0}),
        "ir_m": condition(ir=1.0, mask_kl=monet["mask_kl"]),
        "mse_m": condition(mse=1.0, mask_mse=gamma),
        "mw_m": condition(mw=1.0, mask_mse=gamma),
    })


def monet_paper() -> ml_collections.ConfigDict:
    """The MONet family's fields and the engine's keys for the paper's training (spec sections 1.4 and 2.5): the
    schemas' defaults (the family's are the paper's MONet) under the paper's optimiser and schedule."""
    t = ml_collections.ConfigDict(defaults(TrainConfig, MonetFamily, leave_out=AblationConfig.SET_BY_PIPELINE))
    t.optimizer = "rmsprop"  # PyTorch's: decay 0.99, eps 1e-8 outside the square root (the engine's defaults)
    t.learning_rate = 1e-4
    t.num_steps = 1_000_000
    t.eval_every = 100_000
    t.early_stop_metric = "valid/mse"
    t.early_stop_below = 0.001
    t.early_stop_min_improvement = 0.01
    t.log_every = 1000
    t.checkpoint_every = 10_000
    return t


def get_config(mode: str = "default") -> ml_collections.ConfigDict:
    if mode not in ("quick", "default", "paper"):
        raise ValueError(f"unknown mode {mode!r}; expected quick, default or paper")
    c = ml_collections.ConfigDict(defaults(AblationConfig, leave_out=("conditions", "train")))
    c.conditions = ablation_conditions(MASK_MSE_GAMMA["multi_dsprites"])
    c.selected = ("11", "01", "10", "00", "nll_m", "ir_m", "mse_m", "mw_m")  # the table's order (ml_collections sorts)
    c.train = monet_paper()
    c.seeds_per_run = 10  # programs of 10 seeds (100 MONets at batch 64 in one program risk one GPU's memory)
    if mode == "paper":
        return c
    c.selected = ("nll_m", "ir_m", "mse_m", "mw_m")
    c.seeds_per_run = 0
    t = c.train
    t.early_stop_metric = ""  # far from the MSE threshold in a CPU run
    t.seed_batching = "loop"
    if mode == "default":
        c.seeds = (1, 2, 3, 4, 5, 6)
        c.image_size = 16
        c.max_sprites = 2
        c.eval_images = 500
        t.num_slots = 3
        t.latent_dim = 8
        t.unet_channels = 8
        t.unet_mlp_hidden = 64
        t.encoder_channels = (16, 16, 32, 32)
        t.encoder_hidden = 64
        t.decoder_channels = (16, 16)
        t.learning_rate = 1e-3
        t.batch_size = 8
        t.num_steps = 400
        t.eval_every = 100
        t.log_every = 50
        t.checkpoint_every = 200
        t.train_limit = 5_000
        t.valid_limit = 128
    elif mode == "quick":
        c.selected = ("nll_m", "ir_m")
        c.seeds = (1, 2)
        c.image_size = 8
        c.max_sprites = 2
        c.eval_images = 16
        c.slot_images = 2
        c.progress = False
        t.num_slots = 3
        t.latent_dim = 4
        t.unet_channels = 4
        t.unet_mlp_hidden = 8
        t.encoder_channels = (4, 4, 8, 8)
        t.encoder_hidden = 16
        t.decoder_channels = (4, 4)
        t.learning_rate = 1e-3
        t.batch_size = 4
        t.num_steps = 6
        t.eval_every = 3
        t.log_every = 3
        t.checkpoint_every = 3
        t.train_limit = 64
        t.valid_limit = 8
    return c
