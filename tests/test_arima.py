"""ARIMA_PLUS's core (warehouse/models/arima.py) against statsforecast called directly: the same forecast
bit for bit and the same intervals, the seasonal periods a series has (and not those it lacks),
spikes cleaned before fitting, gaps interpolated, the decomposition adding up, anomalies flagged
where they were put, and a model surviving the plain-data storage format."""

from __future__ import annotations

import numpy as np
import pytest
from statsforecast.models import ARIMA, MSTL, AutoARIMA

from predserve.warehouse.models import storage
from predserve.warehouse.models.arima import (
    ArimaOptions, SeriesModel, TimeSeriesError, arima_coefficients, arima_evaluate, detect_anomalies, evaluate,
    explain_forecast, fit_series, infer_frequency, to_micros,
)

DAY = np.timedelta64(1, "D")


def daily(n: int = 400, seed: int = 0, weekly: float = 2.0, start: str = "2024-01-01") -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = 50 + 0.05 * t + weekly * np.sin(2 * np.pi * t / 7) + np.cumsum(rng.normal(0, 0.2, n)) + rng.normal(0, 0.3, n)
    return np.datetime64(start) + t * DAY, values


def bigquery_like_autoarima() -> AutoARIMA:
    return AutoARIMA(max_p=5, max_q=5, max_order=5, seasonal=False, ic="aic")


def test_forecast_is_the_library_forecast_for_a_weekly_series() -> None:
    stamps, values = daily()
    model = fit_series(stamps, values, ArimaOptions(horizon=30, clean_spikes_and_dips=False))
    assert model.season_names == ["WEEKLY"] and model.frequency == "DAILY"
    direct = MSTL(season_length=[7], trend_forecaster=bigquery_like_autoarima()).fit(values)
    expected = direct.predict(h=14, level=[90])
    got = model.forecast(14, 0.9)
    np.testing.assert_array_equal(got["forecast_value"], np.asarray(expected["mean"]))
    np.testing.assert_allclose(got["prediction_interval_lower_bound"], np.asarray(expected["lo-90"]), rtol=1e-12)
    np.testing.assert_allclose(got["prediction_interval_upper_bound"], np.asarray(expected["hi-90"]), rtol=1e-12)
    assert got["forecast_timestamp"][0] == stamps[-1] + DAY
    assert (np.diff(got["forecast_timestamp"]) == DAY).all()
    assert (got["standard_error"] > 0).all() and (np.diff(got["standard_error"]) >= -1e-12).all()
    assert (got["confidence_level"] == 0.9).all()
    with pytest.raises(TimeSeriesError, match="model's horizon 30"):
        model.forecast(31, 0.9)


def test_a_series_without_seasonality_is_one_arima_whose_coefficients_are_reported() -> None:
    rng = np.random.default_rng(3)
    values = np.zeros(300)
    for i in range(1, 300):  # AR(1) around 10
        values[i] = 0.7 * values[i - 1] + rng.normal()
    values += 10
    stamps = np.datetime64("2020-01-01T00:00") + np.arange(300) * np.timedelta64(1, "h")
    model = fit_series(stamps, values, ArimaOptions(horizon=5, clean_spikes_and_dips=False))
    assert model.frequency == "HOURLY" and model.season_names == []
    direct = bigquery_like_autoarima().fit(values)
    np.testing.assert_array_equal(model.forecast(5, 0.95)["forecast_value"], direct.predict(h=5)["mean"])
    coef = direct.model_["coef"]
    row = arima_coefficients(model)
    assert row["ar_coefficients"] == [coef[f"ar{i}"] for i in range(1, model.order[0] + 1)]
    assert row["ma_coefficients"] == [coef[f"ma{i}"] for i in range(1, model.order[2] + 1)]
    evaluated = arima_evaluate(model)
    assert evaluated["AIC"] == direct.model_["aic"] and evaluated["variance"] == direct.model_["sigma2"]
    assert evaluated["seasonal_periods"] == ["NO_SEASONALITY"] and evaluated["non_seasonal_p"] >= 1


def test_a_fixed_order_with_drift_is_the_library_arima() -> None:
    stamps, values = daily(200, weekly=0.0)
    options = ArimaOptions(horizon=10, auto_arima=False, non_seasonal_order=(1, 1, 1), include_drift=True,
                           clean_spikes_and_dips=False)
    model = fit_series(stamps, values, options)
    direct = ARIMA(order=(1, 1, 1), include_drift=True).fit(values)
    np.testing.assert_array_equal(model.forecast(10, 0.8)["forecast_value"], direct.predict(h=10)["mean"])
    assert model.order == (1, 1, 1) and model.has_drift
    assert arima_coefficients(model)["intercept_or_drift"] == direct.model_["coef"]["drift"]


def test_spikes_are_cleaned_before_the_library_sees_the_series_and_then_flagged_as_anomalies() -> None:
    stamps, values = daily(300, seed=5)
    spiked = values.copy()
    spiked[150] += 40
    spiked[220] -= 35
    model = fit_series(stamps, spiked, ArimaOptions(horizon=7))
    assert list(np.flatnonzero(model.spikes)) == [150, 220]
    np.testing.assert_allclose(model.adjusted[[150, 220]], values[[150, 220]], atol=3)
    direct = MSTL(season_length=[7], trend_forecaster=bigquery_like_autoarima()).fit(model.adjusted)
    np.testing.assert_array_equal(model.forecast(7, 0.95)["forecast_value"], direct.predict(h=7)["mean"])
    assert arima_evaluate(model)["has_spikes_and_dips"]
    anomalies = detect_anomalies(model, 0.99)
    flagged = set(np.flatnonzero(anomalies["is_anomaly"].astype(bool)))
    assert {150, 220} <= flagged and len(flagged) <= 6
    assert anomalies["anomaly_probability"][150] > 0.999
    assert (anomalies["lower_bound"] < anomalies["upper_bound"]).all()


def test_new_points_are_checked_against_the_forecast() -> None:
    stamps, values = daily()
    model = fit_series(stamps, values, ArimaOptions(horizon=10))
    future = model.forecast(10, 0.95)
    at = future["forecast_timestamp"][:3]
    new = future["forecast_value"][:3] + np.array([0.0, 100.0, 0.0])
    rows = detect_anomalies(model, 0.95, np.append(at, stamps[-1] + 40 * DAY), np.append(new, 1.0))
    assert list(rows["is_anomaly"]) == [False, True, False, None]
    np.testing.assert_allclose(rows["lower_bound"][:3], future["prediction_interval_lower_bound"][:3])


def test_gaps_are_interpolated_duplicates_averaged_and_off_grid_points_refused() -> None:
    stamps, values = daily(120)
    keep = np.ones(120, bool)
    keep[[10, 11, 50]] = False
    with_duplicate_stamps = np.append(stamps[keep], stamps[5])
    with_duplicate_values = np.append(values[keep], values[5] + 2)
    model = fit_series(with_duplicate_stamps, with_duplicate_values, ArimaOptions(horizon=3))
    assert model.length == 120 and not model.observed[[10, 11, 50]].any() and model.observed.sum() == 117
    assert model.data[5] == pytest.approx(values[5] + 1)
    assert model.data[10] == pytest.approx(values[9] + (values[12] - values[9]) / 3)
    assert len(detect_anomalies(model, 0.9)["time_series_data"]) == 117  # interpolated points are not judged
    with pytest.raises(TimeSeriesError, match="not on the DAILY grid"):
        fit_series(np.append(stamps, stamps[-1] + np.timedelta64(36, "h")), np.append(values, 1.0))


def test_monthly_series_step_by_calendar_months() -> None:
    months = np.arange(np.datetime64("2019-01"), np.datetime64("2024-01")).astype("datetime64[D]")
    assert infer_frequency(to_micros(months)) == "MONTHLY"
    rng = np.random.default_rng(1)
    values = 100 + 10 * np.sin(2 * np.pi * np.arange(len(months)) / 12) + rng.normal(0, 1, len(months))
    model = fit_series(months, values, ArimaOptions(horizon=3))
    assert "YEARLY" in model.season_names
    assert list(model.forecast(3, 0.9)["forecast_timestamp"].astype("datetime64[D]")) == [
        np.datetime64("2024-01-01"), np.datetime64("2024-02-01"), np.datetime64("2024-03-01")]


def test_explain_forecast_adds_up() -> None:
    stamps, values = daily()
    model = fit_series(stamps, values, ArimaOptions(horizon=5))
    columns = explain_forecast(model, 5, 0.9)
    history = columns["time_series_type"] == "history"
    assert history.sum() == 400 and (~history).sum() == 5
    recomposed = columns["trend"] + columns["seasonal_period_weekly"] + np.nan_to_num(columns["residual"])
    np.testing.assert_allclose(recomposed[history], columns["time_series_adjusted_data"][history], atol=1e-9)
    np.testing.assert_allclose(recomposed[~history], columns["time_series_data"][~history], atol=1e-9)
    assert np.isnan(columns["seasonal_period_yearly"]).all() and np.isnan(columns["holiday_effect"]).all()
    assert np.isnan(columns["confidence_level"][history]).all() and (columns["confidence_level"][~history] == 0.9).all()


def test_evaluate_against_held_out_actuals() -> None:
    stamps, values = daily(430)
    model = fit_series(stamps[:400], values[:400], ArimaOptions(horizon=30))
    metrics = evaluate(model, stamps[400:], values[400:])
    err = values[400:] - model.forecast(30, 0.9)["forecast_value"]
    assert metrics["mean_absolute_error"] == pytest.approx(np.mean(np.abs(err)))
    assert metrics["root_mean_squared_error"] == pytest.approx(np.sqrt(np.mean(err ** 2)))
    assert metrics["mean_absolute_percentage_error"] == pytest.approx(100 * np.mean(np.abs(err / values[400:])))
    with pytest.raises(TimeSeriesError, match="forecast horizon"):
        evaluate(model, stamps[:10], values[:10])


def test_a_model_survives_storage() -> None:
    stamps, values = daily(200)
    model = fit_series(stamps, values, ArimaOptions(horizon=4))
    loaded = SeriesModel.from_data(storage.load(storage.dump({"series": model.to_data()}))["series"])
    for key, column in model.forecast(4, 0.9).items():
        np.testing.assert_array_equal(loaded.forecast(4, 0.9)[key], column)
    assert arima_evaluate(loaded) == arima_evaluate(model)
    broken = model.to_data()
    broken["season_lengths"] = [7, 365]
    with pytest.raises(storage.StoredModelError, match="inconsistent"):
        SeriesModel.from_data(broken)


@pytest.mark.parametrize("options, message", [
    (dict(holiday_region="US"), "holiday_region 'US' is not supported"),
    (dict(non_seasonal_order=(1, 1, 1)), "only be set when auto_arima is FALSE"),
    (dict(auto_arima=False), "needs non_seasonal_order"),
    (dict(auto_arima=False, non_seasonal_order=(1, 0, 1), include_drift=True), "d is 1"),
    (dict(auto_arima_max_order=6), "between 1 and 5"),
    (dict(horizon=0), "horizon must be between 1"),
    (dict(data_frequency="FORTNIGHTLY"), "data_frequency must be one of"),
])
def test_options_refused_in_words(options: dict, message: str) -> None:
    with pytest.raises(TimeSeriesError, match=message):
        ArimaOptions(**options)
