"""One translation path (issue 25 item 5): BigQuery SQL becomes DuckDB SQL in
warehouse/sql/translate.py only, for the warehouse's queries, a model's TRANSFORM and the
export's profile alike."""

from __future__ import annotations

import re

from predserve.pipeline.profile import to_duckdb
from tests.support.processes import ROOT

SRC = ROOT / "src/predserve"


def test_the_exports_profile_statements_get_the_warehouses_rewrites() -> None:
    sql = to_duckdb("SELECT k, ARRAY_AGG(x ORDER BY y LIMIT 2) AS top FROM p.d.t GROUP BY k "
                    "ORDER BY FARM_FINGERPRINT(CAST(k AS STRING))")
    assert "ARRAY_SLICE(ARRAY_AGG(x ORDER BY y" in sql  # the warehouse's ARRAY_AGG ... LIMIT rewrite
    assert "HASH(k)" in sql and "FARM_FINGERPRINT" not in sql.upper()  # the sample's fast order
    assert "FROM d.t" in sql  # the project part dropped, as for every warehouse statement


def test_no_module_reads_bigquery_sql_with_another_dialect_than_predserves() -> None:
    """sqlglot's plain BigQuery dialect (read="bigquery") or sqlglot.transpile would be a second
    path, missing predserve's parser (ML functions, BigQuery's stricter syntax) and rewrites."""
    offenders = [f"{path.relative_to(SRC)}:{n}: {line.strip()}"
                 for path in SRC.rglob("*.py")
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"""read=["']bigquery["']|sqlglot\.transpile\(""", line)]
    assert not offenders, "BigQuery SQL read outside warehouse/sql/translate.py:\n" + "\n".join(offenders)


def test_the_engine_writes_duckdb_sql_only_through_the_translation() -> None:
    engine = (SRC / "warehouse/engine.py").read_text()
    assert 'dialect="duckdb"' not in engine and "to_duckdb(" in engine
