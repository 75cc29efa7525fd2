"""BigQuery scripting: DECLARE and SET variables, as BigQuery's procedural language reference
defines them, used in queries, ML functions' settings and CREATE MODEL's query."""

from __future__ import annotations

import datetime as dt

import pytest

from predserve import Warehouse
from predserve.errors import SQLError


def value(wh: Warehouse, script: str) -> object:
    return list(wh.sql(script).to_pylist()[0].values())[0]


def test_the_issue_script_declare_set_then_a_threshold(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL clf OPTIONS(model_type='logistic_reg', input_label_cols=['label']) AS SELECT x1, x2, label FROM people")
    by_variable = wh.sql("""
        DECLARE x FLOAT64 DEFAULT 0.5;
        SET x = 0.3;
        SELECT count(*) AS positives FROM ML.PREDICT(MODEL clf, TABLE people, STRUCT(x AS threshold)) WHERE predicted_label = 1
    """)
    literal = wh.sql("SELECT count(*) AS positives FROM ML.PREDICT(MODEL clf, TABLE people, STRUCT(0.3 AS threshold)) WHERE predicted_label = 1")
    default = wh.sql("SELECT count(*) AS positives FROM ML.PREDICT(MODEL clf, TABLE people) WHERE predicted_label = 1")
    assert by_variable.to_pylist() == literal.to_pylist() != default.to_pylist()


def test_declare_forms(wh: Warehouse) -> None:
    assert value(wh, "DECLARE x INT64; SELECT x IS NULL AS v") is True  # no DEFAULT: NULL
    assert wh.sql("DECLARE x, y, z INT64 DEFAULT 7; SELECT x + y + z AS v").to_pylist() == [{"v": 21}]
    assert value(wh, "DECLARE d DATE DEFAULT '2024-02-29'; SELECT d AS v") == dt.date(2024, 2, 29)  # literal coercion
    assert value(wh, "DECLARE top DEFAULT (SELECT max(x1) FROM people); SELECT count(*) AS v FROM people WHERE x1 = top") == 10
    assert value(wh, "DECLARE tags ARRAY<STRING> DEFAULT ['a', 'b']; SELECT ARRAY_LENGTH(tags) AS v") == 2
    assert value(wh, "DECLARE s STRUCT<a INT64, b STRING> DEFAULT STRUCT(1 AS a, 'x' AS b); SELECT s.b AS v") == "x"
    assert value(wh, "DECLARE Mixed_Case INT64 DEFAULT 3; SELECT mixed_case AS v") == 3  # names are case-insensitive


def test_set_forms(wh: Warehouse) -> None:
    assert wh.sql("DECLARE a INT64; DECLARE b STRING; SET (a, b) = (1 + 1, 'two'); SELECT a, b").to_pylist() == [{"a": 2, "b": "two"}]
    assert wh.sql("DECLARE a INT64; DECLARE b FLOAT64; SET (a, b) = (SELECT AS STRUCT count(*), avg(x1) FROM people); "
                  "SELECT a, b > 0 AS positive").to_pylist() == [{"a": 1000, "positive": True}]
    assert value(wh, "DECLARE n INT64 DEFAULT 1; SET n = n + 1; SET n = n * 10; SELECT n AS v") == 20
    assert value(wh, "DECLARE f FLOAT64; SET f = 2; SELECT f / 4 AS v") == 0.5  # INT64 coerces to FLOAT64


def test_variables_everywhere_a_value_goes(wh: Warehouse) -> None:
    rows = wh.sql("""
        DECLARE cutoff INT64 DEFAULT 100;
        CREATE TABLE recent AS SELECT * FROM people WHERE id < cutoff;
        CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM people WHERE id >= cutoff;
        SELECT count(*) AS n FROM ML.PREDICT(MODEL m, (SELECT * FROM recent WHERE id < cutoff / 2))
    """)
    assert rows.to_pylist() == [{"n": 50}]
    assert wh.model("m").training_rows == 720  # 900 rows, 20% held out


def test_a_column_takes_precedence_over_a_variable_of_the_same_name(wh: Warehouse) -> None:
    rows = wh.sql("DECLARE x1 FLOAT64 DEFAULT -1; DECLARE id INT64 DEFAULT 3; "
                  "SELECT count(*) AS n, min(x1) AS low FROM people WHERE id < 3 AND x1 > x1 - 1")
    assert rows.to_pylist() == [{"n": 3, "low": wh.sql("SELECT min(x1) AS m FROM people WHERE id < 3").to_pylist()[0]["m"]}]
    # in a correlated subquery the outer column wins too; where no column has the name, the variable is used
    assert wh.sql("DECLARE color STRING DEFAULT 'nope'; DECLARE wanted STRING DEFAULT 'red'; "
                  "SELECT count(*) AS n FROM people p WHERE EXISTS (SELECT 1 FROM (SELECT 1 AS one) WHERE color = wanted)"
                  ).to_pylist() == [{"n": 334}]


def test_variables_last_one_script(wh: Warehouse) -> None:
    wh.sql("DECLARE gone INT64 DEFAULT 1; SELECT gone")
    with pytest.raises(SQLError, match="column gone is not in the FROM clause"):
        wh.sql("SELECT gone FROM people")


@pytest.mark.parametrize("script, message", [
    ("SELECT 1; DECLARE x INT64", "DECLARE must come before every other statement"),
    ("DECLARE x INT64; SET x = 1; DECLARE y INT64", "DECLARE must come before every other statement"),
    ("DECLARE x INT64; DECLARE X STRING", "variable X is already declared"),
    ("DECLARE x", "DECLARE x needs a type or a DEFAULT value"),
    ("SET nope = 1", "SET nope: the variable is not declared; add DECLARE nope"),
    ("DECLARE x INT64; SET x = 'five'", r"variable x is INT64; a STRING value \('five'\) cannot be assigned to it. CAST it first"),
    ("DECLARE x INT64 DEFAULT 1.5", r"variable x is INT64; a NUMERIC value \(1.5\) cannot be assigned"),
    ("DECLARE d DATE; SET d = CURRENT_TIMESTAMP()", "variable d is DATE; a TIMESTAMP value"),
    ("DECLARE a INT64; DECLARE b INT64; SET (a, b) = (1, 2, 3)", "SET assigns 2 variables but gives 3 values"),
    ("SET @@dataset_id = 'x'", "system variables such as @@dataset_id are not supported"),
    ("SELECT @threshold", r"query parameters \(@threshold\) are not supported; DECLARE a variable instead"),
    ("DECLARE x INT64; IF x IS NULL THEN SELECT 1; END IF", "predserve cannot run IF statements"),
])
def test_scripting_errors(wh: Warehouse, script: str, message: str) -> None:
    with pytest.raises(SQLError, match=message):
        wh.sql(script)


def test_a_column_of_a_subquery_or_cte_also_wins(wh: Warehouse) -> None:
    rows = wh.sql("DECLARE x1 FLOAT64 DEFAULT -1; "
                  "WITH c AS (SELECT x1 FROM people WHERE id < 2) SELECT x1 FROM (SELECT x1 FROM c) ORDER BY x1")
    assert rows.column("x1").to_pylist() == sorted(wh.sql("SELECT x1 FROM people WHERE id < 2").column("x1").to_pylist())
