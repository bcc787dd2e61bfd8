"""The MONet reversal study (issue 33): the studies of ``experiments/configs/monet_reversal.py`` run, timed and
tabulated, with their validation curves.

    budget = run_study("narrow", config, workdir / "narrow")    # trains or resumes; returns its CPU budget
    rows = summarise(workdir, studies)                          # one row per study, from what the runs wrote
    print(format_table(rows)); curves_figure(workdir, studies, workdir / "curves.png")

Each study is a MONet ablation run (`noisegroup.komatsu.pipeline`) of NLL+M and IR+M in its own workdir. What a
study cost is accumulated over every call that trained it in ``budget.json``: wall and CPU seconds (this process and
its children) and the peak resident memory, so a study resumed three times reports its whole cost.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from noisegroup import atomic, usage
from noisegroup.engine import runlog
from noisegroup.komatsu import pipeline

CONDITIONS = ("nll_m", "ir_m")
LABELS = {"nll_m": "NLL+M", "ir_m": "IR+M"}


def run_study(study: str, config: pipeline.AblationConfig, workdir: Path,
              log: Callable[[str], None] = lambda line: None) -> dict:
    """Trains (or resumes) and evaluates one study in `workdir`; adds this call's cost to ``budget.json``.

    Returns:
        The study's budget: {"wall_s", "cpu_s", "peak_gb", "calls"} over every call so far.
    """
    wall, cpu = time.perf_counter(), usage.cpu_seconds()
    results = pipeline.run(config, workdir, log)
    path = Path(workdir) / "budget.json"
    budget = json.loads(path.read_text()) if path.exists() else {"wall_s": 0.0, "cpu_s": 0.0, "peak_gb": 0.0,
                                                                   "calls": 0}
    if any(results["trained_steps"].values()):  # a call that only re-evaluated adds nothing worth counting
        budget = {"wall_s": budget["wall_s"] + time.perf_counter() - wall,
                  "cpu_s": budget["cpu_s"] + usage.cpu_seconds() - cpu,
                  "peak_gb": max(budget["peak_gb"], usage.peak_rss_gb()), "calls": budget["calls"] + 1,
                  **{k: v for k, v in budget.items() if k not in ("wall_s", "cpu_s", "peak_gb", "calls")}}
        atomic.write_json(path, budget)
    return budget


def curves(workdir: Path, condition: str, metric: str = "ari") -> tuple[np.ndarray, np.ndarray]:
    """(steps `[t]`, values `[t, S]`): a run's validation `metric` per seed at every validation step."""
    records = [r for r in runlog.read_metrics(Path(workdir) / "models" / condition / "metrics.jsonl")
               if f"valid/{metric}" in r]
    by_step = {int(r["step"]): np.atleast_1d(r[f"valid/{metric}"]) for r in records}  # a resumed step: the last
    steps = np.array(sorted(by_step))
    return steps, np.array([by_step[s] for s in steps])


COMMON_STEP = 3000  # every study validates here: the step at which the table compares them all


def summarise(workdir: Path, studies: Mapping[str, tuple[str, str]], common_step: int = COMMON_STEP) -> list[dict]:
    """One row per study that has results: its causes, change, steps, budget and, per condition, the medians over
    seeds of test ARI, FG-ARI and the slots that cover the background at the end, the per-seed ARIs, and the median
    validation ARI at `common_step` (NaN where the run did not validate there)."""
    rows = []
    for study, (causes, change) in studies.items():
        path = Path(workdir) / study / "results.json"
        if not path.exists():
            continue
        results = json.loads(path.read_text())
        budget_path = Path(workdir) / study / "budget.json"
        budget = json.loads(budget_path.read_text()) if budget_path.exists() else {}
        row = {"study": study, "causes": causes, "change": change,
               "cpu_min": budget.get("cpu_s", float("nan")) / 60, "wall_min": budget.get("wall_s", float("nan")) / 60,
               "peak_gb": budget.get("peak_gb", float("nan")), "image_size": results["config"]["image_size"],
               "variant": results["config"].get("variant", "colored_on_colored")}
        for r in results["conditions"]:
            c = r["condition"]
            row[f"{c}_steps"] = max(r["steps"])
            row[f"{c}_ari"], row[f"{c}_fg_ari"] = r["median_ari"], r["median_fg_ari"]
            row[f"{c}_bg_slots"] = r.get("median_background_slots", float("nan"))
            row[f"{c}_seed_ari"] = r["per_seed_ari"]
            steps, values = curves(Path(workdir) / study, c)
            at = np.flatnonzero(steps == common_step)
            row[f"{c}_valid_ari_at_common"] = float(np.median(values[at[0]])) if at.size else float("nan")
        rows.append(row)
    return rows


def format_table(rows: Sequence[Mapping], common_step: int = COMMON_STEP) -> str:
    """The markdown table of `summarise`'s rows (medians over 3 seeds; bg: slots covering the background)."""
    lines = [f"| study | cause | change | steps | CPU-min | peak GB | NLL+M ARI / FG-ARI / bg "
             f"| IR+M ARI / FG-ARI / bg | valid ARI at {common_step:,}: NLL+M / IR+M |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r.get(f'{c}_ari', float('nan')):.2f} / {r.get(f'{c}_fg_ari', float('nan')):.2f} / "
                 f"{r.get(f'{c}_bg_slots', float('nan')):.1f}" for c in CONDITIONS]
        steps = "/".join(str(r.get(f"{c}_steps", "-")) for c in CONDITIONS)
        common = " / ".join(f"{r.get(f'{c}_valid_ari_at_common', float('nan')):.2f}" for c in CONDITIONS)
        lines.append(f"| {r['study']} | {r['causes']} | {r['change']} | {steps} | {r['cpu_min']:.0f} | "
                     f"{r['peak_gb']:.1f} | {cells[0]} | {cells[1]} | {common} |")
    return "\n".join(lines)


def curves_figure(workdir: Path, studies: Sequence[str], path: Path) -> None:
    """One panel per study: validation ARI (solid) and FG-ARI (dashed) against the step, the median over seeds
    thick and each seed thin, NLL+M and IR+M."""
    studies = [s for s in studies if (Path(workdir) / s / "models").exists()]
    if not studies:
        return
    columns = min(4, len(studies))
    rows = -(-len(studies) // columns)
    fig = Figure(figsize=(3.4 * columns, 2.8 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).reshape(-1)
    colours = {"nll_m": "tab:blue", "ir_m": "tab:orange"}
    for ax, study in zip(axes, studies):
        for condition in CONDITIONS:
            run = Path(workdir) / study / "models" / condition
            if not (run / "metrics.jsonl").exists():
                continue
            for metric, style in (("ari", "-"), ("fg_ari", "--")):
                steps, values = curves(Path(workdir) / study, condition, metric)
                if not len(steps):
                    continue
                ax.plot(steps, values, style, color=colours[condition], lw=0.6, alpha=0.4)
                label = f"{LABELS[condition]} {'ARI' if metric == 'ari' else 'FG-ARI'}"
                ax.plot(steps, np.median(values, axis=1), style, color=colours[condition], lw=2, label=label)
        ax.set_title(study, fontsize=10)
        ax.set_ylim(-0.1, 1.0)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left")
    for ax in axes[len(studies):]:
        ax.axis("off")
    with atomic.open_for_write(path) as f:
        fig.savefig(f, format="png", dpi=110)
