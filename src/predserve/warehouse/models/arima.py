"""ARIMA_PLUS's core: one forecasting model per time series, fitted the way BigQuery ML's reference
pages describe the pipeline, stored as plain data (NumPy arrays, never pickled).

Per series, in BigQuery's order:

1. **Regular grid.** The data frequency is the one given (``data_frequency``) or inferred from the
   most common gap (``AUTO_FREQUENCY``); values at one grid point are averaged and missing points
   are filled by linear interpolation, as BigQuery does.
2. **Spikes and dips** (``clean_spikes_and_dips``): points whose remainder (the series less its
   seasonal phase means and the median of its four neighbours) lies over 3 inter-quartile ranges outside the
   remainder's quartiles (R's ``tsoutliers`` rule) are replaced by the series less that
   remainder.
3. **Seasonal periods.** Each candidate period of the frequency (daily data: weekly and yearly)
   with at least two full cycles is kept when its seasonal strength (Wang, Smith & Hyndman:
   ``1 - var(remainder) / var(seasonal + remainder)`` of a classical decomposition, adjusted for
   the number of phase means as R² is for the number of parameters) reaches 0.64,
   the threshold of the ``seas`` test statsforecast and R's forecast package use for ``nsdiffs``
   (on the cleaned series).
4. **Decomposition and trend model**: statsforecast's ``MSTL`` (multiple STL) for the seasonal
   periods, with ``AutoARIMA`` (Hyndman-Khandakar, non-seasonal, AIC as BigQuery selects by, p
   and q each at most ``auto_arima_max_order``) or a fixed ``ARIMA`` (``non_seasonal_order``) on
   the seasonally adjusted series; without seasonal periods the ARIMA models the series itself.

Why statsforecast: its AutoARIMA is a port of R's ``auto.arima`` (the procedure BigQuery's
auto.ARIMA is described after: KPSS for d, drift considered when d is 1), it forecasts with the
exact state-space variance, and its stepwise search fits a 2-year daily series in about 0.3 s
here (bench/train.py times it). BigQuery bounds p + q by ``auto_arima_max_order``; the stepwise
search bounds p and q each (docs/sql.md).

The forecast for ``horizon`` points (mean and standard error) is computed at CREATE MODEL, as
BigQuery does, so ML.FORECAST for any ``confidence_level`` is a lookup and never needs the
library. Step changes (``adjust_step_changes``) are not detected and holiday effects are refused
(``holiday_region``): docs/sql.md lists both as differences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from predserve.warehouse.models.storage import (
    StoredModelError,
    array_field,
    array_to_data,
    bool_field,
    float_field,
    int_field,
    list_field,
    str_field,
)

MICROS = {"PER_MINUTE": 60 * 10**6, "HOURLY": 3600 * 10**6, "DAILY": 86400 * 10**6, "WEEKLY": 7 * 86400 * 10**6}
MONTHS = {"MONTHLY": 1, "QUARTERLY": 3, "YEARLY": 12}
FREQUENCIES = ("AUTO_FREQUENCY", *MICROS, *MONTHS)
# candidate seasonal periods per frequency, as (BigQuery's name, points per cycle)
SEASONS: dict[str, tuple[tuple[str, int], ...]] = {
    "PER_MINUTE": (("DAILY", 1440),),
    "HOURLY": (("DAILY", 24), ("WEEKLY", 168)),
    "DAILY": (("WEEKLY", 7), ("YEARLY", 365)),
    "WEEKLY": (("YEARLY", 52),),
    "MONTHLY": (("QUARTERLY", 3), ("YEARLY", 12)),
    "QUARTERLY": (("YEARLY", 4),),
    "YEARLY": (),
}
SEASON_NAMES = ("YEARLY", "QUARTERLY", "MONTHLY", "WEEKLY", "DAILY")  # ML.EXPLAIN_FORECAST's column order
SEASONAL_STRENGTH = 0.64
OUTLIER_IQRS = 3.0
MAX_HORIZON = 10_000
_SE_LEVEL = 80  # the library's interval level whose half-width gives the standard error back


class TimeSeriesError(ValueError):
    """A series or an option that ARIMA_PLUS cannot fit; the message says which and why."""


@dataclass(frozen=True)
class ArimaOptions:
    """CREATE MODEL's ARIMA_PLUS options (BigQuery's defaults)."""

    horizon: int = 1000
    auto_arima: bool = True
    auto_arima_max_order: int = 5
    non_seasonal_order: tuple[int, int, int] | None = None
    include_drift: bool = False
    data_frequency: str = "AUTO_FREQUENCY"
    decompose_time_series: bool = True
    clean_spikes_and_dips: bool = True
    adjust_step_changes: bool = True
    holiday_region: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.horizon <= MAX_HORIZON:
            raise TimeSeriesError(f"horizon must be between 1 and {MAX_HORIZON:,}, not {self.horizon}")
        if not 1 <= self.auto_arima_max_order <= 5:
            raise TimeSeriesError(f"auto_arima_max_order must be between 1 and 5, not {self.auto_arima_max_order}")
        if self.data_frequency.upper() not in FREQUENCIES:
            raise TimeSeriesError(f"data_frequency must be one of {', '.join(FREQUENCIES)}, not {self.data_frequency!r}")
        if self.auto_arima and self.non_seasonal_order is not None:
            raise TimeSeriesError("non_seasonal_order can only be set when auto_arima is FALSE")
        if not self.auto_arima:
            if self.non_seasonal_order is None:
                raise TimeSeriesError("auto_arima = FALSE needs non_seasonal_order = (p, d, q)")
            p, d, q = self.non_seasonal_order
            if not (0 <= p <= 5 and 0 <= d <= 2 and 0 <= q <= 5):
                raise TimeSeriesError(f"non_seasonal_order {self.non_seasonal_order} is out of range: p and q must be "
                                      "between 0 and 5, d between 0 and 2")
            if self.include_drift and d != 1:
                raise TimeSeriesError("include_drift can only be TRUE when non_seasonal_order's d is 1")
        elif self.include_drift:
            raise TimeSeriesError("include_drift can only be set when auto_arima is FALSE (auto.ARIMA decides drift)")
        if self.holiday_region is not None and self.holiday_region.upper() != "NONE":
            raise TimeSeriesError(f"holiday_region {self.holiday_region!r} is not supported: predserve models no "
                                  "holiday effects (leave holiday_region unset)")


@dataclass
class SeriesModel:
    """One fitted series: its grid, history (as decomposed), ARIMA and precomputed forecast."""

    frequency: str
    start: int  # the first grid point: microseconds since the epoch
    observed: np.ndarray  # bool per grid point: False where the value was interpolated
    data: np.ndarray  # the series on the grid (interpolated, before cleaning)
    spikes: np.ndarray  # spikes_and_dips: data minus the cleaned series (zeros when not cleaned)
    season_names: list[str]
    season_lengths: list[int]
    seasonal: np.ndarray  # (seasons, points)
    residuals: np.ndarray  # the ARIMA's one-step residuals on the seasonally adjusted series
    order: tuple[int, int, int]
    has_drift: bool
    ar: np.ndarray
    ma: np.ndarray
    intercept_or_drift: float
    log_likelihood: float
    aic: float
    variance: float
    mean: np.ndarray  # forecast, horizon points
    standard_error: np.ndarray
    cleaned_points: int = 0

    # ---- the grid -----------------------------------------------------------------------------
    @property
    def length(self) -> int:
        return len(self.data)

    def timestamps(self, first: int, count: int) -> np.ndarray:
        """Grid points ``first`` .. ``first + count - 1`` as datetime64[us]."""
        return grid_timestamps(self.frequency, self.start, first, count)

    def positions(self, timestamps: np.ndarray) -> np.ndarray:
        """Each timestamp's grid index (float: NaN where it falls between grid points)."""
        return grid_positions(self.frequency, self.start, timestamps)

    # ---- what the ML functions read -----------------------------------------------------------
    @property
    def adjusted(self) -> np.ndarray:
        return self.data - self.spikes

    @property
    def trend(self) -> np.ndarray:
        """The ARIMA's fitted values on the seasonally adjusted series."""
        return self.adjusted - self.seasonal.sum(axis=0) - self.residuals

    def seasonal_forecast(self, horizon: int) -> np.ndarray:
        """Each seasonal component carried forward (its last cycle repeated), (seasons, horizon)."""
        steps = np.arange(horizon)
        return np.array([s[self.length - p + steps % p] for s, p in zip(self.seasonal, self.season_lengths)]).reshape(
            len(self.season_lengths), horizon)

    def forecast(self, horizon: int, confidence_level: float) -> dict[str, np.ndarray]:
        """ML.FORECAST's columns for this series."""
        if not 1 <= horizon <= len(self.mean):
            raise TimeSeriesError(f"horizon must be between 1 and the model's horizon {len(self.mean)}, not {horizon}")
        if not 0 <= confidence_level < 1:
            raise TimeSeriesError(f"confidence_level must be in [0, 1), not {confidence_level}")
        mean, se = self.mean[:horizon], self.standard_error[:horizon]
        half = interval_quantile(confidence_level) * se
        return {"forecast_timestamp": self.timestamps(self.length, horizon), "forecast_value": mean,
                "standard_error": se, "confidence_level": np.full(horizon, confidence_level),
                "prediction_interval_lower_bound": mean - half, "prediction_interval_upper_bound": mean + half}

    def expected(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's value and standard error at grid positions: in-sample one-step fits in the
        history, the forecast after it, NaN elsewhere (off the grid, beyond the horizon)."""
        value = np.full(len(positions), np.nan)
        error = np.full(len(positions), np.nan)
        known = ~np.isnan(positions)
        index = np.where(known, positions, -1).astype(np.int64)
        history = known & (index >= 0) & (index < self.length)
        value[history] = (self.trend + self.seasonal.sum(axis=0))[index[history]]
        error[history] = math.sqrt(self.variance)
        ahead = known & (index >= self.length) & (index < self.length + len(self.mean))
        value[ahead] = self.mean[index[ahead] - self.length]
        error[ahead] = self.standard_error[index[ahead] - self.length]
        return value, error

    # ---- storage ------------------------------------------------------------------------------
    def to_data(self) -> dict[str, Any]:
        arrays = {name: array_to_data(np.asarray(getattr(self, name), dtype=np.float64))
                  for name in ("data", "spikes", "seasonal", "residuals", "ar", "ma", "mean", "standard_error")}
        return {**arrays, "frequency": self.frequency, "start": self.start,
                "observed": array_to_data(self.observed.astype(np.int64)),
                "season_names": list(self.season_names), "season_lengths": list(self.season_lengths),
                "order": list(self.order), "has_drift": self.has_drift,
                "intercept_or_drift": self.intercept_or_drift, "log_likelihood": self.log_likelihood,
                "aic": self.aic, "variance": self.variance, "cleaned_points": self.cleaned_points}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "SeriesModel":
        names = [str(n) for n in list_field(data, "season_names")]
        lengths = [int(n) for n in list_field(data, "season_lengths")]
        order = tuple(int(n) for n in list_field(data, "order"))
        model = cls(str_field(data, "frequency"), int_field(data, "start", low=-2**62),
                    array_field(data, "observed", 1).astype(bool), array_field(data, "data", 1),
                    array_field(data, "spikes", 1), names, lengths, array_field(data, "seasonal", 2),
                    array_field(data, "residuals", 1), order, bool_field(data, "has_drift"),  # type: ignore[arg-type]
                    array_field(data, "ar", 1), array_field(data, "ma", 1), float_field(data, "intercept_or_drift"),
                    float_field(data, "log_likelihood"), float_field(data, "aic"), float_field(data, "variance"),
                    array_field(data, "mean", 1), array_field(data, "standard_error", 1),
                    int_field(data, "cleaned_points"))
        n = model.length
        if (model.frequency not in SEASONS or len(order) != 3 or len(names) != len(lengths)
                or model.seasonal.shape != (len(lengths), n)
                or any(a.shape != (n,) for a in (model.observed, model.spikes, model.residuals))
                or model.mean.shape != model.standard_error.shape or any(p > n for p in lengths)):
            raise StoredModelError(f"the stored time series model ({model.frequency}, {n} points, seasons {names}, "
                                   f"order {order}) is inconsistent")
        return model


# ---- the grid ---------------------------------------------------------------------------------
def to_micros(timestamps: np.ndarray) -> np.ndarray:
    return np.asarray(timestamps).astype("datetime64[us]").astype(np.int64)


def _month_index(micros: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Months since 1970-01 of each timestamp, and the microseconds past that month's start."""
    stamps = micros.astype("datetime64[us]")
    months = stamps.astype("datetime64[M]")
    return months.astype(np.int64), micros - months.astype("datetime64[us]").astype(np.int64)


def grid_positions(frequency: str, start: int, timestamps: np.ndarray) -> np.ndarray:
    micros = to_micros(timestamps)
    if frequency in MICROS:
        offset = (micros - start).astype(np.float64) / MICROS[frequency]
    else:
        months, rest = _month_index(micros)
        first, first_rest = _month_index(np.array([start]))
        offset = (months - first[0]).astype(np.float64) / MONTHS[frequency]
        offset[rest != first_rest[0]] = np.nan
    return np.where(offset == np.round(offset), offset, np.nan)


def grid_timestamps(frequency: str, start: int, first: int, count: int) -> np.ndarray:
    steps = np.arange(first, first + count, dtype=np.int64)
    if frequency in MICROS:
        return (start + steps * MICROS[frequency]).astype("datetime64[us]")
    months, rest = _month_index(np.array([start]))
    month_starts = (months[0] + steps * MONTHS[frequency]).astype("datetime64[M]").astype("datetime64[us]")
    return month_starts + np.timedelta64(int(rest[0]), "us")


def infer_frequency(micros: np.ndarray) -> str:
    """AUTO_FREQUENCY: the frequency whose step is nearest the most common gap between points."""
    gaps = np.diff(np.unique(micros))
    if not len(gaps):
        raise TimeSeriesError("a time series needs at least two distinct timestamps to infer its data frequency")
    values, counts = np.unique(gaps, return_counts=True)
    days = values[np.argmax(counts)] / MICROS["DAILY"]
    for name, low, high in (("MONTHLY", 28, 31), ("QUARTERLY", 89, 92), ("YEARLY", 365, 366)):
        if low <= days <= high:
            return name
    nearest = min(MICROS, key=lambda name: abs(math.log(values[np.argmax(counts)] / MICROS[name])))
    if not 0.5 <= values[np.argmax(counts)] / MICROS[nearest] <= 2:
        raise TimeSeriesError(f"cannot infer the data frequency from a most common gap of {days:g} days; "
                              "set data_frequency")
    return nearest


def regular_grid(timestamps: np.ndarray, values: np.ndarray, frequency: str) -> tuple[str, int, np.ndarray, np.ndarray]:
    """(frequency, start, values on the grid with gaps interpolated, observed mask)."""
    micros = to_micros(timestamps)
    values = np.asarray(values, dtype=np.float64)
    keep = ~np.isnan(values)
    micros, values = micros[keep], values[keep]
    if len(micros) < 3:
        raise TimeSeriesError(f"a time series needs at least 3 points with values, this one has {len(micros)}")
    frequency = frequency.upper()
    if frequency == "AUTO_FREQUENCY":
        frequency = infer_frequency(micros)
    start = int(micros.min())
    raw = grid_positions(frequency, start, micros)
    if np.isnan(raw).any():
        bad = micros[np.isnan(raw)][0].astype("datetime64[us]")
        raise TimeSeriesError(f"timestamp {bad} is not on the {frequency} grid starting at "
                              f"{np.datetime64(start, 'us')}; aggregate the series to that frequency first")
    index = raw.astype(np.int64)
    n = int(index.max()) + 1
    sums = np.bincount(index, weights=values, minlength=n)
    counts = np.bincount(index, minlength=n)
    observed = counts > 0
    grid = np.full(n, np.nan)
    grid[observed] = sums[observed] / counts[observed]  # duplicates averaged
    points = np.arange(n)
    grid[~observed] = np.interp(points[~observed], points[observed], grid[observed])
    return frequency, start, grid, observed


# ---- seasonality and spikes -------------------------------------------------------------------
def _classical(x: np.ndarray, period: int) -> tuple[np.ndarray, np.ndarray]:
    """(trend, seasonal) of a classical decomposition: moving-average trend, phase means."""
    from scipy.ndimage import uniform_filter1d  # here, not at import: see interval_quantile

    trend = uniform_filter1d(x, size=period, mode="nearest")
    detrended = x - trend
    phase = np.arange(len(x)) % period
    means = np.bincount(phase, weights=detrended, minlength=period) / np.bincount(phase, minlength=period)
    return trend, (means - means.mean())[phase]


def seasonal_periods(x: np.ndarray, frequency: str) -> list[tuple[str, int]]:
    """The candidate periods with two full cycles whose seasonal strength reaches the threshold,
    shortest first, each tested once the kept shorter ones are removed. The strength is adjusted
    for the number of phase means, as R² is for the number of parameters: over two cycles, phase
    means take in half of any noise, which would otherwise pass for a yearly season."""
    kept = []
    n = len(x)
    for name, period in SEASONS[frequency]:
        if n < 2 * period:
            continue
        trend, seasonal = _classical(x, period)
        detrended = x - trend
        total = float(np.var(detrended))
        explained = 0.0 if total == 0 else 1.0 - float(np.var(detrended - seasonal)) / total
        if 1.0 - (1.0 - explained) * (n - 1) / (n - period) >= SEASONAL_STRENGTH:
            kept.append((name, period))
            x = x - seasonal
    return kept


def spikes_and_dips(x: np.ndarray, periods: Sequence[int]) -> np.ndarray:
    """The spike (or dip) at each point, zero where there is none: the series less its phase
    means over each period with at least four cycles (fewer would take in part of a spike) and
    less the median of its four nearest neighbours (a spike moves no neighbour's median), where
    that lies over 3 IQRs outside its quartiles."""
    adjusted = x
    for period in periods:
        if len(x) >= 4 * period:
            adjusted = adjusted - _classical(adjusted, period)[1]
    padded = np.pad(adjusted, 2, mode="reflect")
    n = len(adjusted)
    neighbours = np.stack([padded[0:n], padded[1:n + 1], padded[3:n + 3], padded[4:n + 4]])
    remainder = adjusted - np.median(neighbours, axis=0)
    q1, q3 = np.percentile(remainder, [25, 75])
    spread = OUTLIER_IQRS * (q3 - q1)
    outside = (remainder < q1 - spread) | (remainder > q3 + spread)
    return np.where(outside, remainder, 0.0)


# ---- fitting ----------------------------------------------------------------------------------
def trend_model(options: ArimaOptions) -> Any:
    """The statsforecast model that fits the (seasonally adjusted) series."""
    # imported on first fit: statsforecast (with pandas and statsmodels) takes ~1.5 s to import,
    # which every warehouse command would otherwise pay
    from statsforecast.models import ARIMA, AutoARIMA

    if options.auto_arima:
        m = options.auto_arima_max_order
        return AutoARIMA(max_p=m, max_q=m, max_order=m, seasonal=False, ic="aic")
    return ARIMA(order=options.non_seasonal_order, include_drift=options.include_drift)


def library_model(options: ArimaOptions, season_lengths: Sequence[int]) -> Any:
    """The unfitted statsforecast model for one series: MSTL around the trend model when the series
    has seasonal periods. bench/train.py fits this same model directly as its baseline."""
    from statsforecast.models import MSTL

    trend = trend_model(options)
    return MSTL(season_length=list(season_lengths), trend_forecaster=trend) if season_lengths else trend


def fit_series(timestamps: np.ndarray, values: np.ndarray, options: ArimaOptions = ArimaOptions()) -> SeriesModel:
    """Fit one series (any timestamp dtype NumPy reads; values may hold NaN for missing)."""
    frequency, start, data, observed = regular_grid(timestamps, values, options.data_frequency)
    candidates = [p for _, p in SEASONS[frequency] if len(data) >= 2 * p]
    spikes = spikes_and_dips(data, candidates) if options.clean_spikes_and_dips else np.zeros_like(data)
    cleaned = data - spikes
    seasons = seasonal_periods(cleaned, frequency)
    lengths = [p for _, p in seasons]
    model = library_model(options, lengths).fit(cleaned)
    arima = model.trend_forecaster if lengths else model
    if lengths:
        decomposition = model.model_
        seasonal = np.array([decomposition[f"seasonal{p}"].to_numpy() for p in lengths]) if len(lengths) > 1 else \
            decomposition[["seasonal"]].to_numpy().T
    else:
        seasonal = np.zeros((0, len(data)))
    forecast = model.predict(h=options.horizon, level=[_SE_LEVEL])
    mean = np.asarray(forecast["mean"], dtype=np.float64)
    se = (np.asarray(forecast[f"hi-{_SE_LEVEL}"], dtype=np.float64) - mean) / interval_quantile(_SE_LEVEL / 100)
    info = arima.model_
    coef = {k: float(v) for k, v in info["coef"].items()}
    p, q, _, _, _, d, _ = (int(v) for v in info["arma"])
    return SeriesModel(
        frequency, start, observed, data, spikes, [n for n, _ in seasons], lengths, seasonal,
        np.asarray(info["residuals"], dtype=np.float64), (p, d, q), "drift" in coef,
        np.array([coef[f"ar{i}"] for i in range(1, p + 1)]), np.array([coef[f"ma{i}"] for i in range(1, q + 1)]),
        coef.get("intercept", coef.get("drift", 0.0)), float(info["loglik"]), float(info["aic"]),
        float(info["sigma2"]), mean, se, int(np.count_nonzero(spikes)))


def interval_quantile(confidence_level: float) -> float:
    """The normal quantile whose ± interval holds ``confidence_level`` of the mass."""
    from scipy.stats import norm  # here, not at import: scipy.stats costs 0.4 s of every start, the export's included

    return float(norm.ppf(0.5 + confidence_level / 2))


# ---- the table functions' rows, per series ----------------------------------------------------
def explain_forecast(model: SeriesModel, horizon: int, confidence_level: float) -> dict[str, Any]:
    """ML.EXPLAIN_FORECAST's columns (history, then ``horizon`` forecast rows); a component the
    series does not have is None (NULL)."""
    n = model.length
    fc = model.forecast(horizon, confidence_level)
    future_seasonal = model.seasonal_forecast(horizon)
    history_error = np.full(n, math.sqrt(model.variance))
    nulls = np.full(n + horizon, np.nan)

    def joined(history: np.ndarray, future: np.ndarray | None) -> np.ndarray:
        return np.concatenate([history, np.full(horizon, np.nan) if future is None else future])

    columns: dict[str, Any] = {
        "time_series_timestamp": np.concatenate([model.timestamps(0, n), fc["forecast_timestamp"]]),
        "time_series_type": np.array(["history"] * n + ["forecast"] * horizon, dtype=object),
        "time_series_data": joined(model.data, fc["forecast_value"]),
        "time_series_adjusted_data": joined(model.adjusted, fc["forecast_value"]),
        "standard_error": joined(history_error, fc["standard_error"]),
        "confidence_level": joined(np.full(n, np.nan), fc["confidence_level"]),
        "prediction_interval_lower_bound": joined(np.full(n, np.nan), fc["prediction_interval_lower_bound"]),
        "prediction_interval_upper_bound": joined(np.full(n, np.nan), fc["prediction_interval_upper_bound"]),
        "trend": joined(model.trend, fc["forecast_value"] - future_seasonal.sum(axis=0)),
    }
    for name in SEASON_NAMES:
        key = f"seasonal_period_{name.lower()}"
        if name in model.season_names:
            i = model.season_names.index(name)
            columns[key] = joined(model.seasonal[i], future_seasonal[i])
        else:
            columns[key] = nulls
    columns["holiday_effect"] = nulls
    columns["spikes_and_dips"] = joined(model.spikes, None)
    columns["step_changes"] = nulls
    columns["residual"] = joined(model.residuals, None)
    return columns


def detect_anomalies(model: SeriesModel, threshold: float, timestamps: np.ndarray | None = None,
                     values: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """ML.DETECT_ANOMALIES's columns: the training points (observed, not interpolated) when no
    data is given, else the given points, each against the model's expectation there; points the
    model has no expectation for (off the grid, past the horizon) get NULL bounds and verdict."""
    if not 0 <= threshold < 1:
        raise TimeSeriesError(f"anomaly_prob_threshold must be in [0, 1), not {threshold}")
    if timestamps is None or values is None:
        positions = np.flatnonzero(model.observed).astype(np.float64)
        stamps, data = model.timestamps(0, model.length)[model.observed], model.data[model.observed]
    else:
        positions, stamps, data = model.positions(timestamps), np.asarray(timestamps), np.asarray(values, float)
    from scipy.stats import norm  # here, not at import: see interval_quantile

    expected, error = model.expected(positions)
    half = interval_quantile(threshold) * error
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(data - expected) / error
        probability = np.where(error > 0, 2 * norm.cdf(z) - 1, np.where(data == expected, 0.0, 1.0))
    probability[np.isnan(expected) | np.isnan(data)] = np.nan
    return {"time_series_timestamp": stamps.astype("datetime64[us]"), "time_series_data": data,
            "is_anomaly": np.where(np.isnan(probability), None, probability > threshold),
            "lower_bound": expected - half, "upper_bound": expected + half, "anomaly_probability": probability}


def arima_evaluate(model: SeriesModel) -> dict[str, Any]:
    """ML.ARIMA_EVALUATE's row for one series (the chosen model only)."""
    p, d, q = model.order
    return {"non_seasonal_p": p, "non_seasonal_d": d, "non_seasonal_q": q, "has_drift": model.has_drift,
            "log_likelihood": model.log_likelihood, "AIC": model.aic, "variance": model.variance,
            "seasonal_periods": list(model.season_names) or ["NO_SEASONALITY"], "has_holiday_effect": False,
            "has_spikes_and_dips": model.cleaned_points > 0, "has_step_changes": False, "error_message": ""}


def arima_coefficients(model: SeriesModel) -> dict[str, Any]:
    """ML.ARIMA_COEFFICIENTS's row for one series."""
    return {"ar_coefficients": model.ar.tolist(), "ma_coefficients": model.ma.tolist(),
            "intercept_or_drift": 0.0 if model.order[1] >= 2 else model.intercept_or_drift}


def evaluate(model: SeriesModel, timestamps: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """ML.EVALUATE against held-out actuals: the forecast's errors at the given timestamps
    (percentages in percent, as BigQuery reports them)."""
    positions = model.positions(timestamps)
    expected, _ = model.expected(positions)
    actual = np.asarray(values, dtype=np.float64)
    ahead = ~np.isnan(expected) & ~np.isnan(actual) & (positions >= model.length)
    if not ahead.any():
        raise TimeSeriesError("none of the evaluation rows falls within the model's forecast horizon")
    err = actual[ahead] - expected[ahead]
    with np.errstate(divide="ignore", invalid="ignore"):
        ape = np.abs(err / actual[ahead])
        sape = 2 * np.abs(err) / (np.abs(actual[ahead]) + np.abs(expected[ahead]))
    mse = float(np.mean(err ** 2))
    return {"mean_absolute_error": float(np.mean(np.abs(err))), "mean_squared_error": mse,
            "root_mean_squared_error": math.sqrt(mse),
            "mean_absolute_percentage_error": float(100 * np.mean(ape)),
            "symmetric_mean_absolute_percentage_error": float(100 * np.mean(sape))}
