"""The comparison's outputs: one row per (method, dataset), the markdown tables with the papers' numbers beside ours,
results.csv / results.json, and one side-by-side figure per dataset.

    rows = [row(method, dataset, cell) ...]
    print(table(rows, methods, datasets, "ari"))    # "ours (paper)" per cell; "-" where not run
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from noisegroup import atomic, stats
from noisegroup.compare.methods import Method, paper_value

CSV_FIELDS = ("method", "dataset", "seeds", "images", "ari", "ari_sem", "ari_fg", "ari_fg_sem", "paper_ari",
              "paper_ari_fg", "paper_source", "steps", "train_seconds", "eval_seconds", "noise_std",
              "num_noise_samples")


def row(method: Method, dataset: str, cell: Mapping[str, Any]) -> dict:
    """The summary of one cell: mean and SEM (over seeds, or over images with one seed) of ARI and FG-ARI, the
    published values where a paper has them, the budget it had."""
    ari, ari_fg = stats.mean_sem(cell["ari"]), stats.mean_sem(cell["ari_fg"])
    paper_ari, source = paper_value(method.name, dataset, "ari")
    paper_fg, source_fg = paper_value(method.name, dataset, "ari_fg")
    out = {"method": method.name, "label": method.label, "dataset": dataset, "seeds": int(cell["ari"].shape[0]),
           "images": int(cell["ari"].shape[1]), "ari": ari["mean"], "ari_sem": ari["sem"], "ari_fg": ari_fg["mean"],
           "ari_fg_sem": ari_fg["sem"], "paper_ari": paper_ari, "paper_ari_fg": paper_fg,
           "paper_source": "; ".join(s for s in (source, source_fg) if s), "steps": int(cell["steps"]),
           "train_seconds": float(cell["train_seconds"]), "eval_seconds": float(cell["eval_seconds"])}
    for key in ("noise_std", "num_noise_samples"):
        if key in cell:
            out[key] = float(cell[key]) if key == "noise_std" else int(cell[key])
    return out


def _cell_text(r: Mapping | None, metric: str) -> str:
    if r is None:
        return "-"
    paper = r.get(f"paper_{metric}")
    return f"{r[metric]:.2f}" + (f" ({paper:.2f})" if paper is not None else "")


def table(rows: Sequence[Mapping], methods: Sequence[Method], datasets: Sequence[str], metric: str = "ari") -> str:
    """Markdown: methods x datasets, each cell "ours (paper)" of `metric` ("ari" or "ari_fg"), "-" where not run."""
    found = {(r["method"], r["dataset"]): r for r in rows}
    lines = ["| method | " + " | ".join(datasets) + " |", "|---" * (len(datasets) + 1) + "|"]
    for method in methods:
        cells = [_cell_text(found.get((method.name, d)), metric) for d in datasets]
        lines.append(f"| {method.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def budget_table(rows: Sequence[Mapping], methods: Sequence[Method], datasets: Sequence[str]) -> str:
    """Markdown: each method's training steps and wall-clock minutes (training + evaluation) per dataset."""
    found = {(r["method"], r["dataset"]): r for r in rows}
    lines = ["| method | " + " | ".join(datasets) + " |", "|---" * (len(datasets) + 1) + "|"]
    for method in methods:
        cells = []
        for d in datasets:
            r = found.get((method.name, d))
            cells.append("-" if r is None else
                         f"{r['steps']} steps, {(r['train_seconds'] + r['eval_seconds']) / 60:.1f} min")
        lines.append(f"| {method.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(workdir: Path, rows: Sequence[Mapping], extra: Mapping[str, Any]) -> None:
    """results.json (rows and `extra`: the config, total times, peak memory) and results.csv, atomically."""
    atomic.write_json(workdir / "results.json", {"rows": list(rows), **extra})
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(workdir / "results.csv", text.getvalue())


def labels_image(labels: np.ndarray) -> np.ndarray:
    """Label map `[h, w]` -> RGB `[h, w, 3]` with a fixed qualitative palette (label 0 the first colour)."""
    palette = np.array(matplotlib.colormaps["tab10"].colors)
    return palette[np.asarray(labels) % len(palette)]


def figure(path: Path, dataset: str, images: np.ndarray, masks: np.ndarray,
           columns: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> None:
    """One dataset's side-by-side figure: a row per test image, columns image, ground truth, then each method's
    segmentation (seed 0) titled with its ARI on that image (the LNS paper's Figure 10, for every method).

    Args:
        images `[n, h, w, c]`, masks `[n, h, w]`: the images shown.
        columns: (method label, labels `[n, h, w]`, ARI `[n]`) per method.
    """
    n, cols = len(images), 2 + len(columns)
    fig = Figure(figsize=(1.6 * cols, 1.6 * n + 0.4))
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        panels = [("image", images[i], None), ("truth", labels_image(masks[i]), None)]
        panels += [(label, labels_image(seg[i]), ari[i]) for label, seg, ari in columns]
        for j, (title, picture, score) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(np.clip(picture, 0, 1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if score is not None:
                ax.set_xlabel(f"ARI {score:.2f}", fontsize=7)
            if i == 0:
                ax.set_title(title, fontsize=7)
    fig.suptitle(dataset, fontsize=9)
    fig.tight_layout()
    with atomic.open_for_write(path) as f:
        fig.savefig(f, format="png", dpi=80)
