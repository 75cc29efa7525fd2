"""Models are stored as data: loading a warehouse file never runs code (issue 11, item 1).

Every test works on a real DuckDB warehouse file. A row of ``_predserve.models`` is
untrusted input: an older predserve's pickle (here, one that would create a marker file
when unpickled), a damaged or foreign payload, a crafted TRANSFORM or XGBoost model must
each give a clear error that says how to re-create the model, through ``Warehouse.sql``
and through the CLI in a subprocess; and every model type must come back exactly as
CREATE MODEL trained it.
"""

from __future__ import annotations

import builtins
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from predserve import Warehouse
from predserve.errors import ModelError
from predserve.warehouse.models import catalog, storage, transform
from predserve.warehouse.models import TrainedModel
from predserve.warehouse.ml.weights import weights_table

MIXED = """
    SET TimeZone = 'UTC';
    CREATE TABLE mixed AS
    SELECT i AS id,
           (i * 37 % 101) / 10.0 AS x1,
           CASE WHEN i % 17 = 0 THEN NULL ELSE (i * 53 % 89) / 7.0 END AS x2,
           CASE i % 3 WHEN 0 THEN 'red' WHEN 1 THEN 'green' ELSE 'blue' END AS color,
           CASE i % 4 WHEN 0 THEN 'a' WHEN 1 THEN 'b' ELSE 'c' END AS kind,
           i % 4 = 0 AS flag,
           encode(CASE i % 2 WHEN 0 THEN 'even' ELSE 'odd' END) AS raw,
           DATE '2024-01-01' + CAST(i % 5 AS INTEGER) AS day,
           TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_hours(i * 7) AS seen,
           [(i % 7) / 7.0, (i % 3) * 1.0] AS vec,
           CASE WHEN i % 9 = 0 THEN NULL ELSE [CASE i % 2 WHEN 0 THEN 'x' ELSE 'y' END, 'z'] END AS tags,
           {'a': (i % 11) * 1.0, 'b': CASE i % 2 WHEN 0 THEN 'even' ELSE 'odd' END} AS st,
           ['w' || (i % 3), 'v' || (i % 2), 'u'] AS tokens,
           3.0 * ((i * 37 % 101) / 10.0) + CASE i % 3 WHEN 0 THEN 5 ELSE 0 END + ((i * 7919) % 13 - 6) / 10.0 AS y,
           CASE WHEN (i * 37 % 101) / 10.0 + ((i * 7919) % 17) / 4.0 > 7 THEN 1 ELSE 0 END AS label
    FROM range(600) t(i)
"""
ALL_FEATURES = "x1, x2, color, flag, raw, day, seen, vec, tags, st"
TRANSFORM = ("TRANSFORM(ML.STANDARD_SCALER(x1) OVER() AS s1, ML.MIN_MAX_SCALER(x2) OVER() AS m2, ML.BUCKETIZE(x1, [3, 6]) AS b1, "
             "ML.QUANTILE_BUCKETIZE(x2, 4) OVER() AS q2, ML.LABEL_ENCODER(color) OVER() AS c, "
             "ML.ONE_HOT_ENCODER(kind, 'most_frequent') OVER() AS oh, ML.ROBUST_SCALER(x1) OVER() AS r, "
             "ML.MAX_ABS_SCALER(x1) OVER() AS ma, ML.IMPUTER(x2, 'median') OVER() AS imp, "
             "ML.POLYNOMIAL_EXPAND(STRUCT(x1 AS f1, x1 * 2 AS f2)) AS p, ML.FEATURE_CROSS(STRUCT(color, kind)) AS fc, "
             "IF(x1 > 5, 1.0, 0.0) AS big, ML.NGRAMS(tokens, [1, 2]) AS grams, ML.HASH_BUCKETIZE(color, 4) AS hashed, st, y)")
# (model, its CREATE MODEL statements: a warm start is the second one)
MODELS: dict[str, list[str]] = {
    "linear_normal_equation": [f"CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y'], "
                               f"optimize_strategy='NORMAL_EQUATION') AS SELECT {ALL_FEATURES}, y FROM mixed"],
    "linear_gradient_descent_dummy": [f"CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y'], l1_reg=0.5, "
                                      f"optimize_strategy='BATCH_GRADIENT_DESCENT', category_encoding_method='DUMMY_ENCODING') "
                                      f"AS SELECT {ALL_FEATURES}, y FROM mixed"],
    "linear_transform": [f"CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y']) {TRANSFORM} "
                         "AS SELECT x1, x2, color, kind, st, tokens, y FROM mixed"],
    "linear_warm_start": [
        "CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y'], optimize_strategy='BATCH_GRADIENT_DESCENT', "
        "max_iterations=2, early_stop=FALSE) AS SELECT x1, color, y FROM mixed",
        "CREATE OR REPLACE MODEL m OPTIONS(model_type='linear_reg', warm_start=TRUE) AS SELECT x1, color, y FROM mixed"],
    "logistic_binary_class_weights_warm_start": [
        f"CREATE MODEL m OPTIONS(model_type='logistic_reg', input_label_cols=['label'], max_iterations=3, "
        f"class_weights=[STRUCT(0, 0.3), STRUCT(1, 0.7)]) AS SELECT {ALL_FEATURES}, label FROM mixed",
        f"CREATE OR REPLACE MODEL m OPTIONS(model_type='logistic_reg', warm_start=TRUE) AS SELECT {ALL_FEATURES}, label FROM mixed"],
    "logistic_multiclass": [f"CREATE MODEL m OPTIONS(model_type='logistic_reg', input_label_cols=['kind'], auto_class_weights=TRUE) "
                            f"AS SELECT {ALL_FEATURES}, kind FROM mixed"],
    "boosted_classifier_target_encoding": [
        "CREATE MODEL m OPTIONS(model_type='boosted_tree_classifier', input_label_cols=['label'], max_iterations=5, "
        "category_encoding_method='TARGET_ENCODING') AS SELECT x1, x2, color, flag, raw, day, seen, vec, label FROM mixed"],
    "boosted_classifier_multiclass_one_hot": [
        f"CREATE MODEL m OPTIONS(model_type='boosted_tree_classifier', input_label_cols=['kind'], max_iterations=4, "
        f"category_encoding_method='ONE_HOT_ENCODING') AS SELECT {ALL_FEATURES}, kind FROM mixed"],
    "boosted_regressor_dart": [
        f"CREATE MODEL m OPTIONS(model_type='boosted_tree_regressor', input_label_cols=['y'], booster_type='DART', dropout=0.3, "
        f"max_iterations=5) AS SELECT {ALL_FEATURES}, y FROM mixed"],
    "boosted_regressor_transform": [f"CREATE MODEL m OPTIONS(model_type='boosted_tree_regressor', input_label_cols=['y'], "
                                    f"max_iterations=3) {TRANSFORM} AS SELECT x1, x2, color, kind, st, tokens, y FROM mixed"],
    "linear_p_values_global_explain": [
        "CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y'], calculate_p_values=TRUE, "
        "category_encoding_method='DUMMY_ENCODING', enable_global_explain=TRUE) AS SELECT x1, x2, color, seen, y FROM mixed"],
    "logistic_p_values_global_explain": [
        "CREATE MODEL m OPTIONS(model_type='logistic_reg', input_label_cols=['label'], calculate_p_values=TRUE, "
        "category_encoding_method='DUMMY_ENCODING', enable_global_explain=TRUE) AS SELECT x1, x2, color, label FROM mixed"],
    "random_forest_classifier_multiclass_global_explain": [
        f"CREATE MODEL m OPTIONS(model_type='random_forest_classifier', input_label_cols=['kind'], num_parallel_tree=5, "
        f"max_tree_depth=4, enable_global_explain=TRUE) AS SELECT {ALL_FEATURES}, kind FROM mixed"],
    "random_forest_regressor_transform": [
        f"CREATE MODEL m OPTIONS(model_type='random_forest_regressor', input_label_cols=['y'], num_parallel_tree=4, "
        f"max_tree_depth=3) {TRANSFORM} AS SELECT x1, x2, color, kind, st, tokens, y FROM mixed"],
    "kmeans_cosine": [f"CREATE MODEL m OPTIONS(model_type='kmeans', num_clusters=3, kmeans_init_method='KMEANS++', "
                      f"distance_type='COSINE') AS SELECT {ALL_FEATURES} FROM mixed"],
    "kmeans_warm_start": [
        "CREATE MODEL m OPTIONS(model_type='kmeans', num_clusters=4, max_iterations=2, early_stop=FALSE) AS SELECT x1, x2, color FROM mixed",
        "CREATE OR REPLACE MODEL m OPTIONS(model_type='kmeans', warm_start=TRUE) AS SELECT x1, x2, color FROM mixed"],
}


@pytest.fixture
def mixed(tmp_path: Path) -> Iterator[Path]:
    """A warehouse file with `mixed`: every kind of feature column the encoder handles
    (written in DuckDB's SQL, for its BLOB and STRUCT literals)."""
    path = tmp_path / "mixed.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(MIXED)
    yield path


def stored_payload(path: Path, name: str) -> bytes:
    with duckdb.connect(str(path)) as con:
        return con.execute("SELECT payload FROM _predserve.models WHERE name = ?", [name]).fetchall()[0][0]


def plant_payload(path: Path, name: str, payload: bytes) -> None:
    """Replace a stored model's payload, as a crafted or damaged warehouse file would hold it."""
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE _predserve.models SET payload = ? WHERE name = ?", [payload, name])


def edit_payload(path: Path, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    model = storage.load(stored_payload(path, name))
    change(model)
    plant_payload(path, name, storage.MAGIC + json.dumps({"format_version": storage.FORMAT_VERSION, "model": model}).encode())


def ipc_bytes(batch: pa.RecordBatch) -> bytes:
    """The batch's exact bytes: equal only when every value is bit-identical."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


# ---- the round trip: every model type comes back as CREATE MODEL trained it -----------------------
@pytest.mark.parametrize("kind", list(MODELS))
def test_every_model_type_round_trips_exactly(kind: str, mixed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trained: list[TrainedModel] = []
    real_save = catalog.save

    def keep_and_save(con: duckdb.DuckDBPyConnection, model: TrainedModel, replace: bool) -> None:
        trained.append(model)  # the model exactly as CREATE MODEL hands it to the catalog
        real_save(con, model, replace)

    monkeypatch.setattr(catalog, "save", keep_and_save)
    with Warehouse(mixed) as wh:
        for statement in MODELS[kind]:
            wh.sql(statement)
    before = trained[-1]
    with Warehouse(mixed, read_only=True) as wh:  # a new process would open the file like this
        after = wh.model("m")
        table = wh.sql("SELECT * FROM mixed")
        sql_info = wh.sql("SELECT * FROM ML.TRAINING_INFO(MODEL m)").to_pylist()
        sql_features = wh.sql("SELECT * FROM ML.FEATURE_INFO(MODEL m)").to_pylist()
        sql_evaluation = wh.sql("SELECT * FROM ML.EVALUATE(MODEL m)").to_pylist()
    assert type(after.estimator) is type(before.estimator)
    assert storage.dump(after.to_data()) == storage.dump(before.to_data())  # everything the model holds
    batch = table.combine_chunks().to_batches()[0]
    assert ipc_bytes(after.predict_batch(batch)) == ipc_bytes(before.predict_batch(batch))
    if len(before.classes) == 2:
        assert ipc_bytes(after.predict_batch(batch, 0.3)) == ipc_bytes(before.predict_batch(batch, 0.3))
    assert after.evaluate(table) == before.evaluate(table)
    assert sql_evaluation == [before.evaluation] and sql_features == before.feature_info
    assert [{k: v for k, v in row.items()} for row in sql_info] == [{"training_run": 0, **row} for row in before.training_info]
    if before.model_type in ("linear_reg", "logistic_reg"):
        for standardize in (False, True):
            assert weights_table(after, standardize).equals(weights_table(before, standardize))
    for function in ("ML.CONFUSION_MATRIX(MODEL m)", "ML.ROC_CURVE(MODEL m)", "ML.GLOBAL_EXPLAIN(MODEL m)",
                     "ML.ADVANCED_WEIGHTS(MODEL m)", "ML.FEATURE_IMPORTANCE(MODEL m)", "ML.CENTROIDS(MODEL m)",
                     "ML.DETECT_ANOMALIES(MODEL m, STRUCT(0.1 AS contamination), TABLE mixed)",
                     "ML.EXPLAIN_PREDICT(MODEL m, TABLE mixed)", "ML.TRANSFORM(MODEL m, TABLE mixed)"):
        if applies(function, before):  # what the model stores for them reads back (the dump above) and runs
            with Warehouse(mixed, read_only=True) as wh:
                assert wh.sql(f"SELECT count(*) AS n FROM {function}").to_pylist()[0]["n"] > 0, function
    if kind.endswith("warm_start"):
        assert {row["training_run"] for row in after.training_info} == {0, 1}
    assert after.options == json.loads(json.dumps(before.options))


def applies(function: str, model: TrainedModel) -> bool:
    """Whether ``function`` answers for ``model`` (rather than refusing its type or options)."""
    options, kind = model.options, model.model_type
    return {
        "ML.CONFUSION_MATRIX": kind.endswith("classifier") or kind == "logistic_reg",
        "ML.ROC_CURVE": (kind.endswith("classifier") or kind == "logistic_reg") and len(model.classes) == 2,
        "ML.GLOBAL_EXPLAIN": bool(options.get("enable_global_explain")),
        "ML.ADVANCED_WEIGHTS": bool(options.get("calculate_p_values")),
        "ML.FEATURE_IMPORTANCE": kind.startswith(("boosted_tree", "random_forest")),
        "ML.CENTROIDS": kind == "kmeans",
        "ML.DETECT_ANOMALIES": kind == "kmeans",
        "ML.EXPLAIN_PREDICT": kind != "kmeans",
        "ML.TRANSFORM": model.transform is not None,
    }[function.split("(")[0]]


def test_training_data_and_prediction_use_the_stored_transform(mixed: Path) -> None:
    """The TRANSFORM is stored as BigQuery SQL with the statistics as constants, and read back
    through the same checks CREATE MODEL applies."""
    with Warehouse(mixed) as wh:
        wh.sql(f"CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y'], data_split_method='NO_SPLIT') "
               f"{TRANSFORM} AS SELECT x1, x2, color, kind, st, tokens, y FROM mixed")
        stored = storage.load(stored_payload(mixed, "m"))["transform"]["columns"]
        mean = wh.sql("SELECT avg(x1) AS m FROM mixed").column(0)[0].as_py()
        assert {c["name"]: c["sql"] for c in stored}["s1"].startswith(f"((x1) - {mean!r})")
        predicted = wh.sql("SELECT predicted_y, y FROM ML.PREDICT(MODEL m, TABLE mixed)")
    assert np.corrcoef(predicted.column(0).to_numpy(), predicted.column(1).to_numpy())[0, 1] > 0.95


# ---- an older predserve's pickle never runs ----------------------------------------------------
class RunsCode:
    """Unpickling this creates ``marker``: what a crafted model payload could do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return builtins.open, (str(self.marker), "w")


@pytest.fixture
def pickled_model(tmp_path: Path) -> tuple[Path, Path]:
    """A warehouse whose model `churn` holds a pickle that would create a marker file."""
    path, marker = tmp_path / "downloaded.duckdb", tmp_path / "code-ran"
    with Warehouse(path) as wh:
        wh.sql("CREATE TABLE users AS SELECT i AS user_id, i % 7 * 1.0 AS x, i % 2 AS churned FROM range(200) t(i)")
        wh.sql("CREATE MODEL churn OPTIONS(model_type='logistic_reg', input_label_cols=['churned']) AS SELECT x, churned FROM users")
    payload = pickle.dumps(RunsCode(marker), protocol=4)
    # the payload is live: unpickled (in another process), it creates the marker
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(bytes.fromhex(sys.argv[1]))", payload.hex()], check=True)
    assert marker.exists()
    marker.unlink()
    plant_payload(path, "churn", payload)
    return path, marker


OLD_PICKLE = r"model churn cannot be loaded: it was saved by an older predserve as a Python pickle.*CREATE OR REPLACE MODEL churn"


def test_a_pickled_model_is_refused_through_the_warehouse(pickled_model: tuple[Path, Path]) -> None:
    path, marker = pickled_model
    with Warehouse(path) as wh:
        for statement in ("SELECT * FROM ML.PREDICT(MODEL churn, TABLE users)", "SELECT * FROM ML.EVALUATE(MODEL churn)",
                          "SELECT * FROM ML.WEIGHTS(MODEL churn)", "SELECT * FROM ML.TRAINING_INFO(MODEL churn)",
                          "CREATE OR REPLACE MODEL churn OPTIONS(model_type='logistic_reg', warm_start=TRUE) AS SELECT x, churned FROM users"):
            with pytest.raises(ModelError, match=OLD_PICKLE):
                wh.sql(statement)
        assert not marker.exists()
        # what the error says to do works: the model is re-created in the data-only format
        wh.sql("CREATE OR REPLACE MODEL churn OPTIONS(model_type='logistic_reg', input_label_cols=['churned']) AS SELECT x, churned FROM users")
        assert wh.sql("SELECT count(*) AS n FROM ML.PREDICT(MODEL churn, TABLE users)").to_pylist() == [{"n": 200}]
    assert stored_payload(path, "churn").startswith(storage.MAGIC) and not marker.exists()


@pytest.mark.parametrize("command", [
    ["sql", "SELECT count(*) FROM ML.PREDICT(MODEL churn, TABLE users)"],
    ["export", "--model", "churn", "--key", "user_id", "--query", "SELECT * FROM ML.PREDICT(MODEL churn, TABLE users)"],
])
def test_a_pickled_model_is_refused_by_the_cli(command: list[str], pickled_model: tuple[Path, Path], tmp_path: Path) -> None:
    path, marker = pickled_model
    args = [command[0], "-w", str(path), *command[1:]] + (["--store", str(tmp_path / "store")] if command[0] == "export" else [])
    result = subprocess.run([sys.executable, "-m", "predserve.cli", *args], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "COLUMNS": "400"})
    assert result.returncode == 1, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert "older predserve as a Python pickle" in message and "CREATE OR REPLACE MODEL churn" in message, message
    assert "Traceback" not in result.stderr
    assert not marker.exists()


# ---- damaged, foreign and oversized payloads ------------------------------------------------------
@pytest.mark.parametrize("payload, reason", [
    (b"", "payload is not in predserve's model format"),
    (b"PK\x03\x04 a zip file", "payload is not in predserve's model format"),
    (storage.MAGIC + b"{not json", "payload is not valid JSON"),
    (storage.MAGIC + b'["a list"]', "payload has no format_version"),
    (storage.MAGIC + b'{"format_version": 2, "model": {}}', "stored in model format 2; this predserve reads format 1"),
    (storage.MAGIC + b'{"format_version": 1, "model": {"model_type": "rm -rf"}}', "unknown model_type 'rm -rf'"),
    (storage.MAGIC + b"[" * 100_000 + b"]" * 100_000, "payload is not valid JSON"),
])
def test_a_foreign_or_damaged_payload_gets_a_clear_error(payload: bytes, reason: str, wh: Warehouse) -> None:
    wh.sql("CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM people")
    plant_payload(Path(wh.path), "m", payload)
    with pytest.raises(ModelError, match=f"model m cannot be loaded: .*{reason}.*CREATE OR REPLACE MODEL m OPTIONS"):
        wh.sql("SELECT * FROM ML.PREDICT(MODEL m, TABLE people)")


@pytest.mark.parametrize("change, reason", [
    (lambda m: m["estimator"]["coef"].update(shape=[2**40, 2**40]), "array 'coef' claims shape"),
    (lambda m: m["estimator"]["coef"].update(shape=[1, 3]), "array 'coef' claims shape"),
    (lambda m: m["estimator"]["coef"].update(dtype="object"), "array 'coef' has dtype 'object'"),
    (lambda m: m["estimator"].update(coef={"dtype": "float64", "shape": [1, 3], "base64": "AAAA" * 8}),
     r"the weights have shapes \(1, 3\) and \(1,\); the model needs \(1, 2\)"),
    (lambda m: m["encoder"]["features"][0].update(kind="lambda"), "unknown feature kind 'lambda'"),
    (lambda m: m["encoder"]["features"][0].update(mean="1e308"), "the field 'mean' should be a number"),
    (lambda m: m["encoder"]["features"][0].update(mean=10**400), "its payload is malformed \\(OverflowError"),
    (lambda m: m.pop("encoder"), "the field 'encoder' is missing"),
    (lambda m: m.update(label=None), "a linear_reg model with label None"),
    (lambda m: m.update(training_info=[{"loss": "high"}, {"loss": 0.5}]), "the field 'training_info' does not make a table"),
    (lambda m: m["encoder"]["features"].__setitem__(0, {
        "kind": "categorical", "name": "x1", "one_hot": True, "dropped": None,
        "categories": {"type": {"name": "timestamp", "unit": "us", "tz": "../../etc/passwd"}, "values": []}}),
     "'type' has the time zone '../../etc/passwd'"),
])
def test_a_malformed_model_is_refused_before_anything_is_allocated(change: Callable, reason: str, wh: Warehouse) -> None:
    wh.sql("CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, x2, y FROM people")
    edit_payload(Path(wh.path), "m", change)
    with pytest.raises(ModelError, match=f"model m cannot be loaded: {reason}"):
        wh.model("m")


def test_an_oversized_payload_is_refused_by_its_size(wh: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    wh.sql("CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, y FROM people")
    size = len(stored_payload(Path(wh.path), "m"))
    monkeypatch.setattr(storage, "MAX_PAYLOAD_BYTES", size - 1)
    with pytest.raises(ModelError, match=f"model m cannot be loaded: its payload is {size:,} bytes, over the {size - 1:,}-byte limit"):
        wh.model("m")
    with pytest.raises(ModelError, match="CREATE MODEL big: the trained model cannot be stored: the model is .* over the"):
        wh.sql("CREATE MODEL big OPTIONS(model_type='linear_reg', input_label_cols=['y']) AS SELECT x1, x2, color, y FROM people")


# ---- a crafted TRANSFORM cannot smuggle SQL into DuckDB ------------------------------------------
@pytest.mark.parametrize("sql, refused", [
    ("(SELECT content FROM read_text('/etc/hostname'))", "SELECT content FROM read_text"),
    ("read_csv('/etc/passwd')", "read_csv"),
    ("getenv('HOME')", "getenv"),
    ("SUM(x1) OVER ()", "SUM"),
    ("@secret", "@secret"),
    ("x1 FROM people", "is not one expression|cannot read"),
    ("x1; DROP TABLE people", "is not one expression"),
])
def test_a_stored_transform_with_a_forbidden_expression_is_refused(sql: str, refused: str, wh: Warehouse) -> None:
    wh.sql("CREATE MODEL t OPTIONS(model_type='linear_reg', input_label_cols=['y']) "
           "TRANSFORM(ML.STANDARD_SCALER(x1) OVER() AS s1, y) AS SELECT x1, y FROM people")

    def smuggle(model: dict[str, Any]) -> None:
        model["transform"]["columns"][0]["sql"] = sql

    edit_payload(Path(wh.path), "t", smuggle)
    with pytest.raises(ModelError, match=f"model t cannot be loaded: its stored TRANSFORM column 's1': .*({refused})"):
        wh.sql("SELECT * FROM ML.PREDICT(MODEL t, TABLE people)")
    assert wh.sql("SELECT count(*) AS n FROM people").to_pylist() == [{"n": 1000}]


def test_create_model_applies_the_same_transform_checks(wh: Warehouse) -> None:
    for expression in ("(SELECT max(x1) FROM people) AS m", "SUM(x1) OVER () AS m", "IEEE_DIVIDE(x1, 2) AS m"):
        with pytest.raises(ModelError, match="TRANSFORM column 'm': .* is not allowed in a TRANSFORM"):
            wh.sql(f"CREATE MODEL t OPTIONS(model_type='linear_reg', input_label_cols=['y']) TRANSFORM({expression}, y) "
                   "AS SELECT x1, y FROM people")


def test_transforms_run_without_file_access() -> None:
    with pytest.raises(duckdb.PermissionException):
        transform._sandbox().cursor().sql("SELECT * FROM read_text('/etc/hostname')").fetchall()


# ---- a crafted XGBoost model is checked before XGBoost reads it ----------------------------------
def _tree(model: dict[str, Any]) -> dict[str, Any]:
    return model["estimator"]["xgboost_model"]["learner"]["gradient_booster"]["model"]["trees"][0]


@pytest.mark.parametrize("change, reason", [
    (lambda m: _tree(m)["left_children"].__setitem__(0, 10**6), "tree 0 is not a tree"),
    (lambda m: _tree(m)["left_children"].__setitem__(0, 0), "tree 0 is not a tree"),
    (lambda m: _tree(m)["split_indices"].__setitem__(0, 10**6), "tree 0 splits on a feature beyond the model's"),
    (lambda m: _tree(m)["left_children"].pop(), "tree 0's left_children should be"),
    (lambda m: m["estimator"]["xgboost_model"]["learner"]["gradient_booster"]["model"]["tree_info"].__setitem__(0, 7),
     "tree_info names an output beyond"),
    (lambda m: m["estimator"]["xgboost_model"]["learner"]["learner_model_param"].update(num_class="1000000000"),
     "learner_model_param"),
    (lambda m: m["estimator"]["xgboost_model"]["learner"]["attributes"].update(best_iteration="0"), "attributes"),
])
def test_a_crafted_xgboost_model_is_refused_before_xgboost_reads_it(change: Callable, reason: str, wh: Warehouse) -> None:
    """XGBoost itself would read out of bounds (a segmentation fault) on the first three."""
    wh.sql("CREATE MODEL bt OPTIONS(model_type='boosted_tree_classifier', input_label_cols=['label'], max_iterations=2) "
           "AS SELECT x1, x2, label FROM people")
    edit_payload(Path(wh.path), "bt", change)
    with pytest.raises(ModelError, match=f"model bt cannot be loaded: XGBoost model: .*{reason}"):
        wh.sql("SELECT * FROM ML.PREDICT(MODEL bt, TABLE people)")


def _forest(model: dict[str, Any]) -> dict[str, Any]:
    return model["estimator"]["xgboost_model"]["learner"]["gradient_booster"]["model"]


@pytest.mark.parametrize("change, reason", [
    (lambda m: _forest(m)["trees"][2]["left_children"].__setitem__(0, 10**6), "tree 2 is not a tree"),
    (lambda m: _forest(m)["trees"][3]["split_indices"].__setitem__(0, 10**6), "tree 3 splits on a feature beyond"),
    (lambda m: _forest(m)["gbtree_model_param"].update(num_parallel_tree="7"), "iteration_indptr"),
    (lambda m: _forest(m).update(iteration_indptr=[0, 2, 4]), "iteration_indptr"),
    (lambda m: _forest(m)["trees"].pop(), "num_trees does not match"),
])
def test_a_crafted_random_forest_is_refused_before_xgboost_reads_it(change: Callable, reason: str, wh: Warehouse) -> None:
    """A forest is a gbtree with num_parallel_tree trees in its one round: the same check applies."""
    wh.sql("CREATE MODEL rf OPTIONS(model_type='random_forest_classifier', input_label_cols=['label'], num_parallel_tree=4, "
           "max_tree_depth=3) AS SELECT x1, x2, label FROM people")
    assert wh.sql("SELECT count(*) AS n FROM ML.PREDICT(MODEL rf, TABLE people)").to_pylist() == [{"n": 1000}]
    edit_payload(Path(wh.path), "rf", change)
    with pytest.raises(ModelError, match=f"model rf cannot be loaded: XGBoost model: .*{reason}"):
        wh.sql("SELECT * FROM ML.PREDICT(MODEL rf, TABLE people)")
