"""A sweep of bad statements, from syntax errors to wrong types, unknown models and columns and
cast failures at prediction time: each must fail with predserve's own error naming the
statement, never a traceback or an engine's internal message (DuckDB's error classes, its
caret under the transpiled SQL, pyarrow's exceptions, placeholder relation names)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from predserve import Warehouse
from predserve.errors import PredserveError

INTERNAL = re.compile(
    r"Traceback|File \"|\w+(Error|Exception):|[A-Z][a-z]+ (Error|Exception)|not found in FROM clause!|LINE \d|\^\^|__predserve|duckdb|DuckDB|pyarrow|Arrow|"
    r"\b(VARCHAR|BIGINT|INTEGER|INT32|DOUBLE|BOOLEAN|TIMESTAMPTZ|BLOB)\b|Candidate functions|INSTALL|<class"
)

BAD = [
    # syntax
    "SELEC id FROM people",
    "SELECT id FROM people WHERE",
    "SELECT (id FROM people",
    "SELECT 'unterminated FROM people",
    "CREATE MODEL m OPTIONS model_type='linear_reg' AS SELECT x1, y FROM people",
    "CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y']) SELECT x1, y FROM people",
    "SELECT * FROM ML.PREDICT(m, TABLE people)",
    "SELECT * FROM ML.PREDICT(MODEL m, people)",
    "SELECT * FROM ML.EXPLAIN_FORECAST(MODEL lin)",
    "BEGIN SELECT 1; END",
    "CALL my_procedure()",
    # unknown things
    "SELECT * FROM no_such_table",
    "SELECT no_such_column FROM people",
    "SELECT p.id FROM people",
    "SELECT no_such_function(id) FROM people",
    "SELECT * FROM ML.PREDICT(MODEL ghost, TABLE people)",
    "SELECT * FROM ML.EVALUATE(MODEL `my-project.nowhere.ghost`)",
    "SELECT * FROM ML.PREDICT(MODEL lin, TABLE no_such_table)",
    "DROP MODEL ghost",
    "ALTER MODEL ghost SET OPTIONS(description='x')",
    # types and values
    "SELECT 'a' + 1",
    "SELECT CAST('abc' AS INT64)",
    "SELECT CAST('2024-13-45' AS DATE)",
    "SELECT id FROM people WHERE color > 3",
    "CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols='y') AS SELECT x1, y FROM people",
    "CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y'], max_iterations='many') AS SELECT x1, y FROM people",
    "CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y'], l2_reg=-1) AS SELECT x1, y FROM people",
    "CREATE MODEL m OPTIONS(model_type='neural_net') AS SELECT x1, y FROM people",
    "CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['color']) AS SELECT x1, color FROM people",
    "CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT CAST(color AS FLOAT64) AS x, y FROM people",
    "CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT * FROM people WHERE FALSE",
    "SELECT * FROM ML.PREDICT(MODEL lin, TABLE people, STRUCT(0.5 AS threshold))",
    "SELECT * FROM ML.PREDICT(MODEL clf, TABLE people, STRUCT('x' AS threshold))",
    "SELECT * FROM ML.WEIGHTS(MODEL lin, STRUCT(1 AS standardize))",
    # prediction time
    "SELECT * FROM ML.PREDICT(MODEL lin, (SELECT 'abc' AS x1, 2.0 AS x2))",
    "SELECT * FROM ML.PREDICT(MODEL lin, (SELECT CAST('abc' AS FLOAT64) AS x1, 2.0 AS x2))",
    "SELECT * FROM ML.PREDICT(MODEL lin, (SELECT 1.0 AS x1))",
    "SELECT * FROM ML.PREDICT(MODEL tr, (SELECT 'abc' AS x1, 2.0 AS x2))",
    "SELECT * FROM ML.PREDICT(MODEL tr, (SELECT 1.0 AS x2))",
    "SELECT * FROM ML.EVALUATE(MODEL clf, (SELECT x1, x2 FROM people))",
    "SELECT * FROM ML.EVALUATE(MODEL clf, (SELECT x1, x2, 7 AS label FROM people))",
    "SELECT (SELECT prob FROM UNNEST(predicted_label_probs) WHERE nope) FROM ML.PREDICT(MODEL clf, TABLE people)",
    # scripting and things predserve does not have
    "DECLARE x INT64; SET x = 'five'",
    "SET undeclared = 1",
    "SELECT ST_GEOGFROMTEXT('POINT(1 2)')",
    "SELECT @param",
    "SELECT * FROM ML.WEIGHTS(MODEL lin); SELECT * FROM ML.WEIGHTS(MODEL km)",
    # the evaluation, explanation and preprocessing functions
    "SELECT * FROM ML.ROC_CURVE(MODEL lin, TABLE people)",
    "SELECT * FROM ML.ROC_CURVE(MODEL clf, TABLE people, GENERATE_ARRAY('a', 'b', 0.1))",
    "SELECT * FROM ML.CONFUSION_MATRIX(MODEL clf, (SELECT x1, x2 FROM people))",
    "SELECT * FROM ML.DETECT_ANOMALIES(MODEL km, STRUCT('x' AS contamination), TABLE people)",
    "SELECT * FROM ML.DETECT_ANOMALIES(MODEL clf, STRUCT(0.1 AS contamination), TABLE people)",
    "SELECT * FROM ML.EXPLAIN_PREDICT(MODEL lin, (SELECT 'abc' AS x1, 2.0 AS x2))",
    "SELECT * FROM ML.EXPLAIN_PREDICT(MODEL clf, TABLE people, STRUCT(0 AS top_k_features))",
    "SELECT * FROM ML.GLOBAL_EXPLAIN(MODEL lin)",
    "SELECT * FROM ML.ADVANCED_WEIGHTS(MODEL clf)",
    "SELECT * FROM ML.TRANSFORM(MODEL lin, TABLE people)",
    "SELECT * FROM ML.TRANSFORM(MODEL tr, (SELECT 'abc' AS x1, 2.0 AS x2))",
    "SELECT * FROM ML.FEATURE_IMPORTANCE(MODEL km)",
    "SELECT * FROM ML.CENTROIDS(MODEL km, STRUCT(1 AS standardize))",
    "SELECT ML.HASH_BUCKETIZE(color, -1) FROM people",
    "SELECT ML.NGRAMS(color, 2) FROM people",
    "SELECT ML.LABEL_ENCODER(color, 'top') OVER() FROM people",
    "CREATE MODEL m OPTIONS(model_type='random_forest_classifier', input_label_cols=['label'], num_parallel_tree=1) AS SELECT x1, label FROM people",
    "CREATE MODEL m OPTIONS(model_type='random_forest_regressor', input_label_cols=['y'], max_iterations=3) AS SELECT x1, y FROM people",
]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    wh = Warehouse(tmp_path_factory.mktemp("errors") / "wh.duckdb")
    wh.sql("""
        CREATE TABLE people AS SELECT i AS id, (i * 37 % 101) / 10.0 AS x1, (i * 53 % 89) / 7.0 AS x2,
          CASE i % 3 WHEN 0 THEN 'red' WHEN 1 THEN 'green' ELSE 'blue' END AS color,
          (i * 37 % 101) / 5.0 + (i * 53 % 89) / 7.0 AS y, CAST(i % 2 AS INT64) AS label FROM range(300) t(i);
        CREATE MODEL lin OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, x2, y FROM people;
        CREATE MODEL clf OPTIONS(model_type='logistic_reg', input_label_cols=['label']) AS SELECT x1, x2, label FROM people;
        CREATE MODEL km OPTIONS(model_type='kmeans', num_clusters=2) AS SELECT x1, x2 FROM people;
        CREATE MODEL tr OPTIONS(model_type='linear_reg', input_label_cols=['y'])
          TRANSFORM(ML.STANDARD_SCALER(x1) OVER() AS s1, x2 * 2 AS d2, y) AS SELECT x1, x2, y FROM people
    """)
    yield wh
    wh.close()


def test_the_sweep_is_long_enough() -> None:
    assert len(BAD) >= 30


@pytest.mark.parametrize("statement", BAD)
def test_bad_statements_fail_in_the_users_terms(warehouse: Warehouse, statement: str) -> None:
    with pytest.raises(PredserveError) as raised:
        warehouse.sql(statement)
    message = str(raised.value)
    assert message.startswith("statement"), message
    assert not INTERNAL.search(message), message
    assert len(message) < 600, message


def test_the_cli_prints_the_error_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "predserve.cli", "sql", "-w", str(tmp_path / "w.duckdb"),
                             "SELECT * FROM ML.PREDICT(MODEL ghost, (SELECT 1 AS x))"], capture_output=True, text=True)
    assert result.returncode != 0
    assert "model ghost does not exist" in result.stderr and not INTERNAL.search(result.stderr + result.stdout)
