"""Figures of a MONet ablation run, drawn from its results, evaluation files and training logs.

    write_all(workdir, config, results)   # boxplots.png, slots.png, training.png

* `boxplots.png` (Komatsu et al. Figures 3-5): per-seed ARI and FG-ARI of each condition, a box over the seeds with
  every seed's point, the paper's median marked.
* `slots.png` (MONet Figure 2): for the first held-out images, the first seed of each condition: the image, the
  reconstruction x~ = sum_k m_k mu_k, each slot's attention mask m_k and its masked component m_k mu_k.
* `training.png`: the validation ARI, FG-ARI and MSE (`valid/*` in each run's metrics.jsonl, every `eval_every`
  steps) against the step; thin lines per seed, thick the median over seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib
import numpy as np
from matplotlib.figure import Figure  # drawn without pyplot: no backend chosen, no global figure state

from noisegroup import atomic
from noisegroup.engine import runlog


def _save(fig: Figure, path: Path, **kwargs) -> None:
    with atomic.open_for_write(path) as f:
        fig.savefig(f, format="png", **kwargs)


def _colour(i: int):
    return matplotlib.colormaps["tab10"](i % 10)


def boxplots(results: Mapping, path: Path) -> None:
    rows = results["conditions"]
    names = [r["condition"] for r in rows]
    fig = Figure(figsize=(max(8.0, 1.1 * len(rows) + 2.5), 3.6))
    axes = fig.subplots(1, 2, squeeze=False)[0]
    rng = np.random.default_rng(0)  # jitter of the points only
    for ax, metric, title in ((axes[0], "ari", "ARI"), (axes[1], "fg_ari", "FG-ARI")):
        values = [r[f"per_seed_{metric}"] for r in rows]
        ax.boxplot(values, showfliers=False, widths=0.6)
        for i, v in enumerate(values):
            ax.scatter(i + 1 + rng.uniform(-0.15, 0.15, len(v)), v, s=10, color=_colour(i), alpha=0.8, zorder=3)
        if metric == "ari":
            paper = [(i + 1, r["paper_median_ari"]) for i, r in enumerate(rows) if r["paper_median_ari"] is not None]
            if paper:
                ax.scatter(*zip(*paper), marker="_", s=400, color="red", zorder=4, label="paper median")
                ax.legend(fontsize=7, loc="lower right")
        ax.set_xticks(range(1, len(rows) + 1), [r["label"] if r["label"] else n for n, r in zip(names, rows)],
                      rotation=35, ha="right", fontsize=7)
        ax.set_ylim(-0.1, 1.02)
        ax.set_ylabel(f"per-seed {title}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(f"{title}, attention masks ({rows[0]['num_seeds']} seeds)", fontsize=9)
    fig.tight_layout()
    _save(fig, path, dpi=110)


def slots(evaluations: Mapping[str, Mapping[str, np.ndarray]], path: Path) -> None:
    """`evaluations`: {condition: its run's evaluation arrays (`pipeline.evaluate`)} with slot outputs."""
    entries = [(c, e, i) for c, e in evaluations.items() if "slot_masks" in e for i in range(len(e["slot_masks"]))]
    if not entries:
        return
    k = entries[0][1]["slot_masks"].shape[1]
    cols = 2 + 2 * k
    fig = Figure(figsize=(cols * 0.85, len(entries) * 0.9 + 0.4))
    axes = fig.subplots(len(entries), cols, squeeze=False)
    titles = ["image", "x~"] + [f"m{j + 1}" for j in range(k)] + [f"m{j + 1} mu{j + 1}" for j in range(k)]
    for r, (condition, e, i) in enumerate(entries):
        masks, means = e["slot_masks"][i], e["slot_means"][i]  # [k, h, w], [k, h, w, 3]
        panels = [e["slot_images"][i], e["slot_reconstructions"][i]]
        panels += [np.repeat(masks[j][..., None], 3, axis=-1) for j in range(k)]
        panels += [masks[j][..., None] * means[j] for j in range(k)]
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(np.clip(panel, 0.0, 1.0), interpolation="nearest", vmin=0.0, vmax=1.0)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=7)
        axes[r, 0].set_ylabel(f"{condition}\n#{i}", fontsize=7)
    fig.suptitle("Held-out images, reconstructions, attention masks and masked components "
                 "(first seed of each condition)", fontsize=8)
    fig.tight_layout()
    _save(fig, path, dpi=100)


def training_curves(runs: Mapping[str, list[dict]], path: Path) -> None:
    """`runs`: {legend label: metrics.jsonl records of the run's seed groups (one list per group)}."""
    fig = Figure(figsize=(11, 3.3))
    axes = fig.subplots(1, 3, squeeze=False)[0]
    for i, (label, groups) in enumerate(runs.items()):
        for ax, metric in zip(axes, ("ari", "fg_ari", "mse")):
            by_step: dict[int, list[float]] = {}
            for records in groups:
                points = [(r["step"], np.atleast_1d(r[f"valid/{metric}"])) for r in records if f"valid/{metric}" in r]
                if not points:
                    continue
                steps = np.array([p[0] for p in points])
                values = np.stack([p[1] for p in points])  # [evaluations, seeds of the group]
                for s in range(values.shape[1]):
                    ax.plot(steps, values[:, s], color=_colour(i), alpha=0.25, lw=0.7)
                for step, row in zip(steps, values):
                    by_step.setdefault(int(step), []).extend(row.tolist())
            if by_step:
                steps = sorted(by_step)
                ax.plot(steps, [np.median(by_step[s]) for s in steps], color=_colour(i), lw=2,
                        label=label if metric == "ari" else None, marker="o", ms=3)
    for ax, title in zip(axes, ("validation ARI", "validation FG-ARI", "validation MSE of x~ (model range)")):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[2].set_yscale("log")
    if any(ax.get_legend_handles_labels()[0] for ax in axes[:1]):
        axes[0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path, dpi=110)


def write_all(workdir: str | Path, config, results: Mapping) -> list[Path]:
    """Writes the figures of a run into `workdir` (`config`: its `pipeline.AblationConfig`); returns their paths."""
    workdir = Path(workdir)
    written = [workdir / "boxplots.png"]
    boxplots(results, written[0])
    groups = config.seed_groups()
    run_names = results["runs"]
    evaluations = {}
    if config.slot_images:
        for condition in config.names:
            path = config.evaluation_path(workdir, run_names[condition], groups[0])
            with np.load(path) as f:
                evaluations[condition] = {k: f[k] for k in f.files if k.startswith("slot_")}
        slots(evaluations, workdir / "slots.png")
        written.append(workdir / "slots.png")
    runs = {}
    for run in dict.fromkeys(run_names.values()):
        label = " = ".join(c for c in config.names if run_names[c] == run)
        files = [config.run_dir(workdir, run, g) / "metrics.jsonl" for g in groups]
        runs[label] = [runlog.read_metrics(f) for f in files if f.exists()]
    training_curves(runs, workdir / "training.png")
    written.append(workdir / "training.png")
    return written
