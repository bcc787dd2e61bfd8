"""The MONet loss ablation of Komatsu, Ohmura & Kuniyoshi (spec section 2) as an experiment over the MONet family
(`noisegroup.models.monet`, the condition table in `experiments/configs/monet.py`) and the engine.

Modules, one concern each:
    data        Multi-dSprites splits at the experiment's image size (64 x 64, or downsampled for CPU runs)
    pipeline    the experiment end to end (`python -m experiments.monet`): config schema, training, evaluation,
                results files, printed tables
    analysis    the paper's tests over per-seed ARIs (Friedman per factor, Wilcoxon, Holm) and its reported values
    plots       boxplots.png, slots.png, training.png
    paper_values.json   the paper's medians and p-values, as data
"""
