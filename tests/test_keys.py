"""Composite keys (issue 21): --key a,b, the id their values joined by one escaped separator,
on LMDB and the Bigtable emulator, through the API and the Python client, and from BigQuery."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import pyarrow as pa
import pytest

from predserve import Warehouse
from predserve.client import Client
from predserve.errors import ExportError
from predserve.keys import join_key, key_sql, split_key
from predserve.pipeline import GatePolicy, GateRefused, run_export
from predserve.pipeline import drift as drifts
from predserve.store import open_store
from tests.support.production import BQ_PROJECT, BigQueryEmulator
from tests.support.servers import ApiServer
from tests.support.serving import make_keys

# Keys whose values hold the separator, the escape character and both, beside plain ones.
AWKWARD = ["plain", "a|b", "c\\d", "|", "\\", "\\|", "x\\\\|y", ""]
OFFERS_SQL = """
CREATE TABLE offers AS
SELECT user_id, country, user_id * 10 + length(country) AS score, CAST(user_id % 2 AS BIGINT) AS predicted_label
FROM (SELECT x AS user_id FROM range(1, 401) t(x)),
     (SELECT unnest(['DE', 'US', 'a|b', 'c\\d', '|', '\\', '\\|', 'x\\\\|y', '']) AS country)
"""
ROWS = 400 * 9


def test_joining_is_reversible_and_one_to_one() -> None:
    pairs = [(a, b) for a in AWKWARD for b in AWKWARD]
    ids = [join_key(p) for p in pairs]
    assert len(set(ids)) == len(pairs)  # no two keys share an id
    assert all(split_key(i) == list(p) for i, p in zip(ids, pairs))
    assert join_key((42, "DE")) == "42|DE" and join_key(("a|b", "c\\d")) == "a\\|b|c\\\\d"
    assert join_key(("42",)) == "42"  # one column: the value as it is
    with pytest.raises(ValueError, match="lone"):
        split_key("a\\")


def test_the_sql_builds_the_same_ids_as_join_key_in_both_dialects() -> None:
    table = pa.table({"a": [v for v in AWKWARD for _ in AWKWARD], "b": AWKWARD * len(AWKWARD),
                      "n": list(range(len(AWKWARD) ** 2))})
    con = duckdb.connect()
    con.register("t", table)
    expected = [join_key((a, n, b)) for a, b, n in zip(table["a"].to_pylist(), table["b"].to_pylist(), table["n"].to_pylist())]
    assert [r[0] for r in con.sql(f"SELECT {key_sql(['a', 'n', 'b'])} FROM t ORDER BY n").fetchall()] == expected
    from predserve.pipeline.profile import to_duckdb  # BigQuery's dialect, as the profile's SQL is written

    bigquery = to_duckdb(f"SELECT {key_sql(['a', 'n', 'b'], 'bigquery')} FROM t ORDER BY n")
    assert [r[0] for r in con.sql(bigquery).fetchall()] == expected
    assert con.sql(f"SELECT {key_sql(['a', 'b'])} FROM (SELECT 'x' AS a, NULL AS b)").fetchall() == [(None,)]


@pytest.fixture(scope="module")
def offers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "wh.duckdb"
    with Warehouse(path) as wh:
        wh.con.execute(OFFERS_SQL)
    return path


def export(warehouse: Path, store: str, query: str = "SELECT * FROM offers", **kwargs: Any):
    return run_export(warehouse=str(warehouse), model="offers", key="user_id,country", store_url=store, query=query, **kwargs)


def test_a_composite_key_exports_every_row_under_its_joined_id(offers: Path, store_url: str) -> None:
    summary = export(offers, store_url)
    assert summary.published and summary.rows == ROWS
    assert set(summary.profile.to_json()["columns"]) == {"score", "predicted_label"}  # the key's columns are not predictions
    with open_store(store_url, readonly=True, **({"read_timeout": drifts.READ_TIMEOUT} if "bigtable" in store_url else {})) as store:
        stored = {k.decode(): json.loads(v) for k, v in store.items("offers", summary.snapshot)}
        assert store.current("offers").metadata["schema"] == [["score", "int64"], ["predicted_label", "int64"]]
        sample = drifts.read_sample(store, "offers", summary.snapshot)
    assert len(stored) == ROWS
    for user in (1, 7, 400):
        for country in ["DE", "US", "a|b", "c\\d", "|", "\\", "\\|", "x\\\\|y", ""]:
            entity_id = join_key((user, country))
            assert stored[entity_id] == {"model": "offers", "id": entity_id, "snapshot": summary.snapshot,
                                         "prediction": {"score": user * 10 + len(country), "predicted_label": user % 2}}
    assert len(sample) == 1000 and set(sample) <= set(stored)  # the drift sample names joined ids too
    with pytest.raises(ExportError, match="key column 'nope' is not among the query's columns"):
        run_export(warehouse=str(offers), model="offers", key="user_id,nope", store_url=store_url, table="offers")


def test_the_null_and_duplicate_gates_check_the_whole_key(offers: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    # the same user in nine countries: nine keys, no duplicate
    assert export(offers, store).published
    doubled = "SELECT * FROM offers UNION ALL SELECT * FROM offers WHERE user_id = 3 AND country IN ('DE', 'a|b')"
    with pytest.raises(GateRefused, match=r"2 duplicate keys \(e\.g\. 3\|DE, 3\|a\\\|b\)"):
        export(offers, store, doubled)
    nulls = ("SELECT IF(user_id = 5, NULL, user_id) AS user_id, IF(user_id = 6 AND country = 'DE', NULL, country) AS country, "
             "score, predicted_label FROM offers")
    with pytest.raises(GateRefused, match="10 rows have a NULL key"):  # 9 with no user, 1 with no country
        export(offers, store, nulls)
    assert export(offers, store, nulls, policy=GatePolicy(allow_null_keys=True)).rows == ROWS - 10


def test_the_api_and_the_client_take_the_joined_id_and_a_tuple(offers: Path, store_url: str, tmp_path: Path,
                                                                 api_server: Any) -> None:
    summary = export(offers, store_url)
    iam = str(tmp_path / "iam.json")
    keys = make_keys(iam)
    server: ApiServer = api_server(store_url, iam)
    with server.client(keys["reader"]) as http:
        for country in ["DE", "a|b", "c\\d", "\\|"]:
            entity_id = join_key((7, country))
            answer = http.get(f"/v1/models/offers/predictions/{quote(entity_id, safe='')}")
            assert answer.status_code == 200, answer.text
            assert answer.json()["id"] == entity_id and answer.json()["prediction"]["score"] == 70 + len(country)
        wanted = [join_key((8, "US")), join_key((9, "x\\\\|y")), join_key((9999, "DE"))]
        batch = http.post("/v1/models/offers/predictions:batchGet", json={"ids": wanted}).json()
        assert [r["id"] for r in batch["results"]] == wanted
        assert [r.get("prediction", {}).get("score") for r in batch["results"]] == [82, 95, None]
    with Client(server.url, keys["reader"]) as client:
        assert client.get("offers", (7, "a|b")).prediction == {"score": 73, "predicted_label": 1}
        assert client.get("offers", (7, "a|b")).id == "7|a\\|b" and client.get("offers", (7, "a|b")).snapshot == summary.snapshot
        many = client.batch_get("offers", [(1, "DE"), (2, "|"), "3|US", (9999, "DE")])
        assert [m.prediction["score"] if m else None for m in many] == [12, 21, 32, None]


def test_a_composite_key_from_the_bigquery_source(bigquery_emulator: BigQueryEmulator, tmp_path: Path, offers: Path) -> None:
    from google.cloud import bigquery

    name = "keys_" + tmp_path.name[-8:].replace("-", "_")
    client = bigquery_emulator.client()
    client.create_dataset(name)
    config = bigquery.QueryJobConfig(default_dataset=f"{BQ_PROJECT}.{name}")
    client.query("""
        CREATE TABLE offers AS
        SELECT user_id, country, user_id * 10 + LENGTH(country) AS score
        FROM UNNEST(GENERATE_ARRAY(1, 300)) AS user_id, UNNEST(['DE', 'a|b', 'c\\\\d', '']) AS country
    """, job_config=config).result()
    client.close()
    url = str(tmp_path / "bq")
    summary = run_export(warehouse=f"bigquery://{BQ_PROJECT}/{name}", model="offers", key="user_id,country", store_url=url,
                         table="offers")
    assert summary.published and summary.rows == 1200
    with open_store(url, readonly=True) as store:
        stored = {k.decode(): json.loads(v) for k, v in store.items("offers", summary.snapshot)}
        sample = drifts.read_sample(store, "offers", summary.snapshot)
    assert stored[join_key((12, "c\\d"))]["prediction"] == {"score": 123}
    assert stored[join_key((12, "a|b"))]["id"] == "12|a\\|b" and len(stored) == 1200
    assert len(sample) == 1000 and set(sample) <= set(stored)  # BigQuery's sample names the ids DuckDB rendered
    doubled = "SELECT * FROM offers UNION ALL SELECT * FROM offers WHERE user_id = 4 AND country = 'a|b'"
    with pytest.raises(GateRefused, match=r"1 duplicate keys \(e\.g\. 4\|a\\\|b\)"):
        run_export(warehouse=f"bigquery://{BQ_PROJECT}/{name}", model="offers", key="user_id,country", store_url=url, query=doubled)
