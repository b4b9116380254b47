"""An ISO 50006 energy baseline: a line's energy explained by its production, and the
savings against it.

Over a baseline period of at least ``MIN_PERIODS`` periods (days, shifts or months), the
energy of each period is fitted by ordinary least squares to

    E = a + b x P (+ c1 x V1 + c2 x V2 ...)

where ``P`` is the period's production and ``V1 ...`` are optional relevant variables
(degree-days, a raw-material moisture, anything else that drives energy). The model is
kept only if it explains the baseline well (R^2 at least ``MIN_R_SQUARED``); otherwise,
or with too few periods, ``BaselineRefused`` says why, and the report shows no model.
Over the report period the model gives each period's expected energy from what the line
made; ``expected - actual`` is the period's saving (negative: more energy than the
baseline would have used), and its running sum the CUSUM of savings: a straight rising
CUSUM is a steady saving, its slope the saving per period.

Pure functions over NumPy arrays: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from wattline.contract.errors import WattlineError

__all__ = [
    "BASELINE_REFUSALS",
    "MIN_PERIODS",
    "MIN_R_SQUARED",
    "BaselineModel",
    "BaselineRefused",
    "Savings",
    "fit_baseline",
    "savings_against",
]

MIN_PERIODS = 12
"""Fewest baseline periods a model is fitted on (a year of months, twelve days, ...)."""

MIN_R_SQUARED = 0.75
"""Least share of the baseline's energy variance the model must explain to be used."""

BASELINE_REFUSALS = ("too_few_periods", "low_r_squared", "no_variation", "not_finite")
"""Why a baseline is refused (``BaselineRefused.reason``)."""


class BaselineRefused(WattlineError):
    """No baseline model for these periods; ``reason`` is one of ``BASELINE_REFUSALS``,
    ``r_squared`` the fit's R^2 where one was computed."""

    def __init__(self, reason: str, message: str, *, periods: int,
                 r_squared: float | None = None) -> None:
        if reason not in BASELINE_REFUSALS:
            raise ValueError(f"unknown baseline refusal {reason!r}")
        super().__init__(reason, message)
        self.reason = reason
        self.message = message
        self.periods = periods
        self.r_squared = r_squared

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class BaselineModel:
    """``E = intercept + sum(coefficients[i] x variable i)``; the first variable is
    production (t), the others the relevant variables in the order fitted."""

    intercept: float  # energy per period at no production (base load), in E's unit
    coefficients: tuple[float, ...]
    variables: tuple[str, ...]  # "production_t", then the relevant variables' names
    r_squared: float
    periods: int  # how many baseline periods it was fitted on
    residual_sd: float  # standard deviation of the residuals, in E's unit

    @property
    def slope(self) -> float:
        """Energy per tonne beyond the base load (``b``)."""
        return self.coefficients[0]

    def expected(self, production: Sequence[float] | np.ndarray,
                 variables: Mapping[str, Sequence[float] | np.ndarray] | None = None
                 ) -> np.ndarray:
        """The energy the model expects of periods with this production (and variables)."""
        columns = _columns(production, variables or {}, self.variables)
        return self.intercept + columns @ np.asarray(self.coefficients, dtype=np.float64)


@dataclass(frozen=True)
class Savings:
    """Per report period: expected and actual energy, the saving (expected - actual) and
    the CUSUM (the savings' running sum)."""

    expected: np.ndarray
    actual: np.ndarray
    saving: np.ndarray
    cusum: np.ndarray

    @property
    def total_share(self) -> float:
        """The whole report period's saving as a share of its expected energy."""
        total = float(self.expected.sum())
        return float(self.cusum[-1]) / total if len(self.cusum) and total else float("nan")

    @property
    def slope_share(self) -> float:
        """The CUSUM's least-squares slope per period, as a share of the mean expected
        energy per period (0.05: the line saves 5 % of what the baseline expects)."""
        n = len(self.cusum)
        mean_expected = float(self.expected.mean()) if n else 0.0
        if n < 2 or not mean_expected:
            return float("nan")
        k = np.arange(1, n + 1, dtype=np.float64)
        k -= k.mean()
        slope = float(k @ (self.cusum - self.cusum.mean()) / (k @ k))
        return slope / mean_expected


def _columns(production: Sequence[float] | np.ndarray,
             variables: Mapping[str, Sequence[float] | np.ndarray],
             names: Sequence[str]) -> np.ndarray:
    """The design columns (without the intercept) in ``names`` order."""
    p = np.asarray(production, dtype=np.float64)
    missing = [n for n in names[1:] if n not in variables]
    if missing:
        raise ValueError(f"relevant variable(s) {', '.join(missing)} not given")
    cols = [p] + [np.asarray(variables[n], dtype=np.float64) for n in names[1:]]
    for name, col in zip(names, cols, strict=True):
        if col.shape != p.shape:
            raise ValueError(f"{name} has {col.shape[0]} values for {p.shape[0]} periods")
    return np.column_stack(cols) if len(p) else np.empty((0, len(names)))


def fit_baseline(energy: Sequence[float] | np.ndarray,
                 production: Sequence[float] | np.ndarray,
                 variables: Mapping[str, Sequence[float] | np.ndarray] | None = None, *,
                 min_periods: int = MIN_PERIODS,
                 min_r_squared: float = MIN_R_SQUARED) -> BaselineModel:
    """Fit ``E = a + b x P (+ c x V ...)`` by least squares over the baseline periods.

    Raises ``BaselineRefused`` with fewer than ``min_periods`` periods (or no more
    periods than the model has coefficients), values that are not finite, a production
    or variable that does not vary (the model cannot tell base load from slope), energy
    that does not vary (nothing to explain) or an R^2 below ``min_r_squared``.
    """
    variables = dict(variables or {})
    names = ("production_t", *variables)
    e = np.asarray(energy, dtype=np.float64)
    x = _columns(production, variables, names)
    n, k = x.shape[0], x.shape[1] + 1
    if e.shape != (n,):
        raise ValueError(f"energy has {e.shape} values for {n} periods")
    needed = max(min_periods, k + 1)
    if n < needed:
        raise BaselineRefused(
            "too_few_periods", f"the baseline period holds {n} period(s) with production "
            f"figures; a baseline needs at least {needed}: give a longer baseline period",
            periods=n)
    if not (np.isfinite(e).all() and np.isfinite(x).all()):
        raise BaselineRefused("not_finite", "the baseline periods hold a value that is not "
                              "a finite number", periods=n)
    design = np.column_stack([np.ones(n), x])
    # Centred and scaled columns: a constant one shows as a zero column, and the QR
    # solve stays well conditioned whatever the units.
    centred = x - x.mean(axis=0)
    scale = np.sqrt((centred ** 2).sum(axis=0))
    flat = [name for name, s, col in zip(names, scale, x.T, strict=True)
            if not s > 1e-12 * max(1.0, float(np.abs(col).max()))]
    if flat:
        raise BaselineRefused(
            "no_variation", f"{', '.join(flat)} does not vary over the baseline periods, so "
            "the model cannot separate base load from energy per unit: choose a baseline "
            "period with different production levels", periods=n)
    q, r = np.linalg.qr(np.column_stack([np.ones(n), centred / scale]))
    diagonal = np.abs(np.diag(r))
    if diagonal.min() < 1e-10 * diagonal.max():
        raise BaselineRefused(
            "no_variation", f"{', '.join(names)} move together over the baseline periods, so "
            "their effects cannot be told apart: drop a relevant variable", periods=n)
    solved = np.linalg.solve(r, q.T @ e)
    coefficients = solved[1:] / scale
    intercept = float(solved[0] - x.mean(axis=0) @ coefficients)
    residuals = e - design @ np.concatenate([[intercept], coefficients])
    total = float(((e - e.mean()) ** 2).sum())
    if not total > 0:
        raise BaselineRefused("no_variation", "the energy does not vary over the baseline "
                              "periods: there is nothing for a model to explain", periods=n)
    r_squared = 1.0 - float(residuals @ residuals) / total
    if r_squared < min_r_squared:
        raise BaselineRefused(
            "low_r_squared", f"the baseline model explains too little of the energy: R^2 "
            f"{r_squared:.3f} over {n} periods, below {min_r_squared:g} (ISO 50006 practice); "
            "production alone does not predict this line's energy. Add a relevant variable, "
            "use longer periods (days or months instead of shifts), or choose a steadier "
            "baseline period", periods=n, r_squared=r_squared)
    return BaselineModel(
        intercept=intercept, coefficients=tuple(float(c) for c in coefficients),
        variables=names, r_squared=r_squared, periods=n,
        residual_sd=float(np.sqrt(residuals @ residuals / max(n - k, 1))))


def savings_against(model: BaselineModel, energy: Sequence[float] | np.ndarray,
                    production: Sequence[float] | np.ndarray,
                    variables: Mapping[str, Sequence[float] | np.ndarray] | None = None
                    ) -> Savings:
    """Expected vs actual energy over the report periods, in order, and the CUSUM."""
    actual = np.asarray(energy, dtype=np.float64)
    expected = model.expected(production, variables)
    if actual.shape != expected.shape:
        raise ValueError(f"energy has {actual.shape} values for {expected.shape} periods")
    saving = expected - actual
    return Savings(expected=expected, actual=actual, saving=saving, cusum=np.cumsum(saving))
