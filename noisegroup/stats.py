"""Summaries of sweep results: the paper's and a fair choice of the best (sigma, N), mean and standard error.

    best = select_setting(test.ari)                        # the paper's protocol: best mean ARI on `test` itself
    fair = select_setting(test_iid.ari)                    # chosen on the in-distribution `test_iid` split ...
    summary = summarise(test.ari, fair)                    # ... and reported on `test`

ARI arrays are `[S, sigma, N, b]` (seed, noise level, number of samples, image). The paper's Table 1 reports, per
dataset and model, the mean ARI over the 100 test images at the best setting, +- the standard error of the mean over
its 5 trained seeds; with one seed the standard error is taken over images instead (and says so).
"""

from __future__ import annotations

import numpy as np


def select_setting(ari: np.ndarray) -> tuple[int, int]:
    """(sigma index, N index) of the highest mean ARI over seeds and images; ties go to the first (smaller) setting."""
    ari = np.asarray(ari)
    if ari.ndim != 4 or 0 in ari.shape:
        raise ValueError(f"ARI must be a non-empty [seeds, sigmas, Ns, images] array, got shape {ari.shape}")
    means = ari.mean(axis=(0, 3))
    i, j = np.unravel_index(int(np.argmax(means)), means.shape)
    return int(i), int(j)


def mean_sem(per_seed_image: np.ndarray) -> dict:
    """Mean and SEM of an `[S, b]` array: SEM over the S per-seed means, or over the b images when S = 1."""
    values = np.asarray(per_seed_image, np.float64)
    per_seed = values.mean(axis=1)
    if len(per_seed) > 1:
        return {"mean": float(per_seed.mean()), "sem": float(per_seed.std(ddof=1) / np.sqrt(len(per_seed))),
                "sem_over": "seeds", "per_seed": per_seed.tolist()}
    images = values[0]
    sem = float(images.std(ddof=1) / np.sqrt(len(images))) if len(images) > 1 else float("nan")
    return {"mean": float(per_seed.mean()), "sem": sem, "sem_over": "images", "per_seed": per_seed.tolist()}


def summarise(ari: np.ndarray, setting: tuple[int, int]) -> dict:
    """Mean +- SEM of `ari` `[S, sigma, N, b]` at `setting` (sigma index, N index)."""
    i, j = setting
    return mean_sem(np.asarray(ari)[:, i, j, :])
