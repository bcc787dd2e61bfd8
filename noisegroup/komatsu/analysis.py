"""The paper's hypothesis tests over per-seed ARIs, its reported values, and the printed tables.

    groups = ablation_tests({"11": ari_11, "01": ari_01, ..., "mw_m": ari_mw})   # per-seed values [S] each
    print(format_test_groups(groups, paper_p_values("multi_dsprites")))

Which tests run depends on the conditions present (each needs >= 2 seeds, the same seeds in every condition):
    3.1  the 2x2 beta/gamma ablation (11, 01, 10, 00): two-treatment Friedman per factor over 2S blocks
         (`stats.factor_effect`), each at alpha = 0.05, no correction (as the paper).
    3.2  NLL+M vs IR+M: Wilcoxon signed-rank paired by seed.
    3.3  MSE+M vs MW+M, MW+M vs NLL+M, NLL+M vs MSE+M: Wilcoxon, Holm's correction over the three (the paper names
         Holm but applies 0.05 / 3 to all three, i.e. Bonferroni: `stats.holm_bonferroni` says more).
NLL+M is the condition "nll_m", or "01" (the same loss) when "nll_m" is not run.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from noisegroup import stats

# What each condition is called in the paper (and in the tables).
LABELS = {"11": "MONet (b .5, g .25)", "01": "b 0, g .25", "10": "b .5, g 0", "00": "b 0, g 0",
          "nll_m": "NLL+M", "ir_m": "IR+M", "mse_m": "MSE+M", "mw_m": "MW+M"}
SECTION_3_3 = (("mse_m", "mw_m"), ("mw_m", "nll_m"), ("nll_m", "mse_m"))  # the paper's order of its three tests


@functools.cache
def _paper() -> dict:
    return json.loads(Path(__file__).with_name("paper_values.json").read_text())


def paper_median(condition: str, dataset: str = "multi_dsprites") -> float | None:
    """The paper's median ARI of `condition` on `dataset` (100 seeds), or None."""
    return _paper()["medians"].get(dataset, {}).get(condition)


def paper_p_values(dataset: str = "multi_dsprites") -> dict[str, float]:
    """{test label: the paper's p-value} ("beta", "gamma", "NLL+M vs IR+M", "MSE+M vs MW+M", ...); a printed "0"
    is 0.0."""
    return dict(_paper()["p_values"].get(dataset, {}))


@dataclasses.dataclass(frozen=True)
class TestGroup:
    """Tests of one section of the paper, with the family's correction (None: each test at alpha on its own)."""

    section: str
    title: str
    tests: tuple[stats.PairedTest, ...]
    correction: stats.MultipleComparison | None = None

    def as_dict(self) -> dict:
        out = {"section": self.section, "title": self.title, "tests": [dataclasses.asdict(t) for t in self.tests]}
        if self.correction is not None:
            out["correction"] = dataclasses.asdict(self.correction)
        return out


def ablation_tests(per_seed: Mapping[str, ArrayLike], alpha: float = 0.05) -> list[TestGroup]:
    """The paper's tests (module docstring) of the conditions present in `per_seed`.

    Args:
        per_seed: condition name -> `[S]` per-seed values (e.g. ARI), the same seeds in the same order everywhere.
        alpha: the family-wise level of section 3.3's correction.

    Returns:
        One `TestGroup` per section whose conditions are all present; none when there are fewer than 2 seeds.

    Raises:
        ValueError: conditions of unequal length, NaN or inf (from `noisegroup.stats`).
    """
    values = {c: np.asarray(v, np.float64) for c, v in per_seed.items()}
    if "nll_m" not in values and "01" in values:
        values["nll_m"] = values["01"]  # NLL+M is condition 01
    if not values or min(v.size for v in values.values()) < 2:
        return []
    groups = []
    if all(c in values for c in stats.CONDITIONS):
        tests = tuple(stats.factor_effect(values, factor) for factor in ("beta", "gamma"))
        groups.append(TestGroup("3.1", "2x2 ablation: Friedman test per factor (blocks: seed x other factor)", tests))
    if "nll_m" in values and "ir_m" in values:
        test = stats.wilcoxon_paired(values["nll_m"], values["ir_m"], label="NLL+M vs IR+M")
        groups.append(TestGroup("3.2", "NLL vs IR: Wilcoxon signed-rank, paired by seed", (test,)))
    if all(c in values for c in ("nll_m", "mse_m", "mw_m")):
        tests = tuple(stats.wilcoxon_paired(values[a], values[b], label=f"{LABELS[a]} vs {LABELS[b]}")
                      for a, b in SECTION_3_3)
        correction = stats.holm_bonferroni([t.p_value for t in tests], alpha)
        groups.append(TestGroup("3.3", "MSE vs MW vs NLL: Wilcoxon signed-rank, paired by seed, Holm", tests,
                                correction))
    return groups


def _with_column(table: str, header: str, cells: Sequence[str]) -> str:
    """`table` (from `stats.format_tests`: header, rule, one line per test, optional footer) with a right-aligned
    column appended to its header and test lines."""
    lines = table.split("\n")
    rows = lines[2:2 + len(cells)]
    width = max(len(line) for line in lines[:2 + len(cells)])
    size = max(len(header), *(len(c) for c in cells))
    out = [lines[0].ljust(width) + "  " + header.rjust(size), lines[1].ljust(width) + "  " + "-" * size]
    out += [row.ljust(width) + "  " + cell.rjust(size) for row, cell in zip(rows, cells)]
    return "\n".join(out + lines[2 + len(cells):])


def format_p(p: float | None) -> str:
    """A p-value to 2 significant digits; the paper's printed "0" as "0"; None as "-"."""
    return "-" if p is None else "0" if p == 0 else f"{p:.2g}"


def format_test_groups(groups: Sequence[TestGroup], paper: Mapping[str, float] | None = None) -> str:
    """The test tables, one per section, with the paper's p-value of each test in the last column."""
    paper = paper or {}
    blocks = []
    for group in groups:
        table = stats.format_tests(group.tests, group.correction)
        table = _with_column(table, "paper p", [format_p(paper.get(t.label)) for t in group.tests])
        blocks.append(f"Section {group.section}, {group.title}:\n{table}")
    return "\n\n".join(blocks) if blocks else "(no tests: they need at least 2 seeds and the conditions they compare)"


def format_condition_table(rows: Sequence[Mapping]) -> str:
    """Per condition: seeds, median ARI with the paper's beside it, median FG-ARI, the median number of slots that
    cover the background, seeds stopped early, steps."""
    header = (f"{'condition':<10}{'paper name':<21}{'seeds':>6}{'median ARI':>12}{'(paper)':>9}"
              f"{'median FG-ARI':>15}{'bg slots':>10}{'stopped':>9}{'steps':>9}")
    lines = [header, "-" * len(header)]
    for r in rows:
        paper = "-" if r["paper_median_ari"] is None else f"{r['paper_median_ari']:.3f}"
        steps = sorted(set(r["steps"]))
        step_text = str(steps[0]) if len(steps) == 1 else f"{steps[0]}-{steps[-1]}"
        lines.append(f"{r['condition']:<10}{LABELS.get(r['condition'], ''):<21}{r['num_seeds']:>6}"
                     f"{r['median_ari']:>12.3f}{'(' + paper + ')':>9}{r['median_fg_ari']:>15.3f}"
                     f"{r.get('median_background_slots', float('nan')):>10.2f}"
                     f"{str(r['stopped_early']) + '/' + str(r['num_seeds']):>9}{step_text:>9}")
    return "\n".join(lines)
