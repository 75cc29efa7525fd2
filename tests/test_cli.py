"""The command line, the README's description of it, and the whole flow through it."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from predserve import Warehouse
from predserve.cli import main
from predserve.iam import Registry
from tests.support.processes import ROOT

runner = CliRunner()


def cli(*args: str, ok: bool = True) -> str:
    result = runner.invoke(main, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result.output


def test_every_command_has_help_and_the_readme_lists_them_all() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = set(main.commands)
    assert commands == {"sql", "models", "load", "export", "snapshots", "diff", "rollback", "gc", "serve", "iam", "demo", "push",
                        "stream"}
    for name in commands:
        assert f"predserve {name}" in readme, f"README does not mention `predserve {name}`"
        assert cli(name, "--help").startswith("Usage:")
    for sub in main.commands["iam"].commands:  # type: ignore[attr-defined]
        assert f"predserve iam {sub}" in readme, f"README does not mention `predserve iam {sub}`"
    for documented in set(re.findall(r"`predserve (\w+)", readme)) - {"iam"}:
        assert documented in commands, f"README documents `predserve {documented}`, which does not exist"


def test_sql_formats_and_errors(tmp_path: Path) -> None:
    wh = str(tmp_path / "w.duckdb")
    cli("sql", "-w", wh, "CREATE TABLE t AS SELECT i AS id, [i, i + 1] AS pair FROM range(3) r(i)")
    assert json.loads(cli("sql", "-w", wh, "--format", "json", "SELECT * FROM t ORDER BY id"))[2] == {"id": 2, "pair": [2, 3]}
    rows = list(csv.DictReader(io.StringIO(cli("sql", "-w", wh, "--format", "csv", "SELECT * FROM t ORDER BY id"))))
    assert rows[0] == {"id": "0", "pair": "[0, 1]"}
    assert "3 rows" in cli("sql", "-w", wh, "SELECT * FROM t")
    bad = runner.invoke(main, ["sql", "-w", wh, "SELEC 1"])
    assert bad.exit_code == 1 and "syntax error" in bad.output and "Traceback" not in bad.output
    script = tmp_path / "q.sql"
    script.write_text("SELECT 1 AS a; SELECT 2 AS b")
    assert json.loads(cli("sql", "-w", wh, "--format", "json", "-f", str(script))) == [{"b": 2}]


def test_load_csv_and_parquet(tmp_path: Path) -> None:
    wh = str(tmp_path / "w.duckdb")
    data = tmp_path / "users.csv"
    data.write_text("user_id,score\n1,0.5\n2,0.25\n")
    assert "loaded 2 rows into crm.users" in cli("load", "-w", wh, "crm.users", str(data))
    failed = runner.invoke(main, ["load", "-w", wh, "crm.users", str(data)])
    assert failed.exit_code == 1 and "--replace" in failed.output
    cli("sql", "-w", wh, "COPY crm.users TO '%s' (FORMAT PARQUET)" % (tmp_path / "u.parquet"))
    assert "loaded 2 rows" in cli("load", "-w", wh, "--replace", "crm.users", str(tmp_path / "u.parquet"))


def test_snapshots_rollback_and_gc_commands(trained_warehouse: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    base = ["export", "-w", str(trained_warehouse), "--model", "churn", "--key", "user_id", "--store", store,
            "--query", "SELECT user_id, predicted_churned FROM ML.PREDICT(MODEL churn, TABLE users)"]
    out = cli(*base)
    assert "published snapshot 1 of churn: 3,000 rows" in out
    summary = json.loads(cli(*base, "--json"))
    assert summary["snapshot"] == 2 and summary["published"] and {g["name"] for g in summary["gates"]} >= {"unique_keys"}
    listing = json.loads(cli("snapshots", "--store", store, "--json", "churn"))
    assert listing["current"] == 2 and [s["id"] for s in listing["snapshots"]] == [1, 2]
    assert "churn now serves snapshot 1" in cli("rollback", "--store", store, "churn")
    assert "deleted churn snapshot 2" in cli("gc", "--store", store, "--keep", "1", "--grace", "0")
    failed = runner.invoke(main, ["rollback", "--store", store, "churn"])
    assert failed.exit_code == 1 and "no earlier snapshot" in failed.output
    refused = runner.invoke(main, [*base[:-1], base[-1] + " WHERE false"])
    assert refused.exit_code == 1 and "non_empty" in refused.output and "FAIL" in refused.output


def test_iam_commands(tmp_path: Path) -> None:
    iam = str(tmp_path / "iam.json")
    key = cli("iam", "create", "--iam", iam, "--key-only", "app-reader", "--models", "churn").strip()
    assert key.startswith("psk_")
    assert key not in Path(iam).read_text()  # only the hash is stored
    assert oct(Path(iam).stat().st_mode & 0o777) == "0o600"
    assert '"reader": ["churn"]' in cli("iam", "grant", "--iam", iam, "app-reader", "--models", "churn")
    listed = cli("iam", "list", "--iam", iam)
    assert "app-reader" in listed and key not in listed
    assert "new key" in cli("iam", "rotate", "--iam", iam, "app-reader")
    assert '"admin"' in cli("iam", "grant", "--iam", iam, "--role", "admin", "app-reader")
    assert '"admin"' not in cli("iam", "revoke", "--iam", iam, "--role", "admin", "app-reader")
    cli("iam", "delete", "--iam", iam, "app-reader")
    gone = runner.invoke(main, ["iam", "delete", "--iam", iam, "app-reader"])
    assert gone.exit_code == 1 and "no service account" in gone.output


def test_whole_flow_through_the_cli_serves_what_ml_predict_returns(tmp_path: Path, api_server) -> None:
    """load -> CREATE MODEL -> export -> iam -> serve: served predictions equal ML.PREDICT's rows."""
    from predserve.datagen import users_table
    import pyarrow.csv as pacsv

    data = tmp_path / "users.csv"
    pacsv.write_csv(users_table(2000), str(data))
    wh, store, iam = str(tmp_path / "w.duckdb"), str(tmp_path / "store"), str(tmp_path / "iam.json")
    cli("load", "-w", wh, "users", str(data))
    cli("sql", "-w", wh, "CREATE MODEL churn OPTIONS(model_type='logistic_reg', input_label_cols=['churned']) AS "
        "SELECT * EXCEPT(user_id) FROM users")
    query = "SELECT user_id, predicted_churned, predicted_churned_probs FROM ML.PREDICT(MODEL churn, TABLE users)"
    cli("export", "-w", wh, "--model", "churn", "--key", "user_id", "--query", query, "--store", store)
    key = cli("iam", "create", "--iam", iam, "--key-only", "reader-one").strip()
    server = api_server(store, iam)
    with Warehouse(wh, read_only=True) as w:
        expected = {r["user_id"]: r for r in w.sql(query + " WHERE user_id IN (1, 500, 1999)").to_pylist()}
    with server.client(key) as client:
        for user_id, row in expected.items():
            body = client.get(f"/v1/models/churn/predictions/{user_id}").json()
            assert body["id"] == str(user_id)
            assert body["prediction"] == {k: v for k, v in row.items() if k != "user_id"}


def test_make_demo_command_prints_served_predictions(tmp_path: Path) -> None:
    """What `make demo` runs, without the final serve-until-Ctrl-C."""
    result = subprocess.run(
        [sys.executable, "-m", "predserve.cli", "demo", "--dir", str(tmp_path / "demo"), "--rows", "100000",
         "--port", "0", "--no-serve"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "published snapshot 1: 100,000 rows" in out
    assert "GET /v1/models/churn/predictions/42 -> 200" in out
    assert '"predicted_churned_probs"' in out and "curl -H 'Authorization: Bearer psk_" in out
    assert "CREATE MODEL recommender (matrix_factorization) on 200,000 ratings of 200 products by 20,000 users" in out
    assert "exported ML.RECOMMEND as model recommender" in out and "snapshot 1: 20,000 rows" in out
    assert "GET /v1/models/recommender/predictions/42 -> 200" in out
    assert len(re.findall(r"^\s+\d+\. product +\d+  predicted rating \d", out, re.M)) == 10
    assert re.search(r"curl -H 'Authorization: Bearer psk_\S+' http://127\.0\.0\.1:\d+/v1/models/recommender/predictions/42", out)
    assert re.search(r"web console: http://127\.0\.0\.1:\d+/console", out)
    admin_key = re.search(r"sign in with the admin key (psk_\S+)", out).group(1)
    account = Registry(tmp_path / "demo" / "iam.json").authenticate(admin_key)
    assert account is not None and account.is_admin


def test_a_command_run_in_process_leaves_no_signal_handler_behind() -> None:
    """The CLI makes SIGTERM unwind a command (issue 26 item 4) only while the command runs: a test
    or a library calling it in process keeps Python's default afterwards."""
    import signal

    from click.testing import CliRunner

    from predserve.cli import main

    before = signal.getsignal(signal.SIGTERM)
    assert CliRunner().invoke(main, ["iam", "list", "--iam", "/nonexistent/iam.json"]).exit_code in (0, 1)
    assert signal.getsignal(signal.SIGTERM) is before
