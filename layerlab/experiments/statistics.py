"""Statistics for comparing configurations over repeats with shared seeds:
the paired t-test (primary, with a 95% interval of the mean difference), the
exact Wilcoxon signed-rank test (assumption-free check) and Holm's
correction for several comparisons. SciPy does the distributions."""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from ..errors import OptionError

__all__ = ["Comparison", "paired_test", "holm", "wilcoxon_min_p"]


def wilcoxon_min_p(n: int) -> float:
    """The smallest two-sided p-value an exact Wilcoxon signed-rank test can
    give with ``n`` non-zero paired differences: all of one sign,
    ``2 * (1/2)**n``."""
    return min(1.0, 2.0 / 2 ** n) if n > 0 else 1.0


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down correction of p-values for multiple comparisons
    (controls the family-wise error rate; NaNs are left out and kept)."""
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    order = sorted(idx, key=lambda i: pvalues[i])
    m = len(order)
    out = [float("nan")] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


@dataclasses.dataclass
class Comparison:
    """A paired comparison of configurations ``a`` and ``b`` on one metric.

    ``mean_diff`` is the mean of ``a - b`` over the paired repeats,
    ``ci_low``/``ci_high`` its 95% t-interval; ``p_t`` the paired t-test's
    p-value; ``p_wilcoxon`` the exact two-sided Wilcoxon signed-rank
    p-value and ``wilcoxon_floor`` the smallest it could have been;
    ``p_holm`` the study's primary test's p-value corrected for the
    study's comparisons on this metric, ``significant`` whether it is below
    alpha.
    """

    metric: str
    a: str
    b: str
    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float
    ci_high: float
    p_t: float
    p_wilcoxon: float
    wilcoxon_floor: float
    p_holm: float = float("nan")
    significant: bool = False


def paired_test(a: Sequence[float], b: Sequence[float], metric: str = "",
                names: tuple[str, str] = ("a", "b")) -> Comparison:
    """Paired t-test and exact Wilcoxon signed-rank test of ``a`` against
    ``b`` (equal lengths, pair ``i`` from the same seed)."""
    from scipy import stats  # local: scipy is slow to import

    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise OptionError(f"paired_test: expected two 1-d sequences of equal length, got "
                          f"{a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    n = len(a)
    d = a - b
    nan = float("nan")
    mean_diff = float(d.mean()) if n else nan
    ci = (nan, nan)
    p_t = p_w = nan
    nonzero = int(np.count_nonzero(d))
    if n >= 2:
        sd = float(d.std(ddof=1))
        if sd > 0:
            half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
            ci = (mean_diff - half, mean_diff + half)
            p_t = float(stats.ttest_rel(a, b).pvalue)
        else:  # every pair differs by the same amount: no spread to test against
            ci = (mean_diff, mean_diff)
            p_t = 1.0 if mean_diff == 0 else 0.0
        if nonzero == 0:
            p_w = 1.0
        else:
            # zeros (ties between the two configurations) carry no sign: drop them
            p_w = float(stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided",
                                       method="exact" if nonzero <= 50 else "auto").pvalue)
    return Comparison(metric=metric, a=names[0], b=names[1], n=n,
                      mean_a=float(a.mean()) if n else nan, mean_b=float(b.mean()) if n else nan,
                      mean_diff=mean_diff, ci_low=ci[0], ci_high=ci[1], p_t=p_t,
                      p_wilcoxon=p_w, wilcoxon_floor=wilcoxon_min_p(nonzero))
