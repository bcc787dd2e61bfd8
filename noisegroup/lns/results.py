"""LNS results: the rows of a segmentation, the paper's values beside them, the tables and files they make.

    rows = summary_rows(config, dataset, model, segmentation)   # one row per protocol, and the control's
    print(format_table(rows, "paper"))                            # ours next to the paper's, AE vs VAE p-values
    write_results(workdir, config, rows, seconds)                 # results.json, results.csv

Also where a segmentation is cached (`segmentation_path`) and the paper's Table 1 (`paper_value`). The pipeline,
the figures and the extra entry points (`experiments.lns_controls`, `lns_curve`, `lns_coherence`) all read results
through this module.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from noisegroup import atomic, stats


@functools.cache
def _paper_table() -> dict:
    return json.loads((Path(__file__).with_name("paper_ari.json")).read_text())


def paper_value(model: str, dataset: str, clustering: str = "ward") -> float | None:
    """The paper's ARI for (model, dataset) with Ward or k-means clustering (`paper_ari.json`), or None."""
    table = _paper_table()
    values = table["kmeans" if "kmeans" in clustering else "ward"].get(model)
    return None if values is None or dataset not in table["datasets"] else values[table["datasets"].index(dataset)]


def model_dir(workdir: str | Path, model: str, dataset: str) -> Path:
    """Where the LNS experiment trains one (model, dataset): checkpoints, metrics.jsonl, config.json."""
    return Path(workdir) / "models" / f"{model}_{dataset}"


def segmentation_path(workdir: str | Path, model: str, dataset: str, kind: str = "lns") -> Path:
    """Where the segmentation cache of one (model, dataset) and features kind lives."""
    return Path(workdir) / "segmentation" / f"{model}_{dataset}{'' if kind == 'lns' else '_' + kind}.npz"


def best_setting(ari: np.ndarray) -> tuple[int, int]:
    """(sigma index, N index) of the highest mean ARI of `ari` `[S, sigma, N, b]` over seeds and images, ties to the
    smaller setting: the paper's selection (on `test`) and the fair one (on `test_iid`)."""
    return stats.select_setting(ari)


def _tangent_rows(config, dataset: str, model: str, seg: Mapping[str, np.ndarray]) -> list[dict]:
    s, fg = stats.mean_sem(seg["test_ari"]), stats.mean_sem(seg["test_ari_fg"])
    protocols = ("paper", "fair") if config.fair_protocol else ("paper",)  # nothing selected: the same row for both
    return [dict(dataset=dataset, model=f"{model}_tangent", protocol=protocol, noise_std=None, num_noise_samples=None,
                 selection="none", ari=s["mean"], ari_sem=s["sem"], sem_over=s["sem_over"], ari_fg=fg["mean"],
                 per_seed=s["per_seed"], clustering=config.clustering,
                 paper_ari=paper_value(model, dataset, config.clustering)) for protocol in protocols]


def summary_rows(config, dataset: str, model: str, seg: Mapping[str, np.ndarray]) -> list[dict]:
    if config.features == "tangent":
        return _tangent_rows(config, dataset, model, seg)
    sigmas, counts = np.asarray(config.noise_stds), np.asarray(config.num_noise_samples)
    rows = []
    protocols = [("paper", tuple(seg["paper_setting"]))]
    if "fair_setting" in seg:
        protocols.append(("fair", tuple(seg["fair_setting"])))
    for protocol, (i, j) in protocols:
        s = stats.summarise(seg["test_ari"], (i, j))
        fg = stats.summarise(seg["test_ari_fg"], (i, j))
        rows.append(dict(dataset=dataset, model=model, protocol=protocol, noise_std=float(sigmas[i]),
                         num_noise_samples=int(counts[j]), ari=s["mean"], ari_sem=s["sem"], sem_over=s["sem_over"],
                         ari_fg=fg["mean"], per_seed=s["per_seed"],
                         per_image=np.asarray(seg["test_ari"])[:, i, j, :].mean(axis=0).tolist(),
                         clustering=config.clustering, paper_ari=paper_value(model, dataset, config.clustering)))
    if "control_ari" in seg:
        s = stats.mean_sem(seg["control_ari"])
        rows.append(dict(dataset=dataset, model=f"{model}_control", protocol="paper",
                         noise_std=config.control_noise_std, num_noise_samples=int(counts[protocols[0][1][1]]),
                         ari=s["mean"], ari_sem=s["sem"], sem_over=s["sem_over"], ari_fg=None,
                         per_seed=s["per_seed"], clustering=config.control_method,
                         paper_ari=paper_value(f"{model}_control", dataset)))
    return rows


def baseline_rows(config, dataset: str, name: str, seg: Mapping[str, np.ndarray]) -> list[dict]:
    """The rows of an object-centric baseline (`noisegroup.baselines.evaluate`'s scores): its masks' ARI, no setting to
    select (the same row under both protocols); GENESIS-v2's decoder-mask ARI ("-R") as `ari_decoder_masks`."""
    s, fg = stats.mean_sem(seg["masks_ari"]), stats.mean_sem(seg["masks_ari_fg"])
    extra = {}
    if "decoder_masks_ari" in seg:
        extra["ari_decoder_masks"] = stats.mean_sem(seg["decoder_masks_ari"])["mean"]
    protocols = ("paper", "fair") if config.fair_protocol else ("paper",)
    return [dict(dataset=dataset, model=name, protocol=protocol, noise_std=None, num_noise_samples=None,
                 selection="none", ari=s["mean"], ari_sem=s["sem"], sem_over=s["sem_over"], ari_fg=fg["mean"],
                 per_seed=s["per_seed"], per_image=np.asarray(seg["masks_ari"]).mean(axis=0).tolist(),
                 clustering="mask argmax", paper_ari=paper_value(name, dataset), **extra) for protocol in protocols]


def summary_line(dataset: str, model: str, rows: list[dict], seconds: float) -> str:
    """One line for a finished (dataset, model): its paper-protocol ARI and setting, the control, the paper's."""
    def paper(r):
        return "" if r.get("paper_ari") is None else f" (paper {r['paper_ari']:.3f})"

    parts = []
    for r in rows:
        if r["protocol"] == "paper" and not r["model"].endswith("_control"):
            setting = "" if r.get("selection") == "none" else f" at sigma {r['noise_std']:g}, N {r['num_noise_samples']}"
            parts.append(f"ARI {r['ari']:.3f}{paper(r)}{setting}")
        elif r["model"].endswith("_control"):
            parts.append(f"control {r['ari']:.3f}{paper(r)}")
    return f"{dataset} / {model}: " + "; ".join(parts) + f"; {seconds / 60:.1f} min"


def model_comparisons(rows: list[dict], protocol: str = "paper", models: tuple[str, str] = ("ae", "vae"),
                      alpha: float = 0.05) -> list[dict]:
    """The paper's AE-against-VAE test per dataset (Table 1's stars): a two-sample two-tailed t-test of the two models'
    ARIs at their chosen settings, over seeds (the paper: 5 each), or over test images when a model has one seed;
    starred when p <= alpha / m, Bonferroni over the m datasets that have both models (`stats.model_difference`).

    Returns:
        One dict per such dataset: dataset, protocol, models, t, p, n_a, n_b, over, p_bonferroni, star.
    """
    lookup = {(r["dataset"], r["model"]): r for r in rows if r["protocol"] == protocol}
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        a, b = lookup.get((dataset, models[0])), lookup.get((dataset, models[1]))
        if a is None or b is None or "per_image" not in a or "per_image" not in b:
            continue
        by_seed = len(a["per_seed"]) > 1 and len(b["per_seed"]) > 1
        key = "per_seed" if by_seed else "per_image"
        test = stats.model_difference(a[key], b[key], over="seeds" if by_seed else "images")
        out.append(dict(dataset=dataset, protocol=protocol, models=list(models), **test))
    if out:
        family = stats.holm_bonferroni([c["p"] for c in out], alpha, procedure="bonferroni")
        for c, adjusted, star in zip(out, family.adjusted, family.rejected, strict=True):
            c.update(p_bonferroni=adjusted, star=star)
    return out


def format_table(rows: list[dict], protocol: str = "paper") -> str:
    """A text table of ARI per dataset (rows) and model (columns), ours next to the paper's; a `*` marks a row that
    needed no setting selection (tangent-limit features), with a footnote."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    lookup = {(r["dataset"], r["model"]): r for r in rows if r["protocol"] == protocol or r["model"].endswith("_control")}
    header = f"{'dataset':<20}" + "".join(f"{m + ' (paper)':>26}" for m in models)
    comparisons = {c["dataset"]: c for c in model_comparisons(rows, protocol)}
    if comparisons:
        header += f"{'ae vs vae p':>14}"
    lines = [header, "-" * len(header)]
    for d in datasets:
        cells = []
        for m in models:
            r = lookup.get((d, m))
            if r is None:
                cells.append(f"{'-':>26}")
                continue
            paper = "   -  " if r["paper_ari"] is None else f"{r['paper_ari']:6.3f}"
            mark = "*" if m.endswith("_tangent") else ""
            cells.append(f"{r['ari']:7.3f}{mark} +-{r['ari_sem']:.3f} ({paper})".rjust(26))
        if comparisons:
            c = comparisons.get(d)
            p_cell = "-" if c is None else f"{c['p_bonferroni']:.2g}{' *' if c['star'] else '  '}"
            cells.append(p_cell.rjust(14))
        lines.append(f"{d:<20}" + "".join(cells))
    if comparisons:
        over = ", ".join(sorted({c["over"] for c in comparisons.values()}))
        lines.append(f"ae vs vae p: two-sample two-tailed t-test over {over}, Bonferroni-adjusted over "
                     f"{len(comparisons)} datasets; * p <= 0.05 (the paper's Table 1 stars)")
    if any(r["model"].endswith("_tangent") for r in lookup.values()):
        lines.append("* tangent limit (sigma -> 0, N -> inf): no (sigma, N) setting to select, the same under both "
                     "protocols; (paper) is the paper's LNS value")
    return "\n".join(lines)


def write_results(workdir: Path, config: Any, rows: list[dict], timings: dict) -> None:
    comparisons = [c for protocol in ("paper", "fair") for c in model_comparisons(rows, protocol)]
    atomic.write_json(workdir / "results.json", {"config": dataclasses.asdict(config), "rows": rows,
                                                 "comparisons": comparisons, "seconds": timings})
    fields = ["dataset", "model", "protocol", "noise_std", "num_noise_samples", "clustering", "ari", "ari_sem",
              "sem_over", "ari_fg", "paper_ari"]
    if any("selection" in r for r in rows):
        fields.append("selection")
    if any("ari_decoder_masks" in r for r in rows):
        fields.append("ari_decoder_masks")
    text = io.StringIO()
    writer = csv.DictWriter(text, fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(workdir / "results.csv", text.getvalue())
