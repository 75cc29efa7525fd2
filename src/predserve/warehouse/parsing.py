"""Cutting BigQuery SQL into statements and finding the ML.* table functions in them.

We tokenize with sqlglot's BigQuery tokenizer (so strings, comments and backticks are
handled), then:
- split a script at top-level semicolons, keeping each statement's original text and offset;
- find every ``ML.<FUNCTION>(MODEL name [, TABLE t | (query)] [, STRUCT(...)])`` call and
  replace it with a placeholder relation name. The engine computes each call (streaming
  Arrow batches for ML.PREDICT) and registers it under that name before running the rest,
  which sqlglot transpiles to DuckDB.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count

from sqlglot.dialects.bigquery import BigQuery
from sqlglot.errors import TokenError
from sqlglot.tokens import Token, TokenType

from predserve.errors import SQLError
from predserve.warehouse.preprocessing import FUNCTIONS as PREPROCESSING_FUNCTIONS

ML_FUNCTIONS = ("PREDICT", "EVALUATE", "TRAINING_INFO", "FEATURE_INFO", "WEIGHTS")
_placeholder_ids = count(1)


@dataclass
class Statement:
    text: str
    offset: int  # character offset in the script
    tokens: list[Token]

    def position(self, char: int) -> str:
        return f"at character {self.offset + char + 1}"


@dataclass
class MLCall:
    function: str  # PREDICT, EVALUATE, ...
    model: str
    placeholder: str
    source_sql: str | None = None  # the input query, in BigQuery SQL
    settings_sql: str | None = None  # the STRUCT(...) text


def tokenize(sql: str) -> list[Token]:
    try:
        return BigQuery().tokenize(sql)
    except TokenError as exc:
        raise SQLError(f"cannot read the SQL: {exc}") from None


def split_statements(sql: str) -> list[Statement]:
    tokens = tokenize(sql)
    statements: list[Statement] = []
    current: list[Token] = []
    for tok in tokens + [None]:  # type: ignore[list-item]
        if tok is None or tok.token_type == TokenType.SEMICOLON:
            if current:
                start, end = current[0].start, current[-1].end + 1
                # Comments attached to tokens are not tokens; the text span still covers the code.
                statements.append(Statement(sql[start:end], start, current))
            current = []
        else:
            current.append(tok)
    return statements


def _matching_paren(tokens: list[Token], open_index: int) -> int:
    depth = 0
    for i in range(open_index, len(tokens)):
        kind = tokens[i].token_type
        if kind == TokenType.L_PAREN:
            depth += 1
        elif kind == TokenType.R_PAREN:
            depth -= 1
            if depth == 0:
                return i
    raise SQLError(f"unbalanced parentheses: the '(' at character {tokens[open_index].start + 1} is never closed")


def _split_args(tokens: list[Token], start: int, end: int) -> list[tuple[int, int]]:
    """Token index ranges [a, b) of the comma-separated arguments between start and end."""
    args, depth, a = [], 0, start
    for i in range(start, end):
        kind = tokens[i].token_type
        if kind in (TokenType.L_PAREN, TokenType.L_BRACKET):
            depth += 1
        elif kind in (TokenType.R_PAREN, TokenType.R_BRACKET):
            depth -= 1
        elif kind == TokenType.COMMA and depth == 0:
            args.append((a, i))
            a = i + 1
    if a < end:
        args.append((a, end))
    return args


def object_name(text: str) -> str:
    """Normalize a model or table reference: strip backticks and quotes, keep dataset.name."""
    parts = [p.strip("`\"") for p in text.replace("`", "").split(".")]
    return ".".join(p for p in parts if p)


def extract_ml_calls(sql: str) -> tuple[str, list[MLCall]]:
    """Replace each ML.* call in ``sql`` by a placeholder name; return the new SQL and the calls."""
    tokens = tokenize(sql)
    calls: list[MLCall] = []
    out: list[str] = []
    cursor = 0
    i = 0
    while i < len(tokens):
        if _is_unsupported_ml_function(tokens, i):
            function, where = tokens[i + 2].text.upper(), f"at character {tokens[i].start + 1}"
            if function in ML_FUNCTIONS:
                raise SQLError(f"ML.{function} {where} needs MODEL name as its first argument")
            raise SQLError(
                f"ML.{function} {where} is not supported here. predserve runs "
                + ", ".join(f"ML.{f}(MODEL ...)" for f in ML_FUNCTIONS)
                + " as table functions, and the preprocessing functions "
                + ", ".join(f"ML.{f}" for f in PREPROCESSING_FUNCTIONS)
            )
        if _is_ml_call(tokens, i):
            open_i = i + 3
            close_i = _matching_paren(tokens, open_i)
            call = _parse_call(sql, tokens, i, open_i, close_i)
            calls.append(call)
            out.append(sql[cursor:tokens[i].start])
            out.append(call.placeholder)
            cursor = tokens[close_i].end + 1
            i = close_i + 1
        else:
            i += 1
    out.append(sql[cursor:])
    return "".join(out), calls


def _is_unsupported_ml_function(tokens: list[Token], i: int) -> bool:
    """``ML.<NAME>(`` that is neither one of our table functions called with MODEL nor a
    preprocessing function (those are rewritten into window aggregates by the engine)."""
    return (
        i + 3 < len(tokens)
        and tokens[i].text.upper() == "ML"
        and tokens[i + 1].token_type == TokenType.DOT
        and tokens[i + 3].token_type == TokenType.L_PAREN
        and tokens[i + 2].text.upper() not in PREPROCESSING_FUNCTIONS
        and not _is_ml_call(tokens, i)
    )


def _is_ml_call(tokens: list[Token], i: int) -> bool:
    return (
        i + 4 < len(tokens)
        and tokens[i].text.upper() == "ML"
        and tokens[i + 1].token_type == TokenType.DOT
        and tokens[i + 2].text.upper() in ML_FUNCTIONS
        and tokens[i + 3].token_type == TokenType.L_PAREN
        and tokens[i + 4].text.upper() == "MODEL"
    )


def _parse_call(sql: str, tokens: list[Token], start: int, open_i: int, close_i: int) -> MLCall:
    function = tokens[start + 2].text.upper()
    args = _split_args(tokens, open_i + 1, close_i)
    text = lambda a, b: sql[tokens[a].start:tokens[b - 1].end + 1]  # noqa: E731
    first_a, first_b = args[0]
    if first_b - first_a < 2:
        raise SQLError(f"ML.{function}(MODEL ...) needs a model name at character {tokens[first_a].start + 1}")
    call = MLCall(function, object_name(text(first_a + 1, first_b)), f"__predserve_ml_{next(_placeholder_ids)}")
    for a, b in args[1:]:
        head = tokens[a]
        if head.text.upper() == "TABLE":
            call.source_sql = f"SELECT * FROM {text(a + 1, b)}"
        elif head.token_type == TokenType.L_PAREN and _matching_paren(tokens, a) == b - 1:
            call.source_sql = text(a + 1, b - 1)
        elif head.text.upper() == "STRUCT":
            call.settings_sql = text(a, b)
        else:
            raise SQLError(
                f"ML.{function}: unexpected argument {text(a, b)!r} at character {head.start + 1}; "
                "expected TABLE name, (query) or STRUCT(...)"
            )
    return call
