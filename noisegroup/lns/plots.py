"""Figures of an LNS run, drawn from the saved segmentation files (`workdir/segmentation/<model>_<dataset>.npz`).

    write_all(workdir, config)   # segmentations.png, reconstructions.png, sweep.png, umap.png (if umap-learn)

* `segmentations.png` (paper Figure 4): per dataset, test images, each model's predicted masks at the paper's
  setting (seed 0) and the ground truth.
* `reconstructions.png` (Figure 14): test images and each model's unperturbed reconstructions.
* `sweep.png` (Figure 6): mean test ARI against the noise level (one line per model and N) and against N (at each
  model's best noise level), one column per dataset.
* `umap.png` (Figure 15): 2-D UMAP of the pixel features of the first test image, coloured by the (detailed) ground
  truth, when the optional `umap-learn` is installed.
* `baselines.png` (Figures 10-11), when the run scored baselines: their reconstructions and mask segmentations.

With `features="tangent"` (`noisegroup.lns.tangent`): `segmentations_tangent.png`, `reconstructions.png`,
`umap_tangent.png` as above, and instead of `sweep.png` (no grid):

* `jacobian_rows.png`: per dataset, a few test images and, per model, the first three principal components of the
  per-pixel tangent features (the normalised Jacobian rows, 3z numbers a pixel) as RGB: pixels the decoder moves
  alike get alike colours, which is what the clustering sees.
* `gram_bridge.png`: relative Frobenius distance between the LNS Gram matrix (pixel x pixel inner products of the
  features) and the tangent one against sigma, one line per N, with each N's sigma -> 0 limit (the same draws,
  linearised decoder) dashed: the distance falls with sigma to a floor that falls like 1/sqrt(N).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import matplotlib
import numpy as np
from matplotlib.figure import Figure  # drawn without pyplot: no backend chosen, no global figure state

from datasets import good_gestalt as gg
from noisegroup import atomic
from noisegroup.lns.results import segmentation_path


def _load(workdir: Path, config: Mapping[str, Any]) -> dict:
    runs = {}
    for dataset in config["datasets"]:
        for model in config["models"]:
            path = segmentation_path(workdir, model, dataset, config.get("features", "lns"))
            if path.exists():
                with np.load(path) as f:
                    runs[dataset, model] = {k: f[k] for k in f.files}
    return runs


def _subplots(rows: int, cols: int, figsize, squeeze=False):
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, squeeze=squeeze)


def _save(fig: Figure, path: Path, **kwargs) -> None:
    with atomic.open_for_write(path) as f:
        fig.savefig(f, format="png", **kwargs)


def _labels_image(labels: np.ndarray) -> np.ndarray:
    """Label map `[h, w]` -> RGB with a fixed qualitative palette."""
    palette = np.array(matplotlib.colormaps["tab10"].colors)
    return palette[labels % len(palette)]


def segmentations(runs: dict, datasets, models, path: Path, num_images: int = 4,
                  title: str = "LNS segmentations of test images (paper's setting, seed 0)") -> None:
    cols = num_images * (2 + len(models))
    fig, axes = _subplots(len(datasets), cols, figsize=(cols * 0.9, len(datasets) * 1.0), squeeze=False)
    for r, dataset in enumerate(datasets):
        first = next((runs[dataset, m] for m in models if (dataset, m) in runs), None)
        for i in range(num_images):
            panels = []
            if first is not None and i < len(first["images"]):
                panels = [("input", first["images"][i])]
                panels += [(m, _labels_image(runs[dataset, m]["labels"][i]) if (dataset, m) in runs else None)
                           for m in models]
                panels += [("truth", _labels_image(first["masks"][i]))]
            for c in range(2 + len(models)):
                ax = axes[r, i * (2 + len(models)) + c]
                ax.set_xticks([]), ax.set_yticks([])
                if c < len(panels) and panels[c][1] is not None:
                    ax.imshow(panels[c][1], interpolation="nearest")
                if r == 0 and c < len(panels):
                    ax.set_title(panels[c][0], fontsize=7)
        axes[r, 0].set_ylabel(dataset.replace("_", "\n"), fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path, dpi=110)


def _input_and_model_grid(runs: dict, datasets, models, path: Path, num_images: int, panel, column_title,
                          title: str) -> None:
    """Rows: datasets; per image, the input then one panel per model. `panel(run, i)` is the model's image of test
    image i (or None); `column_title(model)` heads the model's columns."""
    cols = num_images * (1 + len(models))
    fig, axes = _subplots(len(datasets), cols, figsize=(cols * 0.9, len(datasets) * 1.0), squeeze=False)
    for r, dataset in enumerate(datasets):
        first = next((runs[dataset, m] for m in models if (dataset, m) in runs), None)
        for i in range(num_images):
            for c in range(1 + len(models)):
                ax = axes[r, i * (1 + len(models)) + c]
                ax.set_xticks([]), ax.set_yticks([])
                if first is None or i >= len(first["images"]):
                    continue
                run = runs.get((dataset, models[c - 1])) if c else None
                image = first["images"][i] if c == 0 else (None if run is None else panel(run, i))
                if image is not None:
                    ax.imshow(image, interpolation="nearest")
                if r == 0:
                    ax.set_title("input" if c == 0 else column_title(models[c - 1]), fontsize=7)
        axes[r, 0].set_ylabel(dataset.replace("_", "\n"), fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path, dpi=110)


def reconstructions(runs: dict, datasets, models, path: Path, num_images: int = 4) -> None:
    _input_and_model_grid(runs, datasets, models, path, num_images,
                          panel=lambda run, i: run["reconstructions"][i] if "reconstructions" in run else None,
                          column_title=str, title="Test images and reconstructions (seed 0)")


def sweep(runs: dict, datasets, models, noise_stds, sample_counts, path: Path) -> None:
    noise_stds, sample_counts = np.asarray(noise_stds), np.asarray(sample_counts)
    fig, axes = _subplots(2, len(datasets), figsize=(3.0 * len(datasets), 5.2), squeeze=False)
    for c, dataset in enumerate(datasets):
        top, bottom = axes[0, c], axes[1, c]
        for m, model in enumerate(models):
            if (dataset, model) not in runs:
                continue
            ari = runs[dataset, model]["test_ari"].mean(axis=(0, 3))  # [sigma, N]
            colour = matplotlib.colormaps["tab10"](m)
            for j, n in enumerate(sample_counts):
                style = ["-", "--", ":", "-."][j % 4]
                top.plot(noise_stds, ari[:, j], style, color=colour, marker="o", ms=3, label=f"{model} N={n}")
            best = int(np.argmax(ari.max(axis=1)))
            bottom.plot(sample_counts, ari[best], color=colour, marker="o", ms=3,
                        label=f"{model} sigma={noise_stds[best]:g}")
        top.set_xscale("log")
        top.set_title(dataset, fontsize=9)
        top.set_xlabel("noise std", fontsize=8)
        bottom.set_xlabel("number of samples N", fontsize=8)
        for ax in (top, bottom):
            ax.set_ylim(-0.05, 1.02)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=6)
        if c == 0:
            top.set_ylabel("mean test ARI", fontsize=8)
            bottom.set_ylabel("mean test ARI", fontsize=8)
    fig.tight_layout()
    _save(fig, path, dpi=110)


def umap_features(runs: dict, datasets, models, path: Path) -> bool:
    """UMAP of the first test image's features per (dataset, model); False if umap-learn is missing."""
    try:
        import umap  # optional (umap-learn is not a requirement)
    except ImportError:
        return False

    fig, axes = _subplots(len(models), len(datasets), figsize=(3 * len(datasets), 3 * len(models)), squeeze=False)
    for c, dataset in enumerate(datasets):
        test = gg.load(dataset, "test")
        colours = test.detailed_masks if test.detailed_masks is not None else test.masks
        for r, model in enumerate(models):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            run = runs.get((dataset, model))
            if run is None or "umap_features" not in run:
                continue
            # n_neighbors=400 as the reference; a fixed random_state so the plot is reproducible (the reference's
            # is not).
            embedding = umap.UMAP(n_neighbors=400, random_state=0).fit_transform(run["umap_features"][0])
            ax.scatter(embedding[:, 0], embedding[:, 1], c=colours[0].ravel(), s=1, cmap="tab10", vmin=0, vmax=9)
            ax.set_title(f"{model} {dataset}", fontsize=8)
    fig.tight_layout()
    _save(fig, path, dpi=110)
    return True


def principal_colours(features: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The first three principal components of per-pixel features `[p, f]` as an RGB image `[h, w, 3]` in [0, 1]
    (each component min-max scaled; fewer than three non-zero components leave the rest black)."""
    centred = features - features.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    scores = np.zeros((len(features), 3))
    scores[:, : min(3, len(vt))] = centred @ vt[:3].T
    spread = scores.max(axis=0) - scores.min(axis=0)
    scores = (scores - scores.min(axis=0)) / np.where(spread > 0, spread, 1.0)
    return scores.reshape(*shape, 3)


def jacobian_rows(runs: dict, datasets, models, path: Path) -> None:
    num_images = len(next(iter(runs.values()))["tangent_features"])

    def panel(run, i):
        if i >= len(run["tangent_features"]):
            return None
        return principal_colours(run["tangent_features"][i], run["images"].shape[1:3])

    _input_and_model_grid(runs, datasets, models, path, num_images, panel,
                          column_title=lambda model: f"{model} J rows",
                          title="Decoder Jacobian rows at the latent mean: first 3 principal components as RGB "
                                "(seed 0)")


def gram_bridge(runs: dict, datasets, models, path: Path) -> None:
    fig, axes = _subplots(1, len(datasets), figsize=(3.0 * len(datasets), 2.8), squeeze=False)
    for c, dataset in enumerate(datasets):
        ax = axes[0, c]
        for m, model in enumerate(models):
            run = runs.get((dataset, model))
            if run is None or "bridge_distance" not in run:
                continue
            sigmas, counts = run["bridge_noise_stds"], run["bridge_sample_counts"]
            distance, linear = run["bridge_distance"].mean(-1), run["bridge_linear_limit"].mean(-1)  # [sigma, n], [n]
            for j, n in enumerate(counts):
                colour = matplotlib.colormaps["viridis"](j / max(len(counts) - 1, 1))
                label = f"{model} N={n}" if len(models) > 1 else f"N={n}"
                ax.plot(sigmas, distance[:, j], "-o", color=colour, ms=3, label=label)
                ax.axhline(linear[j], color=colour, ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(dataset, fontsize=9)
        ax.set_xlabel("noise std sigma", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
        if c == 0:
            ax.set_ylabel("||G_LNS - G_tangent|| / ||G_tangent||", fontsize=8)
    fig.suptitle("LNS Gram matrix -> tangent Gram matrix (dashed: sigma -> 0 at that N; mean of the first test "
                 "images)", fontsize=9)
    fig.tight_layout()
    _save(fig, path, dpi=110)


def baselines(workdir: Path, datasets, names, path: Path, num_images: int = 3) -> bool:
    """`baselines.png` (the paper's Figures 10-11 for our weights): per dataset, a few test images, each baseline's
    reconstruction and segmentation (the argmax of its masks; GENESIS-v2 also its decoder masks', "-R"), seed 0, and
    the ground truth. False (nothing written) when no baseline was scored."""
    runs = {}
    for dataset in datasets:
        for name in names:
            file = segmentation_path(workdir, name, dataset)
            if file.exists():
                with np.load(file) as f:
                    runs[dataset, name] = {k: f[k] for k in f.files}
    datasets = [d for d in datasets if any((d, n) in runs for n in names)]
    if not datasets:
        return False
    panels_of = {n: [("recon.", "reconstructions"), ("masks", "labels_masks")] + (
        [("masks -R", "labels_decoder_masks")] if any("labels_decoder_masks" in r for (_, m), r in runs.items()
                                                      if m == n) else []) for n in names}
    per_image = 2 + sum(len(v) for v in panels_of.values())
    cols = num_images * per_image
    fig, axes = _subplots(len(datasets), cols, figsize=(cols * 0.9, len(datasets) * 1.05))
    for r, dataset in enumerate(datasets):
        first = next(runs[dataset, n] for n in names if (dataset, n) in runs)
        for i in range(min(num_images, len(first["images"]))):
            panels = [("input", first["images"][i])]
            for n in names:
                run = runs.get((dataset, n))
                for label, key in panels_of[n]:
                    value = None if run is None or key not in run else run[key][i]
                    if value is not None and value.ndim == 2:
                        value = _labels_image(value)
                    panels.append((f"{n}\n{label}", value))
            panels.append(("truth", _labels_image(first["masks"][i])))
            for c, (label, image) in enumerate(panels):
                ax = axes[r, i * per_image + c]
                ax.set_xticks([]), ax.set_yticks([])
                if image is not None:
                    ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
                if r == 0:
                    ax.set_title(label, fontsize=6)
        axes[r, 0].set_ylabel(dataset, fontsize=7)
    fig.suptitle("Baselines on test images: reconstructions and mask segmentations (seed 0)", fontsize=9, y=1.0 + 0.25 / len(datasets))
    _save(fig, path, dpi=110, bbox_inches="tight")
    return True


def write_all(workdir: str | Path, config: Mapping[str, Any]) -> list[Path]:
    """Writes every figure of the run into `workdir`; returns their paths."""
    workdir = Path(workdir)
    written = []
    if config.get("baselines") and baselines(workdir, config["datasets"], config["baselines"],
                                             workdir / "baselines.png"):
        written.append(workdir / "baselines.png")
    return written + _write_lns(workdir, config)


def _write_lns(workdir: Path, config: Mapping[str, Any]) -> list[Path]:
    runs = _load(workdir, config)
    datasets = [d for d in config["datasets"] if any((d, m) in runs for m in config["models"])]
    models = list(config["models"])
    if not datasets:
        return []
    if config.get("features", "lns") == "tangent":
        written = [workdir / "segmentations_tangent.png", workdir / "reconstructions.png",
                   workdir / "jacobian_rows.png", workdir / "gram_bridge.png"]
        segmentations(runs, datasets, models, written[0], title="Tangent-limit LNS segmentations of test images "
                      "(no setting, seed 0)")
        reconstructions(runs, datasets, models, written[1])
        jacobian_rows(runs, datasets, models, written[2])
        gram_bridge(runs, datasets, models, written[3])
        umap_path = workdir / "umap_tangent.png"
    else:
        written = [workdir / "segmentations.png", workdir / "reconstructions.png", workdir / "sweep.png"]
        segmentations(runs, datasets, models, written[0])
        reconstructions(runs, datasets, models, written[1])
        sweep(runs, datasets, models, config["noise_stds"], config["num_noise_samples"], written[2])
        umap_path = workdir / "umap.png"
    if config.get("umap_images") and umap_features(runs, datasets, models, umap_path):
        written.append(umap_path)
    return written
