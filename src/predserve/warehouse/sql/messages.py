"""Engine errors in the user's words.

DuckDB and pyarrow report problems in their own terms: an error class prefix, a caret under
the *transpiled* DuckDB SQL (not what the user wrote), DuckDB's type names, the placeholder
names ML functions run under. ``engine_message`` keeps what the user can act on (what is
missing or cannot be converted, with DuckDB's suggestion when it names a user object) and
says it in BigQuery's terms.
"""

from __future__ import annotations

import re

# DuckDB's type names -> BigQuery's, longest first so "TIMESTAMP WITH TIME ZONE" wins.
TYPE_NAMES = [
    ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP"), ("TIMESTAMPTZ", "TIMESTAMP"), ("TIMESTAMP_NS", "DATETIME"),
    ("VARCHAR", "STRING"), ("STRING_LITERAL", "STRING"), ("INTEGER_LITERAL", "INT64"), ("BLOB", "BYTES"),
    ("HUGEINT", "INT64"), ("UBIGINT", "INT64"), ("BIGINT", "INT64"), ("INTEGER", "INT64"), ("SMALLINT", "INT64"),
    ("TINYINT", "INT64"), ("INT128", "INT64"), ("INT32", "INT64"), ("INT16", "INT64"), ("INT8", "INT64"),
    ("DOUBLE", "FLOAT64"), ("FLOAT", "FLOAT64"), ("BOOLEAN", "BOOL"), ("DECIMAL", "NUMERIC"),
]
_TYPES = re.compile(r"\b(" + "|".join(re.escape(d) for d, _ in TYPE_NAMES) + r")\b")
_PREFIX = re.compile(r"\b([A-Z][a-z]+ )+(Error|Exception):\s*")  # "Binder Error: ", also mid-message
_INTERNAL_SUGGESTION = re.compile(r'\s*Did you mean "(pg_|duckdb_|sqlite_|information_schema|__predserve)[^"]*"\?')

# DuckDB's phrasing -> ours. Applied in order to the message without its prefix.
REWRITES = [
    (re.compile(r"Table with name (\S+) does not exist!"), r"table \1 does not exist."),
    (re.compile(r'Referenced column "([^"]+)" not found in FROM clause!'), r"column \1 is not in the FROM clause."),
    (re.compile(r'Referenced table "([^"]+)" not found!'), r"table or alias \1 is not in the FROM clause."),
    (re.compile(r'Values list "([^"]+)" does not have a column named "([^"]+)"'), r"\1 has no column \2."),
    (re.compile(r"Scalar Function with name (\S+) does not exist!"), r"function \1 does not exist."),
    (re.compile(r"Aggregate Function with name (\S+) does not exist!"), r"aggregate function \1 does not exist."),
    (re.compile(r"Table Function with name (\S+) does not exist!"), r"table function \1 does not exist."),
    (re.compile(r"Could not convert string '(.*)' to (\w+)"), r"cannot cast '\1' to \2"),
    (re.compile(r"Could not choose a best candidate function for the function call \"([^\"]+)\".*", re.S),
     r"no function matches \1; add explicit casts (CAST(x AS type))"),
    (re.compile(r"Candidate bindings: "), "similar columns: "),
    (re.compile(r"Candidate tables: "), "tables in the FROM clause: "),
]


def _bigquery_types(text: str) -> str:
    mapping = dict(TYPE_NAMES)
    return _TYPES.sub(lambda m: mapping[m.group(1)], text)


def engine_message(error: BaseException, placeholders: dict[str, str] | None = None) -> str:
    """An engine exception's message, cut to what concerns the user's statement."""
    text = str(error).split("\n\nLINE ")[0]  # the caret points into the transpiled DuckDB SQL
    text = _INTERNAL_SUGGESTION.sub("", text)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "the statement failed"
    out = []
    for line in lines:
        if line.startswith("Candidate functions") or line.startswith('"'):
            continue  # DuckDB's list of overloads
        line = _PREFIX.sub("", line)
        for pattern, replacement in REWRITES:
            line = pattern.sub(replacement, line)
        out.append(line)
    message = " ".join(out)
    for placeholder, description in (placeholders or {}).items():
        message = message.replace(f'"{placeholder}"', description).replace(placeholder, description)
    return _bigquery_types(message)
