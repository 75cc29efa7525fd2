"""The Beam export job, end to end on generated data, into both stores."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from predserve import Warehouse
from predserve.datagen import PREDICT_SQL
from predserve.errors import ExportError
from predserve.pipeline import ExportToSnapshot, GatePolicy, GateRefused, run_export
from predserve.pipeline.job import build_pipeline
from predserve.pipeline.options import DASK_RUNNER, pipeline_options
from predserve.pipeline.render import BodyRenderer
from predserve.pipeline.sources import WarehouseSource
from predserve.pipeline.staging import create_staging_dir, remove_abandoned_staging
from predserve.store import open_store

QUERY = PREDICT_SQL.format(model="churn")


def expected_bodies(warehouse: Path, query: str = QUERY, snapshot: int = 1) -> dict[str, dict]:
    """What the API must return for each id, built independently from the warehouse's rows."""
    with Warehouse(warehouse, read_only=True) as wh:
        rows = wh.sql(query).to_pylist()
    return {
        str(r["user_id"]): {
            "model": "churn", "id": str(r["user_id"]), "snapshot": snapshot,
            "prediction": {k: v for k, v in r.items() if k != "user_id"},
        }
        for r in rows
    }


def export(warehouse: Path, store: str, query: str = QUERY, **kwargs):
    return run_export(warehouse=str(warehouse), model="churn", key="user_id", store_url=store, query=query, **kwargs)


def test_every_key_is_stored_with_its_rendered_body(trained_warehouse: Path, store_url: str) -> None:
    summary = export(trained_warehouse, store_url)
    assert summary.published and summary.rows == 3000
    expected = expected_bodies(trained_warehouse, snapshot=summary.snapshot)
    with open_store(store_url, readonly=True) as store:
        assert store.current("churn").id == summary.snapshot
        stored = {k.decode(): json.loads(v) for k, v in store.items("churn", summary.snapshot)}
    assert stored == expected


def test_multi_process_direct_runner(trained_warehouse: Path, store_url: str) -> None:
    summary = export(trained_warehouse, store_url,
                     beam_args=["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    assert summary.published and summary.rows == 3000
    with open_store(store_url, readonly=True) as store:
        assert store.count("churn", summary.snapshot) == 3000
        assert json.loads(store.get("churn", summary.snapshot, b"17"))["id"] == "17"


def test_composite_transform_in_a_test_pipeline(trained_warehouse: Path, tmp_path: Path) -> None:
    url = str(tmp_path / "s")
    with Warehouse(trained_warehouse, read_only=True) as wh:
        table = wh.sql(QUERY + " WHERE user_id <= 10")
    with open_store(url) as store:
        snap = store.create_snapshot("churn").id
        with BeamTestPipeline() as p:
            _ = p | beam.Create([table]) | ExportToSnapshot(url, "churn", snap, "user_id")
        assert store.count("churn", snap) == 10


def test_timestamps_nan_and_text_keys_render_as_json(tmp_path: Path) -> None:
    wh_path = tmp_path / "wh.duckdb"
    with Warehouse(wh_path) as wh:
        wh.sql("CREATE TABLE p AS SELECT * FROM (VALUES ('a', 'NaN'::DOUBLE, TIMESTAMPTZ '2024-05-01 12:00:00+00'),"
               " ('b', 'Infinity'::DOUBLE, NULL), ('c', 0.5, TIMESTAMPTZ '2024-05-02 00:00:00+00')) t(k, score, at)")
    summary = run_export(warehouse=str(wh_path), model="m", key="k", store_url=str(tmp_path / "s"), table="p")
    with open_store(str(tmp_path / "s"), readonly=True) as store:
        a = json.loads(store.get("m", summary.snapshot, b"a"))
        b = json.loads(store.get("m", summary.snapshot, b"b"))
    assert a["prediction"] == {"score": None, "at": "2024-05-01T12:00:00.000000Z"}
    assert b["prediction"] == {"score": None, "at": None}


# ---- gates ---------------------------------------------------------------------------------
def test_empty_export_is_refused_unless_allowed(trained_warehouse: Path, tmp_path: Path) -> None:
    url = str(tmp_path / "s")
    with pytest.raises(GateRefused, match="non_empty"):
        export(trained_warehouse, url, QUERY + " WHERE false")
    assert not Path(url).exists()  # the refused snapshot was discarded, and the store this first export made with it
    assert export(trained_warehouse, url, QUERY + " WHERE false", policy=GatePolicy(allow_empty=True)).published


def test_duplicate_keys_are_refused_with_examples(trained_warehouse: Path, tmp_path: Path) -> None:
    url = str(tmp_path / "s")
    first = export(trained_warehouse, url)
    dup_query = f"SELECT * FROM ({QUERY}) UNION ALL SELECT * FROM ({QUERY}) WHERE user_id IN (5, 7)"
    with pytest.raises(GateRefused, match=r"2 duplicate keys \(e\.g\. 5, 7\)"):
        export(trained_warehouse, url, dup_query)
    with open_store(url) as store:
        assert store.current("churn").id == first.snapshot
    assert export(trained_warehouse, url, dup_query, policy=GatePolicy(allow_duplicates=True)).rows == 3000


def test_null_keys_are_refused(trained_warehouse: Path, tmp_path: Path) -> None:
    url = str(tmp_path / "s")
    query = f"SELECT CASE WHEN user_id % 100 = 0 THEN NULL ELSE user_id END AS user_id, predicted_churned FROM ({QUERY})"
    with pytest.raises(GateRefused, match="30 rows have a NULL key"):
        export(trained_warehouse, url, query)
    summary = export(trained_warehouse, url, query, policy=GatePolicy(allow_null_keys=True))
    assert summary.rows == 2970


def test_row_count_drop_is_refused(trained_warehouse: Path, tmp_path: Path) -> None:
    url = str(tmp_path / "s")
    first = export(trained_warehouse, url)
    with pytest.raises(GateRefused, match=r"row_count_drop: 1,000 rows vs 3,000 in snapshot 1 \(66\.7% fewer rows, limit 50% fewer\)"):
        export(trained_warehouse, url, QUERY + " WHERE user_id <= 1000")
    with open_store(url) as store:
        assert store.current("churn").id == first.snapshot
    assert export(trained_warehouse, url, QUERY + " WHERE user_id <= 1000", policy=GatePolicy(max_row_drop=0.9)).published


def test_changed_prediction_columns_are_refused(trained_warehouse: Path, tmp_path: Path) -> None:
    url = str(tmp_path / "s")
    export(trained_warehouse, url)
    narrower = f"SELECT user_id, predicted_churned FROM ({QUERY})"
    with pytest.raises(GateRefused, match="prediction_columns: changed"):
        export(trained_warehouse, url, narrower)
    assert export(trained_warehouse, url, narrower, policy=GatePolicy(allow_schema_change=True)).published


def test_bad_key_and_bad_query_are_clear_errors(trained_warehouse: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="key column 'customer' is not among"):
        run_export(warehouse=str(trained_warehouse), model="churn", key="customer", store_url=str(tmp_path / "s"), query=QUERY)
    with pytest.raises(Exception, match="model nope does not exist"):
        export(trained_warehouse, str(tmp_path / "s"), "SELECT * FROM ML.PREDICT(MODEL nope, TABLE users)")
    with pytest.raises(ExportError, match="exactly one of"):
        run_export(warehouse=str(trained_warehouse), model="churn", key="user_id", store_url=str(tmp_path / "s"))


def test_killed_export_leaves_the_current_snapshot_serving(tmp_path: Path) -> None:
    """SIGKILL the export mid-write: the old snapshot keeps serving; GC collects the partial one."""
    from predserve.datagen import TRAIN_SQL, create_users

    wh_path = tmp_path / "big.duckdb"
    with Warehouse(wh_path) as wh:
        create_users(wh, 300_000)
        wh.sql(TRAIN_SQL.format(model="churn"))
    url = str(tmp_path / "s")
    first = export(wh_path, url, QUERY + " WHERE user_id <= 1000", policy=GatePolicy(max_row_drop=1.0))
    cmd = [sys.executable, "-m", "predserve.cli", "export", "-w", str(wh_path), "--model", "churn", "--key", "user_id",
           "--query", QUERY, "--store", url]
    staging_parent = tmp_path / "tmp"
    staging_parent.mkdir()
    env = {**os.environ, "TMPDIR": str(staging_parent)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    reader = open_store(url, readonly=True)
    deadline = time.monotonic() + 120
    partial = None
    while time.monotonic() < deadline and proc.poll() is None:
        state = reader.state("churn")
        writing = [s for s in state.snapshots.values() if s.state == "writing"]
        if writing and reader.count("churn", writing[0].id) > 0:
            partial = writing[0].id
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert partial is not None, "the export finished before it could be killed"
    assert reader.current("churn").id == first.snapshot
    assert json.loads(reader.get("churn", first.snapshot, b"5"))["id"] == "5"
    reader.close()
    with open_store(url) as store:
        assert ("churn", partial) in store.gc("churn")
        assert store.count("churn", partial) == 0
    # The killed export's Parquet staging directory is still there, named after its dead process;
    # `predserve gc` removes it (and the next export would).
    staged = list(staging_parent.glob("predserve-export-*"))
    assert [d.name.split("-")[2] for d in staged] == [str(proc.pid)] and list(staged[0].glob("shards/*.parquet"))
    out = subprocess.run([sys.executable, "-m", "predserve.cli", "gc", "--store", url], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0 and f"removed abandoned export staging directory {staged[0]}" in out.stdout
    assert not staged[0].exists()


def test_staging_directories_of_live_exports_are_kept(tmp_path: Path) -> None:
    live = create_staging_dir(tmp_path)  # owned by this (running) process
    unowned = tmp_path / "predserve-export-abc123"  # the name exports used before owners were recorded
    unowned.mkdir()
    assert remove_abandoned_staging(tmp_path) == [] and live.exists()
    os.utime(unowned, (time.time() - 7200, time.time() - 7200))
    assert remove_abandoned_staging(tmp_path, stale_after=3600) == [unowned] and live.exists()


# ---- the pipeline's shape and options --------------------------------------------------------
def test_the_pipeline_is_one_line_with_a_single_leaf(trained_warehouse: Path, tmp_path: Path) -> None:
    """DaskRunner computes only the last transform's output: a second leaf would never run there."""
    source = WarehouseSource(str(trained_warehouse), QUERY, "user_id")
    source.prepare()
    try:
        options, runner = pipeline_options([])
        pipeline = build_pipeline(source, options, runner, ExportToSnapshot(str(tmp_path / "s"), "churn", 1, "user_id"))
        produced, consumed, names = {}, set(), []

        class Leaves(beam.pipeline.PipelineVisitor):
            def visit_transform(self, node):  # type: ignore[no-untyped-def]
                names.append(node.full_label)
                consumed.update(id(i) for i in node.inputs)
                produced[node.full_label] = [id(o) for o in node.outputs.values()]

        pipeline.visit(Leaves())
    finally:
        source.cleanup()
    leaves = [name for name, outs in produced.items() if not any(o in consumed for o in outs)]
    assert leaves == [names[-1]] and leaves[0].startswith("Export/")
    assert len(source.items) >= 1 and all(isinstance(i, tuple) for i in source.items)  # Create's work items: row groups


@pytest.mark.parametrize("args, message", [
    (["--runner", "Nope"], "unknown --runner Nope"),
    (["--direct_num_workers=two"], "bad pipeline option: argument --direct_num_workers: invalid int value: 'two'"),
    (["--runer", "dask"], "unknown pipeline option --runer"),
    (["--direct_running_mode", "fast"], "argument --direct_running_mode: invalid choice: 'fast'"),
    (["--project"], "argument --project: expected one argument"),
])
def test_bad_pipeline_options_are_export_errors_naming_the_option(args: list[str], message: str) -> None:
    with pytest.raises(ExportError, match=re.escape(message)):
        pipeline_options(args)


@pytest.mark.parametrize("args, ordered", [
    ([], True), (["--runner", "BundleBasedDirectRunner"], True), (["--direct_running_mode=multi_threading"], True),
    (["--direct_num_workers=2", "--direct_running_mode=multi_processing"], False), (["--runner", "dask"], False),
])
def test_only_one_in_order_worker_writes_lmdb_directly(args: list[str], ordered: bool) -> None:
    """Parallel writers (the DaskRunner subclasses the bundle-based DirectRunner) are staged (store/lmdb.py)."""
    from predserve.pipeline.job import writes_in_order

    assert writes_in_order(*pipeline_options(args)) is ordered


def test_a_bad_option_cancels_the_query_it_ran_beside(tmp_path: Path) -> None:
    """Beam is imported, and the options checked, while the query runs: a bad option stops a
    query that would run for many minutes, and the export says what was wrong with the option."""
    with Warehouse(tmp_path / "wh.duckdb") as wh:
        wh.sql("CREATE TABLE t AS SELECT 1 AS x")
    endless = ("SELECT 1 AS user_id, SUM(a * b) AS n FROM UNNEST(GENERATE_ARRAY(1, 1000000)) AS a "
               "CROSS JOIN UNNEST(GENERATE_ARRAY(1, 1000000)) AS b")  # 10^12 products
    started = time.monotonic()
    with pytest.raises(ExportError, match="unknown --runner Nope"):
        run_export(warehouse=str(tmp_path / "wh.duckdb"), model="m", key="user_id", store_url=str(tmp_path / "s"),
                   query=endless, beam_args=["--runner", "Nope"])
    assert time.monotonic() - started < 60
    assert not (tmp_path / "s").exists()
    assert not list(Path(tempfile.gettempdir()).glob(f"predserve-export-{os.getpid()}-*"))  # staging removed


def test_a_bad_option_on_the_command_line_is_one_line_not_a_traceback(trained_warehouse: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "predserve.cli", "export", "-w", str(trained_warehouse), "--model", "churn", "--key", "user_id",
           "--query", QUERY, "--store", str(tmp_path / "s"), "--runner", "apache_beam.runners.nothing.Runner"]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ}, timeout=120)
    assert out.returncode == 1 and out.stderr.strip() == (
        "error: unknown --runner apache_beam.runners.nothing.Runner: use DirectRunner, DataflowRunner, "
        "dask (Beam's DaskRunner) or a PipelineRunner's class path")
    assert not (tmp_path / "s").exists()  # refused before any work


def test_the_exports_import_chain_loads_no_training_library() -> None:
    """Beam's import and DuckDB's query share the GIL at start-up: at 1M rows every 0.1 s of
    it is 3% of the command. The model registry (which the warehouse loads) keeps scipy,
    scikit-learn, XGBoost and statsforecast to the functions that train and score."""
    code = ("import sys, predserve.cli.export, predserve.pipeline.sources, predserve.warehouse.engine\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'sklearn', 'xgboost', 'statsforecast'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr


def test_without_dask_the_extra_is_named() -> None:
    """A real process in which dask cannot be imported."""
    code = ("import sys; sys.modules['dask.distributed'] = None\n"
            "from predserve.pipeline.options import pipeline_options\n"
            "from predserve.errors import ExportError\n"
            "try:\n    pipeline_options(['--runner', 'dask'])\nexcept ExportError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "--runner dask needs Dask: pip install 'predserve[dask]'"


@pytest.mark.parametrize("alias", ["dask", "DaskRunner", "daskrunner"])
def test_dask_aliases_name_beams_dask_runner(alias: str) -> None:
    options, runner = pipeline_options([f"--runner={alias}", "--dask_client_address", "tcp://127.0.0.1:1"])
    assert options.get_all_options()["runner"] == DASK_RUNNER and type(runner).__name__ == "DaskRunner"
    assert options.get_all_options()["partition_size"] == 1  # one work item per Dask partition
    assert options.get_all_options()["address"] == "tcp://127.0.0.1:1"


# ---- counting and rendering ------------------------------------------------------------------
def test_the_store_counts_what_it_accepted_per_writer(store_url: str) -> None:
    """The rows-written count the gates use comes from the store: every bundle's writer, no metrics."""
    with open_store(store_url) as store:
        snap = store.create_snapshot("m").id
        for start in (0, 100):  # two bundles, as two workers would write them
            writer = store.writer("m", snap)
            writer.write_columns([b"%d" % i for i in range(start, start + 100)], [b"{}"] * 100)
            writer.close()
        assert store.rows_accepted("m", snap) == 200 == store.count("m", snap)
        store.discard("m", snap)
        assert store.rows_accepted("m", snap) == 0


def test_each_batch_is_stored_before_the_writer_takes_the_next(store_url: str) -> None:
    """A writer holds at most the batch it was given (Bigtable's batcher would queue without
    bound): when ``write_columns`` returns, that batch is readable, before the writer closes."""
    with open_store(store_url) as store:
        snap = store.create_snapshot("m").id
        writer = store.writer("m", snap)
        for start in range(0, 6_000, 2_000):
            writer.write_columns([b"%d" % i for i in range(start, start + 2_000)], [b'{"n":%d}' % i for i in range(start, start + 2_000)])
            assert store.get("m", snap, b"%d" % (start + 1_999)) == b'{"n":%d}' % (start + 1_999)
            assert store.count("m", snap) == start + 2_000
        writer.close()
        assert store.rows_accepted("m", snap) == 6_000


def test_lmdb_does_not_count_an_id_twice(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "s")) as store:
        snap = store.create_snapshot("m").id
        writer = store.writer("m", snap)
        assert writer.write_columns([b"a", b"b"], [b"1", b"2"]) == 0
        assert writer.write_columns([b"b", b"c"], [b"3", b"4"]) == 1  # "b" is kept, not counted again
        writer.close()
        assert store.rows_accepted("m", snap) == 3


def test_nested_values_render_as_valid_json() -> None:
    """NaN inside an ARRAY, timestamps inside a STRUCT, BIGNUMERIC's 38 decimals: valid, exact JSON."""
    import datetime as dt
    import decimal

    import pyarrow as pa

    big = decimal.Decimal("12345678901234567890.12345678901234567890123456789012345678")
    table = pa.table({
        "k": [1, 2],
        "probs": pa.array([[0.25, float("nan")], None], pa.list_(pa.float64())),
        "info": pa.array([{"at": dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc), "days": [dt.date(2024, 5, 2)]}, None],
                         pa.struct([("at", pa.timestamp("us", tz="UTC")), ("days", pa.list_(pa.date32()))])),
        "big": pa.array([big, None], pa.decimal256(76, 38)),
        "amount": pa.array([decimal.Decimal("1.5"), None], pa.decimal128(38, 9)),
    })
    ids, bodies = BodyRenderer("m", 1, "k").render(table)
    first, second = (json.loads(b) for b in bodies)
    assert ids == [b"1", b"2"]
    assert first["prediction"] == {"probs": [0.25, None], "info": {"at": "2024-05-01T00:00:00.000000Z", "days": ["2024-05-02"]},
                                   "big": str(big), "amount": 1.5}
    assert second["prediction"] == {"probs": None, "info": None, "big": None, "amount": None}
    assert b'"amount":1.500000000' in bodies[0]  # NUMERIC keeps its scale's digits, as DuckDB's DECIMAL does
