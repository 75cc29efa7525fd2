"""The columns a profile counts, their kinds, and where and how SQL reads each one's values.

Every prediction column (every column but the key's) is profiled by its kind (``classify``;
the kinds are described in ``predserve.pipeline.profile``). A list body, an ARRAY<STRUCT>
column that is not a probabilities column, is an "other" column (its NULLs counted), and its
struct's fields are profiled as columns of their own (``list_fields``), so that their drift
is measured and gated exactly as a scalar column's:

    STRING, BOOL and integer fields   ``ARRAY.FIELD``     categorical, over every element listed:
    (ids: ``item_id``)                                    the shares of the most listed values
    floating and decimal fields       ``ARRAY[0].FIELD``  numeric, each row's first element: the
    (scores, values)                                      top score (NULL when the list is empty)
                                      ``ARRAY.FIELD``     numeric, every element listed: a
                                                          forecast's values across its horizon
    anything else (timestamps,        not profiled: never a drift signal
    nested arrays and structs)

e.g. ``ARRAY_AGG(STRUCT(item_id, predicted_rating) ORDER BY predicted_rating DESC LIMIT 10)
AS recommendations`` gives ``recommendations.item_id``, ``recommendations[0].predicted_rating``
and ``recommendations.predicted_rating``. A field of every element is counted over the
elements (``FROM relation AS r, UNNEST(r.array) AS e``): its NULLs, other values and counts
add up to the elements listed, stored as the profile's ``total``. A name that is already a
column's is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pyarrow as pa

from predserve.identifiers import quote_identifier
from predserve.keys import key_columns
from predserve.store.reports import CATEGORICAL, EVERY, FIRST, NUMERIC, OTHER, PROBABILITIES


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    floating: bool = False  # NaN and +/-Inf are served as null, so they count as NULL
    array: str | None = None  # a list field: the ARRAY<STRUCT> column, its struct field, FIRST or EVERY
    field: str | None = None
    element: str | None = None

    @property
    def every(self) -> bool:
        """Whether the values are every listed element's (counted over the unnested elements, not the rows)."""
        return self.element == EVERY


def classify(schema: pa.Schema, key: str | Sequence[str]) -> list[Column]:
    """The profiled columns (every column but the key's, each list column's fields after it) and their kinds."""
    names, keys = set(schema.names), key_columns(key)
    columns = []
    for field in schema:
        if field.name in keys:
            continue
        t = field.type
        if _is_probabilities(t):
            kind = PROBABILITIES
        elif pa.types.is_boolean(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
            kind = CATEGORICAL
        elif pa.types.is_integer(t):
            is_label = f"{field.name}_probs" in names or field.name.lower() == "centroid_id"
            kind = CATEGORICAL if is_label else NUMERIC
        elif pa.types.is_floating(t) or pa.types.is_decimal(t):
            kind = NUMERIC
        else:
            kind = OTHER
        columns.append(Column(field.name, kind, pa.types.is_floating(t)))
        if kind == OTHER:
            columns += [c for c in list_fields(field) if c.name not in names]
    return columns


def _struct_fields(t: pa.DataType) -> list[pa.Field] | None:
    """The fields of an ARRAY<STRUCT>'s elements; None for any other type."""
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or not pa.types.is_struct(t.value_type):
        return None
    return [t.value_type.field(i) for i in range(t.value_type.num_fields)]


def _is_probabilities(t: pa.DataType) -> bool:
    fields = {f.name: f.type for f in _struct_fields(t) or []}
    return set(fields) == {"label", "prob"} and pa.types.is_floating(fields["prob"])


def list_fields(column: pa.Field) -> list[Column]:
    """The profiled fields of an ARRAY<STRUCT> column (none for another type): see the module docstring."""
    out = []
    for sub in _struct_fields(column.type) or []:
        t, every = sub.type, f"{column.name}.{sub.name}"
        if pa.types.is_boolean(t) or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t):
            out.append(Column(every, CATEGORICAL, False, column.name, sub.name, EVERY))
        elif pa.types.is_floating(t) or pa.types.is_decimal(t):
            floating = pa.types.is_floating(t)
            out.append(Column(f"{column.name}[0].{sub.name}", NUMERIC, floating, column.name, sub.name, FIRST))
            out.append(Column(every, NUMERIC, floating, column.name, sub.name, EVERY))
    return out


def value_sql(column: Column) -> str:
    """The column's value as the body shows it, in BigQuery's SQL: NaN and +/-Inf become NULL,
    numbers FLOAT64. A list field's value is its first element's field (NULL for an empty or NULL
    list), or the field of the unnested element ``e`` (see ``source_sql``)."""
    if column.array is None:
        c = quote_identifier(column.name, "bigquery")
    else:
        array, field = quote_identifier(column.array, "bigquery"), quote_identifier(column.field or "", "bigquery")
        c = f"e.{field}" if column.every else f"{array}[SAFE_OFFSET(0)].{field}"
    if column.floating:
        return f"IF(IS_NAN({c}) OR IS_INF({c}), NULL, CAST({c} AS FLOAT64))"
    if column.kind == NUMERIC:
        return f"CAST({c} AS FLOAT64)"
    return c


def source_sql(column: Column, relation: str) -> str:
    """What a statement counting the column's values reads: the rows, or for a list field of
    every element, the rows' listed elements (a row with an empty or NULL list has none)."""
    if column.every:
        return elements_sql(relation, column.array or "")
    return relation


def elements_sql(relation: str, array: str) -> str:
    return f"{relation} AS r, UNNEST(r.{quote_identifier(array, 'bigquery')}) AS e"
