"""One evaluation for every method: label maps in, ARI and FG-ARI per image out, the same rules for all.

    labels = mask_labels(log_masks)                  # MONet, Slot Attention, GENESIS, GENESIS-v2: [b, K, h, w] -> [b, h, w]
    k = clusters_for(true)                           # LNS: how many groups each image is clustered into
    scores = score(labels, true)                     # {"ari": [b], "ari_fg": [b]}; labels may be [S, b, h, w]

Where the segmentations come from:
    - LNS and its control cluster each image's features into `clusters_for(true)` groups: the number of labels in the
      image's ground-truth map, background included (the LNS reference's rule), or an estimate without the ground
      truth (`noisegroup.lns.num_groups`) for the estimated-k variant;
    - mask families (MONet's attention, Slot Attention's alpha, GENESIS / GENESIS-v2's masks) take the argmax over
      their K slots (ties to the lowest slot), so their number of groups is at most K and not told the truth.

How they are scored (`noisegroup.metrics.batch_ari`, scikit-learn's `adjusted_rand_score` semantics):
    - "ari": every pixel, background included (what the LNS paper and Komatsu et al. report);
    - "ari_fg": only the pixels whose true label is not 0 (the IODINE / Slot Attention FG-ARI). An image with ONE
      foreground object has a single true class there, so its FG-ARI is 1.0 when that object falls in one predicted
      group and 0.0 when it is split (scikit-learn's degenerate case); an image without foreground scores 1.0.
      Good Gestalt images label the background 0 as Multi-dSprites does, so FG-ARI means the same on both.
"""

from __future__ import annotations

import numpy as np

from noisegroup import metrics


def mask_labels(log_masks: np.ndarray) -> np.ndarray:
    """Segmentation `[..., h, w]` (int32) of (log) masks `[..., K, h, w]`: argmax over the slots, ties to the lowest
    slot (spec C.4 / E.17)."""
    return np.argmax(np.asarray(log_masks), axis=-3).astype(np.int32)


def clusters_for(true: np.ndarray) -> np.ndarray:
    """int64 `[b]`: the number of distinct labels of each ground-truth map `[b, h, w]`, background included: the k LNS
    clusters each image into (the reference's rule)."""
    true = np.asarray(true)
    return np.array([np.unique(t).size for t in true.reshape(len(true), -1)], np.int64)


def score(labels: np.ndarray, true: np.ndarray) -> dict[str, np.ndarray]:
    """ARI and FG-ARI of segmentations against ground truth, per image.

    Args:
        labels: integer segmentations `[b, h, w]` or `[S, b, h, w]` (S seeds; any label values >= 0).
        true: ground-truth label maps `[b, h, w]` (0 = background).

    Returns:
        {"ari": float32 `[b]` or `[S, b]`, "ari_fg": the same over the foreground pixels}.

    Raises:
        ValueError: naming the shapes when they do not match.
    """
    labels, true = np.asarray(labels), np.asarray(true)
    if labels.shape[-3:] != true.shape or labels.ndim not in (3, 4):
        raise ValueError(f"labels {labels.shape} must be [b, h, w] or [S, b, h, w] matching the true maps "
                         f"{true.shape}")
    flat = labels.reshape(-1, *true.shape)
    ari = np.stack([metrics.batch_ari(p, true) for p in flat])
    ari_fg = np.stack([metrics.batch_ari(p, true, foreground=True) for p in flat])
    shape = labels.shape[:-2]
    return {"ari": ari.reshape(shape), "ari_fg": ari_fg.reshape(shape)}
