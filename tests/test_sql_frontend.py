"""The SQL front end: one parse per statement, routed by node type; model names resolved as
table names are; CTEs, subqueries and correlated UNNESTs around and inside every ML table
function; ALTER MODEL; geography refused clearly. The failing cases of issue 13 are here."""

from __future__ import annotations

import pytest

from predserve import Warehouse
from predserve.errors import ModelError, SQLError
from predserve.warehouse.sql.dialect import ML_NODES, ML_TABLE_FUNCTIONS, parse_script
from predserve.warehouse.ml.functions import HANDLERS
from predserve.warehouse.sql.names import quote_identifier

CLF = "bqml_tutorial.churn_model"


@pytest.fixture
def tutorial(wh: Warehouse) -> Warehouse:
    """`people` copied into dataset bqml_tutorial, with a binary classifier and a regressor."""
    wh.sql(f"""
        CREATE SCHEMA bqml_tutorial;
        CREATE TABLE bqml_tutorial.people AS SELECT id, x1, x2, color, y, label = 1 AS churned FROM people;
        CREATE MODEL `my-project.{CLF}` OPTIONS(model_type='logistic_reg', input_label_cols=['churned'])
          AS SELECT x1, x2, color, churned FROM `my-project.bqml_tutorial.people`;
        CREATE MODEL bqml_tutorial.reg OPTIONS(model_type='linear_reg', input_label_cols=['y'])
          AS SELECT x1, x2, y FROM bqml_tutorial.people
    """)
    return wh


def count(wh: Warehouse, sql: str) -> int:
    return wh.sql(sql).to_pylist()[0]["n"]


# ---- one parse, routed by node type ---------------------------------------------------------
def test_every_ml_table_function_is_a_node_with_a_handler() -> None:
    tree = parse_script("SELECT * FROM ML.EVALUATE(MODEL `p.d.m`, TABLE d.t, STRUCT(0.4 AS threshold))")[0].tree
    node = tree.find(*ML_NODES)
    assert isinstance(node, ML_TABLE_FUNCTIONS["EVALUATE"].node) and node.this.name == "m" and node.args["expression"].name == "t"
    assert set(HANDLERS) == set(ML_TABLE_FUNCTIONS)


def test_a_column_named_model_is_not_a_model_statement(wh: Warehouse) -> None:
    assert count(wh, "CREATE TABLE t AS SELECT id AS model FROM people; SELECT count(model) AS n FROM t") == 1000


def test_model_names_resolve_like_table_names(tutorial: Warehouse) -> None:
    for model in (CLF, f"my-project.{CLF}", f"`my-project.{CLF}`", "`my-project`.bqml_tutorial.churn_model"):
        for table in ("bqml_tutorial.people", "`my-project.bqml_tutorial.people`"):
            assert count(tutorial, f"SELECT count(*) AS n FROM ML.PREDICT(MODEL {model}, TABLE {table})") == 1000
    assert tutorial.model(f"`my-project.{CLF}`").name == CLF
    with pytest.raises(ModelError, match="model churn_model does not exist. Known models: bqml_tutorial.churn_model"):
        tutorial.sql("SELECT * FROM ML.PREDICT(MODEL churn_model, TABLE people)")
    tutorial.sql(f"DROP MODEL `my-project.{CLF}`")
    assert not tutorial.sql(f"SELECT * FROM _predserve.models WHERE name = '{CLF}'").num_rows


def test_main_is_the_default_dataset_for_models_as_for_tables(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL main.m OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM main.people")
    assert count(wh, "SELECT count(*) AS n FROM ML.PREDICT(MODEL m, TABLE people)") == 1000


# ---- CTEs, subqueries, UNNEST around and inside ML functions ----------------------------------
def test_an_outer_cte_is_visible_inside_ml_predict(tutorial: Warehouse) -> None:
    assert count(tutorial, f"WITH recent AS (SELECT * FROM bqml_tutorial.people WHERE id < 10) "
                           f"SELECT count(*) AS n FROM ML.PREDICT(MODEL {CLF}, (SELECT * FROM recent))") == 10
    # CTEs that use each other, and a CTE inside the input query
    assert count(tutorial, f"WITH a AS (SELECT * FROM bqml_tutorial.people WHERE id < 50), b AS (SELECT * FROM a WHERE id < 20) "
                           f"SELECT count(*) AS n FROM ML.PREDICT(MODEL {CLF}, (WITH c AS (SELECT * FROM b WHERE id < 5) SELECT * FROM c))") == 5
    # an ML function inside a CTE, itself the input of another ML function
    rows = tutorial.sql(f"WITH scored AS (SELECT * FROM ML.PREDICT(MODEL {CLF}, TABLE bqml_tutorial.people)) "
                        f"SELECT * FROM ML.EVALUATE(MODEL {CLF}, (SELECT * FROM scored WHERE id < 200))").to_pylist()
    direct = tutorial.sql(f"SELECT * FROM ML.EVALUATE(MODEL {CLF}, (SELECT * FROM bqml_tutorial.people WHERE id < 200))").to_pylist()
    assert rows == direct


@pytest.mark.parametrize("function", ["ML.EVALUATE", "ML.PREDICT"])
def test_ctes_around_and_inside_the_input_of_every_ml_function_with_input(tutorial: Warehouse, function: str) -> None:
    outer = tutorial.sql(f"WITH e AS (SELECT * FROM bqml_tutorial.people WHERE id >= 800) "
                         f"SELECT * FROM {function}(MODEL {CLF}, (SELECT * FROM e))")
    inner = tutorial.sql(f"SELECT * FROM {function}(MODEL {CLF}, (WITH e AS (SELECT * FROM bqml_tutorial.people WHERE id >= 800) SELECT * FROM e))")
    table = tutorial.sql(f"CREATE TABLE e AS SELECT * FROM bqml_tutorial.people WHERE id >= 800; SELECT * FROM {function}(MODEL {CLF}, TABLE e)")
    assert outer.to_pylist() == inner.to_pylist() == table.to_pylist() and outer.num_rows > 0


@pytest.mark.parametrize("function", ["ML.TRAINING_INFO", "ML.FEATURE_INFO", "ML.WEIGHTS", "ML.EVALUATE"])
def test_every_ml_function_inside_ctes_and_subqueries(tutorial: Warehouse, function: str) -> None:
    direct = tutorial.sql(f"SELECT count(*) AS n FROM {function}(MODEL {CLF})").to_pylist()
    assert tutorial.sql(f"WITH f AS (SELECT * FROM {function}(MODEL {CLF})) SELECT count(*) AS n FROM f").to_pylist() == direct
    assert tutorial.sql(f"SELECT count(*) AS n FROM (SELECT * FROM {function}(MODEL {CLF}))").to_pylist() == direct
    assert tutorial.sql(f"SELECT (SELECT count(*) FROM {function}(MODEL {CLF})) AS n").to_pylist() == direct
    assert direct[0]["n"] > 0


def test_correlated_unnest_over_ml_predict_output(tutorial: Warehouse) -> None:
    scalar = (f"SELECT id, (SELECT prob FROM UNNEST(predicted_churned_probs) WHERE label = TRUE) AS p "
              f"FROM ML.PREDICT(MODEL {CLF}, (SELECT * FROM bqml_tutorial.people WHERE id < 5)) ORDER BY id")
    through_cte = (f"WITH scored AS (SELECT * FROM ML.PREDICT(MODEL {CLF}, TABLE bqml_tutorial.people)) "
                   f"SELECT id, (SELECT prob FROM UNNEST(predicted_churned_probs) WHERE label = TRUE) AS p "
                   f"FROM scored WHERE id < 5 ORDER BY id")
    joined = (f"SELECT id, c.prob AS p FROM ML.PREDICT(MODEL {CLF}, (SELECT * FROM bqml_tutorial.people WHERE id < 5)) AS s, "
              f"UNNEST(s.predicted_churned_probs) AS c WHERE c.label ORDER BY id")
    expected = [row["predicted_churned_probs"][1]["prob"] for row in tutorial.sql(
        f"SELECT * FROM ML.PREDICT(MODEL {CLF}, (SELECT * FROM bqml_tutorial.people WHERE id < 5)) ORDER BY id").to_pylist()]
    for sql in (scalar, through_cte, joined):
        assert [r["p"] for r in tutorial.sql(sql).to_pylist()] == pytest.approx(expected)


def test_unnest_of_a_plain_array_keeps_its_element_column(wh: Warehouse) -> None:
    assert wh.sql("SELECT sum(x) AS s FROM UNNEST([1, 2, 3]) AS x").to_pylist() == [{"s": 6}]
    wh.sql("CREATE TABLE arrays AS SELECT 1 AS id, [10, 20] AS xs")
    assert wh.sql("SELECT id, (SELECT sum(x) FROM UNNEST(xs) AS x) AS s FROM arrays").to_pylist() == [{"id": 1, "s": 30}]


# ---- ALTER MODEL ------------------------------------------------------------------------------
def test_alter_model_sets_description_labels_and_expiration(tutorial: Warehouse) -> None:
    tutorial.sql(f"ALTER MODEL `my-project.{CLF}` SET OPTIONS(description='weekly churn', labels=[('team', 'growth')])")
    options = tutorial.model(CLF).options
    assert options["description"] == "weekly churn" and options["labels"] == {"team": "growth"}
    assert tutorial.sql(f"SELECT options->>'description' AS d FROM _predserve.models WHERE name = '{CLF}'").to_pylist() == [{"d": "weekly churn"}]
    tutorial.sql("ALTER MODEL IF EXISTS ghost SET OPTIONS(description='x')")
    with pytest.raises(ModelError, match="model ghost does not exist"):
        tutorial.sql("ALTER MODEL ghost SET OPTIONS(description='x')")
    with pytest.raises(ModelError, match="ALTER MODEL cannot set 'l2_reg'"):
        tutorial.sql(f"ALTER MODEL {CLF} SET OPTIONS(l2_reg=0.1)")
    with pytest.raises(ModelError, match="kms_key_name belongs to BigQuery ML's Cloud KMS"):
        tutorial.sql(f"ALTER MODEL {CLF} SET OPTIONS(kms_key_name='k')")
    tutorial.sql(f"ALTER MODEL {CLF} SET OPTIONS(expiration_timestamp=TIMESTAMP '2000-01-01 00:00:00 UTC')")
    with pytest.raises(ModelError, match="expired at 2000-01-01"):
        tutorial.sql(f"SELECT * FROM ML.PREDICT(MODEL {CLF}, TABLE bqml_tutorial.people)")
    tutorial.sql(f"ALTER MODEL {CLF} SET OPTIONS(expiration_timestamp=TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 1 DAY))")
    assert count(tutorial, f"SELECT count(*) AS n FROM ML.PREDICT(MODEL {CLF}, TABLE bqml_tutorial.people)") == 1000


# ---- BigQuery's strictness ------------------------------------------------------------------------
@pytest.mark.parametrize("statement, message", [
    ("CREATE MODEL m OPTIONS model_type='linear_reg' AS SELECT x1, y FROM people", r"OPTIONS needs parentheses"),
    ("CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols='y') AS SELECT x1, y FROM people",
     r"input_label_cols must be an array, e.g. input_label_cols=\['y'\]"),
    ("CREATE MODEL m OPTIONS(model_type=linear_reg, input_label_cols=['y']) AS SELECT x1, y FROM people",
     r"must be a literal value, got the name linear_reg; write a string: model_type='linear_reg'"),
    ("CREATE MODEL m OPTIONS(model_type='linear_reg', model_type='kmeans') AS SELECT x1, y FROM people", "OPTIONS gives model_type twice"),
    ("SELECT * FROM ML.PREDICT(MODEL reg, TABLE people, STRUCT(0.5 AS threshold))",
     r"AS threshold\) applies to binary classification models only; reg is linear_reg"),
    ("SELECT * FROM ML.EVALUATE(MODEL reg, TABLE people, STRUCT(0.5 AS threshold))",
     r"AS threshold\) applies to binary classification models only"),
    ("SELECT * FROM ML.PREDICT(MODEL multi, TABLE people, STRUCT(0.5 AS threshold))",
     "binary classification models only; multi is logistic_reg with 3 classes"),
    ("SELECT * FROM ML.PREDICT(MODEL clf, TABLE people, STRUCT(1.5 AS threshold))", "threshold must be between 0 and 1"),
    ("SELECT * FROM ML.PREDICT(MODEL clf, TABLE people, STRUCT('high' AS threshold))", "threshold must be a number"),
    ("SELECT * FROM ML.PREDICT(MODEL clf, TABLE people, STRUCT(0.5))", r"needs a name, e.g. STRUCT\(0.5 AS threshold\)"),
    ("SELECT * FROM ML.PREDICT(MODEL clf, TABLE people, STRUCT(1 AS trial_id))", "trial_id belongs to BigQuery ML's hyperparameter tuning"),
    ("SELECT * FROM ML.WEIGHTS(MODEL reg, STRUCT(0.5 AS threshold))", "ML.WEIGHTS has no setting 'threshold'; it accepts standardize"),
    ("SELECT * FROM ML.EVALUATE(MODEL clf, STRUCT(0.5 AS threshold))", "a threshold needs the evaluation rows"),
    ("SELECT * FROM ML.TRAINING_INFO(MODEL reg, TABLE people)", "ML.TRAINING_INFO takes no input table"),
    ("SELECT ML.PREDICT(MODEL reg, TABLE people)", "ML.PREDICT is a table function: use it in FROM"),
    ("SELECT * FROM ML.GENERATE_EMBEDDING(MODEL clf, TABLE people)", "ML.GENERATE_EMBEDDING is not supported; predserve runs ML.PREDICT"),
    ("SELECT * FROM ML.FORECAST(MODEL clf)", r"ML.FORECAST\(MODEL clf\) applies to arima_plus models; clf is logistic_reg"),
    ("SELECT * FROM ML.PREDICT(MODEL reg, (SELECT 'a' AS x1))", r"column x1 is STRING here, but the model was trained on numbers; CAST\(x1 AS FLOAT64\)"),
])
def test_what_bigquery_rejects_is_rejected(wh: Warehouse, statement: str, message: str) -> None:
    wh.sql("CREATE MODEL reg OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM people;"
           "CREATE MODEL clf OPTIONS(model_type='logistic_reg', input_label_cols=['label']) AS SELECT x1, label FROM people;"
           "CREATE MODEL multi OPTIONS(model_type='logistic_reg', input_label_cols=['kind']) AS SELECT x1, kind FROM people")
    with pytest.raises((SQLError, ModelError), match=message):
        wh.sql(statement)


# ---- geography -------------------------------------------------------------------------------
@pytest.mark.parametrize("statement, what", [
    ("SELECT ST_GEOGFROMTEXT('POINT(-122.3 47.6)') AS p", "ST_GEOGFROMTEXT"),
    ("SELECT ST_AREA(ST_GEOGPOINT(0, 0)) AS d", "ST_AREA"),
    ("CREATE TABLE places (name STRING, location GEOGRAPHY)", "the GEOGRAPHY type"),
    ("DECLARE home GEOGRAPHY", "the GEOGRAPHY type"),
])
def test_geography_is_refused_with_a_message_a_user_can_act_on(wh: Warehouse, statement: str, what: str) -> None:
    with pytest.raises(SQLError, match=rf"geography \({what}.*not available in predserve's warehouse.*FLOAT64 columns") as raised:
        wh.sql(statement)
    assert "INSTALL" not in str(raised.value)


def test_one_quoting_helper_for_identifiers(wh: Warehouse) -> None:
    odd = 'we"ird col'
    wh.sql(f"CREATE TABLE q AS SELECT 1 AS `{odd}`")
    assert wh.con.sql(f"SELECT {quote_identifier(odd)} FROM q").fetchall() == [(1,)]


def test_docs_list_every_ml_table_function_and_scripting_statement() -> None:
    from pathlib import Path

    sql_md = (Path(__file__).resolve().parent.parent / "docs" / "sql.md").read_text()
    ml_section = sql_md[sql_md.index("## ML functions"):sql_md.index("## Known differences")]
    for name in ML_TABLE_FUNCTIONS:
        assert f"`ML.{name}(MODEL m" in ml_section, f"docs/sql.md does not document ML.{name}"
    for statement in ("DECLARE", "SET", "ALTER MODEL", "DROP MODEL"):
        assert statement in sql_md
