"""ARIMA_PLUS: BigQuery ML's time series model, one ARIMA per series (arima.py fits each).

The training query gives ``time_series_timestamp_col`` (DATE, DATETIME or TIMESTAMP),
``time_series_data_col`` and optionally ``time_series_id_col``: one column or an ARRAY of
several, each series fitted on its own. The table functions (ML.FORECAST, ML.EXPLAIN_FORECAST,
ML.ARIMA_EVALUATE, ML.ARIMA_COEFFICIENTS, ML.DETECT_ANOMALIES, ML.EVALUATE) put the id
columns first, named and typed as in training, then the columns their reference pages list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from predserve.errors import ModelError
from predserve.warehouse.models import arima
from predserve.warehouse.models.options import COMMON
from predserve.warehouse.models.registry import Encoding, ModelType, Option, fits_rows_only, register
from predserve.warehouse.models.storage import (
    StoredModelError, dict_field, list_field, records_field, values_field, values_to_data,
)

ARIMA_PLUS = "arima_plus"
DEFAULT_HORIZON = 3  # ML.FORECAST's and ML.EXPLAIN_FORECAST's


@dataclass
class Forecaster:
    """Every series' model, with the id columns' names, types and values (one tuple per series)."""

    id_columns: list[str]
    id_types: list[pa.DataType]
    ids: list[tuple[Any, ...]]
    series: list[arima.SeriesModel]

    def to_data(self) -> dict[str, Any]:
        ids = {name: values_to_data([key[j] for key in self.ids], t)
               for j, (name, t) in enumerate(zip(self.id_columns, self.id_types))}
        return {"id_columns": self.id_columns, "ids": ids, "series": [s.to_data() for s in self.series]}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "Forecaster":
        names = [str(n) for n in list_field(data, "id_columns")]
        stored = dict_field(data, "ids")
        columns = [values_field(stored, name) for name in names]
        series = [arima.SeriesModel.from_data(s) for s in records_field(data, "series")]
        if len(columns) != len(names) or any(len(values) != len(series) for values, _ in columns):
            raise StoredModelError(f"{len(series)} series for id columns {names} of other lengths")
        ids = list(zip(*[values for values, _ in columns])) if names else [()] * len(series)
        return cls(names, [t for _, t in columns], ids, series)

    def id_table(self, counts: list[int]) -> dict[str, pa.Array]:
        """The id columns, series i's values repeated counts[i] times."""
        return {name: pa.array([key[j] for key, n in zip(self.ids, counts) for _ in range(n)], t)
                for j, (name, t) in enumerate(zip(self.id_columns, self.id_types))}

    def find(self, table: pa.Table) -> list[tuple[int, np.ndarray]]:
        """The input rows of each known series: (series index, row positions)."""
        missing = [c for c in self.id_columns if c not in table.schema.names]
        if missing:
            raise ModelError(f"the input needs the time series id column(s) {', '.join(missing)}")
        keys = list(zip(*[table.column(c).to_pylist() for c in self.id_columns])) if self.id_columns else [()] * table.num_rows
        position = {key: i for i, key in enumerate(self.ids)}
        groups: dict[int, list[int]] = {}
        for row, key in enumerate(keys):
            if key in position:
                groups.setdefault(position[key], []).append(row)
        return [(i, np.array(rows)) for i, rows in sorted(groups.items())]


def _id_columns(options: dict[str, Any]) -> list[str]:
    ids = options["time_series_id_col"]
    return [] if ids is None else [ids] if isinstance(ids, str) else list(ids)


def core_options(options: dict[str, Any]) -> arima.ArimaOptions:
    order = options["non_seasonal_order"]
    try:
        return arima.ArimaOptions(
            horizon=options["horizon"], auto_arima=options["auto_arima"], auto_arima_max_order=options["auto_arima_max_order"],
            non_seasonal_order=tuple(order) if order is not None else None,  # type: ignore[arg-type]
            include_drift=options["include_drift"], data_frequency=options["data_frequency"],
            decompose_time_series=options["decompose_time_series"], clean_spikes_and_dips=options["clean_spikes_and_dips"],
            adjust_step_changes=options["adjust_step_changes"], holiday_region=options["holiday_region"])
    except arima.TimeSeriesError as exc:
        raise ModelError(f"ARIMA_PLUS: {exc}") from None


def _check(options: dict[str, Any]) -> None:
    for name in ("time_series_timestamp_col", "time_series_data_col"):
        if options[name] is None:
            raise ModelError(f"ARIMA_PLUS needs OPTIONS({name}='...')")
    order = options["non_seasonal_order"]
    if order is not None and not (isinstance(order, (tuple, list)) and len(order) == 3
                                  and all(isinstance(v, int) for v in order)):
        raise ModelError(f"option non_seasonal_order must be (p, d, q), three integers, got {order!r}")
    ids = options["time_series_id_col"]
    if isinstance(ids, list) and not (ids and all(isinstance(c, str) for c in ids)):
        raise ModelError("option time_series_id_col must be a column name or an ARRAY of column names")
    core_options(options)


def _series_of(table: pa.Table, options: dict[str, Any], id_columns: list[str], what: str
               ) -> tuple[list[tuple[Any, ...]], list[np.ndarray], list[pa.DataType]]:
    """(each series' id, its row positions, the id columns' types), series in id order."""
    missing = [c for c in id_columns if c not in table.schema.names]
    if missing:
        raise ModelError(f"{what}: the query has no time series id column {', '.join(missing)}")
    types = [table.schema.field(c).type for c in id_columns]
    if not id_columns:
        return [()], [np.arange(table.num_rows)], []
    order = pc.sort_indices(table.select(id_columns), [(c, "ascending") for c in id_columns]).to_numpy()
    keys = list(zip(*[table.column(c).take(pa.array(order)).to_pylist() for c in id_columns]))
    starts = [0] + [k for k in range(1, len(keys)) if keys[k] != keys[k - 1]]
    bounds = starts + [len(keys)]
    return [keys[s] for s in starts], [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])], types


def _timestamps_and_values(table: pa.Table, options: dict[str, Any], what: str) -> tuple[np.ndarray, np.ndarray]:
    time_col, data_col = options["time_series_timestamp_col"], options["time_series_data_col"]
    for name in (time_col, data_col):
        if name not in table.schema.names:
            raise ModelError(f"{what}: the query has no column {name}")
    stamps = table.column(time_col)
    if not (pa.types.is_timestamp(stamps.type) or pa.types.is_date(stamps.type)):
        raise ModelError(f"{what}: time_series_timestamp_col {time_col} must be a DATE, DATETIME or TIMESTAMP, not {stamps.type}")
    values = table.column(data_col)
    if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type) or pa.types.is_decimal(values.type)):
        raise ModelError(f"{what}: time_series_data_col {data_col} must be numeric, not {values.type}")
    if pa.types.is_timestamp(stamps.type) and stamps.type.tz is not None:
        stamps = stamps.cast(pa.timestamp("us", "UTC")).cast(pa.timestamp("us"))
    micros = stamps.cast(pa.timestamp("us")) if pa.types.is_date(stamps.type) else stamps
    return (micros.to_numpy().astype("datetime64[us]"),
            pc.fill_null(values.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False))


def _fit(name: str, options: dict[str, Any], table: pa.Table) -> tuple[Forecaster, list[dict[str, Any]], dict[str, Any]]:
    id_columns = _id_columns(options)
    what = f"CREATE MODEL {name}"
    stamps, values = _timestamps_and_values(table, options, what)
    keys, rows, types = _series_of(table, options, id_columns, what)
    core = core_options(options)
    fitted = []
    for key, positions in zip(keys, rows):
        try:
            fitted.append(arima.fit_series(stamps[positions], values[positions], core))
        except arima.TimeSeriesError as exc:
            label = ", ".join(f"{c}={v!r}" for c, v in zip(id_columns, key))
            raise ModelError(f"{what}: {'series ' + label + ': ' if label else ''}{exc}") from None
    model = Forecaster(id_columns, types, keys, fitted)
    return model, [{"iteration": 0}], {}


# ---- the table functions ---------------------------------------------------------------------------
def _horizon_and_level(model: Forecaster, settings: dict[str, Any], what: str) -> tuple[int, float]:
    horizon = settings.get("horizon", DEFAULT_HORIZON)
    level = settings.get("confidence_level", 0.95)
    largest = len(model.series[0].mean)
    if not 1 <= horizon <= largest:
        raise ModelError(f"{what}: horizon must be between 1 and the model's horizon {largest}, got {horizon}")
    if not 0 <= level < 1:
        raise ModelError(f"{what}: confidence_level must be in [0, 1), got {level}")
    return horizon, level


def _table(model: Forecaster, parts: list[dict[str, Any]], schema: list[tuple[str, pa.DataType]]) -> pa.Table:
    counts = [len(next(iter(p.values()))) if p else 0 for p in parts]
    columns = dict(model.id_table(counts))
    for name, kind in schema:
        values = [v for p in parts for v in np.asarray(p[name]).tolist()] if parts else []
        if pa.types.is_floating(kind):
            values = [None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in values]
        columns[name] = pa.array(values, kind)
    return pa.table(columns)


UTC = pa.timestamp("us", "UTC")
FORECAST_COLUMNS = [("forecast_timestamp", UTC), ("forecast_value", pa.float64()), ("standard_error", pa.float64()),
                    ("confidence_level", pa.float64()), ("prediction_interval_lower_bound", pa.float64()),
                    ("prediction_interval_upper_bound", pa.float64()), ("confidence_interval_lower_bound", pa.float64()),
                    ("confidence_interval_upper_bound", pa.float64())]


def forecast_table(model: Forecaster, settings: dict[str, Any]) -> pa.Table:
    horizon, level = _horizon_and_level(model, settings, "ML.FORECAST")
    parts = []
    for s in model.series:
        part = s.forecast(horizon, level)
        part["confidence_interval_lower_bound"] = part["prediction_interval_lower_bound"]  # BigQuery's deprecated names
        part["confidence_interval_upper_bound"] = part["prediction_interval_upper_bound"]
        parts.append(part)
    return _table(model, parts, FORECAST_COLUMNS)


EXPLAIN_COLUMNS = [("time_series_timestamp", UTC), ("time_series_type", pa.string()), ("time_series_data", pa.float64()),
                   ("time_series_adjusted_data", pa.float64()), ("standard_error", pa.float64()),
                   ("confidence_level", pa.float64()), ("prediction_interval_lower_bound", pa.float64()),
                   ("prediction_interval_upper_bound", pa.float64()), ("trend", pa.float64()),
                   *[(f"seasonal_period_{n.lower()}", pa.float64()) for n in arima.SEASON_NAMES],
                   ("holiday_effect", pa.float64()), ("spikes_and_dips", pa.float64()), ("step_changes", pa.float64()),
                   ("residual", pa.float64())]


def explain_forecast_table(model: Forecaster, options: dict[str, Any], settings: dict[str, Any]) -> pa.Table:
    if not options["decompose_time_series"]:
        raise ModelError("ML.EXPLAIN_FORECAST works on ARIMA_PLUS models trained with decompose_time_series = TRUE")
    horizon, level = _horizon_and_level(model, settings, "ML.EXPLAIN_FORECAST")
    return _table(model, [arima.explain_forecast(s, horizon, level) for s in model.series], EXPLAIN_COLUMNS)


EVALUATE_COLUMNS = [("non_seasonal_p", pa.int64()), ("non_seasonal_d", pa.int64()), ("non_seasonal_q", pa.int64()),
                    ("has_drift", pa.bool_()), ("log_likelihood", pa.float64()), ("AIC", pa.float64()),
                    ("variance", pa.float64()), ("seasonal_periods", pa.list_(pa.string())),
                    ("has_holiday_effect", pa.bool_()), ("has_spikes_and_dips", pa.bool_()),
                    ("has_step_changes", pa.bool_()), ("error_message", pa.string())]


def arima_evaluate_table(model: Forecaster, settings: dict[str, Any]) -> pa.Table:
    if settings.get("show_all_candidate_models"):
        raise ModelError("ML.ARIMA_EVALUATE: predserve keeps only the chosen model of each series; "
                         "show_all_candidate_models = TRUE is not supported")
    rows = [{k: [v] for k, v in arima.arima_evaluate(s).items()} for s in model.series]
    return _table(model, [{k: np.array(v, dtype=object) for k, v in r.items()} for r in rows], EVALUATE_COLUMNS)


COEFFICIENT_COLUMNS = [("ar_coefficients", pa.list_(pa.float64())), ("ma_coefficients", pa.list_(pa.float64())),
                       ("intercept_or_drift", pa.float64())]


def arima_coefficients_table(model: Forecaster) -> pa.Table:
    parts = []
    for s in model.series:
        row = arima.arima_coefficients(s)
        part = np.empty(1, dtype=object), np.empty(1, dtype=object)
        part[0][0], part[1][0] = row["ar_coefficients"], row["ma_coefficients"]
        parts.append({"ar_coefficients": part[0], "ma_coefficients": part[1],
                      "intercept_or_drift": np.array([row["intercept_or_drift"]])})
    return _table(model, parts, COEFFICIENT_COLUMNS)


ANOMALY_COLUMNS = [("time_series_timestamp", UTC), ("time_series_data", pa.float64()), ("is_anomaly", pa.bool_()),
                   ("lower_bound", pa.float64()), ("upper_bound", pa.float64()), ("anomaly_probability", pa.float64())]


def detect_anomalies_table(model: Forecaster, options: dict[str, Any], settings: dict[str, Any],
                           table: pa.Table | None) -> pa.Table:
    threshold = settings.get("anomaly_prob_threshold", 0.95)
    if not 0 <= threshold < 1:
        raise ModelError(f"ML.DETECT_ANOMALIES: anomaly_prob_threshold must be in [0, 1), got {threshold}")
    if table is None:
        parts = [arima.detect_anomalies(s, threshold) for s in model.series]
        return _table(model, parts, ANOMALY_COLUMNS)
    stamps, values = _timestamps_and_values(table, options, "ML.DETECT_ANOMALIES")
    found = model.find(table)
    sub = Forecaster(model.id_columns, model.id_types, [model.ids[i] for i, _ in found], [model.series[i] for i, _ in found])
    parts = [arima.detect_anomalies(model.series[i], threshold, stamps[rows], values[rows]) for i, rows in found]
    return _table(sub, parts, ANOMALY_COLUMNS)


EVALUATION_METRICS = ["mean_absolute_error", "mean_squared_error", "root_mean_squared_error",
                      "mean_absolute_percentage_error", "symmetric_mean_absolute_percentage_error"]


def evaluate_rows(model: Forecaster, options: dict[str, Any], table: pa.Table, settings: dict[str, Any]) -> pa.Table:
    """ML.EVALUATE against held-out actuals: one row of forecast errors per series in the input."""
    if settings.get("perform_aggregation") is False:
        raise ModelError("ML.EVALUATE: perform_aggregation = FALSE (per-timestamp rows) is not supported for "
                         "ARIMA_PLUS; ML.FORECAST joined with the actuals gives them")
    stamps, values = _timestamps_and_values(table, options, "ML.EVALUATE")
    found = model.find(table)
    if not found:
        raise ModelError("ML.EVALUATE: none of the input's rows belongs to a series of the model")
    sub = Forecaster(model.id_columns, model.id_types, [model.ids[i] for i, _ in found], [model.series[i] for i, _ in found])
    parts = []
    for i, rows in found:
        try:
            scores = arima.evaluate(model.series[i], stamps[rows], values[rows])
        except arima.TimeSeriesError as exc:
            raise ModelError(f"ML.EVALUATE: {exc}") from None
        parts.append({k: np.array([v]) for k, v in scores.items()})
    return _table(sub, parts, [(m, pa.float64()) for m in EVALUATION_METRICS])


def _predict(model: Any, x: np.ndarray, threshold: float | None) -> Any:
    raise ModelError(f"ML.PREDICT does not apply to ARIMA_PLUS models; use ML.FORECAST(MODEL {model.name}, "
                     "STRUCT(h AS horizon))")


FREQUENCIES = arima.FREQUENCIES
OPTIONS: dict[str, Option] = {
    "model_type": COMMON["model_type"],
    "time_series_timestamp_col": Option(str, None),
    "time_series_data_col": Option(str, None),
    "time_series_id_col": Option((str, list), None),
    "horizon": Option(int, 1000, lambda v: 1 <= v <= arima.MAX_HORIZON, help=f"between 1 and {arima.MAX_HORIZON}"),
    "auto_arima": Option(bool, True),
    "auto_arima_max_order": Option(int, 5, lambda v: 1 <= v <= 5, help="between 1 and 5"),
    "non_seasonal_order": Option((tuple, list), None),
    "include_drift": Option(bool, False),
    "data_frequency": Option(str, "AUTO_FREQUENCY", choices=FREQUENCIES),
    "decompose_time_series": Option(bool, True),
    "clean_spikes_and_dips": Option(bool, True),
    "adjust_step_changes": Option(bool, True),
    "holiday_region": Option(str, None),
}

register(ModelType(
    ARIMA_PLUS, "forecasting", OPTIONS, fit=fits_rows_only, predict=_predict,
    load=lambda data, width, classes: Forecaster.from_data(data),
    encoding=lambda options: Encoding(standardize=False, one_hot=False), check_options=_check,
    functions=frozenset({"FORECAST", "EXPLAIN_FORECAST", "ARIMA_EVALUATE", "ARIMA_COEFFICIENTS", "DETECT_ANOMALIES"}),
    fit_rows=_fit, evaluate_rows=evaluate_rows,
))
