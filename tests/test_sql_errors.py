"""A sweep of bad statements, from syntax errors to wrong types, unknown models and columns and
cast failures at prediction time: each must fail with predserve's own error naming the
statement, never a traceback or an engine's internal message (DuckDB's error classes, its
caret under the transpiled SQL, pyarrow's exceptions, placeholder relation names)."""

from __future__ import annotations

import ast
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
    "SELECT ST_GEOGPOINT(1, 2)",
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


# ---- syntax errors in BigQuery's terms: the unexpected word, where it starts, the likely keyword
@pytest.mark.parametrize("statement, message", [
    ("SELEC * FROM people", 'syntax error at line 1, column 1: unexpected identifier "SELEC"; did you mean SELECT?'),
    ("SELECT * FORM people", 'syntax error at line 1, column 15: unexpected identifier "people"; '
                             "did you mean FROM instead of FORM (at line 1, column 10)?"),
    ("SELECT id FROM people GROPU BY id", 'unexpected identifier "BY"; did you mean GROUP instead of GROPU'),
    ("SELECT id FROM people LIMT 3", "unexpected number 3; did you mean LIMIT instead of LIMT (at line 1, column 23)?"),
    ("SELECT id * FROM people", "syntax error at line 1, column 13: unexpected keyword FROM: an expression must follow *"),
    ("SELECT id FROM people WHERE", "syntax error at line 1, column 28: unexpected end of statement: the WHERE clause is incomplete"),
    ("SELECT (id FROM people", "syntax error at line 1, column 12: expected ) but got keyword FROM"),
    # in a script, the position counts within the statement, and the script's line is added
    ("SELECT 1; SELECT * FORM people", "statement 2 of 2 ('SELECT * FORM people'): syntax error at line 1, column 15: "),
    ("SELECT 1;\n\nSELECT id,\n  x1 FORM people", "syntax error at line 2, column 11 (line 4 of the script): "
                                                  'unexpected identifier "people"; did you mean FROM instead of FORM (at line 2, column 6)?'),
    ("CREATE MODEL m OPTION(model_type='logistic_reg') AS SELECT x1, label FROM people",
     'syntax error at line 1, column 16: unexpected identifier "OPTION"; did you mean OPTIONS?'),
    ("CREATE OR REPLACE MODEL m TRANSFORM(x1) OPTOINS(model_type='linear_reg') AS SELECT x1, y FROM people",
     'unexpected identifier "OPTOINS"; did you mean OPTIONS?'),
    ("CREATE SNAPSHOT TABLE s CLONE people", 'predserve cannot read this CREATE statement: unexpected identifier "SNAPSHOT"'),
    ("ASSERT (SELECT COUNT(*) FROM people) > 0", "predserve cannot run ASSERT statements"),
])
def test_syntax_errors_name_the_unexpected_word_and_its_place(warehouse: Warehouse, statement: str, message: str) -> None:
    with pytest.raises(PredserveError) as raised:
        warehouse.sql(statement)
    assert message in str(raised.value)
    assert "MUL" not in str(raised.value) and "Invalid expression" not in str(raised.value)
    assert "cannot run CREATE statements" not in str(raised.value)


def test_docs_sql_error_examples_are_what_the_code_raises() -> None:
    """docs/sql.md shows what wh.sql raises for a few mistakes: run each, compare word for word."""
    sql_md = (Path(__file__).resolve().parent.parent / "docs" / "sql.md").read_text()
    section = sql_md[sql_md.index("### Errors"):sql_md.index("## Models")]
    examples = re.findall(r"^>>> wh\.sql\((.+)\)\n(\w+): (.+)$", section, re.M)
    assert len(examples) >= 4 and any("SELEC *" in call for call, _, _ in examples)
    wh = Warehouse()
    wh.sql("CREATE TABLE t AS SELECT 1 AS x, 2.0 AS y")
    for call, kind, message in examples:
        with pytest.raises(PredserveError) as raised:
            wh.sql(ast.literal_eval(call))
        assert (type(raised.value).__name__, str(raised.value)) == (kind, message)


# ---- INFORMATION_SCHEMA and DESCRIBE, as BigQuery users list tables and columns
def test_information_schema_columns_and_tables(warehouse: Warehouse) -> None:
    warehouse.sql("CREATE SCHEMA IF NOT EXISTS shop; CREATE OR REPLACE TABLE shop.orders AS "
                  "SELECT 1 AS id, 'x' AS item, [STRUCT(2.5 AS price)] AS lines, TIMESTAMP '2024-01-01 00:00:00+00' AS at; "
                  "CREATE OR REPLACE VIEW shop.cheap AS SELECT id FROM shop.orders")
    columns = warehouse.sql("SELECT table_name, column_name, ordinal_position, data_type "
                            "FROM shop.INFORMATION_SCHEMA.COLUMNS WHERE table_name = 'orders'").to_pylist()
    assert columns == [
        {"table_name": "orders", "column_name": "id", "ordinal_position": 1, "data_type": "INT64"},
        {"table_name": "orders", "column_name": "item", "ordinal_position": 2, "data_type": "STRING"},
        {"table_name": "orders", "column_name": "lines", "ordinal_position": 3, "data_type": "ARRAY<STRUCT<price NUMERIC(2, 1)>>"},
        {"table_name": "orders", "column_name": "at", "ordinal_position": 4, "data_type": "TIMESTAMP"},
    ]
    tables = warehouse.sql("SELECT table_schema, table_name, table_type FROM `my-project`.shop.INFORMATION_SCHEMA.TABLES")
    assert tables.to_pylist() == [{"table_schema": "shop", "table_name": "cheap", "table_type": "VIEW"},
                                  {"table_schema": "shop", "table_name": "orders", "table_type": "BASE TABLE"}]
    # no dataset: the default one; a region: every dataset but predserve's own
    assert {r["table_name"] for r in warehouse.sql("SELECT table_name FROM INFORMATION_SCHEMA.TABLES").to_pylist()} == {"people"}
    everywhere = warehouse.sql("SELECT DISTINCT table_schema FROM `region-us`.INFORMATION_SCHEMA.COLUMNS ORDER BY 1")
    assert everywhere.column("table_schema").to_pylist() == ["main", "shop"]
    assert "shop" in warehouse.sql("SELECT schema_name FROM `region-us`.INFORMATION_SCHEMA.SCHEMATA").column("schema_name").to_pylist()
    described = warehouse.sql("DESCRIBE shop.orders").to_pylist()
    assert [(r["column_name"], r["data_type"]) for r in described] == [(c["column_name"], c["data_type"]) for c in columns]


@pytest.mark.parametrize("statement, message", [
    ("SELECT * FROM shop.INFORMATION_SCHEMA.PARTITIONS", "INFORMATION_SCHEMA.PARTITIONS is not available in the local "
                                                         "warehouse: it has INFORMATION_SCHEMA.SCHEMATA"),
    ("SELECT * FROM nowhere.INFORMATION_SCHEMA.COLUMNS", "dataset nowhere does not exist"),
    ("SELECT nope FROM INFORMATION_SCHEMA.COLUMNS", "column nope is not in the FROM clause"),
])
def test_information_schema_errors(warehouse: Warehouse, statement: str, message: str) -> None:
    with pytest.raises(PredserveError, match=re.escape(message)) as raised:
        warehouse.sql(statement)
    assert not INTERNAL.search(str(raised.value)), str(raised.value)
