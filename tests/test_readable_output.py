"""Output a person reads (issue 26 item 9): a model listing without the payload, `snapshots` and
`diff` within 80 columns, the row-drop gate in words, each export progress line once."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner, Result

from predserve.cli import main

runner = CliRunner(env={"COLUMNS": "80"})
QUERY = "SELECT user_id, predicted_churned, predicted_churned_probs, plan FROM ML.PREDICT(MODEL churn, TABLE users)"


def cli(*args: str, code: int = 0) -> Result:
    result = runner.invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output[-3000:]
    return result


def fits_80_columns(text: str) -> None:
    wide = [line for line in text.splitlines() if len(line) > 80]
    assert not wide, wide
    assert "…" not in text  # nothing cut short


def export(warehouse: Path, store: str, query: str = QUERY, code: int = 0) -> Result:
    return cli("export", "-w", str(warehouse), "--model", "churn", "--key", "user_id", "--store", store, "--query", query,
               "--allow-drift", code=code)


def test_models_lists_the_models_without_payload_or_options(trained_warehouse: Path, tmp_path: Path) -> None:
    out = cli("models", "-w", str(trained_warehouse)).output
    fits_80_columns(out)
    header = next(line for line in out.splitlines() if "model_type" in line)
    assert [c for c in re.split(r"[\s┃│]+", header) if c] == ["name", "model_type", "label", "training_rows", "created_at"]
    row = next(line for line in out.splitlines() if " churn " in line)
    assert "logistic_reg" in row and "churned" in row and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row)
    assert "payload" not in out and "input_label_cols" not in out and "\\x" not in out
    listed = cli("models", "-w", str(trained_warehouse), "--format", "json").output
    assert '"model_type": "logistic_reg"' in listed and "payload" not in listed
    empty = tmp_path / "empty.duckdb"
    cli("sql", "-w", str(empty), "CREATE TABLE t AS SELECT 1 AS x")
    assert "no models in" in cli("models", "-w", str(empty)).output
    missing = cli("models", "-w", str(tmp_path / "nothing.duckdb"), code=1).output
    assert "no warehouse at" in missing and not (tmp_path / "nothing.duckdb").exists()


def test_snapshots_and_diff_fit_80_columns(trained_warehouse: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "store.lmdb")
    export(trained_warehouse, store)
    export(trained_warehouse, store, QUERY + " WHERE user_id % 5 != 0")
    listing = cli("snapshots", "--store", store, "churn").output
    fits_80_columns(listing)
    rows = [line.split() for line in listing.splitlines() if re.match(r"^\d", line)]
    assert rows[0][:3] == ["1", "published", "3,000"] and rows[1][:4] == ["2", "*", "published", "2,400"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", rows[1][4]) and re.fullmatch(r"\d\d:\d\d:\d\d", rows[1][5])
    assert rows[1][7:9] == ["vs", "1"]  # the drift column: the largest distance vs snapshot 1
    diff = cli("diff", "--store", store, "churn").output
    fits_80_columns(diff)
    for label in ("0.0 .. 0.1", "0.9 .. 1.0", "NULL"):  # a probability chart's bins, each on one line
        assert any(line.strip("│ ").startswith(label) for line in diff.splitlines()), label


def test_the_row_drop_gate_says_fewer_rows_and_progress_prints_each_count_once(trained_warehouse: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "store.lmdb")
    export(trained_warehouse, store)
    refused = export(trained_warehouse, store, QUERY + " WHERE user_id <= 600", code=1).output
    assert "600 rows vs 3,000 in snapshot 1 (80.0% fewer rows, limit 50% fewer)" in refused
    assert "drop," not in refused and "+80" not in refused
    counts = re.findall(r"^  ([\d,]+/[\d,]+) rows written", export(trained_warehouse, store).output, re.M)
    assert counts and counts[-1] == "3,000/3,000" and len(counts) == len(set(counts)), counts


def test_the_progress_printer_prints_each_count_once(capsys) -> None:  # type: ignore[no-untyped-def]
    from predserve.cli.export import _progress_printer

    show = _progress_printer()
    # (written, expected, elapsed) as the export reports them: a count standing still while the
    # query's shards are written, then the pipeline's last report and the store's final count.
    for report in [(0, 3000, 0.5), (0, 3000, 1.6), (0, 3000, 2.7), (1200, 3000, 3.0), (1200, 3000, 4.1),
                   (3000, 3000, 4.3), (3000, 3000, 4.4)]:
        show(*report)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" rows written")[0].strip() for line in lines] == ["0/3,000", "1,200/3,000", "3,000/3,000"], lines


def test_the_readmes_latency_claims_are_what_docs_benchmarks_measures() -> None:
    from tests.support.processes import ROOT

    readme = (ROOT / "README.md").read_text()
    benchmarks = (ROOT / "docs" / "benchmarks.md").read_text()
    assert "sub-millisecond latency" not in readme  # what no benchmark measured from a caller's side
    claim = readme.split("**Latency, as measured**", 1)[1].split("\n\n", 1)[0]
    figures = re.findall(r"(\d[\d.]*)(?:-(\d[\d.]*))? (ms|µs)", claim)
    assert len(figures) >= 5, claim
    for low, high, unit in figures:
        for figure in filter(None, (low, high)):
            assert re.search(rf"(?<![\d.]){re.escape(figure)}(?![\d])", benchmarks), f"{figure} {unit} is not in docs/benchmarks.md"
    claim = " ".join(claim.split())
    # each figure's conditions are stated where it is quoted and where it is measured
    assert "bench/client_latency.py" in benchmarks and "load average 27-30" in benchmarks and "load average 27-30" in claim
    assert "quiet machine" in claim and "on a quiet machine (load average 1.7-1.8" in " ".join(benchmarks.split())
