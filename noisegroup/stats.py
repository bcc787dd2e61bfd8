"""Summaries of sweep results: the paper's and a fair choice of the best (sigma, N), mean and standard error.

    best = select_setting(test.ari)                        # the paper's protocol: best mean ARI on `test` itself
    fair = select_setting(test_iid.ari)                    # chosen on the in-distribution `test_iid` split ...
    summary = summarise(test.ari, fair)                    # ... and reported on `test`

ARI arrays are `[S, sigma, N, b]` (seed, noise level, number of samples, image). The paper's Table 1 reports, per
dataset and model, the mean ARI over the 100 test images at the best setting, +- the standard error of the mean over
its 5 trained seeds; with one seed the standard error is taken over images instead (and says so).

The hypothesis tests of the MONet loss ablation (Komatsu, Ohmura & Kuniyoshi; spec section 2.6) run on the host
over per-seed ARIs `[S]` (one value per trained seed, the same seeds in every condition), NumPy and SciPy only:

    beta = factor_effect(results, "beta")                  # results = {"11": ari_11, "01": ..., "10": ..., "00": ...}
    gamma = factor_effect(results, "gamma")                # two-treatment Friedman over 2S blocks (paper section 3.1)
    nll_vs_ir = wilcoxon_paired(ari_nll, ari_ir)           # Wilcoxon signed-rank paired by seed (section 3.2)
    tests = [wilcoxon_paired(x, y, label=f"{i} vs {j}") for (i, x), (j, y) in pairs]      # section 3.3 ...
    family = holm_bonferroni([t.p_value for t in tests])   # ... with Holm's step-down correction
    print(format_tests(tests, family))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike


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


def model_difference(a: ArrayLike, b: ArrayLike, *, over: str) -> dict:
    """The LNS paper's test of AE against VAE on one dataset: a two-sample, two-tailed Student's t-test
    (`scipy.stats.ttest_ind`, equal variances) on per-seed mean ARIs (the paper's 5 trained seeds each).

    Args:
        a, b: `[n_a]`, `[n_b]` ARIs of the two models, each at its own chosen setting: per-seed means, or per-image
            ARIs when a model has one seed (`over="images"`, a weaker reading: it tests these weights, not the
            training recipe).
        over: "seeds" or "images", recorded with the result.

    Returns:
        {"t", "p", "n_a", "n_b", "over"}; p is uncorrected (the paper's stars: Bonferroni over the datasets,
        `holm_bonferroni(..., procedure="bonferroni")`).

    Raises:
        ValueError: fewer than 2 values in a sample, a non-finite value, or `over` not "seeds"/"images".
    """
    if over not in ("seeds", "images"):
        raise ValueError(f"over must be 'seeds' or 'images', got {over!r}")
    x, y = _per_seed(a, "a"), _per_seed(b, "b")
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"a t-test needs >= 2 values per model, got {len(x)} and {len(y)} {over}")
    if np.ptp(x) == 0 and np.ptp(y) == 0:  # no spread (scipy would warn and give NaN): the means decide alone
        same = x[0] == y[0]
        t, p = (0.0, 1.0) if same else (float(np.copysign(np.inf, x[0] - y[0])), 0.0)
    else:
        res = scipy.stats.ttest_ind(x, y, equal_var=True, alternative="two-sided")
        t, p = float(res.statistic), float(res.pvalue)
    return {"t": t, "p": p, "n_a": len(x), "n_b": len(y), "over": over}


# --- Hypothesis tests of the loss ablation (host side, over per-seed ARIs) ---------------------------------------

# The 2x2 ablation of Komatsu et al. section 3.1 (spec 2.2): the first digit switches beta (latent KL, 0.5 / 0), the
# second gamma (mask KL, 0.25 / 0).
CONDITIONS = ("11", "01", "10", "00")
# Per factor, the (factor on, factor off) pairs of conditions that differ in that factor only; each gives S blocks.
FACTOR_PAIRS = {
    "beta": (("11", "01"), ("10", "00")),
    "gamma": (("11", "10"), ("01", "00")),
}


@dataclasses.dataclass(frozen=True)
class PairedTest:
    """One paired two-sample test, with the numbers a results table needs.

    Attributes:
        test: "friedman" or "wilcoxon".
        method: How p was computed: "chi2(1), ties dropped" / "chi2(1), ties midranked" (Friedman); "exact",
            "asymptotic" or "permutation" (Wilcoxon); "all tied" when no pair differs (then p = 1).
        statistic: Friedman's Q; Wilcoxon's T as scipy reports it (min(T+, T-) two-sided, T+ one-sided).
        p_value: Unadjusted p-value (see `holm_bonferroni`).
        n: Pairs (blocks) that enter the statistic, after any tied pairs are dropped.
        wins: Pairs with a > b (W; for `factor_effect`, factor on beats factor off).
        losses: Pairs with a < b (L).
        ties: Pairs with a == b.
        median_a: Median of `a` over all pairs.
        median_b: Median of `b` over all pairs.
        label: What was compared, e.g. "beta" or "MSE+M vs MW+M".
    """

    test: str
    method: str
    statistic: float
    p_value: float
    n: int
    wins: int
    losses: int
    ties: int
    median_a: float
    median_b: float
    label: str = ""


@dataclasses.dataclass(frozen=True)
class MultipleComparison:
    """A family of m p-values corrected for multiple comparisons (caller's order throughout).

    Attributes:
        procedure: "holm" or "bonferroni".
        alpha: Family-wise error rate.
        p_values: `[m]` raw p-values.
        thresholds: `[m]` level each raw p is compared with: alpha / (m - r + 1) for the r-th smallest (Holm),
            alpha / m for every one (Bonferroni).
        adjusted: `[m]` adjusted p-values; a hypothesis is rejected iff its adjusted p <= alpha.
        rejected: `[m]` whether each null hypothesis is rejected.
    """

    procedure: str
    alpha: float
    p_values: tuple[float, ...]
    thresholds: tuple[float, ...]
    adjusted: tuple[float, ...]
    rejected: tuple[bool, ...]


def _per_seed(values: ArrayLike, name: str) -> np.ndarray:
    """`values` as a finite float64 `[S]` array, or a ValueError naming `name` and the first bad entry."""
    x = np.asarray(values, np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be a 1-D per-seed array [S], got shape {x.shape}")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] is {x[i]}: per-seed values must be finite")
    return x


def _paired(a: ArrayLike, b: ArrayLike, names: tuple[str, str] = ("a", "b")) -> tuple[np.ndarray, np.ndarray]:
    """Validated `[S]`, `[S]` pair (same length, at least 2 pairs, finite)."""
    a, b = _per_seed(a, names[0]), _per_seed(b, names[1])
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must pair by seed (equal length), "
                         f"got {a.size} and {b.size} values")
    if a.size < 2:
        raise ValueError(f"a paired test needs at least 2 pairs, got {a.size}")
    return a, b


def _counts(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int]:
    """(W, L, ties): pairs with a > b, a < b, a == b."""
    return int(np.sum(a > b)), int(np.sum(a < b)), int(np.sum(a == b))


def friedman_two_treatments(a: ArrayLike, b: ArrayLike, *, ties: Literal["drop", "midrank"] = "drop",
                            label: str = "") -> PairedTest:
    """Friedman's test for two treatments over paired blocks: Q = (W - L)^2 / n, p = P(chi2_1 > Q).

    Friedman (1940) ranks the k treatments within each of n blocks and tests their rank sums R_j:
        Q = 12 / (n k (k + 1)) * sum_j R_j^2 - 3 n (k + 1),   ~ chi2_{k-1} under H0.
    For k = 2 a block ranks a, b as (2, 1) when a wins and (1.5, 1.5) on a tie, so R_a = 3n/2 + (W - L)/2 and
    R_b = 3n/2 - (W - L)/2, and Q reduces to (W - L)^2 / n (spec 2.6): a chi-square sign test.
    `scipy.stats.friedmanchisquare` refuses k = 2 ("at least 3 sets of samples"), hence this closed form.

    A tied block adds nothing to W - L; whether it counts in n is the `ties` choice:
      * "drop" (default): n = W + L, tied blocks dropped from the count. This is Friedman's statistic with the usual
        tie correction, Q / (1 - sum (t^3 - t) / (n k (k^2 - 1))) = (W - L)^2 / (W + L) for k = 2 (scipy's convention
        for k >= 3), and the normal approximation of the two-sided sign test.
      * "midrank": n = all blocks, Friedman's uncorrected statistic with mid-ranks (more conservative).
    Both agree when no block ties, as with the paper's continuous ARIs: its reported p-values (0.32, 0.048, 0.16,
    1.7e-22) are (W - L)^2 / 200 with |W - L| = 14, 28, 20, 138 (spec 2.6). If every block ties under "drop" there
    is no evidence of a difference and the result is Q = 0, p = 1.

    Args:
        a: `[n]` treatment A per block (e.g. per-seed ARI), finite.
        b: `[n]` treatment B, paired with `a` by position.
        ties: "drop" or "midrank", as above.
        label: Stored on the result.

    Returns:
        PairedTest("friedman") with Q, its chi2(1) upper-tail p, n (the denominator of Q), W, L, ties and the medians.

    Raises:
        ValueError: `a`, `b` are not 1-D of equal length >= 2, hold NaN or inf, or `ties` is unknown.
    """
    if ties not in ("drop", "midrank"):
        raise ValueError(f"ties must be 'drop' or 'midrank', got {ties!r}")
    a, b = _paired(a, b)
    wins, losses, tied = _counts(a, b)
    n = wins + losses if ties == "drop" else a.size
    if n == 0:  # every block tied: nothing favours either treatment
        q, p = 0.0, 1.0
    else:
        q = (wins - losses) ** 2 / n  # spec 2.6; = Friedman's Q for k = 2 (see above)
        p = float(scipy.stats.chi2.sf(q, df=1))
    method = "chi2(1), ties dropped" if ties == "drop" else "chi2(1), ties midranked"
    return PairedTest("friedman", method, float(q), p, int(n), wins, losses, tied,
                      float(np.median(a)), float(np.median(b)), label)


def factor_effect(results: Mapping[str, ArrayLike], factor: Literal["beta", "gamma"], *,
                  ties: Literal["drop", "midrank"] = "drop") -> PairedTest:
    """Friedman test of one factor of the 2x2 beta/gamma ablation; blocks = seed x level of the other factor.

    The blocks pair conditions that differ in `factor` only, seed by seed (`FACTOR_PAIRS`): for beta 11 with 01 and
    10 with 00, for gamma 11 with 10 and 01 with 00; so S seeds give 2S blocks, with treatment A = factor on and
    B = factor off. The paper does not describe its construction; this one reproduces all four of its p-values with
    S = 100 (n = 200 blocks), whereas 100 blocks (the other factor averaged or fixed) cannot match 0.048 or 1.7e-22
    (spec 2.6, 7.6).

    Args:
        results: Condition name ("11", "01", "10", "00"; first digit beta on/off, second gamma on/off) -> `[S]`
            per-seed ARI, the same seeds in the same order in every condition. Other keys are ignored.
        factor: "beta" or "gamma".
        ties: As in `friedman_two_treatments`.

    Returns:
        PairedTest("friedman", label=factor): Q, p, n, W (factor on > off), L, ties, and the medians of the pooled
        factor-on and factor-off values (`[2S]` each).

    Raises:
        ValueError: unknown factor, a condition missing, conditions of unequal length, fewer than 2 seeds, NaN or inf.
    """
    if factor not in FACTOR_PAIRS:
        raise ValueError(f"factor must be one of {sorted(FACTOR_PAIRS)}, got {factor!r}")
    missing = [c for c in CONDITIONS if c not in results]
    if missing:
        raise ValueError(f"results lacks condition(s) {missing}: the 2x2 design needs {list(CONDITIONS)}")
    ari = {c: _per_seed(results[c], f"condition {c!r}") for c in CONDITIONS}
    lengths = {c: x.size for c, x in ari.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"conditions must hold the same seeds (equal length), got lengths {lengths}")
    on = np.concatenate([ari[c_on] for c_on, _ in FACTOR_PAIRS[factor]])     # [2S]
    off = np.concatenate([ari[c_off] for _, c_off in FACTOR_PAIRS[factor]])  # [2S], paired with `on` by position
    return friedman_two_treatments(on, off, ties=ties, label=factor)


def _wilcoxon_auto_method(d: np.ndarray) -> str:
    """scipy 1.17's resolution of method="auto" for differences `d` `[n]` (zeros included)."""
    if d.size > 50:
        return "asymptotic"
    nonzero = np.abs(d[d != 0])
    if nonzero.size == d.size and np.unique(nonzero).size == nonzero.size:
        return "exact"
    return "permutation" if d.size <= 13 else "asymptotic"


def wilcoxon_paired(a: ArrayLike, b: ArrayLike, *,
                    zero_method: Literal["wilcox", "pratt", "zsplit"] = "wilcox", correction: bool = False,
                    alternative: Literal["two-sided", "less", "greater"] = "two-sided",
                    method: Literal["auto", "exact", "asymptotic"] = "auto", label: str = "") -> PairedTest:
    """Wilcoxon (1945) signed-rank test of d = a - b, paired by seed (`scipy.stats.wilcoxon`).

    The defaults are scipy's, i.e. what a Python user running the paper's test gets: zero_method="wilcox" (zero
    differences dropped, Wilcoxon's own rule), correction=False (no continuity correction), alternative="two-sided"
    (the paper gives no direction; its Holm family compares unordered pairs) and method="auto", which is resolved
    here as scipy 1.17 resolves it and recorded on the result:
      * more than 50 pairs (zeros included): "asymptotic", z = (T+ - n(n+1)/4) / sqrt(n(n+1)(2n+1)/24 - sum(t^3 - t)/48)
        (t: sizes of groups of tied |d|), two-sided p = 2 Phi(-|z|);
      * else, with no zero and no tied |d|: "exact" null distribution of T+;
      * else, 13 pairs or fewer: "permutation" over all 2^n sign flips (deterministic);
      * else "asymptotic".
    At the paper's 100 seeds this is the normal approximation: 100 pairs all of one sign give z = -8.68 and
    p = 3.9e-18, printed by the paper as "p = 0" (spec 2.6; the exact p, 2 / 2^100 = 1.6e-30, would print as 0 too).
    With the few seeds a replication affords (n <= 50) it is the exact p, which the normal approximation misstates.
    If no pair differs, p = 1 (scipy would return NaN).

    Args:
        a: `[S]` per-seed values of condition A, finite.
        b: `[S]` condition B, same seeds in the same order.
        zero_method, correction, alternative: Passed to `scipy.stats.wilcoxon`.
        method: "auto" (resolved as above), "exact" or "asymptotic".
        label: Stored on the result.

    Returns:
        PairedTest("wilcoxon"): scipy's T and p, n (non-zero pairs for "wilcox", all pairs otherwise), W (a > b), L,
        ties, the medians of a and b, and the method actually used.

    Raises:
        ValueError: `a`, `b` are not 1-D of equal length >= 2, hold NaN or inf, or `method` is unknown.
    """
    if method not in ("auto", "exact", "asymptotic"):
        raise ValueError(f"method must be 'auto', 'exact' or 'asymptotic', got {method!r}")
    a, b = _paired(a, b)
    wins, losses, tied = _counts(a, b)
    medians = float(np.median(a)), float(np.median(b))
    n = wins + losses if zero_method == "wilcox" else a.size
    if wins + losses == 0:
        return PairedTest("wilcoxon", "all tied", 0.0, 1.0, int(n), wins, losses, tied, *medians, label)
    d = a - b  # [S]
    used = _wilcoxon_auto_method(d) if method == "auto" else method
    scipy_method = scipy.stats.PermutationMethod() if used == "permutation" else used  # exhaustive for n <= 13
    res = scipy.stats.wilcoxon(d, zero_method=zero_method, correction=correction, alternative=alternative,
                               method=scipy_method)
    return PairedTest("wilcoxon", used, float(res.statistic), float(res.pvalue), int(n), wins, losses, tied,
                      *medians, label)


def holm_bonferroni(p_values: Sequence[float] | ArrayLike, alpha: float = 0.05, *,
                    procedure: Literal["holm", "bonferroni"] = "holm") -> MultipleComparison:
    """Holm's (1979) step-down correction of m p-values, or the single-step Bonferroni reading of the paper.

    Holm: sort p_(1) <= ... <= p_(m) and reject H_(1), ..., H_(r) while p_(j) <= alpha / (m - j + 1), stopping at the
    first p_(j) above its level. Adjusted p_(j) = max_{i <= j} min(1, (m - i + 1) p_(i)).
    Bonferroni: reject iff p <= alpha / m; adjusted p = min(1, m p). Both control the family-wise error rate at alpha;
    Holm rejects everything Bonferroni does and possibly more.

    The paper (section 3.3) names Holm-Bonferroni but states one level, 0.05/3 = "0.016" (0.0167), for its three
    comparisons and calls p = 0.019 (MW+M vs NLL+M, Multi-dSprites) not significant: that is procedure="bonferroni".
    Under Holm that p is the largest of the three and is compared with 0.05, so it is rejected (spec 7.5).

    Args:
        p_values: `[m]` p-values, m >= 1, each in [0, 1].
        alpha: Family-wise error rate, in (0, 1).
        procedure: "holm" (step-down, the default) or "bonferroni" (every p against alpha / m, as the paper reads).

    Returns:
        MultipleComparison with thresholds, adjusted p-values and decisions in the caller's order.

    Raises:
        ValueError: empty or non-1-D p_values, a value outside [0, 1] or NaN, alpha outside (0, 1), unknown procedure.
    """
    if procedure not in ("holm", "bonferroni"):
        raise ValueError(f"procedure must be 'holm' or 'bonferroni', got {procedure!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    p = np.asarray(p_values, np.float64)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"p_values must be a non-empty 1-D sequence, got shape {p.shape}")
    bad = np.flatnonzero(~((p >= 0.0) & (p <= 1.0)))  # also catches NaN
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"p_values[{i}] is {p[i]}: not a p-value in [0, 1]")
    m = p.size
    if procedure == "bonferroni":
        thresholds = np.full(m, alpha / m)
        adjusted = np.minimum(1.0, m * p)
        rejected = p <= thresholds
    else:
        order = np.argsort(p, kind="stable")  # ascending; ties keep the caller's order
        factors = m - np.arange(m)  # m, m - 1, ..., 1 for p_(1), ..., p_(m)
        thresholds, adjusted, rejected = np.empty(m), np.empty(m), np.zeros(m, bool)
        thresholds[order] = alpha / factors
        adjusted[order] = np.maximum.accumulate(np.minimum(1.0, factors * p[order]))
        # Step-down: the first sorted p above its level stops the procedure; it and all larger p are retained.
        passes = p[order] <= alpha / factors
        rejected[order] = np.cumprod(passes).astype(bool)
    return MultipleComparison(procedure, float(alpha), tuple(p.tolist()), tuple(thresholds.tolist()),
                              tuple(adjusted.tolist()), tuple(bool(r) for r in rejected))


def format_tests(tests: Sequence[PairedTest], correction: MultipleComparison | None = None) -> str:
    """Plain-text table of paired tests, one row each, plus the adjusted p and decision when `correction` is given.

    p-values print to 2 significant digits as in the paper (0.32, 0.048, 1.7e-22), but never as its "0".

    Args:
        tests: The tests, in table order.
        correction: `holm_bonferroni` over `[t.p_value for t in tests]`, in the same order, or None.

    Returns:
        The table as one string (no trailing newline).

    Raises:
        ValueError: `correction` has a different number of p-values than there are tests.
    """
    header = ["comparison", "test", "method", "n", "W", "L", "ties", "median a", "median b", "statistic", "p"]
    if correction is not None:
        if len(correction.p_values) != len(tests):
            raise ValueError(f"correction covers {len(correction.p_values)} p-values but there are {len(tests)} tests")
        header += [f"p adj ({correction.procedure})", "reject"]
    rows = []
    for i, t in enumerate(tests):
        row = [t.label, t.test, t.method, str(t.n), str(t.wins), str(t.losses), str(t.ties), f"{t.median_a:.3f}",
               f"{t.median_b:.3f}", f"{t.statistic:.4g}", f"{t.p_value:.2g}"]
        if correction is not None:
            row += [f"{correction.adjusted[i]:.2g}", "yes" if correction.rejected[i] else "no"]
        rows.append(row)
    widths = [max(len(r[j]) for r in [header, *rows]) for j in range(len(header))]
    text_columns = 3  # comparison, test, method: left-aligned; numbers right-aligned

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if j < text_columns else c.rjust(w)
                         for j, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    out = [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
    if correction is not None:
        out.append(f"family-wise alpha = {correction.alpha:g} ({correction.procedure})")
    return "\n".join(out)
