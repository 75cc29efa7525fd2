"""Typed snapshot reports (predserve.store.reports): the verdicts and the limits they used, the
same in the export's gates, the API and `predserve snapshots`; and snapshots published by
earlier versions, whose metadata has an older shape, still listed and served."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from predserve.cli import main
from predserve.datagen import INVERTED_PREDICT_SQL, PREDICT_SQL
from predserve.pipeline import GatePolicy, GateRefused, run_export
from predserve.serving.schemas import ModelDetail
from predserve import settings
from predserve.store import limits, reports
from tests.support.serving import in_process, make_keys
from tests.support.snapshots import publish_rows

# ---- metadata as earlier versions wrote it --------------------------------------------------------
BEFORE_PROFILES: dict[str, Any] = {"schema": [["predicted_churned", "int64"]], "max_age": None, "source_rows": 2,
                                   "default_prediction": None}
PROFILE_V1 = {"version": 1, "bins": 10, "rows": 2, "columns": {
    "predicted_churned": {"kind": "categorical", "nulls": 0, "values": {"0": 1, "1": 1}, "other": 0},
    "predicted_churned_probs": {"kind": "probabilities", "nulls": 0, "labels": {"1": [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]}},
    "score": {"kind": "numeric", "nulls": 0, "low": -0.49, "high": 2.48, "counts": [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]},
    "scored_at": {"kind": "other", "nulls": 0},
}}
# The first drift entries (issue 14): no "gated", "metadata", "moved" or "limits"; the gates then
# refused on every distance and on every "changed".
DRIFT_ISSUE_14 = {"baseline": 1, "columns": {
    "predicted_churned": {"metric": "l_infinity", "distance": 0.016015, "value": "0", "changed": 0.144},
    "predicted_churned_probs": {"metric": "jensen_shannon", "distance": 0.039195, "label": "0", "mean_abs_change": 0.052675},
    "score": {"metric": "jensen_shannon", "distance": 0.001137, "mean_abs_change": 0.003},
}, "sample": {"ids": 1000, "in_both": 1000, "appeared": 0, "disappeared": 0}}
# Issue 21's: "gated" and "metadata" per column, "moved" and "spread", still no "limits".
DRIFT_ISSUE_21 = {"baseline": 2, "columns": {
    "predicted_churned": {"metric": "l_infinity", "distance": 0.2, "value": "0", "changed": 0.05, "gated": ["distance", "changed"]},
    "score": {"metric": "jensen_shannon", "distance": 0.001, "moved": 0.3, "mean_abs_change": 0.003, "spread": 0.61,
              "gated": ["distance", "moved"]},
    "scored_at": {"metric": "l_infinity", "distance": 0.0, "value": None, "changed": 1.0, "metadata": "a date or timestamp",
                  "gated": []},
}, "sample": {"ids": 1000, "in_both": 1000, "appeared": 0, "disappeared": 0}}
ROWS = {"1": {"predicted_churned": 0}, "2": {"predicted_churned": 1}}


@pytest.fixture
def old_store(tmp_path: Path) -> str:
    """Four snapshots as earlier versions published them: before profiles, a first profile, issue 14's
    drift, issue 21's drift."""
    store = str(tmp_path / "old.lmdb")
    publish_rows(store, "churn", ROWS, **BEFORE_PROFILES)
    publish_rows(store, "churn", ROWS, **BEFORE_PROFILES, profile=PROFILE_V1, drift=None)
    publish_rows(store, "churn", ROWS, **BEFORE_PROFILES, profile=PROFILE_V1, drift=DRIFT_ISSUE_14)
    publish_rows(store, "churn", ROWS, **BEFORE_PROFILES, profile=PROFILE_V1, drift=DRIFT_ISSUE_21)
    return store


def test_old_drift_entries_are_judged_as_their_version_gated_against_the_default_limits() -> None:
    old = reports.snapshot_report({**BEFORE_PROFILES, "profile": PROFILE_V1, "drift": DRIFT_ISSUE_14}).drift
    assert old is not None and not old.limits_recorded and old.limits == limits.DriftLimits()
    churned = old.columns["predicted_churned"]
    assert [(v.gate, v.limit, v.over) for v in churned.verdicts] == [
        ("prediction_drift", settings.MAX_DRIFT, False), ("changed_labels", settings.MAX_CHANGED_LABELS, True)]
    assert churned.verdict == "over" and old.verdict == "over"
    assert churned.verdicts[1].why == ("14.4% of 1,000 sampled ids in both snapshots changed is above the limit 10.0% "
                                       f"({reports.UNRECORDED})")
    assert [v.figure for v in old.columns["score"].verdicts] == ["distance"]  # no per-id figure gated then
    # absent fields stay absent: the stored record reads back as it was written
    assert reports.Drift.model_validate(DRIFT_ISSUE_14).to_json() == DRIFT_ISSUE_14

    newer = reports.snapshot_report({"profile": PROFILE_V1, "drift": DRIFT_ISSUE_21}).drift
    assert newer is not None
    assert [(v.figure, v.over) for v in newer.columns["score"].verdicts] == [("distance", False), ("moved", True)]
    assert newer.columns["scored_at"].verdict == "not gated" and newer.columns["scored_at"].verdicts == []
    assert reports.snapshot_report(BEFORE_PROFILES) == reports.SnapshotReport(profile=None, drift=None)


def test_a_limit_says_which_option_set_it() -> None:
    chosen = limits.DriftLimits(max_drift=0.2, column_max_moved={"score": 0.5})
    assert chosen.limit(limits.DISTANCE, "score") == (0.2, "--max-drift")
    assert chosen.limit(limits.MOVED, "score") == (0.5, "--column-max-moved-values score=0.5")
    assert chosen.limit(limits.MOVED, "other") == (settings.MAX_MOVED, "--max-moved-values")
    drift = reports.Drift.model_validate({**DRIFT_ISSUE_21, "limits": chosen})
    score = reports.judge(drift).columns["score"]
    assert [(v.limit, v.limit_from, v.over) for v in score.verdicts] == [
        (0.2, "--max-drift", False), (0.5, "--column-max-moved-values score=0.5", False)]
    assert score.verdicts[1].why == ("30.0% of 1,000 sampled ids in both snapshots moved by more than 0.5 standard "
                                     "deviations (0.5 x 0.61) is within the limit 50.0% (--column-max-moved-values score=0.5)")


def test_snapshots_published_by_earlier_versions_still_list(old_store: str) -> None:
    result = CliRunner().invoke(main, ["snapshots", "--store", old_store, "churn"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if "published" in line.split()}
    assert set(lines) == {"1", "2", "3", "4"}
    assert lines["3"].split()[-4:] == ["0.0392", "vs", "1", "14.4%"]  # the largest distance, the largest changed fraction
    assert lines["4"].split()[-4:] == ["0.2000", "vs", "2", "5.0%"]  # a metadata column's 100% is not a prediction's
    listing = json.loads(CliRunner().invoke(main, ["snapshots", "--store", old_store, "--json", "churn"]).output)
    assert [s["metadata"].get("drift") for s in listing["snapshots"]] == [None, None, DRIFT_ISSUE_14, DRIFT_ISSUE_21]


@pytest.mark.anyio
async def test_snapshots_published_by_earlier_versions_still_show_in_the_api(old_store: str, tmp_path: Path) -> None:
    iam = str(tmp_path / "iam.json")
    server = in_process(old_store, iam, make_keys(iam))
    try:
        async with server.client("admin") as admin:
            response = await admin.get("/v1/models/churn")
    finally:
        server.context.close()
    assert response.status_code == 200, response.text
    detail = response.json()
    ModelDetail.model_validate(detail)
    first, second, third, fourth = detail["history"]
    assert first["profile"] is None and first["drift"] is None
    assert second["profile"] == PROFILE_V1 and second["drift"] is None
    drift = third["drift"]
    assert drift["limits_recorded"] is False and drift["limits"]["max_drift"] == settings.MAX_DRIFT
    churned = drift["columns"]["predicted_churned"]
    assert {k: churned[k] for k in DRIFT_ISSUE_14["columns"]["predicted_churned"]} == DRIFT_ISSUE_14["columns"]["predicted_churned"]
    assert "gated" not in churned and churned["verdict"] == "over"
    assert [(v["gate"], v["over"], v["limit_from"]) for v in churned["verdicts"]] == [
        ("prediction_drift", False, reports.UNRECORDED), ("changed_labels", True, reports.UNRECORDED)]
    assert fourth["drift"]["columns"]["scored_at"]["verdict"] == "not gated"
    assert fourth["drift"]["columns"]["scored_at"]["metadata"] == "a date or timestamp"


# ---- the export records its limits; the API returns the gates' own verdicts -----------------------
def test_the_api_returns_the_verdicts_the_gates_made_with_the_limits_they_used(trained_warehouse: Path, tmp_path: Path) -> None:
    store, iam = str(tmp_path / "store.lmdb"), str(tmp_path / "iam.json")

    def export(query: str, policy: GatePolicy | None = None) -> Any:
        return run_export(warehouse=str(trained_warehouse), model="churn", key="user_id", store_url=store, query=query,
                          policy=policy)

    export(PREDICT_SQL.format(model="churn"))
    policy = GatePolicy(drift_limits=limits.DriftLimits(column_max_drift={"predicted_churned_probs": 0.5}))
    with pytest.raises(GateRefused) as refused:
        export(INVERTED_PREDICT_SQL.format(model="churn"), policy)
    published = export(INVERTED_PREDICT_SQL.format(model="churn"), dataclasses.replace(policy, allow_drift=True))
    assert published.drift is not None and published.drift.limits == policy.drift_limits  # recorded with the drift
    judged = reports.judge(published.drift)
    blocking = {g.name for g in refused.value.summary.gates if g.blocks}
    over = {v.gate for c in judged.columns.values() for v in c.verdicts if v.over}
    assert blocking == over == {"prediction_drift", "changed_labels"}  # the gates refused on the verdicts the API shows

    import anyio

    async def detail() -> dict[str, Any]:
        server = in_process(store, iam, make_keys(iam))
        try:
            async with server.client("admin") as admin:
                return (await admin.get("/v1/models/churn")).json()
        finally:
            server.context.close()

    drift = anyio.run(detail)["history"][-1]["drift"]
    assert drift["limits_recorded"] is True and drift["verdict"] == "over"
    assert drift["limits"]["column_max_drift"] == {"predicted_churned_probs": 0.5}
    label, probabilities = drift["columns"]["predicted_churned"], drift["columns"]["predicted_churned_probs"]
    assert label["verdict"] == "over" and [(v["figure"], v["limit"], v["limit_from"], v["over"]) for v in label["verdicts"]] == [
        ("distance", 0.1, "--max-drift", True), ("changed", 0.1, "--max-changed-labels", True)]
    assert label["verdicts"][0]["why"].startswith("L-infinity distance ") and "is above the limit 0.1 (--max-drift)" in label["verdicts"][0]["why"]
    assert probabilities["verdict"] == "within"
    (distance,) = probabilities["verdicts"]  # its per-id figure is reported, not gated: the label covers it
    assert distance["limit"] == 0.5 and distance["limit_from"] == "--column-max-drift predicted_churned_probs=0.5"
    assert distance["value"] == probabilities["distance"] < 0.5 and not distance["over"]


def test_the_console_script_holds_no_limit_and_pairs_no_metric() -> None:
    """The page renders the API's verdicts; the limits live in predserve.store.limits only."""
    from predserve.serving.console import STATIC

    source = (STATIC / "console.js").read_text()
    for decision in ("DRIFT_LIMIT", "max_drift", "jensen_shannon", "l_infinity", "f.distance >", "f.changed >"):
        assert decision not in source, decision
    assert "f.verdicts" in source and "v.why" in source
