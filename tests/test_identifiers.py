"""quote_identifier: any name, however odd, survives a round trip through the SQL it is spliced into."""

from __future__ import annotations

import duckdb
import pytest
import sqlglot

from predserve.identifiers import quote_identifier

AWKWARD_NAMES = ["plain", "select", 'dou"ble', "back`tick", "back\\slash", "spa ce", "ünï", "semi;colon--"]


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_a_quoted_name_selects_its_column_in_duckdb(name: str) -> None:
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t ({quote_identifier(name)} INTEGER)")
    con.execute("INSERT INTO t VALUES (7)")
    assert con.sql(f"SELECT {quote_identifier(name)} FROM t").fetchall() == [(7,)]
    assert con.sql("SELECT column_name FROM information_schema.columns WHERE table_name = 't'").fetchall() == [(name,)]


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_a_quoted_name_parses_back_to_itself_in_bigquery(name: str) -> None:
    column = sqlglot.parse_one(f"SELECT {quote_identifier(name, 'bigquery')} FROM t", read="bigquery").expressions[0]
    assert column.name == name


def test_bigquery_escapes_a_backtick_with_a_backslash_not_by_doubling() -> None:
    assert quote_identifier("a`b", "bigquery") == "`a\\`b`"
    assert quote_identifier('a"b') == '"a""b"'
