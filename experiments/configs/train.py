"""Training configs for the LNS autoencoder / beta-VAE on a Good Gestalt dataset.

    python -m experiments.train --config=experiments/configs/train.py:default --workdir=workdirs/ae_kanizsa
    python -m experiments.train --config=experiments/configs/train.py:default --config.model=vae \\
        --config.dataset=closure --config.seeds="(0, 1, 2)" --workdir=workdirs/vae_closure

Modes:
    quick    seconds: 256 train images, 12 steps at batch 16 (tests and CI).
    default  CPU minutes: 1,000 steps at batch 64, Adam 5e-4 (10x the paper's rate), GECO as the paper.
    paper    the paper's recipe for a GPU/TPU: 1.1e6 steps, batch 64, Adam 5e-5, 5 seeds, GECO goal 0.0006.
    celeba   the paper's CelebA model (App. F.2; the reference's dCelebA): latent 50, GECO goal 0.0125, otherwise the
             paper's recipe (the paper gives no CelebA step count: 1.1e6 as for Good Gestalt), one seed, on CelebA as
             the reference builds it from CelebAMask-HQ (`datasets.images`; --config.data_dir or
             $NOISEGROUP_CELEBA_DIR). An accelerator job; `--config.num_steps` shortens it.
    celeba_quick  `quick` on CelebA's settings (latent 50, GECO goal 0.0125): tests on a fabricated folder.

Fields:
    model ("ae" | "vae"), dataset (a Good Gestalt name; "celeba" (from CelebAMask-HQ), "celeba_aligned" or "folder",
        read from data_dir), latent_dim, seeds (one vmapped program for all).
    batch_size, learning_rate, lr_warmup_steps (linear warm-up from 0; 0: none, the reference), adam_*.
    lr_schedule: after the warm-up, "constant" (the reference), "cosine" or "linear" decay to 0 over lr_decay_steps
        (then 0). grad_clip_norm: clip each seed's gradient to this global norm first (0: off, the reference).
    ema_decay: keep an exponential moving average of the weights with this decay and segment / export with it
        (0: off, the reference; e.g. 0.999).
    geco (on/off for the VAE) and geco_* (goal per pixel value, step size at 64 px, alpha, speed-up),
        geco_tracks_validation (validation batches move GECO's average, as the reference).
    output_bias_init: "reference" (PyTorch's default init of the decoder's output bias) or "data_mean" (the logit
        of the training images' mean colour: keeps fast learning rates from saturating the sigmoid; README).
    num_steps, eval_every (steps; 0 = once per epoch, as the reference), log_every, checkpoint_every, keep_checkpoints.
    loss_weights: {term: weight}; None (the default) keeps the family's weight (reconstruction 1, kl 1). A term the
        model does not have is an error (e.g. --config.loss_weights.kl=0.5 with model=ae).
    micro_batch_size: images per forward/backward pass, gradients averaged over the passes ("auto": 8 on CPU,
        where XLA trains small passes faster per image; one pass on accelerators; a number >= batch_size: one pass).
    seed_batching: "auto" | "vmap" | "unroll" | "loop" (`noisegroup.engine.parallel`).
    data_parallel: devices that split each seed's batch (the "data" axis of the mesh; 1: none).
    conv_impl ("auto" | "fast" | "fast_jvp" | "native"), train_limit / valid_limit (a prefix of the data), progress.

Every key is checked before any work (`noisegroup.engine.config`): a typo gets one line naming the closest key.
"""

import ml_collections
from ml_collections import config_dict

from experiments.configs import defaults
from noisegroup.engine.config import TrainConfig
from noisegroup.models.autoencoder import AutoEncoderFamily


def get_config(mode: str = "default") -> ml_collections.ConfigDict:
    modes = ("quick", "default", "paper", "celeba", "celeba_quick")
    if mode not in modes:
        raise ValueError(f"unknown mode {mode!r}; expected one of {modes}")
    # Every key at its schema's default (the engine's `TrainConfig`, the AE / beta-VAE family's fields): the paper's
    # recipe, one seed. The loss weights are placeholders (None: the family's weight), so that either can be set.
    c = ml_collections.ConfigDict(defaults(TrainConfig, AutoEncoderFamily, leave_out=("loss_weights",)))
    c.loss_weights = ml_collections.ConfigDict({"reconstruction": config_dict.placeholder(float),
                                                "kl": config_dict.placeholder(float)})
    if mode == "paper":
        c.seeds = (0, 1, 2, 3, 4)
    elif mode == "default":
        c.learning_rate = 5e-4
        c.num_steps = 1_000
        c.checkpoint_every = 250
        c.log_every = 50
    elif mode in ("quick", "celeba_quick"):
        c.batch_size = 16
        c.learning_rate = 5e-4
        c.num_steps = 12
        c.eval_every = 8
        c.log_every = 4
        c.checkpoint_every = 4
        c.train_limit = 256
        c.valid_limit = 32
        c.progress = False
    if mode in ("celeba", "celeba_quick"):  # the paper's CelebA settings (App. F.2; spec section 1.8)
        c.dataset = "celeba"
        c.latent_dim = 50
        c.geco_goal = 0.0125
    return c
