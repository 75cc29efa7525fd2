"""How far ordinary retrains move a list body's drift figures, and how far broken exports move
them: the figures behind which list fields gate per id (issue 22 item 3).

    python bench/list_drift.py [--users 1000] [--items 200] [--top 10]

A recommender (matrix_factorization on generated ratings; each user's top N as
``ARRAY_AGG(STRUCT(item_id, predicted_rating) ORDER BY predicted_rating DESC LIMIT N)``) and a
forecaster (ARIMA_PLUS on 20 generated daily series; each series' 14-day horizon), each
exported into LMDB through the real export, then each retrain (another sample of the ratings,
a smaller one, other options; a week more history) and each break (lists shuffled across
users, other items recommended; forecasts shifted, series swapped) exported after the
original with --allow-drift, printing its list fields' figures from the export's drift entry.
docs/pipeline.md ("List bodies") shows the tables.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from predserve import Warehouse
from predserve.pipeline import GatePolicy, run_export

RATINGS = """
CREATE TABLE ratings AS
SELECT u AS user_id, CONCAT('item-', CAST(i AS STRING)) AS item_id,
       3 + 2 * SIN(u * 0.7) * COS(i * 1.3) + COS(u * 0.3 + i * 0.11) + (MOD(u * 31 + i * 17, 11) - 5) / 10 AS rating,
       MOD(u * 7919 + i * 104729, 100) AS draw
FROM UNNEST(GENERATE_ARRAY(1, {users})) AS u, UNNEST(GENERATE_ARRAY(1, {items})) AS i
WHERE MOD(u * 13 + i * 7, 10) < 3
"""
MF = "model_type='matrix_factorization', user_col='user_id', item_col='item_id', rating_col='rating'"
RECOMMENDERS = {  # name: (options added, the ratings it is trained on)
    "a": (", num_factors=8, l2_reg=1.0", "MOD(draw, 5) <> 0"),  # 80% of the ratings
    "resampled": (", num_factors=8, l2_reg=1.0", "MOD(draw, 5) <> 1"),  # another 80%
    "smaller": (", num_factors=8, l2_reg=1.0", "MOD(draw, 5) < 2"),  # 40%
    "l2": (", num_factors=16, l2_reg=5.0", "MOD(draw, 5) <> 1"),
}
TOP = ("SELECT user_id, ARRAY_AGG(STRUCT(item_id, predicted_rating) ORDER BY predicted_rating DESC, item_id LIMIT {top}) "
       "AS recommendations FROM ML.RECOMMEND(MODEL {model}) GROUP BY user_id")
SHUFFLED = "SELECT a.user_id, b.recommendations FROM ({q}) AS a JOIN ({q}) AS b ON b.user_id = MOD(a.user_id, {users}) + 1"
RENAMED = """
SELECT user_id, ARRAY_AGG(STRUCT(CONCAT('item-', CAST(r AS STRING)) AS item_id, predicted_rating) ORDER BY r LIMIT {top})
         AS recommendations
FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY predicted_rating DESC, item_id) AS r FROM ML.RECOMMEND(MODEL a))
GROUP BY user_id
"""

SALES = """
CREATE TABLE sales AS
SELECT s AS store_id, CONCAT('p', CAST(p AS STRING)) AS product_id, DATE_ADD(DATE '2025-01-01', INTERVAL d DAY) AS day,
       20.0 * s + p + 4 * SIN(d * 2 * ACOS(-1) / 7) + MOD(d * 37 + s * 11 + p * 5, 13) / 6.0 + d * 0.02 * p AS units
FROM UNNEST(GENERATE_ARRAY(1, 5)) AS s, UNNEST(GENERATE_ARRAY(1, 4)) AS p, UNNEST(GENERATE_ARRAY(0, 180)) AS d
"""
ARIMA = ("model_type='ARIMA_PLUS', time_series_timestamp_col='day', time_series_data_col='units', "
         "time_series_id_col=['store_id', 'product_id'], horizon=14")
HORIZON = """
SELECT {store} AS store_id, product_id,
       ARRAY_AGG(STRUCT(forecast_timestamp, {value} AS forecast_value) ORDER BY forecast_timestamp) AS forecast
FROM ML.FORECAST(MODEL {model}, STRUCT(14 AS horizon)) GROUP BY store_id, product_id
"""


def figures(summary: Any, names: list[str]) -> str:
    columns = summary.drift.to_json()["columns"]
    cells = []
    for name in names:
        c = columns[name]
        per_id = c.get("changed", c.get("moved"))
        cells += [f"{c['distance']:.3f}", f"{per_id:.1%}"]
    return " | ".join(cells)


def compare(wh: Path, store: str, model: str, key: str, original: str, variants: dict[str, str], names: list[str]) -> None:
    print(f"| new snapshot | {' | '.join(f'{n} distance | per id' for n in names)} |")
    for label, query in variants.items():
        run_export(warehouse=str(wh), model=model, key=key, store_url=store, query=original, policy=GatePolicy(allow_drift=True))
        summary = run_export(warehouse=str(wh), model=model, key=key, store_url=store, query=query,
                             policy=GatePolicy(allow_drift=True))
        print(f"| {label} | {figures(summary, names)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wh = Path(tmp) / "wh.duckdb"
        with Warehouse(wh) as w:
            w.sql(RATINGS.format(users=args.users, items=args.items))
            for name, (options, where) in RECOMMENDERS.items():
                w.sql(f"CREATE MODEL {name} OPTIONS({MF}{options}) AS SELECT user_id, item_id, rating FROM ratings WHERE {where}")
            w.sql(SALES)
            w.sql(f"CREATE MODEL f OPTIONS({ARIMA}) AS SELECT * FROM sales WHERE day < DATE '2025-06-23'")
            w.sql(f"CREATE MODEL f_later OPTIONS({ARIMA}) AS SELECT * FROM sales")  # a week more history
        top = TOP.format(top=args.top, model="a")
        print(f"recommender: {args.users:,} users, {args.items} items, top {args.top}; the per-id figure is `changed` "
              "for the items, `moved` (tolerance 0.5) for the scores")
        compare(wh, str(Path(tmp) / "recs"), "recs", "user_id", top, {
            "retrained on another 80% of the ratings": TOP.format(top=args.top, model="resampled"),
            "retrained on 40% of the ratings": TOP.format(top=args.top, model="smaller"),
            "another 80%, `l2_reg=5.0, num_factors=16`": TOP.format(top=args.top, model="l2"),
            "**lists shuffled across users**": SHUFFLED.format(q=top, users=args.users),
            "**other items recommended** (the n-th is item-n)": RENAMED.format(top=args.top),
        }, ["recommendations.item_id", "recommendations[0].predicted_rating", "recommendations.predicted_rating"])
        forecast = HORIZON.format(store="store_id", value="forecast_value", model="f")
        print("\nforecaster: 20 series, 14-day horizon; the per-id figure is `moved` (tolerance 0.5)")
        compare(wh, str(Path(tmp) / "demand"), "demand", "store_id,product_id", forecast, {
            "retrained with a week more history": HORIZON.format(store="store_id", value="forecast_value", model="f_later"),
            "**every value 20% higher**": HORIZON.format(store="store_id", value="forecast_value * 1.2", model="f"),
            "**series swapped across stores**": HORIZON.format(store="6 - store_id", value="forecast_value", model="f"),
        }, ["forecast[0].forecast_value", "forecast.forecast_value"])


if __name__ == "__main__":
    main()
