"""Composite keys: several key columns make one id.

``--key user_id,country`` exports rows keyed by both columns; the id of a row is its key
values as text, joined by ``SEPARATOR``::

    (42, "DE")        -> "42|DE"
    ("a|b", "c\\d")   -> "a\\|b|c\\\\d"     (in each value, "\\" becomes "\\\\" and "|" becomes "\\|")

The escaping makes the joining reversible (``split_key``) and one-to-one, so two different
keys never share an id, and the NULL and duplicate gates can check the joined id. A single
key column is the id as it always was: its value as text, with nothing escaped. The joined
id is what the routes take (``GET /v1/models/M/predictions/42%7CDE``), what batchGet takes
and what the stored body's ``"id"`` shows; ``predserve.client`` takes a tuple and joins it.

The same text is built in SQL (``key_sql``) for DuckDB, which renders the bodies, and for
BigQuery, whose statistics and drift sample must name the same ids.
"""

from __future__ import annotations

from typing import Any, Sequence

from typing import TYPE_CHECKING

from predserve.errors import ExportError

if TYPE_CHECKING:
    from predserve.identifiers import Dialect

SEPARATOR = "|"
ESCAPE = "\\"


def key_columns(key: str | Sequence[str]) -> tuple[str, ...]:
    """``"a,b"`` (the --key option) or ``("a", "b")`` -> ``("a", "b")``, each name once."""
    names = tuple(n.strip() for n in key.split(",")) if isinstance(key, str) else tuple(key)
    if not names or not all(names):
        raise ExportError(f"bad --key {key!r}: give a column, or several separated by commas (--key user_id,country)")
    if len(set(names)) != len(names):
        raise ExportError(f"bad --key {key!r}: a column is named twice")
    return names


def escape(value: str) -> str:
    return value.replace(ESCAPE, ESCAPE * 2).replace(SEPARATOR, ESCAPE + SEPARATOR)


def join_key(values: Sequence[Any]) -> str:
    """The id of a composite key: each value as text, escaped, joined by SEPARATOR."""
    if isinstance(values, (str, bytes)):
        raise TypeError("join_key takes a sequence of key values, e.g. (42, 'DE')")
    if len(values) == 1:
        return str(values[0])
    return SEPARATOR.join(escape(_text(v)) for v in values)


def _text(value: Any) -> str:
    """A value as the export's SQL casts it to text (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def split_key(entity_id: str) -> list[str]:
    """The values (as text) of a composite id built by ``join_key``; raises ValueError on a dangling escape."""
    values, current, chars = [], [], iter(entity_id)
    for char in chars:
        if char == ESCAPE:
            following = next(chars, None)
            if following is None:
                raise ValueError(f"id {entity_id!r} ends with a lone {ESCAPE!r}")
            current.append(following)
        elif char == SEPARATOR:
            values.append("".join(current))
            current = []
        else:
            current.append(char)
    values.append("".join(current))
    return values


def key_sql(columns: Sequence[str], dialect: "Dialect" = "duckdb") -> str:
    """SQL for the id of each row: NULL when any key column is NULL.

    One column: the column itself (the callers cast it). Several: each cast to text, escaped,
    joined by SEPARATOR (``||`` yields NULL when any part is NULL, in both engines).
    """
    from predserve.identifiers import quote_identifier  # SQL only: the client imports this module too

    if len(columns) == 1:
        return quote_identifier(columns[0], dialect)
    backslash = "'\\\\'" if dialect == "bigquery" else "'\\'"  # BigQuery's literals escape a backslash
    doubled = "'\\\\\\\\'" if dialect == "bigquery" else "'\\\\'"
    escaped_sep = ("'\\\\" if dialect == "bigquery" else "'\\") + SEPARATOR + "'"
    parts = [f"REPLACE(REPLACE(CAST({quote_identifier(c, dialect)} AS STRING), {backslash}, {doubled}), '{SEPARATOR}', {escaped_sep})"
             for c in columns]
    return "(" + f" || '{SEPARATOR}' || ".join(parts) + ")"
