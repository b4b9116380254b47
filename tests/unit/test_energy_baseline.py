"""The ISO 50006 baseline: least squares as numpy's lstsq, refusals, expected energy and
the CUSUM of savings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattline.ingest.reports.baseline import (
    MIN_PERIODS,
    BaselineRefused,
    fit_baseline,
    savings_against,
)


def _plant(rng: np.random.Generator, n: int, *, base: float = 2000.0, per_t: float = 110.0,
           noise: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """n periods of a line: production around 100 t, energy base + per_t x P with noise."""
    production = rng.uniform(60.0, 140.0, n)
    energy = (base + per_t * production) * (1.0 + rng.normal(0.0, noise, n))
    return energy, production


def _lstsq(energy: np.ndarray, *columns: np.ndarray) -> tuple[np.ndarray, float]:
    design = np.column_stack([np.ones(len(energy)), *columns])
    coef, residual, _, _ = np.linalg.lstsq(design, energy, rcond=None)
    ss_tot = float(((energy - energy.mean()) ** 2).sum())
    return coef, 1.0 - float(residual[0]) / ss_tot


def test_coefficients_and_r_squared_are_those_of_numpy_lstsq() -> None:
    energy, production = _plant(np.random.default_rng(1), 30)
    model = fit_baseline(energy, production)
    coef, r2 = _lstsq(energy, production)
    assert model.intercept == pytest.approx(coef[0], rel=1e-9)
    assert model.slope == pytest.approx(coef[1], rel=1e-9)
    assert model.r_squared == pytest.approx(r2, rel=1e-12)
    assert model.periods == 30
    assert model.variables == ("production_t",)


def test_a_relevant_variable_is_fitted_with_production() -> None:
    rng = np.random.default_rng(2)
    production = rng.uniform(60.0, 140.0, 24)
    degree_days = rng.uniform(0.0, 20.0, 24)
    energy = 500.0 + 90.0 * production + 40.0 * degree_days + rng.normal(0.0, 20.0, 24)
    model = fit_baseline(energy, production, {"degree_days": degree_days})
    coef, r2 = _lstsq(energy, production, degree_days)
    np.testing.assert_allclose([model.intercept, *model.coefficients], coef, rtol=1e-9)
    assert model.r_squared == pytest.approx(r2, rel=1e-12)
    assert model.variables == ("production_t", "degree_days")
    expected = model.expected([100.0], {"degree_days": [10.0]})
    assert expected[0] == pytest.approx(coef[0] + coef[1] * 100.0 + coef[2] * 10.0)


# R^2 is 1 - residual/total sum of squares: with a large fixed energy and little spread in
# production the two sums cancel to a few digits, and two correct least-squares solvers were
# seen to differ by 1e-9 (0.5523320881 against 0.5523320891). A report shows R^2 to 3 places.
R2_ROUNDING = 1e-7


@settings(max_examples=60, deadline=None)
@given(n=st.integers(MIN_PERIODS, 80), seed=st.integers(0, 2**32 - 1),
       base=st.floats(0.0, 1e6), per_t=st.floats(0.1, 1e4),
       noise=st.floats(0.0, 0.05), scale=st.sampled_from([1e-2, 1.0, 1e3, 1e5]))
def test_any_plant_is_fitted_as_lstsq_fits_it(n: int, seed: int, base: float, per_t: float,
                                              noise: float, scale: float) -> None:
    rng = np.random.default_rng(seed)
    production = rng.uniform(0.5, 1.5, n) * scale
    energy = (base + per_t * production) * (1.0 + rng.normal(0.0, noise, n))
    coef, r2 = _lstsq(energy, production)
    try:
        model = fit_baseline(energy, production)
    except BaselineRefused as refused:
        assert refused.reason == "low_r_squared"
        assert r2 < 0.75
        assert refused.r_squared == pytest.approx(r2, abs=R2_ROUNDING)
        return
    assert r2 >= 0.75 - R2_ROUNDING
    assert model.r_squared == pytest.approx(r2, abs=R2_ROUNDING)
    fitted = model.expected(production)
    np.testing.assert_allclose(fitted, np.column_stack([np.ones(n), production]) @ coef,
                               rtol=1e-8, atol=1e-8 * float(np.abs(energy).max()))
    assert model.slope == pytest.approx(coef[1], rel=1e-6, abs=1e-9 * abs(base) / scale)


def test_fewer_than_twelve_periods_are_refused_saying_how_many_are_needed() -> None:
    energy, production = _plant(np.random.default_rng(3), MIN_PERIODS - 1)
    with pytest.raises(BaselineRefused, match=r"holds 11 period.*at least 12") as refused:
        fit_baseline(energy, production)
    assert refused.value.reason == "too_few_periods"
    fit_baseline(*_plant(np.random.default_rng(3), MIN_PERIODS))  # twelve are enough


def test_a_model_below_r_squared_075_is_refused_with_its_r_squared() -> None:
    rng = np.random.default_rng(4)
    production = rng.uniform(90.0, 110.0, 40)
    energy = 11_000.0 + rng.normal(0.0, 500.0, 40)  # energy that production does not drive
    _, r2 = _lstsq(energy, production)
    with pytest.raises(BaselineRefused, match=rf"R\^2 {r2:.3f} over 40 periods, below 0.75"
                       ) as refused:
        fit_baseline(energy, production)
    assert refused.value.reason == "low_r_squared"
    assert refused.value.r_squared == pytest.approx(r2)


def test_a_production_that_never_changes_is_refused() -> None:
    with pytest.raises(BaselineRefused, match="production_t does not vary") as refused:
        fit_baseline(np.linspace(100.0, 200.0, 14), np.full(14, 50.0))
    assert refused.value.reason == "no_variation"


def test_a_value_that_is_not_finite_is_refused() -> None:
    energy, production = _plant(np.random.default_rng(5), 20)
    energy[3] = np.nan
    with pytest.raises(BaselineRefused) as refused:
        fit_baseline(energy, production)
    assert refused.value.reason == "not_finite"


def test_a_5_percent_saving_gives_a_cusum_slope_of_5_percent_of_expected_energy() -> None:
    rng = np.random.default_rng(6)
    model = fit_baseline(*_plant(rng, 60))
    report_production = rng.uniform(60.0, 140.0, 90)
    as_before = 2000.0 + 110.0 * report_production
    actual = 0.95 * as_before * (1.0 + rng.normal(0.0, 0.01, 90))
    result = savings_against(model, actual, report_production)
    assert result.slope_share == pytest.approx(0.05, abs=0.002)
    assert result.total_share == pytest.approx(0.05, abs=0.002)
    np.testing.assert_allclose(result.saving, result.expected - actual)
    np.testing.assert_allclose(result.cusum, np.cumsum(result.expected - actual))


def test_a_line_as_good_as_its_baseline_has_a_flat_cusum() -> None:
    rng = np.random.default_rng(7)
    model = fit_baseline(*_plant(rng, 60))
    energy, production = _plant(rng, 90)
    result = savings_against(model, energy, production)
    assert abs(result.slope_share) < 0.002


def test_a_drift_to_more_energy_gives_a_falling_cusum() -> None:
    rng = np.random.default_rng(8)
    model = fit_baseline(*_plant(rng, 30))
    energy, production = _plant(rng, 30, noise=0.0)
    result = savings_against(model, energy * 1.03, production)
    assert result.slope_share == pytest.approx(-0.03, abs=0.002)
    assert (np.diff(result.cusum) < 0).mean() > 0.8


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), factor=st.floats(0.5, 1.5),
       n=st.integers(2, 60))
def test_a_line_at_a_factor_of_its_expected_energy_has_that_cusum_slope(
    seed: int, factor: float, n: int,
) -> None:
    rng = np.random.default_rng(seed)
    model = fit_baseline(*_plant(rng, 24))
    production = rng.uniform(60.0, 140.0, n)
    result = savings_against(model, factor * model.expected(production), production)
    assert result.total_share == pytest.approx(1.0 - factor, abs=1e-9)
    assert result.cusum[-1] == pytest.approx(result.saving.sum(), rel=1e-9, abs=1e-6)
    steady = np.full(n, production[0])  # every period alike: the CUSUM is a straight line
    straight = savings_against(model, factor * model.expected(steady), steady)
    assert straight.slope_share == pytest.approx(1.0 - factor, abs=1e-9)
