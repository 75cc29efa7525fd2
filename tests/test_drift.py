"""Profiles, drift and the drift gates (issue 14), on real warehouses and both stores.

The scenarios retrain the demo's churn model the way people do (another sample of users,
other options) and break it the way batch scoring breaks (labels inverted, probabilities
collapsed): the first must publish, the second must be refused with the figure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from click.testing import CliRunner, Result
from scipy.spatial.distance import jensenshannon

from predserve import Warehouse, settings
from predserve.datagen import INVERTED_PREDICT_SQL, create_users, users_table
from predserve.errors import ExportError, StoreError
from predserve.pipeline import GatePolicy, GateRefused, run_export
from predserve.pipeline import drift as drifts
from predserve.pipeline.profile import SAMPLE_IDS
from predserve.store import limits, open_store, reports

from predserve.cli import main
from tests.support.production import BQ_PROJECT, BigQueryEmulator, export_from_bigquery_and_locally

ROWS = 3000  # users scored
TRAINING_ROWS = 20_000
FEATURES = "plan, country, tenure_months, monthly_hours, support_tickets, days_since_login, monthly_spend, churned"
PREDICT = "SELECT user_id, predicted_churned, predicted_churned_probs FROM ML.PREDICT(MODEL {model}, TABLE users)"
# The same model with its labels inverted: every predicted label flipped, each label's probability swapped.
INVERTED = INVERTED_PREDICT_SQL.format(model="churn")
# A model whose probabilities collapsed to one value (the labels it predicts keep their share).
COLLAPSED = """
SELECT user_id, predicted_churned,
       [STRUCT(CAST(0 AS INT64) AS label, CAST(0.5 AS FLOAT64) AS prob), STRUCT(CAST(1 AS INT64) AS label, CAST(0.5 AS FLOAT64) AS prob)]
         AS predicted_churned_probs
FROM ML.PREDICT(MODEL churn, TABLE users)
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Users to score, and churn models trained the ordinary ways: on one sample of 20,000 users,
    on another sample, on that one with other options."""
    path = tmp_path_factory.mktemp("drift") / "wh.duckdb"
    with Warehouse(path) as wh:
        create_users(wh, ROWS)
        for name, seed in (("sample_a", 11), ("sample_b", 12)):  # two samples of the same population
            wh.con.register("generated", users_table(TRAINING_ROWS, seed=seed))
            wh.con.execute(f"CREATE TABLE {name} AS SELECT * FROM generated")
            wh.con.unregister("generated")
        options = "model_type='logistic_reg', input_label_cols=['churned']"
        wh.sql(f"CREATE MODEL churn OPTIONS({options}) AS SELECT {FEATURES} FROM sample_a")
        wh.sql(f"CREATE MODEL churn_resampled OPTIONS({options}) AS SELECT {FEATURES} FROM sample_b")
        wh.sql(f"CREATE MODEL churn_l2 OPTIONS({options}, l2_reg=1.0, max_iterations=10) AS SELECT {FEATURES} FROM sample_b")
        # a regression (a numeric prediction), trained on the two samples
        regression = "model_type='linear_reg', input_label_cols=['monthly_hours']"
        wh.sql(f"CREATE MODEL hours OPTIONS({regression}) AS SELECT {HOURS_FEATURES} FROM sample_a")
        wh.sql(f"CREATE MODEL hours_resampled OPTIONS({regression}) AS SELECT {HOURS_FEATURES} FROM sample_b")
    return path


HOURS_FEATURES = "plan, country, tenure_months, support_tickets, days_since_login, monthly_spend, churned, monthly_hours"
HOURS = "SELECT user_id, predicted_monthly_hours FROM ML.PREDICT(MODEL {model}, TABLE users)"
# The regression's predictions shuffled across ids: the same distribution, almost every id's value another's.
HOURS_SHUFFLED = """
SELECT ids.user_id, shuffled.predicted_monthly_hours
FROM (SELECT user_id, ROW_NUMBER() OVER (ORDER BY user_id) AS n FROM users) AS ids
JOIN (SELECT predicted_monthly_hours, ROW_NUMBER() OVER (ORDER BY MOD(user_id * 7919, 3001), user_id) AS n
      FROM ML.PREDICT(MODEL {model}, TABLE users)) AS shuffled ON ids.n = shuffled.n
"""
# An INT64 label exported alone (no _probs beside it), balanced so that flipping it keeps both shares.
BALANCED_LABEL = "SELECT user_id, {expression} AS predicted_label FROM users"
WITH_METADATA = ("SELECT user_id, predicted_churned, predicted_churned_probs, '{version}' AS model_version, "
                 "CURRENT_TIMESTAMP() AS scored_at, {batch} AS batch FROM ML.PREDICT(MODEL {model}, TABLE users)")


def export(warehouse: Path, store: str, query: str, **kwargs: Any):
    return run_export(warehouse=str(warehouse), model="churn", key="user_id", store_url=store, query=query, **kwargs)


def drift_sample(ids: list[int]) -> list[str]:
    """The ids the local warehouse's sample must hold: the SAMPLE_IDS with the smallest DuckDB hash of the BIGINT key."""
    con = duckdb.connect()
    con.register("keys", pa.table({"k": pa.array(ids, pa.int64())}))
    return [r[0] for r in con.sql(f"SELECT CAST(k AS VARCHAR) FROM keys ORDER BY hash(k), k LIMIT {SAMPLE_IDS}").fetchall()]


def cli(*args: str, check: bool = True) -> Result:
    """The command line in this process (a real process costs seconds of imports; one test runs one)."""
    result = CliRunner(env={"COLUMNS": "160"}).invoke(main, list(args), catch_exceptions=False)
    if check:
        assert result.exit_code == 0, result.output[-3000:]
    return result


# ---- the formulas ----------------------------------------------------------------------------
def test_jensen_shannon_is_scipys_base_2_divergence() -> None:
    p, q = [10, 0, 30, 60], [25, 25, 0, 50]
    assert drifts.jensen_shannon(p, q) == pytest.approx(jensenshannon(p, q, base=2) ** 2)
    assert drifts.jensen_shannon(p, p) == 0.0
    assert drifts.jensen_shannon([5, 0], [0, 7]) == 1.0  # disjoint; the empty bins add nothing
    assert drifts.jensen_shannon([0, 0], [0, 0]) == 0.0 and drifts.jensen_shannon([0, 0], [3, 1]) == 1.0


def test_l_infinity_normalises_each_side_by_its_own_total() -> None:
    # shares: a 0.3 vs 0.6, b 0.7 vs 0.3, c 0 vs 0.1 (totals 100 and 10)
    distance, where = drifts.l_infinity({"a": 30, "b": 70}, {"a": 6, "b": 3, "c": 1})
    assert (round(distance, 9), where) == (0.4, "b")


def test_numeric_histograms_with_different_ranges_are_rebinned_onto_common_edges() -> None:
    old = reports.ColumnProfile(kind="numeric", nulls=1, low=0.0, high=2.0, counts=[4, 4])
    new = reports.ColumnProfile(kind="numeric", nulls=0, low=1.0, high=3.0, counts=[2, 6])
    p, q = drifts.aligned_histograms(old, new)
    # edges 0, 1, 2, 3: the old [1, 2) bin is its own; the new [1, 2) bin is its own; NULLs last
    assert p == [4, 4, 0, 1] and q == [0, 2, 6, 0]
    constant = reports.ColumnProfile(kind="numeric", nulls=0, low=1.5, high=1.5, counts=[8])
    p, q = drifts.aligned_histograms(old, constant)  # a point mass is a bin of its own, as in TFDV
    assert p == [4, 4, 0, 1] and q == [0, 0, 8, 0]
    assert drifts.column_distance(old, constant, (9, 8)).distance == 1.0


def test_the_snapshot_reports_import_neither_the_pipeline_nor_the_warehouse() -> None:
    """The API reads each snapshot's profile and drift through predserve.store.reports."""
    code = ("import sys, predserve.store.reports\n"
            "print(sorted(m for m in ('apache_beam', 'duckdb', 'pyarrow', 'sqlglot', 'predserve.warehouse', 'predserve.pipeline')\n"
            "             if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


# ---- attachments (where each snapshot's sample ids live) --------------------------------------
def test_attachments_live_and_die_with_their_snapshot(store_url: str) -> None:
    with open_store(store_url) as store:
        snap = store.create_snapshot("m").id
        writer = store.writer("m", snap)
        writer.write([(b"1", b"{}"), (b"2", b"{}")])
        writer.close()
        store.write_attachment("m", snap, "drift-sample", b"ids")
        assert store.read_attachment("m", snap, "drift-sample") == b"ids"
        assert store.read_attachment("m", snap, "other") is None
        assert store.count("m", snap) == 2 and sorted(k for k, _ in store.items("m", snap)) == [b"1", b"2"]  # not a row
        with pytest.raises(StoreError, match="invalid attachment name"):
            store.write_attachment("m", snap, "../x", b"")
        with pytest.raises(StoreError, match="does not exist"):
            store.write_attachment("m", 99, "drift-sample", b"")
        store.finish_snapshot("m", snap, 2)
        store.publish("m", snap)
        second = store.create_snapshot("m").id
        store.write_attachment("m", second, "drift-sample", b"more")
        store.discard("m", second)  # a refused export
        assert store.read_attachment("m", second, "drift-sample") is None
        for _ in range(2):
            later = store.create_snapshot("m").id
            store.finish_snapshot("m", later, 0)
            store.publish("m", later)
        assert ("m", snap) in store.gc("m", keep=1, grace=0)
        assert store.read_attachment("m", snap, "drift-sample") is None


# ---- profiles ------------------------------------------------------------------------------------
def test_the_profile_counts_every_kind_of_column(tmp_path: Path) -> None:
    wh = tmp_path / "wh.duckdb"
    with Warehouse(wh) as w:
        w.sql(PREDICTIONS_SQL)
        rows = w.sql("SELECT * FROM predictions").to_pylist()
    summary = run_export(warehouse=str(wh), model="m", key="user_id", store_url=str(tmp_path / "s"), table="predictions")
    profile = summary.profile.to_json()
    assert profile["rows"] == 3000 and profile["bins"] == 10
    cols = profile["columns"]
    assert cols["predicted_churned"] == {"kind": "categorical", "nulls": 0, "values": {"0": 1500, "1": 1500}, "other": 0}
    assert cols["kind"] == {"kind": "categorical", "nulls": 0, "values": {"a": 1500, "b": 1500}, "other": 0}
    # score: NULL, or NaN (served as null, so counted as NULL), else x / 8 in 10 equal bins
    scores = [r["score"] for r in rows if r["score"] is not None and r["score"] == r["score"]]
    low, high = min(scores), max(scores)
    expected = [0] * 10
    for s in scores:
        expected[min(int((s - low) * (10 / (high - low))), 9)] += 1
    assert cols["score"] == {"kind": "numeric", "nulls": 3000 - len(scores), "low": low, "high": high, "counts": expected}
    label1 = [0] * 10
    for r in rows:
        label1[min(int(r["predicted_churned_probs"][0]["prob"] * 10), 9)] += 1
    assert cols["predicted_churned_probs"]["kind"] == "probabilities" and cols["predicted_churned_probs"]["labels"]["1"] == label1
    assert cols["scored_at"] == {"kind": "other", "nulls": 600}
    # the sample, kept beside the snapshot
    with open_store(str(tmp_path / "s"), readonly=True) as store:
        assert drifts.read_sample(store, "m", summary.snapshot) == drift_sample([r["user_id"] for r in rows])
        assert store.current("m").metadata["profile"] == profile


# The same rows in the local warehouse and in the BigQuery emulator (one statement, both dialects).
PREDICTIONS_SQL = """
CREATE TABLE predictions AS
SELECT x AS user_id, IF(MOD(x * 7919, 1000) >= 500, 1, 0) AS predicted_churned,
       [STRUCT(1 AS label, CAST(MOD(x * 7919, 1000) / 1000 AS FLOAT64) AS prob),
        STRUCT(0 AS label, CAST(1 - MOD(x * 7919, 1000) / 1000 AS FLOAT64) AS prob)] AS predicted_churned_probs,
       IF(MOD(x, 7) = 0, NULL, IF(MOD(x, 11) = 0, CAST('NaN' AS FLOAT64), x / 8)) AS score,
       IF(MOD(x, 2) = 0, 'a', 'b') AS kind,
       IF(MOD(x, 5) = 0, NULL, TIMESTAMP '2024-05-01 12:00:00+00') AS scored_at
FROM UNNEST(GENERATE_ARRAY(1, 3000)) AS x
"""


def test_the_bigquery_source_profiles_like_the_local_warehouse(bigquery_emulator: BigQueryEmulator, tmp_path: Path) -> None:
    remote, local, dataset = export_from_bigquery_and_locally(bigquery_emulator, PREDICTIONS_SQL, "predictions", tmp_path)
    assert remote.profile.to_json()["columns"]["predicted_churned_probs"]["labels"]["1"]  # a real profile, not an empty one
    assert remote.profile == local.profile
    # BigQuery's sample: the ids with the smallest FARM_FINGERPRINT, as BigQuery itself orders them
    client = bigquery_emulator.client()
    expected = [r[0] for r in client.query(
        f"SELECT CAST(user_id AS STRING) FROM `{BQ_PROJECT}.{dataset}.predictions` "
        f"ORDER BY FARM_FINGERPRINT(CAST(user_id AS STRING)), user_id LIMIT {SAMPLE_IDS}").result()]
    client.close()
    with open_store(str(tmp_path / "bq"), readonly=True) as store:
        assert drifts.read_sample(store, "m", remote.snapshot) == expected and len(set(expected)) == SAMPLE_IDS


# ---- the gates, on LMDB and the Bigtable emulator ---------------------------------------------------
def test_an_ordinary_retrain_publishes_with_figures_well_under_the_defaults(models: Path, store_url: str) -> None:
    first = export(models, store_url, PREDICT.format(model="churn"))
    assert first.published and first.drift is None  # nothing to compare with yet
    for model in ("churn_resampled", "churn_l2"):
        summary = export(models, store_url, PREDICT.format(model=model))
        assert summary.published, model
        gates = {g.name: g for g in summary.gates}
        assert gates["prediction_drift"].passed and gates["changed_labels"].passed
        columns = summary.drift.to_json()["columns"]
        assert columns["predicted_churned"]["distance"] < settings.MAX_DRIFT / 2
        assert columns["predicted_churned_probs"]["distance"] < settings.MAX_DRIFT / 2
        assert columns["predicted_churned"]["changed"] < settings.MAX_CHANGED_LABELS / 2
        assert 0 < columns["predicted_churned_probs"]["mean_abs_change"] < 0.05
        assert summary.drift.to_json()["sample"] == {"ids": SAMPLE_IDS, "in_both": SAMPLE_IDS, "appeared": 0, "disappeared": 0}


def test_inverted_labels_are_refused_with_the_figure_and_the_override_publishes(models: Path, store_url: str) -> None:
    first = export(models, store_url, PREDICT.format(model="churn"))
    with pytest.raises(GateRefused) as refused:
        export(models, store_url, INVERTED)
    message = str(refused.value)
    assert "prediction_drift: predicted_churned: L-infinity distance" in message and "is above the limit 0.1" in message
    assert "changed_labels: predicted_churned: 100.0% of 1,000 sampled ids in both snapshots changed, above the limit 10.0%" in message
    drift = refused.value.summary.drift.to_json()
    share = first.profile.to_json()["columns"]["predicted_churned"]["values"]
    flipped = abs(share["1"] - share["0"]) / ROWS  # each label's share becomes the other's
    assert drift["columns"]["predicted_churned"]["distance"] == pytest.approx(flipped, abs=1e-6)
    assert f"L-infinity distance {flipped:.4f}" in message
    with open_store(store_url, readonly=True) as store:  # the current snapshot keeps serving
        state = store.state("churn")
        assert state.current == first.snapshot and list(state.snapshots) == [first.snapshot]
        body = json.loads(store.get("churn", first.snapshot, b"7"))
    published = export(models, store_url, INVERTED, policy=GatePolicy(allow_drift=True))
    assert published.published and {g.name: g.overridden for g in published.gates if not g.passed} == {
        "prediction_drift": True, "changed_labels": True}
    with open_store(store_url, readonly=True) as store:
        assert json.loads(store.get("churn", published.snapshot, b"7"))["prediction"]["predicted_churned"] == \
            1 - body["prediction"]["predicted_churned"]
        refusal, override = store.state("churn").events[-2:]  # the model's timeline tells both
    assert refusal["event"] == "refused" and refusal["snapshot"] == refused.value.summary.snapshot
    assert refusal["previous"] == first.snapshot and refusal["rows"] == ROWS
    assert [g["gate"] for g in refusal["gates"]] == ["prediction_drift", "changed_labels"]
    assert f"L-infinity distance {flipped:.4f}" in refusal["gates"][0]["detail"]
    assert override["event"] == "published" and override["overridden"] == ["prediction_drift", "changed_labels"]


def test_collapsed_probabilities_are_refused_and_a_column_limit_publishes_them(models: Path, store_url: str) -> None:
    export(models, store_url, PREDICT.format(model="churn"))
    with pytest.raises(GateRefused, match=r"predicted_churned_probs: Jensen-Shannon divergence 0\.\d{4} \(label \d\) "
                                          r"is above the limit 0\.1") as refused:
        export(models, store_url, COLLAPSED)
    figure = refused.value.summary.drift.to_json()["columns"]["predicted_churned_probs"]["distance"]
    assert figure > 0.5
    assert "changed_labels" not in str(refused.value)  # the labels did not change
    limit = {"predicted_churned_probs": round(figure + 0.01, 2)}
    assert export(models, store_url, COLLAPSED, policy=GatePolicy(drift_limits=limits.DriftLimits(column_max_drift=limit))).published


def test_the_sample_counts_ids_that_appeared_and_disappeared(models: Path, store_url: str) -> None:
    """Checked against the two samples computed here from the ids."""
    export(models, store_url, PREDICT.format(model="churn") + " WHERE MOD(user_id, 10) <> 1")
    summary = export(models, store_url, PREDICT.format(model="churn") + " WHERE MOD(user_id, 10) <> 2")

    old = set(drift_sample([i for i in range(1, ROWS + 1) if i % 10 != 1]))
    new = set(drift_sample([i for i in range(1, ROWS + 1) if i % 10 != 2]))
    union = old | new
    expected = {
        "ids": len(union),
        "in_both": sum(1 for i in union if int(i) % 10 not in (1, 2)),
        "appeared": sum(1 for i in union if int(i) % 10 == 1),
        "disappeared": sum(1 for i in union if int(i) % 10 == 2),
    }
    assert summary.drift.to_json()["sample"] == expected and expected["appeared"] and expected["disappeared"]


def test_the_profile_and_drift_survive_rollback(models: Path, store_url: str) -> None:
    export(models, store_url, PREDICT.format(model="churn"))
    second = export(models, store_url, PREDICT.format(model="churn_resampled"))
    third = export(models, store_url, INVERTED, policy=GatePolicy(allow_drift=True))
    out = cli("rollback", "--store", store_url, "churn", str(second.snapshot))
    assert f"churn now serves snapshot {second.snapshot}" in out.stdout
    listing = json.loads(cli("snapshots", "--store", store_url, "--json", "churn").stdout)
    current = next(s for s in listing["snapshots"] if s["current"])
    assert current["id"] == second.snapshot
    assert current["metadata"]["profile"] == second.profile.to_json() and current["metadata"]["drift"] == second.drift.to_json()
    table = cli("snapshots", "--store", store_url, "churn").stdout
    top = reports.largest(second.drift)[1].distance
    assert f"{top:.4f} vs {second.drift.to_json()['baseline']}" in table
    # the default diff now compares the snapshot rolled back from (the previous in history) with the current one
    result = json.loads(cli("diff", "--store", store_url, "--json", "churn").stdout)
    assert (result["a"]["snapshot"], result["b"]["snapshot"]) == (third.snapshot, second.snapshot)


def test_predserve_diff_shows_both_distributions_the_distances_and_changed_ids(models: Path, store_url: str) -> None:
    first = export(models, store_url, PREDICT.format(model="churn"))
    second = export(models, store_url, INVERTED, policy=GatePolicy(allow_drift=True))
    run = subprocess.run([sys.executable, "-m", "predserve.cli", "diff", "--store", store_url, "churn", "--examples", "2"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "160"})
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    distance = second.drift.to_json()["columns"]["predicted_churned"]["distance"]
    assert f"churn: snapshot {first.snapshot} ({ROWS:,} rows) vs snapshot {second.snapshot} ({ROWS:,} rows)" in out
    assert f"L-infinity distance {distance:.4f} (value " in out and "100.0% of 1,000 sampled ids changed value" in out
    share = {k: v / ROWS for k, v in first.profile.to_json()["columns"]["predicted_churned"]["values"].items()}
    chart_row = next(line for line in out.splitlines() if line.strip(" │").startswith("0 "))
    assert chart_row.count(f"{share['0']:.1%}") == 1 and chart_row.count(f"{share['1']:.1%}") == 1  # both sides, one row
    assert "label 1" in out and "Jensen-Shannon divergence" in out and "0.9 .. 1.0" in out
    assert "1,000 in both snapshots, 0 only in" in out
    result = json.loads(cli("diff", "--store", store_url, "--json", "churn", str(first.snapshot), str(second.snapshot),
                            "--examples", "2").stdout)
    assert result["sample"]["in_both"] == SAMPLE_IDS and len(result["changed"]) == 2
    shown = [line.split()[1] for line in out.splitlines() if line.startswith("id ")]
    assert shown == [change["id"] for change in result["changed"]]
    lines = out.splitlines()
    with open_store(store_url, readonly=True) as store:
        for change in result["changed"]:  # each shown with the bodies the two snapshots store for it
            old = json.loads(store.get("churn", first.snapshot, change["id"].encode()))
            new = json.loads(store.get("churn", second.snapshot, change["id"].encode()))
            assert (change["a"], change["b"]) == (old, new)
            assert old["prediction"]["predicted_churned"] != new["prediction"]["predicted_churned"]
            at = lines.index(f"id {change['id']}")
            assert lines[at + 1] == f"  snapshot {first.snapshot}: {json.dumps(old['prediction'])}"
            assert lines[at + 2] == f"  snapshot {second.snapshot}: {json.dumps(new['prediction'])}"
    failed = cli("diff", "--store", store_url, "churn", "7", check=False)
    assert failed.exit_code == 1 and "snapshot 7 of model 'churn' does not exist" in failed.stderr


def test_the_export_command_prints_and_returns_the_drift(models: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    base = ["export", "-w", str(models), "--model", "churn", "--key", "user_id", "--store", store]
    first = cli(*base, "--query", PREDICT.format(model="churn")).stdout
    assert "profile (no earlier profile to compare with)" in first and "predicted_churned_probs" in first
    summary = json.loads(cli(*base, "--json", "--query", PREDICT.format(model="churn")).stdout)
    assert summary["drift"]["baseline"] == 1 and summary["profile"]["rows"] == ROWS
    assert {g["name"] for g in summary["gates"]} >= {"prediction_drift", "changed_labels"}
    refused = cli(*base, "--query", INVERTED, check=False)
    assert refused.exit_code == 1
    assert "gate changed_labels       FAIL       predicted_churned: 100.0%" in refused.stdout
    assert "drift vs snapshot 2 (1,000 sampled ids: 1,000 in both, 0 appeared, 0 disappeared)" in refused.stdout
    assert refused.stderr.splitlines()[-1].startswith("error: snapshot 3 of model 'churn' was not published: prediction_drift: predicted_churned:")
    allowed = cli(*base, "--query", INVERTED, "--max-changed-labels", "1", "--column-max-drift", "predicted_churned=0.9",
                  "--column-max-drift", "predicted_churned_probs=0.9")
    assert "published snapshot 4 of churn" in allowed.stdout
    bad = cli(*base, "--query", INVERTED, "--column-max-drift", "predicted_churned", check=False)
    assert bad.exit_code == 2 and "'predicted_churned' is not COLUMN=LIMIT with a LIMIT between 0 and 1" in bad.stderr


# ---- no blind spots (issue 21): every prediction column gated per id, metadata columns not gated ----------
def test_a_flipped_int64_label_with_unchanged_shares_is_refused(models: Path, store_url: str) -> None:
    first = run_export(warehouse=str(models), model="label", key="user_id", store_url=store_url,
                       query=BALANCED_LABEL.format(expression="MOD(user_id, 2)"))
    assert first.profile.to_json()["columns"]["predicted_label"]["kind"] == "numeric"  # no _probs: profiled as a number
    with pytest.raises(GateRefused) as refused:
        run_export(warehouse=str(models), model="label", key="user_id", store_url=store_url,
                   query=BALANCED_LABEL.format(expression="1 - MOD(user_id, 2)"))
    drift = refused.value.summary.drift.to_json()["columns"]["predicted_label"]
    assert drift["distance"] < 0.001  # the histograms did not move: only the per-id figure sees the flip
    assert drift["changed"] == 1.0 and drift["gated"] == ["distance", "changed"]
    assert "changed_labels: predicted_label: 100.0% of 1,000 sampled ids in both snapshots changed" in str(refused.value)
    assert [g.name for g in refused.value.summary.gates if g.blocks] == ["changed_labels"]


def test_a_numeric_prediction_shuffled_across_ids_is_refused_and_a_retrain_publishes(models: Path, store_url: str) -> None:
    first = run_export(warehouse=str(models), model="hours", key="user_id", store_url=store_url, query=HOURS.format(model="hours"))
    retrain = run_export(warehouse=str(models), model="hours", key="user_id", store_url=store_url,
                         query=HOURS.format(model="hours_resampled"))
    figures = retrain.drift.to_json()["columns"]["predicted_monthly_hours"]
    assert retrain.published and figures["gated"] == ["distance", "moved"]
    assert figures["moved"] < settings.MAX_MOVED / 2 and figures["mean_abs_change"] > 0
    assert {g.name: g.passed for g in retrain.gates}["moved_values"]
    with pytest.raises(GateRefused) as refused:
        run_export(warehouse=str(models), model="hours", key="user_id", store_url=store_url,
                   query=HOURS_SHUFFLED.format(model="hours_resampled"))
    shuffled = refused.value.summary.drift.to_json()["columns"]["predicted_monthly_hours"]
    assert shuffled["distance"] < 0.01 and shuffled["moved"] > 0.5  # same distribution, most ids moved
    # the spread the tolerance is relative to: the standard deviation of the current snapshot's sampled values
    with open_store(store_url, readonly=True, **({"read_timeout": drifts.READ_TIMEOUT} if "bigtable" in store_url else {})) as store:
        sample = drifts.read_sample(store, "hours", retrain.snapshot)
        values = [json.loads(b)["prediction"]["predicted_monthly_hours"] for b in drifts.read_bodies(store, "hours", retrain.snapshot, sample)]
    assert shuffled["spread"] == pytest.approx(drifts.spread(values), abs=1e-6)
    assert [g.name for g in refused.value.summary.gates if g.blocks] == ["moved_values"]
    assert (f"moved_values: predicted_monthly_hours: {shuffled['moved']:.1%} of 1,000 sampled ids in both snapshots moved "
            "by more than 0.5 standard deviations") in str(refused.value)
    assert first.snapshot != retrain.snapshot


def test_a_retrain_that_changes_model_version_and_scored_at_publishes_without_allow_drift(models: Path, store_url: str) -> None:
    first = export(models, store_url, WITH_METADATA.format(version="v1", batch="MOD(user_id, 7)", model="churn"))
    second = export(models, store_url, WITH_METADATA.format(version="v2", batch="MOD(user_id, 7)", model="churn_resampled"))
    assert second.published and not [g for g in second.gates if not g.passed]
    columns = second.drift.to_json()["columns"]
    assert columns["model_version"]["distance"] == 1.0 and columns["model_version"]["changed"] == 1.0
    assert columns["model_version"]["metadata"] == drifts.CONSTANT and columns["model_version"]["gated"] == []
    assert columns["scored_at"]["metadata"] == drifts.TEMPORAL and columns["scored_at"]["changed"] == 1.0
    assert columns["predicted_churned"]["gated"] == ["distance", "changed"] and "metadata" not in columns["predicted_churned"]
    assert "model_version (constant in both snapshots)" in {g.name: g for g in second.gates}["prediction_drift"].detail
    # a column that varies within a snapshot is a prediction unless --metadata-columns names it
    shifted = WITH_METADATA.format(version="v2", batch="MOD(user_id + 1, 7)", model="churn_resampled")
    with pytest.raises(GateRefused, match="changed_labels: batch: 100.0%"):
        export(models, store_url, shifted)
    named = export(models, store_url, shifted, policy=GatePolicy(metadata_columns=("batch",)))
    assert named.published and named.drift.to_json()["columns"]["batch"]["metadata"] == drifts.NAMED
    with pytest.raises(ExportError, match="--metadata-columns names nope, not among the prediction columns: predicted_churned"):
        export(models, store_url, shifted, policy=GatePolicy(metadata_columns=("nope",)))
    assert first.published


def test_a_label_that_turns_constant_is_still_a_prediction(models: Path, store_url: str) -> None:
    """Constant in the new snapshot only ("every user will churn") is drift, not metadata."""
    export(models, store_url, PREDICT.format(model="churn"))
    with pytest.raises(GateRefused) as refused:
        export(models, store_url, "SELECT user_id, CAST(1 AS INT64) AS predicted_churned, predicted_churned_probs "
               "FROM ML.PREDICT(MODEL churn, TABLE users)")
    assert "metadata" not in refused.value.summary.drift.to_json()["columns"]["predicted_churned"]
    assert {g.name for g in refused.value.summary.gates if g.blocks} == {"prediction_drift", "changed_labels"}


def test_per_id_figures_of_each_kind() -> None:
    ids = ["1", "2", "3", "4"]

    def bodies(rows: list[dict[str, Any]]) -> list[bytes]:
        return [json.dumps({"prediction": r}).encode() for r in rows]

    old = bodies([{"x": 0.0, "k": 1, "p": [{"label": "a", "prob": 0.1}]}, {"x": 1.0, "k": 2, "p": [{"label": "a", "prob": 0.9}]},
                  {"x": 2.0, "k": 1, "p": [{"label": "a", "prob": 0.5}]}, {"x": 3.0, "k": 2, "p": [{"label": "a", "prob": 0.5}]}])
    new = bodies([{"x": 0.1, "k": 1, "p": [{"label": "a", "prob": 0.1}]}, {"x": 1.0, "k": 1, "p": [{"label": "a", "prob": 0.1}]},
                  {"x": 3.0, "k": 1, "p": [{"label": "a", "prob": 0.5}]}, {"x": None, "k": 2, "p": [{"label": "a", "prob": 0.5}]}])
    kinds = {"x": drifts.NUMERIC, "k": drifts.NUMERIC, "p": drifts.PROBABILITIES}
    columns = drifts.compare_bodies(ids, old, new, kinds, tolerance=0.5).columns
    width = drifts.spread([0.0, 1.0, 2.0, 3.0])  # 1.118: an id moved past 0.559
    assert columns["x"]["spread"] == pytest.approx(width)
    assert columns["x"]["moved"] == 0.5  # 2 -> 3 moved; 3 -> NULL counts as moved; 0 -> 0.1 did not
    assert columns["k"] == {"changed": 0.25, "mean_abs_change": 0.25}  # few distinct integers: a label
    assert columns["p"]["moved"] == 0.25  # 0.9 -> 0.1 moved past 0.5 x 0.283
