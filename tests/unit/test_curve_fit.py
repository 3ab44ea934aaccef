"""rayssl.tune.curve_fit: learning-curve fits, form choice and extrapolation intervals (numpy/scipy only)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rayssl.tune.curve_fit import FORMS, FittedCurve, choose_form, extrapolate, fit_form

# One generating curve per form (3-parameter version), each rising from well below to well above the
# middle of [0, 1] over 1..100 labels per class, with a ceiling below 1 so the free ceiling matters.
FULL = {"power_law": (0.97, 0.6, 0.7), "arctan": (0.05, 0.3, -0.02), "logarithmic": (0.08, 0.5, 0.4), "algebraic_root": (0.2, 0.8, -0.03)}
# 2-parameter versions (ceiling pinned at 1; logarithmic: θ2 = 0).
PINNED = {"power_law": (0.6, 0.7), "arctan": (0.2, 0.1), "logarithmic": (0.1, 0.4), "algebraic_root": (0.3, 1.5)}
MANY = np.array([1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0])
FEW = np.array([1.0, 5.0, 10.0])


def noisy_power_law(seed: int, budgets: list[float]) -> tuple[dict[float, list[float]], FittedCurve]:
    """Three draws per budget of v = 0.95 - 0.55 n^-0.6 with N(0, 0.005) noise, and the true curve."""
    truth = FittedCurve("power_law", (0.95, 0.55, 0.6), free_ceiling=True)
    rng = np.random.default_rng(seed)
    return {n: list(truth.predict(n) + rng.normal(0.0, 0.005, 3)) for n in budgets}, truth


@pytest.mark.parametrize("form", FORMS)
def test_three_parameter_fit_recovers_its_generator(form: str) -> None:
    truth = FittedCurve(form, FULL[form], free_ceiling=True)
    fit = fit_form(form, MANY, truth.predict(MANY))
    assert fit is not None and fit.free_ceiling
    np.testing.assert_allclose(fit.params, FULL[form], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fit.predict(200.0), truth.predict(200.0), atol=1e-6)


@pytest.mark.parametrize("form", FORMS)
def test_two_parameter_fit_on_three_budgets_recovers_its_generator(form: str) -> None:
    truth = FittedCurve(form, PINNED[form], free_ceiling=False)
    # Repeated budgets (draws) count as one budget each: three distinct budgets -> the 2-parameter version.
    budgets = np.repeat(FEW, 3)
    fit = fit_form(form, budgets, truth.predict(budgets))
    assert fit is not None and not fit.free_ceiling
    np.testing.assert_allclose(fit.params, PINNED[form], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fit.predict(20.0), truth.predict(20.0), atol=1e-6)


def test_fit_on_one_budget_returns_none() -> None:
    assert fit_form("power_law", np.array([5.0, 5.0, 5.0]), np.array([0.8, 0.81, 0.79])) is None


def test_predictions_are_clipped_to_unit_interval() -> None:
    log_curve = FittedCurve("logarithmic", (0.2, 0.0), free_ceiling=False)  # 0.2 log n: negative below 1, above 1 past e^5
    assert float(log_curve.predict(0.5)) == 0.0
    assert float(log_curve.predict(1e4)) == 1.0


def test_labels_for_inverts_a_power_law() -> None:
    # 1 - 0.5 / sqrt(n) = 0.9  <=>  sqrt(n) = 5  <=>  n = 25, with the ceiling free or pinned at 1.
    assert FittedCurve("power_law", (1.0, 0.5, 0.5), free_ceiling=True).labels_for(0.9) == pytest.approx(25.0, rel=1e-6)
    assert FittedCurve("power_law", (0.5, 0.5), free_ceiling=False).labels_for(0.9) == pytest.approx(25.0, rel=1e-6)
    # Above the ceiling: never reached; reached already at the smallest n: that n.
    assert FittedCurve("power_law", (0.95, 0.5, 0.5), free_ceiling=True).labels_for(0.96) == math.inf
    assert FittedCurve("power_law", (1.0, 0.5, 0.5), free_ceiling=True).labels_for(0.4) == 1.0


@pytest.mark.parametrize("form", FORMS)
def test_labels_for_inverts_predict(form: str) -> None:
    curve = FittedCurve(form, FULL[form], free_ceiling=True)
    n = curve.labels_for(0.75)
    assert 1.0 < n < 1e6
    assert float(curve.predict(n)) == pytest.approx(0.75, abs=1e-8)
    assert float(curve.predict(n * 0.99)) < 0.75


@pytest.mark.parametrize("form", FORMS)
def test_choose_form_picks_the_generating_form(form: str) -> None:
    chosen, errors = choose_form(MANY, FittedCurve(form, FULL[form], free_ceiling=True).predict(MANY))
    assert chosen == form
    assert set(errors) == set(FORMS)
    # The generator is recovered in every fold; every other form misses by at least half a point.
    assert errors[form] < 1e-6
    assert min(e for f, e in errors.items() if f != form) > 5e-3


def test_choose_form_needs_three_budgets() -> None:
    with pytest.raises(ValueError, match="at least 3 distinct budgets"):
        choose_form(np.array([1.0, 1.0, 10.0, 10.0]), np.array([0.4, 0.5, 0.9, 0.91]))


def test_interval_widens_when_budgets_are_removed() -> None:
    draws, _ = noisy_power_law(0, [1, 5, 10, 50, 100])
    five = extrapolate(draws, predict_at=(200,), n_boot=100)
    three = extrapolate({n: v for n, v in draws.items() if n <= 10}, predict_at=(200,), n_boot=100)
    assert five.free_ceiling and not three.free_ceiling
    width = {k: e.predictions[0]["high"] - e.predictions[0]["low"] for k, e in (("five", five), ("three", three))}
    assert width["three"] > 2 * width["five"] > 0


def test_interval_contains_the_truth_of_a_noisy_power_law() -> None:
    draws, truth = noisy_power_law(2, [1, 5, 10, 50, 100])
    ex = extrapolate(draws, predict_at=(30, 200, 400), targets=(0.925,), band_to=1000)
    assert ex.budgets == [1, 5, 10, 50, 100]
    for p in ex.predictions:
        true = float(truth.predict(p["labels"]))
        assert p["low"] <= true <= p["high"], p
        assert abs(p["median"] - true) < 0.01, p
        assert p["low"] <= p["median"] <= p["high"]
    assert [p["extrapolated"] for p in ex.predictions] == [False, True, True]
    need, true_n = ex.needed[0], truth.labels_for(0.925)  # about 179 labels per class
    assert need["low"] <= true_n <= need["high"], need
    assert need["extrapolated"] == (need["median"] > 100)
    band = ex.band
    assert band["labels"][0] == 1 and band["labels"][-1] == pytest.approx(1000)
    assert all(lo <= m <= hi for lo, m, hi in zip(band["low"], band["median"], band["high"]))


def test_extrapolate_is_deterministic_for_a_seed() -> None:
    draws, _ = noisy_power_law(1, [1, 5, 10])
    run = [extrapolate(draws, predict_at=(100,), targets=(0.9,), n_boot=30, seed=s) for s in (3, 3, 4)]
    assert run[0] == run[1]
    assert run[0].predictions != run[2].predictions


def test_extrapolate_needs_three_budgets() -> None:
    with pytest.raises(ValueError, match=">= 3 distinct positive budgets"):
        extrapolate({1: [0.4, 0.5], 10: [0.9]})
