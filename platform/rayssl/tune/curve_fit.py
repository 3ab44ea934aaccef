"""Learning curves: fit test accuracy (a fraction) against labels per class n, and extrapolate with
an interval, after Mahmood et al., "How Much More Data Do I Need?" (CVPR 2022, arXiv 2207.01725).

Forms (the paper's four, in fractions rather than percent):

- ``power_law``: v = a - b * n^(-c), with a <= 1, b > 0, c > 0 (the paper's θ1 n^θ2 + θ3 with θ1 < 0, θ2 < 0).
- ``arctan``: v = (2/π) arctan(θ1 (π/2) n + θ2) + θ3; the ceiling is 1 + θ3 <= 1.
- ``logarithmic``: v = θ1 log(n + θ2) + θ3, θ1 > 0, θ2 >= 0 (no ceiling: predictions are clipped).
- ``algebraic_root``: v = θ1 n / (1 + |θ1 n|^θ2)^(1/θ2) + θ3; the ceiling is 1 + θ3 <= 1.

Parameterisation rule. Every form has 3 parameters, which a fit on 3 distinct budgets only
interpolates and a fit on 2 cannot identify at all. So a fit resting on >= 4 distinct budgets uses
the 3-parameter form (``free_ceiling=True``), and a fit resting on <= 3 uses a 2-parameter version
(``free_ceiling=False``) that pins the ceiling at accuracy 1: a = 1 (power law), θ3 = 0 (arctan and
algebraic root), and θ2 = 0 for the logarithmic form (v = θ1 log n + θ3, which has no ceiling to
pin). The rule depends only on the number of distinct budgets, so ``FittedCurve.free_ceiling``
records which version was used. Fits are weighted least squares on each budget's mean (weight: its
number of draws, which equals least squares on every draw), by MINPACK's Levenberg-Marquardt
(``scipy.optimize.leastsq``) on parameters mapped so that the bounds hold, from data-driven starts; a fit that fails returns None.

Uncertainty (``extrapolate``). Each of ``n_boot`` replicates resamples every budget's draws with
replacement, re-chooses the form by leave-one-budget-out (LOBO) on the resampled means and refits it
on all budgets, so the interval includes the choice of form. With three draws per budget that
bootstrap only measures noise, while beyond the largest budget n_K the error is dominated by the
form being wrong, so each replicate's curve is widened beyond n_K in two ways (in logit space, which
keeps accuracies in (0, 1) and makes a shift near 1 a relative change in error rate):

1. Forward-extrapolation error. r is the chosen form's logit residual at n_K when fitted without
   n_K, an extrapolation over d_ref = log(n_K / n_{K-1}). Its scale, sigma = 1.4826 median|r| /
   d_ref over replicates (the normal-consistent median absolute deviation, robust to a replicate
   whose fold ran off), is taken to grow linearly with the distance log(n / n_K), as an error in
   the curve's slope does; each replicate adds z sigma log(n / n_K), z ~ N(0, 1) drawn once per
   replicate so that it stays a smooth curve. The sign of r is not used: the direction of the error
   one step out does not predict its direction further out.
2. Unknown ceiling. A 2-parameter fit (<= 3 budgets) pins the ceiling at 1, the most optimistic
   ceiling there is, so its gain beyond n_K is an upper envelope; and a mean learning curve does
   not fall, so the flat continuation is a lower one. Such a replicate realises a fraction u ~
   U(0, 1) of its form's logit gain beyond n_K. A 3-parameter fit estimated its ceiling: u = 1.

Every widened curve is floored at its own value at n_K (curves do not fall). Intervals are
quantiles over replicates; labels needed are each replicate's first crossing of the target
(math.inf where it is not reached by ``max_labels``). Deterministic for a given seed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import leastsq

FORMS: tuple[str, ...] = ("power_law", "arctan", "logarithmic", "algebraic_root")
MIN_FREE_BUDGETS = 4  # a 3-parameter fit needs more distinct budgets than parameters
_EPS = 1e-6  # accuracies are clipped to [_EPS, 1 - _EPS] before a logit


def _logit(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, _EPS, 1 - _EPS)
    return np.log(v) - np.log1p(-v)


def _expit(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def _algebraic_root(n: np.ndarray, t1: float, t2: float) -> np.ndarray:
    """x / (1 + x^p)^(1/p) with x = t1 n, p = t2, in log space so large x^p cannot overflow."""
    x = np.maximum(t1 * n, 1e-300)
    log_x = np.log(x)
    return np.exp(log_x - np.logaddexp(0.0, t2 * log_x) / t2)


def _evaluate(form: str, params: Sequence[float] | np.ndarray, free_ceiling: bool, n: np.ndarray) -> np.ndarray:
    """Unclipped value of `form` at n (float64, shape of n). Two-parameter versions supply the pinned one."""
    if form == "power_law":
        a, b, c = params if free_ceiling else (1.0, *params)
        return a - b * np.power(n, -c)
    if form == "arctan":
        t1, t2, t3 = params if free_ceiling else (*params, 0.0)
        return (2 / np.pi) * np.arctan(t1 * (np.pi / 2) * n + t2) + t3
    if form == "logarithmic":
        t1, t2, t3 = params if free_ceiling else (params[0], 0.0, params[1])
        return t1 * np.log(n + t2) + t3
    if form == "algebraic_root":
        t1, t2, t3 = params if free_ceiling else (*params, 0.0)
        return _algebraic_root(n, t1, t2) + t3
    raise ValueError(f"unknown form {form!r}; expected one of {FORMS}")


def _gradient(form: str, params: Sequence[float] | np.ndarray, free_ceiling: bool, n: np.ndarray) -> np.ndarray:
    """d value / d params [K, P] at n [K], for the free params only (P = 3 if free_ceiling else 2):
    an exact Jacobian halves the fit's function evaluations against finite differences."""
    if form == "power_law":
        a, b, c = params if free_ceiling else (1.0, *params)
        pw = np.power(n, -c)
        cols = [np.ones_like(n), -pw, b * pw * np.log(n)]
    elif form == "arctan":
        t1, t2, t3 = params if free_ceiling else (*params, 0.0)
        d = 1.0 / (1.0 + (t1 * (np.pi / 2) * n + t2) ** 2)
        cols = [n * d, (2 / np.pi) * d, np.ones_like(n)]
    elif form == "logarithmic":
        t1, t2, t3 = params if free_ceiling else (params[0], 0.0, params[1])
        cols = [np.log(n + t2), t1 / (n + t2), np.ones_like(n)]
    else:  # algebraic_root: g = x (1 + x^p)^(-1/p), x = θ1 n, p = θ2
        t1, t2, t3 = params if free_ceiling else (*params, 0.0)
        log_x = np.log(np.maximum(t1 * n, 1e-300))
        log1p_xp = np.logaddexp(0.0, t2 * log_x)  # log(1 + x^p)
        g = np.exp(log_x - log1p_xp / t2)
        dg_dx = np.exp(-log1p_xp * (1 + t2) / t2)  # (1 + x^p)^(-(1 + p)/p)
        dg_dp = g * (log1p_xp / t2**2 - np.exp(t2 * log_x - log1p_xp) * log_x / t2)
        cols = [n * dg_dx, dg_dp, np.ones_like(n)]
    keep = [i for i in range(3) if free_ceiling or i != _PINNED[form]]
    return np.stack([cols[i] for i in keep], axis=1)


def _first_crossing(fn: Callable[[np.ndarray], np.ndarray], target: float, lo: float, hi: float) -> float:
    """Smallest n in [lo, hi] with fn(n) >= target (fn: [M] -> [M]), to ~1e-10 in log n: the first
    crossing on a log-spaced grid (so a curve that is not monotone still gives its first one), then
    the bracket around it refined by a 32-point grid per step, a vectorised bisection. math.inf if no
    grid point reaches the target."""
    grid = np.geomspace(lo, hi, 512)
    reached = np.flatnonzero(fn(grid) >= target)
    if reached.size == 0:
        return math.inf
    k = int(reached[0])
    if k == 0:
        return lo
    a, b = math.log(grid[k - 1]), math.log(grid[k])  # fn(e^a) < target <= fn(e^b)
    while b - a > 1e-10:
        sub = np.linspace(a, b, 33)
        j = int(np.flatnonzero(fn(np.exp(sub[1:])) >= target)[0])  # exists: sub[-1] == b reaches it
        a, b = float(sub[j]), float(sub[j + 1])
    return math.exp(b)


@dataclass(frozen=True)
class FittedCurve:
    """One fitted form. params: (a, b, c) / (θ1, θ2, θ3) when free_ceiling, else the 2-parameter
    version's free parameters in the same order with the pinned one left out (see module docstring)."""

    form: str
    params: tuple[float, ...]
    free_ceiling: bool
    rmse: float = 0.0  # weighted root-mean-square residual of the fit, on the means (fraction)

    def predict(self, n: np.ndarray | float) -> np.ndarray:
        """Accuracy at labels per class n (any shape), clipped to [0, 1]; same shape as n."""
        return np.clip(_evaluate(self.form, self.params, self.free_ceiling, np.asarray(n, dtype=float)), 0.0, 1.0)

    def labels_for(self, target: float, max_labels: float = 1e6, min_labels: float = 1.0) -> float:
        """Smallest n in [min_labels, max_labels] with predict(n) >= target (bisection on log n);
        min_labels if already reached there, math.inf if not reached by max_labels."""
        return _first_crossing(self.predict, target, min_labels, max_labels)


def _means(budgets: np.ndarray, accuracies: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct budgets [K], mean accuracy [K], draws per budget [K]) from per-draw arrays [N]."""
    b = np.asarray(budgets, dtype=float).ravel()
    y = np.asarray(accuracies, dtype=float).ravel()
    if b.shape != y.shape:
        raise ValueError(f"budgets {b.shape} and accuracies {y.shape} differ in shape")
    distinct, inverse, counts = np.unique(b, return_inverse=True, return_counts=True)
    return distinct, np.bincount(inverse, weights=y) / counts, counts.astype(float)


# How each parameter of the 3-parameter versions is mapped from an unconstrained value u, so that
# MINPACK's unbounded Levenberg-Marquardt (an order of magnitude less overhead per fit than a bounded
# trust-region solver, which the bootstrap's thousands of fits need) still respects the constraints:
# ceilings <= 1, and slopes and exponents > 0 so that every curve increases with n.
_KINDS: dict[str, tuple[str, str, str]] = {
    "power_law": ("below_one", "positive", "positive"),  # a, b, c
    "arctan": ("positive", "real", "negative"),  # θ1, θ2, θ3 (ceiling 1 + θ3)
    "logarithmic": ("positive", "positive", "real"),  # θ1, θ2, θ3
    "algebraic_root": ("positive", "positive", "negative"),  # θ1, θ2, θ3 (ceiling 1 + θ3)
}
_PINNED = {"power_law": 0, "arctan": 2, "logarithmic": 1, "algebraic_root": 2}  # left out when the ceiling is not free
_FLOOR = 1e-6  # a start on a bound is moved this far inside it (_candidates keeps free ones well inside)


def _kinds(form: str, free_ceiling: bool) -> list[str]:
    """Constraint kind of each free parameter, in FittedCurve.params order."""
    return [k for i, k in enumerate(_KINDS[form]) if free_ceiling or i != _PINNED[form]]


def _transform(kinds: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(real [P] bool, offset [P], sign [P]): param = u where real, else offset + sign * exp(u)."""
    real = np.array([k == "real" for k in kinds])
    offset = np.array([1.0 if k == "below_one" else 0.0 for k in kinds])
    sign = np.array([-1.0 if k in ("negative", "below_one") else 1.0 for k in kinds])
    return real, offset, sign


def _to_free(kinds: list[str], params: np.ndarray) -> np.ndarray:
    """Constrained params [P] -> unconstrained u [P] (the inverse of _from_free); a param on its
    bound is moved _FLOOR inside it."""
    real, offset, sign = _transform(kinds)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.log(np.maximum((params - offset) * sign, _FLOOR))
    return np.where(real, params, mag)


def _from_free(kinds: list[str], u: np.ndarray) -> np.ndarray:
    """Unconstrained u [P] -> constrained params [P]."""
    real, offset, sign = _transform(kinds)
    return np.where(real, u, offset + sign * np.exp(np.clip(u, -700, 700)))


def _line(x: np.ndarray, z: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of the weighted least-squares line z ~ x (all [K]); closed form, as np.polyfit's
    overhead would dominate the cheap starts."""
    xm, zm = np.average(x, weights=w), np.average(z, weights=w)
    var = float(w @ (x - xm) ** 2)
    slope = float(w @ ((x - xm) * (z - zm))) / var if var > 0 else 0.0
    return slope, float(zm - slope * xm)


def _candidates(form: str, free_ceiling: bool, n: np.ndarray, y: np.ndarray, w: np.ndarray) -> list[list[float]]:
    """Cheap starting points, each a list of P floats: for a few guesses of the ceiling (or of the
    log-form's offset) each form is linear in transformed coordinates, so the rest comes from a line
    fit. Inputs: distinct budgets, means and weights [K]."""
    gap = max(1.0 - float(y.max()), 1e-3)
    # Free ceilings start strictly inside their bound: with the exp mapping a start on the bound has
    # no gradient and would stay there (an optimum on the bound is still approached from inside).
    ceilings = [1.0] if not free_ceiling else [1.0 - gap / 10, 1.0 - gap / 2, 1.0 - 0.9 * gap]
    out: list[list[float]] = []
    if form == "logarithmic":  # v = θ1 log(n + θ2) + θ3 is a line in log(n + θ2)
        for t2 in [0.0] if not free_ceiling else [0.1 * float(n.min()), float(n.min()), 10.0 * float(n.min())]:
            t1, t3 = _line(np.log(n + t2), y, w)
            out.append([max(t1, 1e-3), t2, t3] if free_ceiling else [max(t1, 1e-3), t3])
        return out
    for top in ceilings:
        g = np.clip(y - (top - 1.0), 1e-3, 0.999)  # the part of v that rises from 0 to 1 (power law: to `top`)
        if form == "power_law":  # log(top - v) = log b - c log n
            slope, icept = _line(np.log(n), np.log(np.clip(top - y, 1e-4, None)), w)
            out.append([top, math.exp(icept), -slope])
        elif form == "arctan":  # tan(π/2 g) = θ1 (π/2) n + θ2
            slope, icept = _line(n, np.tan(np.pi / 2 * g), w)
            out.append([max(slope / (np.pi / 2), 1e-6), icept, top - 1.0])
        else:  # algebraic_root: with g = x / (1 + x^p)^(1/p), x = g / (1 - g^p)^(1/p) = θ1 n
            for p in (0.5, 1.0, 2.0):
                x = g / (1 - g**p) ** (1 / p)
                out.append([float(np.exp(np.average(np.log(x / n), weights=w))), p, top - 1.0])
    # The 2-parameter version: leave the pinned parameter out (its value in `out` is the pinned one).
    return out if free_ceiling else [[v for i, v in enumerate(c) if i != _PINNED[form]] for c in out]


def _fit_means(form: str, n: np.ndarray, y: np.ndarray, w: np.ndarray) -> FittedCurve | None:
    """Weighted least-squares fit of `form` to means y [K] at distinct budgets n [K] with weights w [K];
    the version (free ceiling or not) follows MIN_FREE_BUDGETS. None if K < 2 or no start converges.
    Cached: bootstrap replicates of few draws repeat the same means often."""
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; expected one of {FORMS}")
    return _fit_cached(form, tuple(n.tolist()), tuple(y.tolist()), tuple(w.tolist()))


@functools.lru_cache(maxsize=8192)
def _fit_cached(form: str, nt: tuple[float, ...], yt: tuple[float, ...], wt: tuple[float, ...]) -> FittedCurve | None:
    """_fit_means on hashable inputs."""
    n, y, sw = np.array(nt), np.array(yt), np.sqrt(np.array(wt))
    if n.size < 2:
        return None
    free = n.size >= MIN_FREE_BUDGETS
    kinds = _kinds(form, free)
    real, offset, sign = _transform(kinds)

    def residuals(u: np.ndarray) -> np.ndarray:  # called thousands of times per bootstrap: kept lean
        r = sw * (_evaluate(form, np.where(real, u, offset + sign * np.exp(np.minimum(u, 700))), free, n) - y)
        return np.where(np.isfinite(r), r, 1e3)  # a finite wall keeps the solver away from overflow

    def jacobian(u: np.ndarray) -> np.ndarray:  # d residuals / d u [K, P], by the chain rule through the mapping
        dp_du = np.where(real, 1.0, sign * np.exp(np.minimum(u, 700)))
        jac = sw[:, None] * _gradient(form, np.where(real, u, offset + dp_du), free, n) * dp_du[None, :]
        return np.where(np.isfinite(jac), jac, 0.0)

    def cost(u: np.ndarray) -> float:
        r = residuals(u)
        return float(r @ r)

    with np.errstate(all="ignore"):  # overflow on the way is expected and walled off above
        # Rank the cheap starts by cost and polish the best one with MINPACK's Levenberg-Marquardt
        # (a fraction of least_squares' per-call overhead, which the bootstrap's thousands of fits
        # need); the next start only if that one fails.
        starts = [_to_free(kinds, np.asarray(c, dtype=float)) for c in _candidates(form, free, n, y, sw**2)]
        starts = sorted((u for u in starts if np.all(np.isfinite(u))), key=cost)
        fallback: tuple[float, np.ndarray] | None = None
        for u0 in starts:
            u, _, _, _, status = leastsq(residuals, u0, Dfun=jacobian, full_output=True, ftol=1e-12, xtol=1e-12, maxfev=400)
            c = cost(u)
            if not np.all(np.isfinite(u)) or c >= 1e5 * float(sw @ sw):  # diverged or stuck on the wall
                continue
            if fallback is None or c < fallback[0]:
                fallback = (c, u)
            if status in (1, 2, 3, 4):  # converged; status 5 (out of evaluations) may still be the best there is
                break
    if fallback is None:
        return None
    params = tuple(float(v) for v in _from_free(kinds, fallback[1]))
    return FittedCurve(form=form, params=params, free_ceiling=free, rmse=math.sqrt(fallback[0] / float(sw @ sw)))


def fit_form(form: str, budgets: np.ndarray, accuracies: np.ndarray) -> FittedCurve | None:
    """Fit `form` to per-draw points: budgets [N] (labels per class, repeats allowed) and accuracies
    [N] (fractions). Uses the 3-parameter version on >= 4 distinct budgets, else the 2-parameter one
    (module docstring). None if the fit fails or rests on fewer than 2 distinct budgets."""
    n, y, w = _means(budgets, accuracies)
    return _fit_means(form, n, y, w)


def _lobo_predictions(n: np.ndarray, y: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """Per form, [K] predictions at each distinct budget n[k] of the fit on all other budgets
    (NaN where that fit failed). Inputs: distinct budgets, means and weights [K]."""
    out = {}
    for form in FORMS:
        preds = np.full(n.size, np.nan)
        for k in range(n.size):
            keep = np.arange(n.size) != k
            curve = _fit_means(form, n[keep], y[keep], w[keep])
            if curve is not None:
                preds[k] = float(curve.predict(n[k]))
        out[form] = preds
    return out


def _lobo_errors(y: np.ndarray, preds: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean absolute held-out error per form (inf if any fold failed); y: means [K]."""
    return {f: float(np.mean(np.abs(p - y))) if np.all(np.isfinite(p)) else math.inf for f, p in preds.items()}


def _best(errors: dict[str, float]) -> str:
    """The form with the lowest error (ties: FORMS order); ValueError if every form failed."""
    form = min(FORMS, key=lambda f: errors[f])
    if not math.isfinite(errors[form]):
        raise ValueError("no form could be fitted in every leave-one-budget-out fold")
    return form


def choose_form(budgets: np.ndarray, accuracies: np.ndarray) -> tuple[str, dict[str, float]]:
    """Leave-one-budget-out choice of form from per-draw budgets [N] and accuracies [N]: each form is
    fitted on all distinct budgets but one and scored by the absolute error on the held-out budget's
    mean, averaged over budgets. Returns (form with the lowest error, {form: error}); a form with a
    failed fold scores inf. ValueError on fewer than 3 distinct budgets (a fold would rest on one)."""
    n, y, w = _means(budgets, accuracies)
    if n.size < 3:
        raise ValueError(f"choose_form needs at least 3 distinct budgets (labels per class), got {n.size}: {n.tolist()}")
    errors = _lobo_errors(y, _lobo_predictions(n, y, w))
    return _best(errors), errors


@dataclass(frozen=True)
class Extrapolation:
    """Result of `extrapolate`. Labels are per class; accuracies are fractions."""

    form: str  # chosen by leave-one-budget-out on the full data
    budgets: list[float]  # distinct budgets the fit rests on
    lobo_errors: dict[str, float]  # full-data leave-one-budget-out mean absolute error per form
    predictions: list[dict]  # per predict_at n: {"labels", "median", "low", "high", "extrapolated": n > max budget}
    needed: list[dict]  # per target: {"target", "median", "low", "high", "extrapolated": median > max budget}; inf = not reached
    band: dict[str, list[float]]  # {"labels", "median", "low", "high"} on a log-spaced grid, for plotting
    free_ceiling: bool = False  # whether the full-data fits use the 3-parameter versions
    n_replicates: int = 0  # bootstrap replicates whose fits succeeded (the quantiles rest on these)


@dataclass(frozen=True)
class _Replicate:
    """One bootstrap replicate: its chosen form's curve, and how it is widened beyond n_max (module docstring)."""

    curve: FittedCurve
    n_max: float
    gain: float  # fraction of the curve's logit gain beyond n_max that is realised: u ~ U(0, 1) if the ceiling is pinned, else 1
    slope: float  # logits per unit log(n / n_max) added: z * sigma (module docstring)

    def predict(self, n: np.ndarray) -> np.ndarray:
        """Widened accuracy at n [M] -> [M]; the plain curve up to n_max."""
        p = self.curve.predict(n)
        beyond = np.log(np.maximum(n, self.n_max) / self.n_max)
        at_max = self.curve.predict(self.n_max)
        base = _logit(at_max)
        # Floored at the value at n_max: a mean learning curve does not fall, however large the error scale.
        widened = np.maximum(_expit(base + self.gain * (_logit(p) - base) + self.slope * beyond), at_max)
        return np.where(beyond > 0, widened, p)


def _replicate(n: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[FittedCurve, float] | None:
    """Choose by LOBO and fit on one set of means y [K] at distinct budgets n [K] (weights w [K]).
    Returns (the chosen form's fit on all budgets, |r|: its logit residual at the largest budget when
    fitted without it), or None if no form survives every fold or the full fit fails."""
    preds = _lobo_predictions(n, y, w)
    try:
        form = _best(_lobo_errors(y, preds))
    except ValueError:
        return None
    curve = _fit_means(form, n, y, w)
    if curve is None:
        return None
    return curve, abs(float(_logit(y[-1:])[0] - _logit(preds[form][-1:])[0]))


def _quantiles(values: np.ndarray, interval: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(median, low, high) over axis 0 of values [B, ...]; inf-safe (inverted-CDF, no interpolation)."""
    qs = [0.5, (1 - interval) / 2, (1 + interval) / 2]
    if np.all(np.isfinite(values)):
        out = np.quantile(values, qs, axis=0)
    else:  # interpolating between a finite value and inf gives NaN; pick order statistics instead
        out = np.quantile(values, qs, axis=0, method="inverted_cdf")
    return out[0], out[1], out[2]


def _bootstrap(groups: list[np.ndarray], n: np.ndarray, n_boot: int, seed: int) -> list[_Replicate]:
    """n_boot replicates, each budget's draws (groups[k], shape [D_k]) resampled with replacement,
    each widened beyond the largest budget (module docstring)."""
    rng = np.random.default_rng(seed)
    w = np.array([g.size for g in groups], dtype=float)
    fits, z, u = [], [], []
    for _ in range(n_boot):
        y = np.array([rng.choice(g, size=g.size, replace=True).mean() for g in groups])
        zb, ub = rng.standard_normal(), rng.uniform()  # drawn for every replicate: the stream stays aligned
        fit = _replicate(n, y, w)
        if fit is not None:
            fits.append(fit)
            z.append(float(zb))
            u.append(float(ub))
    if not fits:
        return []
    # One error scale for all replicates: 1.4826 x the median |r| estimates a normal error's standard
    # deviation and, unlike each replicate's own |r|, is not thrown by a replicate whose fold ran off.
    sigma = 1.4826 * float(np.median([r for _, r in fits])) / math.log(n[-1] / n[-2])
    n_max = float(n[-1])
    # A pinned ceiling (accuracy 1) is the most optimistic ceiling there is, and a mean learning curve
    # does not fall: the truth beyond n_max lies between the flat continuation and the fitted gain.
    return [_Replicate(curve=c, n_max=n_max, gain=1.0 if c.free_ceiling else ub, slope=zb * sigma) for (c, _), zb, ub in zip(fits, z, u)]


def extrapolate(
    draws: dict[float, list[float]],
    *,
    predict_at: Iterable[float] = (),
    targets: Iterable[float] = (),
    band_to: float | None = None,
    interval: float = 0.8,
    n_boot: int = 200,
    seed: int = 0,
    max_labels: float = 1e6,
) -> Extrapolation:
    """Extrapolate a learning curve with an interval (scheme: module docstring).

    draws: labels per class -> test accuracies (fractions) of that budget's label draws; >= 3 distinct
    budgets. predict_at: labels per class to predict at. targets: accuracies to find the labels for
    (math.inf where not reached by max_labels). band_to: end of the plotting grid (default: the largest
    of the budgets and predict_at). interval: central mass of low..high."""
    items = sorted((float(k), np.asarray(v, dtype=float)) for k, v in draws.items() if len(v) > 0)
    n = np.array([k for k, _ in items])
    groups = [v for _, v in items]
    if n.size < 3 or np.any(n <= 0):
        raise ValueError(f"extrapolate needs draws at >= 3 distinct positive budgets, got {n.tolist()}")
    flat_n = np.concatenate([np.full(g.size, k) for k, g in zip(n, groups)])
    form, errors = choose_form(flat_n, np.concatenate(groups))
    reps = _bootstrap(groups, n, n_boot, seed)
    if not reps:
        raise ValueError("no bootstrap replicate could be fitted")
    at = np.array(list(predict_at), dtype=float)
    n_max = float(n[-1])
    predictions = []
    if at.size:
        med, low, high = _quantiles(np.stack([r.predict(at) for r in reps]), interval)
        for i, x in enumerate(at):
            predictions.append(
                {"labels": float(x), "median": float(med[i]), "low": float(low[i]), "high": float(high[i]), "extrapolated": bool(x > n_max)}
            )
    needed = []
    lo = min(1.0, float(n[0]))
    for t in targets:
        med, low, high = _quantiles(np.array([_first_crossing(r.predict, float(t), lo, max_labels) for r in reps]), interval)
        needed.append({"target": float(t), "median": float(med), "low": float(low), "high": float(high), "extrapolated": bool(med > n_max)})
    end = max([n_max, *at.tolist()]) if band_to is None else float(band_to)
    grid = np.geomspace(float(n[0]), max(end, float(n[0])), 50)
    med, low, high = _quantiles(np.stack([r.predict(grid) for r in reps]), interval)
    band = {"labels": grid.tolist(), "median": med.tolist(), "low": low.tolist(), "high": high.tolist()}
    return Extrapolation(
        form=form,
        budgets=n.tolist(),
        lobo_errors=errors,
        predictions=predictions,
        needed=needed,
        band=band,
        free_ceiling=n.size >= MIN_FREE_BUDGETS,
        n_replicates=len(reps),
    )
