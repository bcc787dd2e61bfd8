"""Configs of the MONet reversal study (issue 33): why our CPU runs reverse Komatsu's NLL+M vs IR+M order.

    python -m experiments.monet --config=experiments/configs/monet_reversal.py:narrow --workdir=workdirs/reversal/narrow
    python -m experiments.monet_reversal            # every study below in turn, then the table and the curves

Every study trains the two conditions of section 3.2, NLL+M (`nll_m`) and IR+M (`ir_m`), with seeds 1, 2, 3 and
validates every 1,000 steps on 256 images (the curves), starting from the ablation's CPU `default`
(`experiments/configs/monet.py`: 16 x 16 scenes of 1-2 colored_on_colored sprites, K = 3, the narrow widths,
RMSProp 1e-3, batch 8) and changing one thing. The candidate causes of the reversal each study speaks to:

    (a) capacity: a narrow component VAE forces splitting under a loss of the combined reconstruction (IR);
    (b) the problem: small scenes whose colours alone separate the objects, and few slots;
    (c) NLL+M is only slow: its escape from soft masks takes longer than a CPU run;
    (d) the background: the Gaussian of the mixed reconstruction (IR) spreads the background over slots, the mixture
        NLL finds the sprites late (EfficientMORL, Emami et al. 2021, sections 3.1 and 4.2).

Modes ("narrow" is the default's widths; `STEPS` the steps per seed):
    narrow       (a, c, d) the default at 6,000 steps: the reference point of every other study.
    sigma        (d) the object-centric library's sigmas 0.06 (first slot, and IR's single sigma) / 0.1 (others);
                 6,000 steps.
    medium       (a) widths x2 (U-Net c = 16, MLP 128, encoder (32, 32, 64, 64) -> 128, latent 16, decoder 2 x 32);
                 4,000 steps.
    paper_widths (a) the paper's MONet widths (U-Net c = 32, MLP 128, encoder -> 256, latent 16, decoder 4 x 32);
                 3,000 steps.
    scale32      (b) 32 x 32 scenes of 1-4 sprites, K = 5 (the paper's scenes and slots at half resolution); 3,000.
    grayscale32  (b) colored_on_grayscale at 32 x 32: 2-5 HSV-coloured sprites on a grey background, K = 6; 6,000.
    grayscale32_k5 (b) the same with at most 4 sprites and K = 5, scale32's K: what is left between the two is the
                 grey background and HSV colours (and no one-sprite scenes); 3,000.
    scale64      (b) 64 x 64, K = 5: the paper's problem and size, the narrow widths; 1,000 steps. Not run on the 2-core
                 CPU (estimated from scale32: ~20 CPU-minutes per condition for a snapshot at 1,000 steps, where
                 32 x 32 still showed only the early, IR-first stage); stage 4 of `benchmarks.accelerator` runs
                 NLL+M and IR+M at this size with the paper's widths.

`STUDIES` lists them with the cause each speaks to; `experiments/monet_reversal.py` runs them and tabulates.
"""

from __future__ import annotations

import ml_collections

from experiments.configs import monet

# mode: (the causes it speaks to, what it changes); the order `experiments.monet_reversal` runs them in.
STUDIES = {
    "narrow": ("a c d", "the CPU default (16 x 16, 1-2 sprites, K = 3, narrow widths)"),
    "sigma": ("d", "sigmas 0.06 / 0.1 (IR 0.06) instead of 0.09 / 0.11 (IR 0.09)"),
    "medium": ("a", "component VAE and U-Net widths x2"),
    "paper_widths": ("a", "the paper's widths"),
    "scale32": ("b", "32 x 32, 1-4 sprites, K = 5"),
    "grayscale32": ("b", "colored_on_grayscale, 32 x 32, 2-5 sprites, K = 6"),
    "grayscale32_k5": ("b", "colored_on_grayscale, 32 x 32, 2-4 sprites, K = 5"),
    "scale64": ("b", "64 x 64, 1-4 sprites, K = 5 (the paper's problem)"),
}
STEPS = {"narrow": 6000, "sigma": 6000, "medium": 4000, "paper_widths": 3000, "scale32": 3000, "grayscale32": 6000,
         "grayscale32_k5": 3000, "scale64": 1000}


def get_config(mode: str = "narrow") -> ml_collections.ConfigDict:
    if mode not in STUDIES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {tuple(STUDIES)}")
    c = monet.get_config("default")
    c.selected = ("nll_m", "ir_m")
    c.seeds = (1, 2, 3)
    c.eval_images = 500
    t = c.train
    t.num_steps = STEPS[mode]
    t.eval_every = 1000
    t.log_every = 250
    t.checkpoint_every = 1000
    t.valid_limit = 256
    if mode == "sigma":
        t.sigma_bg, t.sigma_fg, t.sigma_ir = 0.06, 0.1, 0.06
    elif mode == "medium":
        t.unet_channels, t.unet_mlp_hidden = 16, 128
        t.encoder_channels, t.encoder_hidden = (32, 32, 64, 64), 128
        t.latent_dim, t.decoder_channels = 16, (32, 32)
    elif mode == "paper_widths":
        t.unet_channels, t.unet_mlp_hidden = 32, 128
        t.encoder_channels, t.encoder_hidden = (32, 32, 64, 64), 256
        t.latent_dim, t.decoder_channels = 16, (32, 32, 32, 32)
    elif mode in ("scale32", "scale64"):
        c.image_size = 32 if mode == "scale32" else 64
        c.max_sprites = 4
        t.num_slots = 5
    elif mode in ("grayscale32", "grayscale32_k5"):
        c.image_size = 32
        c.variant = "colored_on_grayscale"
        c.max_sprites = 5 if mode == "grayscale32" else 4
        t.num_slots = c.max_sprites + 1
    return c
