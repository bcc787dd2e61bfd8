"""Configs of the cross-method comparison (`python -m experiments.compare`): every method on every dataset.

    python -m experiments.compare                                            # default: a 2-core CPU, see below
    python -m experiments.compare --config=experiments/configs/compare.py:quick --workdir=/tmp/compare_quick
    python -m experiments.compare --config.methods="('lns_ae_ward', 'slot_attention', 'genesis')"
    python -m experiments.compare --config=experiments/configs/compare.py:paper --workdir=workdirs/compare_paper

Modes:
    quick    about a minute (tests): two datasets (kanizsa: the shipped AE; multi_dsprites: an AE trained for 2
             steps), four test images, LNS with Ward, the control, and Slot Attention trained for 2 steps at tiny
             widths (MONet's masks go through the same evaluation in tests/test_evaluation.py).
    default  a 2-core CPU's budget, stated per cell (the README prints the table it gives):
             - datasets: the six Good Gestalt test sets and Multi-dSprites (colored_on_colored, 1-4 sprites, 64 x 64),
               the first 50 test images of each (half of Good Gestalt's test sets: CPU time);
             - LNS: the shipped AE and beta-VAE on Good Gestalt (6,000-8,000 steps at batch 32: 0.3 % of the
               paper's 1.1e6 x 64 images); on Multi-dSprites an AE / beta-VAE of the same recipe trained for
               `LNS_MD_STEPS` steps; (sigma, N) chosen from {0.01, 0.1} x {20} on 32 selection images (Good
               Gestalt's test_iid, Multi-dSprites' valid), never on the test set, once per model and clustering;
               the AE with the clustering ablation (Ward, complete, k-means, estimated k, tangent features), the
               beta-VAE with k-means (the LNS experiment's default clustering);
             - the control (AE), Ward;
             - MONet (NLL+M: the paper's loss without the latent KL, Komatsu's "01") and Slot Attention, K = 5,
               at narrow CPU widths, batch 8, `MONET_STEPS` (200) and `SLOT_ATTENTION_STEPS` (80) steps per dataset
               (0.003 % and 0.002 % of their papers' 1e6 x 64 and 5e5 x 64 images);
             - GENESIS / GENESIS-v2 are not in the default list (2-4 s a step here; `--config.methods` adds them,
               trained with the LNS experiment's baseline budget, 300 steps at batch 16).
             Resumable: every model checkpoints, every cell is kept.
    paper    every method, each at its published budget, for accelerators: LNS's recipe (1.1e6 steps, batch 64,
             Adam 5e-5, 5 seeds) on Multi-dSprites; MONet's (RMSProp 1e-4, batch 64, 1e6 steps, Komatsu's early
             stop); Slot Attention's (Adam 4e-4, 10k warm-up steps, batch 64, 5e5 steps; the paper halves the rate
             every 1e5 steps, the engine's nearest schedule is used: cosine decay over the run); GENESIS's (batch 64,
             5e5).

Fields (`noisegroup.compare.config.CompareConfig`):
    methods: rows (`noisegroup.compare.METHODS`): lns_<ae|vae>_<ward|complete|kmeans|estimated|tangent>,
        control_<ae|vae>, monet, slot_attention, genesis, genesis_v2.
    datasets: columns: kanizsa, closure, continuity, proximity, gradient_occlusion, illusory_occlusion,
        multi_dsprites.
    seeds, test_limit (0: the whole test split), select_limit, noise_stds, num_noise_samples, normalisation,
    kmeans_restarts, estimator / k_max (the estimated-k rows), pretrained (shipped AE / VAE weights; "" trains them),
    train: {family: flat training config} (engine keys and the family's; model, dataset, seeds and progress are set
        per cell), key (evaluation noise), figure_images, progress.
"""

import ml_collections

from experiments.configs import defaults
from experiments.configs import genesis as genesis_configs
from experiments.configs.monet import MASK_MSE_GAMMA, ablation_conditions, monet_paper
from noisegroup.compare import METHODS
from noisegroup.compare.config import CompareConfig
from noisegroup.engine.config import TrainConfig
from noisegroup.models import get_family
from noisegroup.models.slot_attention import PAPER_TRAINING

MODES = ("quick", "default", "paper")
GOOD_GESTALT = ("kanizsa", "closure", "continuity", "proximity", "gradient_occlusion", "illusory_occlusion")
DEFAULT_METHODS = ("lns_ae_ward", "lns_ae_complete", "lns_ae_kmeans", "lns_ae_estimated", "lns_ae_tangent",
                   "lns_vae_kmeans", "control_ae", "monet", "slot_attention")
LNS_MD_STEPS = 1_000  # default: the AE / beta-VAE on Multi-dSprites (no shipped weights there)
MONET_STEPS = 200  # default, per dataset: ~0.5 s a step at batch 8 on 2 cores (~1.7 min)
SLOT_ATTENTION_STEPS = 80  # default, per dataset: ~1.3 s a step at batch 8 (its decoder runs K x 64 x 64 maps)
SLOTS = 5  # K of every mask family (the LNS paper's GENESIS; Multi-dSprites' 1 + 4 sprites)
PER_CELL = ("model", "dataset", "seeds", "progress")  # set by the comparison per cell


def _schema(model: str) -> dict:
    return defaults(TrainConfig, get_family(model), leave_out=PER_CELL)


def lns_training(mode: str) -> dict:
    """The AE / beta-VAE's recipe where no shipped weights exist: the shipped files' recipe (batch 32, Adam 5e-4
    with 100 warm-up steps, the decoder's bias at the data's mean), or the paper's."""
    t = _schema("ae")
    if mode == "paper":
        return {**t, "num_steps": 1_100_000}
    t.update(batch_size=32, learning_rate=5e-4, lr_warmup_steps=100, output_bias_init="data_mean",
             num_steps=LNS_MD_STEPS, log_every=100, checkpoint_every=250, valid_limit=64)
    if mode == "quick":
        t.update(batch_size=8, num_steps=2, checkpoint_every=2, log_every=1, eval_every=2, train_limit=32,
                 valid_limit=8)
    return t


def monet_training(mode: str) -> dict:
    """MONet with the NLL+M loss (Komatsu's "01": no latent KL, so no latent sampling)."""
    nll_m = ablation_conditions(MASK_MSE_GAMMA["multi_dsprites"])["nll_m"]
    t = {**dict(monet_paper()), **dict(nll_m), "sample_latent": False, "num_slots": SLOTS}
    t["loss_weights"] = dict(t["loss_weights"])
    if mode == "paper":
        return t
    narrow = dict(latent_dim=8, unet_channels=8, unet_mlp_hidden=64, encoder_channels=(16, 16, 32, 32),
                  encoder_hidden=64, decoder_channels=(16, 16), early_stop_metric="", learning_rate=1e-3,
                  batch_size=8, num_steps=MONET_STEPS, eval_every=0, log_every=50, checkpoint_every=100,
                  valid_limit=64, seed_batching="loop")
    t.update(narrow)
    if mode == "quick":
        t.update(batch_size=4, num_steps=2, checkpoint_every=2, log_every=1, eval_every=2, train_limit=16,
                 valid_limit=4, unet_channels=4, encoder_channels=(8, 8, 8, 8), encoder_hidden=16,
                 decoder_channels=(8,), unet_mlp_hidden=16)
    return t


def slot_attention_training(mode: str) -> dict:
    """Slot Attention's object discovery: Adam 4e-4 after a linear warm-up, K = 5."""
    t = _schema("slot_attention")
    t.update(num_slots=SLOTS, learning_rate=PAPER_TRAINING["learning_rate"], geco=False)
    if mode == "paper":
        t.update(batch_size=64, num_steps=PAPER_TRAINING["num_steps"], lr_warmup_steps=PAPER_TRAINING["warmup_steps"],
                 lr_schedule="cosine", lr_decay_steps=PAPER_TRAINING["num_steps"] - PAPER_TRAINING["warmup_steps"],
                 checkpoint_every=10_000, log_every=1000)
        return t
    t.update(hidden_dim=32, slot_dim=32, mlp_hidden=64, batch_size=8, lr_warmup_steps=30,
             num_steps=SLOT_ATTENTION_STEPS, eval_every=0, log_every=50, checkpoint_every=100, valid_limit=64)
    if mode == "quick":
        t.update(hidden_dim=8, slot_dim=8, mlp_hidden=8, batch_size=4, num_steps=2, lr_warmup_steps=0,
                 checkpoint_every=2, log_every=1, eval_every=2, train_limit=16, valid_limit=4)
    return t


def genesis_training(model: str, mode: str) -> dict:
    """GENESIS / GENESIS-v2 with the official settings and the LNS experiment's baseline budget."""
    t = {**_schema(model), **genesis_configs.training(mode)}
    return {k: v for k, v in t.items() if k not in PER_CELL}


def get_config(mode: str = "default") -> ml_collections.ConfigDict:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    c = ml_collections.ConfigDict(defaults(CompareConfig, leave_out=("methods", "datasets", "train")))
    c.methods = DEFAULT_METHODS
    c.datasets = GOOD_GESTALT + ("multi_dsprites",)
    c.test_limit = 50
    c.train = {"ae": lns_training(mode), "vae": lns_training(mode),
               "monet": monet_training(mode), "slot_attention": slot_attention_training(mode),
               "genesis": genesis_training("genesis", mode), "genesis_v2": genesis_training("genesis_v2", mode)}
    if mode == "quick":
        c.methods = ("lns_ae_ward", "control_ae", "slot_attention")
        c.datasets = ("kanizsa", "multi_dsprites")
        c.test_limit = 4
        c.select_limit = 4
        c.noise_stds = (0.1,)
        c.num_noise_samples = (5,)
        c.figure_images = 2
        c.progress = False
    elif mode == "paper":
        c.methods = METHODS  # every method, GENESIS and GENESIS-v2 included
        c.seeds = (0, 1, 2, 3, 4)
        c.test_limit = 0
        c.select_limit = 100
    return c
