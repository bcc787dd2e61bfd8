"""Segments a folder of images (or a dataset split) with a trained or shipped LNS model: overlay PNGs and a summary.

    python -m experiments.segment --images=~/photos --model=pretrained/vae_kanizsa.npz          # k estimated per image
    python -m experiments.segment --images=DIR --masks=MASKS --model=workdirs/ae_mine --num_groups=3
    python -m experiments.segment --dataset=celeba --data_dir=/data/CelebAMask-HQ --model=workdirs/vae_celeba \\
        --num_groups=3 --out=workdirs/celeba_vae_k3                                     # the paper's Figures 8-9
    python -m experiments.segment --dataset=kanizsa --model=pretrained/vae_kanizsa.npz --limit=20

Images are loaded at the model's size (`datasets.images`: centre-cropped and resized unless --fit says otherwise,
cached), segmented by `noisegroup.lns.segment` (one call; the pipeline's numbers for the same settings and key), and
written to --out:
    overlays/<name>.png   each image beside its groups blended over it (4x upscaled);
    pairs.png             the first --figure_images images above their segmentations (paper Figures 8-9);
    summary.json / .csv   the settings, and per image its name, the k used (given or estimated) and, where the images
                          have masks, the ARI with background and the foreground ARI; CelebA's test split is scored
                          against its 18 parts and against them merged into face / hair / background
                          (`datasets.images.FACE_HAIR_BACKGROUND`).
--num_groups=0 estimates k per image from the features (`noisegroup.lns.num_groups`, --estimator, 2..--k_max).
"""

from __future__ import annotations

import csv
import io
import re
import time
from pathlib import Path

import jax
import numpy as np
from absl import flags

from datasets import good_gestalt as gg
from datasets import images as image_datasets
from noisegroup import atomic, cli, metrics
from noisegroup.checks import check_workdir, closest
from noisegroup.errors import BadInputError
from noisegroup.lns import features as lns_features
from noisegroup.lns import num_groups as groups
from noisegroup.lns import overlays, segmentation, sweep

_IMAGES = flags.DEFINE_string("images", None, "a folder of PNG / JPEG images (searched recursively)")
_MASKS = flags.DEFINE_string("masks", None, "optional: a folder of label masks with the images' names")
_DATASET = flags.DEFINE_string("dataset", None, "instead of --images: 'celeba', 'celeba_aligned' or a Good Gestalt "
                               "dataset name")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "where --dataset's files live (CelebA)")
_SPLIT = flags.DEFINE_string("split", "", "which split: default 'all' of a folder (or 'train', 'valid', 'test'), "
                             "'test' of a dataset")
_MODEL = flags.DEFINE_string("model", None, "a weights .npz (pretrained/...) or a training workdir")
_SEED = flags.DEFINE_integer("model_seed", 0, "which seed of the model file or run")
_OUT = flags.DEFINE_string("out", None, "output folder (default: workdirs/segment/<images' name>_<model's name>)")
_NUM_GROUPS = flags.DEFINE_integer("num_groups", 0, "k for every image; 0: estimated per image")
_ESTIMATOR = flags.DEFINE_string("estimator", groups.DEFAULT_ESTIMATOR, f"k estimator ({', '.join(groups.ESTIMATORS)})")
_K_MAX = flags.DEFINE_integer("k_max", groups.DEFAULT_K_MAX, "largest k an estimator may return")
_NOISE_STD = flags.DEFINE_float("noise_std", segmentation.DEFAULT_NOISE_STD, "latent noise sigma")
_N = flags.DEFINE_integer("num_noise_samples", segmentation.DEFAULT_NUM_NOISE_SAMPLES, "noise samples N")
_NORMALISATION = flags.DEFINE_string("normalisation", "channel", "'channel' (reference) or 'pixel' (paper)")
_CLUSTERING = flags.DEFINE_string("clustering", "ward", f"clustering ({', '.join(sweep.CLUSTER_METHODS)})")
_FIT = flags.DEFINE_string("fit", "crop", "folder images to the model's size: 'crop' (centre square, resize), "
                           "'stretch' or 'none' (must already be the model's size)")
_LIMIT = flags.DEFINE_integer("limit", 0, "segment the first images only (0: all)")
_FIGURE_IMAGES = flags.DEFINE_integer("figure_images", 100, "images in pairs.png")
_KEY = flags.DEFINE_integer("key", 42, "noise key (the LNS experiment's lns_seed default)")


def load_images(image_size: int):
    """(images float32 [b, s, s, 3], masks [b, s, s] or None, names, what) from --images or --dataset."""
    if (_IMAGES.value is None) == (_DATASET.value is None):
        raise BadInputError("give exactly one of --images=DIR and --dataset=NAME")
    if _IMAGES.value is not None:
        split = image_datasets.load_folder(Path(_IMAGES.value).expanduser(), _SPLIT.value or "all",
                                           image_size=image_size, masks_dir=_MASKS.value, fit=_FIT.value, progress=True)
        return split.images, split.masks, list(split.names), Path(_IMAGES.value).name or "images"
    name, which = _DATASET.value, _SPLIT.value or "test"
    if name in gg.NAMES:
        if image_size != 64:
            raise BadInputError(f"the Good Gestalt datasets are 64 x 64 here; the model takes {image_size} x {image_size}")
        split = gg.load(name, which)
        return split.images, split.masks, [f"{which}_{i:05d}" for i in range(len(split))], name
    if name in image_datasets.NAMES:
        split = image_datasets.load(name, which, data_dir=_DATA_DIR.value, image_size=image_size)
        names = list(getattr(split, "names", ())) or [f"{which}_{i:05d}" for i in range(len(split))]
        return split.images, split.masks, names, name
    known = (*image_datasets.NAMES, *gg.NAMES)
    raise BadInputError(f"unknown dataset {name!r}{closest(name, known)}; known: {known}")


def scores(labels: np.ndarray, masks: np.ndarray | None, dataset: str | None) -> dict[str, np.ndarray]:
    """Per-image ARI columns of a segmentation `[b, h, w]` against `masks` (none without masks)."""
    if masks is None:
        return {}
    out = {"ari": metrics.batch_ari(labels, masks), "ari_fg": metrics.batch_ari(labels, masks, foreground=True)}
    if dataset == "celeba":  # the 18 CelebAMask-HQ parts, and merged into face / hair / background
        out = {"ari_parts": out["ari"],
               "ari_face_hair_background": metrics.batch_ari(labels, image_datasets.merge_parts(masks))}
    return out


def safe_name(name: str) -> str:
    """A file name for an image's overlay: its relative path with separators and odd characters as '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(Path(name).with_suffix("")))


def main(argv):
    del argv
    if _MODEL.value is None:
        raise BadInputError("--model is required: a weights .npz (e.g. pretrained/vae_kanizsa.npz) or a training workdir")
    if _NUM_GROUPS.value < 0:
        raise BadInputError(f"--num_groups must be >= 1, or 0 to estimate k per image; got {_NUM_GROUPS.value}")
    groups.check_estimator(_ESTIMATOR.value)
    sweep.check_method(_CLUSTERING.value)
    lns_features.check_settings(noise_std=_NOISE_STD.value, num_noise_samples=_N.value,
                                normalisation=_NORMALISATION.value)
    model = segmentation.load_model(Path(_MODEL.value).expanduser(), _SEED.value)
    image_shape = lns_features.model_image_shape(*model)
    images, masks, names, what = load_images(image_shape[0])
    if _LIMIT.value > 0:
        images, names = images[: _LIMIT.value], names[: _LIMIT.value]
        masks = None if masks is None else masks[: _LIMIT.value]
    out = check_workdir(_OUT.value or f"workdirs/segment/{what}_{Path(_MODEL.value).stem}", "--out")
    (out / "overlays").mkdir(parents=True, exist_ok=True)

    tic = time.perf_counter()
    seg = segmentation.segment(model, images, key=jax.random.key(_KEY.value),
                               num_groups=_NUM_GROUPS.value or None, noise_std=_NOISE_STD.value,
                               num_noise_samples=_N.value, normalisation=_NORMALISATION.value,
                               clustering=_CLUSTERING.value, estimator=_ESTIMATOR.value, k_max=_K_MAX.value,
                               progress=True)
    seconds = time.perf_counter() - tic
    for name, image, labels in zip(names, images, seg.labels):
        overlays.write_png(out / "overlays" / f"{safe_name(name)}.png", overlays.overlay(image, labels))
    shown = min(_FIGURE_IMAGES.value, len(images))
    k_text = f"k = {_NUM_GROUPS.value}" if _NUM_GROUPS.value else f"k estimated ({_ESTIMATOR.value})"
    if shown:
        overlays.pairs_figure(images[:shown], seg.labels[:shown], out / "pairs.png",
                              title=f"{what}: {Path(_MODEL.value).name}, {k_text}")
    columns = scores(seg.labels, masks, _DATASET.value)
    rows = [{"name": n, "num_groups": int(k), **{c: float(v[i]) for c, v in columns.items()}}
            for i, (n, k) in enumerate(zip(names, seg.num_groups))]
    settings = {"model": _MODEL.value, "model_seed": _SEED.value, "images": _IMAGES.value, "dataset": _DATASET.value,
                "split": _SPLIT.value, "num_groups": _NUM_GROUPS.value or "estimated", "estimator": _ESTIMATOR.value,
                "k_max": _K_MAX.value, "noise_std": _NOISE_STD.value, "num_noise_samples": _N.value,
                "normalisation": _NORMALISATION.value, "clustering": _CLUSTERING.value, "key": _KEY.value}
    means = {f"mean_{c}": float(np.mean(v)) for c, v in columns.items()}
    atomic.write_json(out / "summary.json", {"settings": settings, "seconds": seconds, "num_images": len(rows),
                                             "mean_num_groups": float(np.mean(seg.num_groups)), **means, "images": rows})
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(out / "summary.csv", text.getvalue())
    scored = "".join(f", {c} {m:.3f}" for c, m in means.items())
    print(f"segmented {len(rows)} images in {seconds:.1f} s ({k_text}; mean k {np.mean(seg.num_groups):.2f}{scored}); "
          f"overlays, pairs.png and summary in {out}")


if __name__ == "__main__":
    cli.run(main)
