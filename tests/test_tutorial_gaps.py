"""Statements of BigQuery ML's tutorials and reference pages that failed before issue 22: the
k-means (London bicycles) tutorial's data preparation with ST_GEOGPOINT / ST_DISTANCE, its pivot
of ML.CENTROIDS with ARRAY_AGG(STRUCT(...)) and a correlated UNNEST, and ML.ADVANCED_WEIGHTS'
per-category rows as its reference page documents them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from predserve import Warehouse
from predserve.errors import SQLError
from predserve.warehouse.sql.geography import EARTH_RADIUS_METRES

# The tutorial's CREATE MODEL, as written on the page (public dataset names included).
TUTORIAL_MODEL = """
CREATE OR REPLACE MODEL `bqml_tutorial.london_station_clusters`
  OPTIONS(model_type='kmeans', num_clusters=4) AS
WITH
  hs AS (
  SELECT
    h.start_station_name AS station_name,
    IF
    (EXTRACT(DAYOFWEEK FROM h.start_date) = 1
      OR EXTRACT(DAYOFWEEK FROM h.start_date) = 7,
      "weekend",
      "weekday") AS isweekday,
    h.duration,
    ST_DISTANCE(ST_GEOGPOINT(s.longitude, s.latitude),
      ST_GEOGPOINT(-0.1, 51.5))/1000 AS distance_from_city_center
  FROM
    `bigquery-public-data.london_bicycles.cycle_hire` AS h
  JOIN
    `bigquery-public-data.london_bicycles.cycle_stations` AS s
  ON
    h.start_station_id = s.id
  WHERE
    h.start_date BETWEEN CAST('2015-01-01 00:00:00' AS TIMESTAMP)
    AND CAST('2016-01-01 00:00:00' AS TIMESTAMP) ),
  stationstats AS (
  SELECT
    station_name,
    isweekday,
    AVG(duration) AS duration,
    COUNT(duration) AS num_trips,
    MAX(distance_from_city_center) AS distance_from_city_center
  FROM
    hs
  GROUP BY
    station_name, isweekday)
SELECT
  * EXCEPT(station_name, isweekday)
FROM
  stationstats
"""

# The tutorial's query that turns ML.CENTROIDS' rows into one row per cluster.
TUTORIAL_PIVOT = """
WITH
  T AS (
  SELECT
    centroid_id,
    ARRAY_AGG(STRUCT(feature AS name,
        ROUND(numerical_value,1) AS value)
    ORDER BY
      centroid_id) AS cluster
  FROM
    ML.CENTROIDS(MODEL `bqml_tutorial.london_station_clusters`)
  GROUP BY
    centroid_id )
SELECT
  CONCAT('Cluster#', CAST(centroid_id AS STRING)) AS centroid,
  (
  SELECT
    value
  FROM
    UNNEST(cluster)
  WHERE
    name = 'duration') AS duration,
  (
  SELECT
    value
  FROM
    UNNEST(cluster)
  WHERE
    name = 'num_trips') AS num_trips,
  (
  SELECT
    value
  FROM
    UNNEST(cluster)
  WHERE
    name = 'distance_from_city_center') AS distance_from_city_center
FROM
  T
ORDER BY
  centroid_id ASC
"""


@pytest.fixture
def london(tmp_path: Path) -> Warehouse:
    """Small stand-ins for the public tables: 12 stations at known places, 2,000 hires in 2015."""
    wh = Warehouse(tmp_path / "london.duckdb")
    wh.sql("""
        CREATE SCHEMA london_bicycles;
        CREATE SCHEMA bqml_tutorial;
        CREATE TABLE london_bicycles.cycle_stations AS
        SELECT i AS id, -0.1 + (i % 4 - 1.5) * 0.05 AS longitude, 51.5 + (DIV(i, 4) - 1) * 0.04 AS latitude
        FROM UNNEST(GENERATE_ARRAY(0, 11)) AS i;
        CREATE TABLE london_bicycles.cycle_hire AS
        SELECT MOD(i * 7, 12) AS start_station_id,
               CONCAT('station ', CAST(MOD(i * 7, 12) AS STRING)) AS start_station_name,
               TIMESTAMP_ADD(TIMESTAMP '2015-01-01 08:00:00', INTERVAL MOD(i * 13, 360) DAY) AS start_date,
               300 + MOD(i * 31, 1500) + 400 * MOD(i * 7, 12) AS duration
        FROM UNNEST(GENERATE_ARRAY(0, 1999)) AS i
    """)
    return wh


def test_kmeans_tutorial_runs_as_written(london: Warehouse) -> None:
    london.sql(TUTORIAL_MODEL)
    out = london.sql(TUTORIAL_PIVOT)
    assert out.column_names == ["centroid", "duration", "num_trips", "distance_from_city_center"]
    rows = out.to_pylist()
    assert [r["centroid"] for r in rows] == ["Cluster#1", "Cluster#2", "Cluster#3", "Cluster#4"]
    # each pivoted value is that centroid's numerical_value, rounded to one decimal as the query asks
    centroids = london.sql("SELECT centroid_id, feature, numerical_value FROM "
                           "ML.CENTROIDS(MODEL bqml_tutorial.london_station_clusters)").to_pylist()
    for c in centroids:
        assert rows[c["centroid_id"] - 1][c["feature"]] == pytest.approx(c["numerical_value"], abs=0.05 + 1e-9)
    # the stations are 0-10 km from (-0.1, 51.5): the distances went through ST_DISTANCE in km
    assert all(0 < r["distance_from_city_center"] < 10 for r in rows)


def test_unnest_of_a_scalar_array_from_a_cte_keeps_its_values(london: Warehouse) -> None:
    out = london.sql("WITH t AS (SELECT ARRAY_AGG(x ORDER BY x) AS xs FROM UNNEST([3, 1, 2]) AS x) "
                     "SELECT (SELECT SUM(v) FROM UNNEST(xs) AS v) AS total, "
                     "(SELECT COUNT(*) FROM UNNEST(xs)) AS n FROM t").to_pylist()
    assert out == [{"total": 6, "n": 3}]


# ---- ST_GEOGPOINT / ST_DISTANCE / ST_X / ST_Y / ST_DWITHIN ------------------------------------
def haversine(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_METRES * math.asin(math.sqrt(h))


def test_st_distance_is_the_great_circle_distance_in_metres(london: Warehouse) -> None:
    # ST_DISTANCE's reference example measures between points; London to Paris is about 343.5 km
    row = london.sql("SELECT ST_DISTANCE(ST_GEOGPOINT(-0.1276, 51.5072), ST_GEOGPOINT(2.3522, 48.8566)) AS d, "
                     "ST_DISTANCE(ST_GEOGPOINT(0, 0), ST_GEOGPOINT(180, 0)) AS half, "
                     "ST_DISTANCE(ST_GEOGPOINT(5, 5), ST_GEOGPOINT(5, 5)) AS zero").to_pylist()[0]
    assert row["d"] == pytest.approx(haversine(-0.1276, 51.5072, 2.3522, 48.8566), rel=1e-12)
    assert 343_000 < row["d"] < 344_000
    assert row["half"] == pytest.approx(math.pi * EARTH_RADIUS_METRES)
    assert row["zero"] == 0


def test_points_have_x_and_y_and_wrap_longitude(london: Warehouse) -> None:
    row = london.sql("SELECT ST_X(ST_GEOGPOINT(190, 10)) AS x, ST_Y(ST_GEOGPOINT(-3.5, 40.25)) AS y, "
                     "ST_DWITHIN(ST_GEOGPOINT(0, 0), ST_GEOGPOINT(0, 1), 112000) AS near, "
                     "ST_DWITHIN(ST_GEOGPOINT(0, 0), ST_GEOGPOINT(0, 1), 110000) AS far, "
                     "ST_DISTANCE(ST_GEOGPOINT(NULL, 0), ST_GEOGPOINT(0, 0)) AS unknown").to_pylist()[0]
    assert row == {"x": -170.0, "y": 40.25, "near": True, "far": False, "unknown": None}


@pytest.mark.parametrize("statement, message", [
    ("SELECT ST_GEOGPOINT(0, 91) AS p", r"ST_GEOGPOINT: latitude must be in \[-90, 90\]"),
    ("SELECT ST_DISTANCE(ST_GEOGPOINT(0, 0), ST_GEOGPOINT(1, 1), TRUE) AS d", "use_spheroid is not supported"),
    ("SELECT ST_ASTEXT(ST_GEOGPOINT(0, 0)) AS t", r"geography \(ST_ASTEXT\).*only ST_GEOGPOINT, ST_X, ST_Y, ST_DISTANCE, ST_DWITHIN"),
])
def test_what_is_outside_the_subset_is_refused_clearly(london: Warehouse, statement: str, message: str) -> None:
    with pytest.raises(SQLError, match=message):
        london.sql(statement)


# ---- ML.ADVANCED_WEIGHTS: categorical inputs -------------------------------------------------
def test_advanced_weights_give_one_row_per_category_as_documented(wh: Warehouse) -> None:
    """The reference page's output: processed_input, category (NULL for numeric inputs; one row
    per category of a non-numeric input), weight, standard_error, p_value."""
    wh.sql("CREATE MODEL lin OPTIONS(model_type='linear_reg', input_label_cols=['y'], calculate_p_values=TRUE, "
           "category_encoding_method='DUMMY_ENCODING') AS SELECT x1, color, y FROM people")
    out = wh.sql("SELECT * FROM ML.ADVANCED_WEIGHTS(MODEL lin, STRUCT(TRUE AS standardize))")
    assert out.column_names == ["processed_input", "category", "weight", "standard_error", "p_value"]
    rows = out.to_pylist()
    colors = {r["category"] for r in rows if r["processed_input"] == "color"}
    assert colors == {c for (c,) in wh.con.sql("SELECT DISTINCT color FROM people").fetchall()}
    assert [r["category"] for r in rows if r["processed_input"] in ("x1", "__INTERCEPT__")] == [None, None]
    # DUMMY_ENCODING drops one category: its weight is 0 with no standard error; the others have both
    dropped = [r for r in rows if r["processed_input"] == "color" and r["standard_error"] is None]
    assert len(dropped) == 1
    assert all(0 <= r["p_value"] <= 1 for r in rows if r["standard_error"] is not None)
    # ML.WEIGHTS carries the same categories nested, as category_weights
    nested = {r["processed_input"]: r["category_weights"] for r in wh.sql("SELECT * FROM ML.WEIGHTS(MODEL lin)").to_pylist()}
    assert {c["category"] for c in nested["color"]} == colors
