"""predserve's SQL dialect: sqlglot's BigQuery dialect, taught the BigQuery ML it lacks.

Every statement is read once, by this dialect, into a sqlglot tree; the engine routes the
tree by node type. What BigQuery ML adds to BigQuery's SQL:

- the ML table functions, ``ML.<NAME>(MODEL name [, TABLE t | (query)] [, STRUCT(...)])``,
  each its own node class (sqlglot's ``exp.Predict`` for ML.PREDICT, an ``MLFunction``
  subclass for the others), listed in ``ML_TABLE_FUNCTIONS``. Adding one is a row there and
  a handler in ``ml/functions.py``;
- ``ALTER MODEL [IF EXISTS] name SET OPTIONS(...)`` (an ``AlterModel`` node);
- ``CREATE MODEL ... TRANSFORM(...) OPTIONS(...) AS query`` and ``DROP MODEL``, which
  sqlglot already reads (``exp.Create`` / ``exp.Drop`` with kind MODEL).

It is also stricter than sqlglot where BigQuery is: ``OPTIONS`` needs its parentheses, an ML
table function needs ``MODEL``, and a statement sqlglot can only keep as an opaque command
is an error naming it, instead of being passed on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import sqlglot.expressions as exp
from sqlglot.dialects.bigquery import BigQuery
from sqlglot.errors import ErrorLevel, ParseError, TokenError
from sqlglot.generators.bigquery import BigQueryGenerator
from sqlglot.parsers.bigquery import BigQueryParser
from sqlglot.tokens import Token, TokenType

from predserve.errors import SQLError
from predserve.warehouse.sql import syntax


# ---- nodes ---------------------------------------------------------------------------------
class MLFunction(exp.Expression, exp.Func):
    """A call of one of BigQuery ML's table functions: ``this`` is the MODEL's name,
    ``expression`` the input (TABLE t or a subquery), ``params_struct`` the STRUCT of
    settings, ``thresholds`` ML.ROC_CURVE's GENERATE_ARRAY(...)."""

    arg_types = {"this": True, "expression": False, "params_struct": False, "thresholds": False}


def _node(name: str) -> type[MLFunction]:
    """The node class of ML.<name>: MLConfusionMatrix for CONFUSION_MATRIX."""
    return type("ML" + name.title().replace("_", ""), (MLFunction,), {"__module__": __name__, "__doc__": f"ML.{name}(MODEL m, ...)"})


class AlterModel(exp.Expression):
    """ALTER MODEL [IF EXISTS] name SET OPTIONS(key=value, ...)"""

    arg_types = {"this": True, "exists": False, "expressions": True}


@dataclass(frozen=True)
class MLSignature:
    """What BigQuery accepts in one ML table function's call."""

    node: type[exp.Expression]
    input: str  # "required", "optional" or "none": the TABLE t | (query) argument
    settings: dict[str, type] = field(default_factory=dict)  # STRUCT field -> Python type of its value
    settings_first: bool = False  # the STRUCT comes before the input (ML.DETECT_ANOMALIES)
    thresholds: bool = False  # a GENERATE_ARRAY(...) of thresholds may follow the input (ML.ROC_CURVE)


# Each ML table function BigQuery ML has and predserve runs, with the arguments its reference
# page lists. STRUCT fields BigQuery has for features predserve lacks (trial_id: tuning) are
# refused by name.
ML_TABLE_FUNCTIONS: dict[str, MLSignature] = {
    "PREDICT": MLSignature(exp.Predict, "required", {"threshold": float, "keep_original_columns": bool}),
    "EVALUATE": MLSignature(_node("EVALUATE"), "optional", {"threshold": float, "perform_aggregation": bool,
                                                             "horizon": int, "confidence_level": float}),
    "TRAINING_INFO": MLSignature(_node("TRAINING_INFO"), "none"),
    "FEATURE_INFO": MLSignature(_node("FEATURE_INFO"), "none"),
    "WEIGHTS": MLSignature(_node("WEIGHTS"), "none", {"standardize": bool}),
    "ADVANCED_WEIGHTS": MLSignature(_node("ADVANCED_WEIGHTS"), "none", {"standardize": bool}),
    "CONFUSION_MATRIX": MLSignature(_node("CONFUSION_MATRIX"), "optional", {"threshold": float}),
    "ROC_CURVE": MLSignature(_node("ROC_CURVE"), "optional", thresholds=True),
    "CENTROIDS": MLSignature(_node("CENTROIDS"), "none", {"standardize": bool}),
    "DETECT_ANOMALIES": MLSignature(_node("DETECT_ANOMALIES"), "optional",
                                    {"contamination": float, "anomaly_prob_threshold": float}, settings_first=True),
    "FEATURE_IMPORTANCE": MLSignature(_node("FEATURE_IMPORTANCE"), "none"),
    "EXPLAIN_PREDICT": MLSignature(_node("EXPLAIN_PREDICT"), "required",
                                   {"top_k_features": int, "threshold": float, "approx_feature_contrib": bool}),
    "GLOBAL_EXPLAIN": MLSignature(_node("GLOBAL_EXPLAIN"), "none", {"class_level_explain": bool}),
    "TRANSFORM": MLSignature(_node("TRANSFORM"), "required"),
    "RECOMMEND": MLSignature(_node("RECOMMEND"), "optional"),
    "FORECAST": MLSignature(_node("FORECAST"), "none", {"horizon": int, "confidence_level": float}),
    "EXPLAIN_FORECAST": MLSignature(_node("EXPLAIN_FORECAST"), "none", {"horizon": int, "confidence_level": float}),
    "ARIMA_EVALUATE": MLSignature(_node("ARIMA_EVALUATE"), "none", {"show_all_candidate_models": bool}),
    "ARIMA_COEFFICIENTS": MLSignature(_node("ARIMA_COEFFICIENTS"), "none"),
}
ML_NODES: tuple[type[exp.Expression], ...] = tuple(s.node for s in ML_TABLE_FUNCTIONS.values())


def ml_function_name(node: exp.Expression) -> str:
    return next(name for name, s in ML_TABLE_FUNCTIONS.items() if isinstance(node, s.node))


# ---- parser --------------------------------------------------------------------------------
class PredserveParser(BigQueryParser):
    # ML.<NAME>(MODEL ...) is read by _parse_ml_table_function alone; sqlglot's own PREDICT
    # parser would also take a bare PREDICT(...), which BigQuery does not have.
    FUNCTION_PARSERS: ClassVar = {k: v for k, v in BigQueryParser.FUNCTION_PARSERS.items() if k != "PREDICT"}
    PROPERTY_PARSERS: ClassVar = {**BigQueryParser.PROPERTY_PARSERS, "OPTIONS": lambda self: self._parse_options()}
    STATEMENT_PARSERS: ClassVar = {**BigQueryParser.STATEMENT_PARSERS, TokenType.ALTER: lambda self: self._parse_alter_model()}

    def _parse_options(self) -> list[exp.Expression]:
        if not self._match(TokenType.L_PAREN, advance=False):
            self.raise_error("OPTIONS needs parentheses: OPTIONS(name=value, ...)")
        return self._parse_with_property()  # type: ignore[return-value]

    def _parse_alter_model(self) -> exp.Expression:
        if not self._match(TokenType.MODEL):
            return self._parse_alter()
        exists = self._parse_exists()
        name = self._parse_table_parts()
        if not self._match_text_seq("SET", "OPTIONS"):
            self.raise_error("ALTER MODEL name SET OPTIONS(...) is the only ALTER MODEL BigQuery has")
        return self.expression(AlterModel(this=name, exists=exists, expressions=self._parse_options()))

    def _parse_ddl_select(self) -> exp.Expression | None:
        """CREATE MODEL ... AS query: BigQuery requires the AS that sqlglot lets go."""
        if _creates_model(self._tokens) and self._curr is not None and self._prev.token_type != TokenType.ALIAS \
                and self._curr.token_type in self.DDL_SELECT_TOKENS:
            self.raise_error("CREATE MODEL needs AS before its training query: CREATE MODEL name OPTIONS(...) AS SELECT ...")
        return super()._parse_ddl_select()

    failed_at: Token | None = None  # where the last error was raised: the unexpected token (None at the end)
    failed_after: Token | None = None  # and the token before it

    def raise_error(self, message: str, token: Token | None = None) -> None:
        """Keep the tokens around the failure, for a message naming them (syntax.py)."""
        self.failed_at = token or self._curr
        self.failed_after = self._prev
        super().raise_error(message, token)  # type: ignore[arg-type]

    def _parse_as_command(self, start: Token) -> exp.Command:
        """A CREATE, DROP, ALTER or TRUNCATE statement sqlglot could not read: a syntax error
        at the token it stopped on, instead of an opaque Command the engine cannot run."""
        if start is not self._tokens[0] or start.token_type not in (TokenType.CREATE, TokenType.DROP,
                                                                    TokenType.ALTER, TokenType.TRUNCATE):
            return super()._parse_as_command(start)
        unexpected = f"unexpected {syntax.token_phrase(self._curr)}"
        keyword = syntax.near_keyword(self._curr.text, syntax.CLAUSE_WORDS) if self._curr is not None else None
        hint = f"; did you mean {keyword}?" if keyword else ""
        if _creates_model(self._tokens):
            self.raise_error(f"{unexpected}{hint} (CREATE [OR REPLACE] MODEL [IF NOT EXISTS] name "
                             "[TRANSFORM(...)] OPTIONS(...) AS query)")
        self.raise_error(f"predserve cannot read this {start.text.upper()} statement: {unexpected}{hint}")
        raise AssertionError  # not reached: raise_error raises

    def _warn_unsupported(self) -> None:
        """sqlglot logs a warning when it keeps a statement as an opaque Command; the engine
        refuses Commands with a message of its own, so the warning would only be noise."""

    def _parse_function_call(self, functions: Any = None, anonymous: bool = False, optional_parens: bool = True,
                             any_token: bool = False) -> exp.Expression | None:
        if self._after_ml_dot() and self._next and self._next.token_type == TokenType.L_PAREN:
            name = self._curr.text.upper()
            follows_model = self._index + 2 < len(self._tokens) and self._tokens[self._index + 2].token_type == TokenType.MODEL
            if follows_model:
                return self._parse_ml_table_function(name)
            if name in ML_TABLE_FUNCTIONS:
                self.raise_error(f"ML.{name} needs MODEL name as its first argument: ML.{name}(MODEL my_model, ...)",
                                 self._tokens[self._index - 2])  # at ML., where the call starts
        return super()._parse_function_call(functions, anonymous, optional_parens, any_token)

    def _after_ml_dot(self) -> bool:
        return (self._curr is not None and self._prev is not None and self._prev.token_type == TokenType.DOT
                and self._index >= 2 and self._tokens[self._index - 2].text.upper() == "ML")

    def _parse_ml_table_function(self, name: str) -> exp.Expression:
        signature = ML_TABLE_FUNCTIONS.get(name)
        if signature is None:
            self.raise_error(f"ML.{name} is not supported; predserve runs "
                             + ", ".join(f"ML.{f}" for f in ML_TABLE_FUNCTIONS))
            raise AssertionError  # not reached
        self._advance(3)  # NAME ( MODEL
        model = self._parse_table_parts()
        args: dict[str, exp.Expression] = {}
        while self._match(TokenType.COMMA):
            if self._match(TokenType.TABLE):
                self._check_argument(name, args, "expression", "a TABLE or (query) input", signature)
                args["expression"] = self._parse_table_parts()
            elif self._match(TokenType.L_PAREN, advance=False) and (not args or set(args) == {"params_struct"} and signature.settings_first):
                args["expression"] = self._parse_table()
                if not isinstance(args["expression"], exp.Subquery) or args["expression"].alias:
                    self.raise_error(f"ML.{name}: the input must be TABLE name or (query)")
            elif self._match(TokenType.STRUCT, advance=False):
                self._check_argument(name, args, "params_struct", "a STRUCT of settings", signature)
                args["params_struct"] = self._parse_bitwise()
            elif signature.thresholds and self._curr is not None and self._curr.text.upper() == "GENERATE_ARRAY" \
                    and "thresholds" not in args:
                args["thresholds"] = self._parse_bitwise()
            else:
                expected = "TABLE name, (query), GENERATE_ARRAY(...)" if signature.thresholds else "TABLE name, (query)"
                self.raise_error(f"ML.{name}: expected {expected} or STRUCT(...) after MODEL {model.sql('bigquery')}")
        if "expression" in args and signature.input == "none":
            self.raise_error(f"ML.{name} takes no input table: ML.{name}(MODEL {model.sql('bigquery')})")
        if "expression" not in args and signature.input == "required":
            self.raise_error(f"ML.{name} needs input rows: ML.{name}(MODEL {model.sql('bigquery')}, TABLE name | (query))")
        if not self._match(TokenType.R_PAREN):
            self.raise_error(f"ML.{name}: expected ')'")
        return self.expression(signature.node(this=model, **args))

    def _check_argument(self, name: str, args: dict[str, exp.Expression], key: str, what: str, signature: MLSignature) -> None:
        order = "MODEL name, STRUCT(...), then the input" if signature.settings_first else "MODEL name, the input, then STRUCT(...)"
        misplaced = "params_struct" in args if key == "expression" and not signature.settings_first \
            else "expression" in args if key == "params_struct" and signature.settings_first else False
        if key in args or misplaced or "thresholds" in args:
            self.raise_error(f"ML.{name}: unexpected {what} here; the arguments are {order}")


def _creates_model(tokens: list[Token]) -> bool:
    """CREATE [OR REPLACE] MODEL [IF NOT EXISTS] ..."""
    return tokens[0].token_type == TokenType.CREATE and any(t.token_type == TokenType.MODEL for t in tokens[1:5])


class PredserveGenerator(BigQueryGenerator):
    TRANSFORMS: ClassVar = {
        **BigQueryGenerator.TRANSFORMS,
        **{s.node: (lambda name: lambda self, e: self._ml_sql(e, name))(name)
           for name, s in ML_TABLE_FUNCTIONS.items() if s.node is not exp.Predict},
        AlterModel: lambda self, e: (f"ALTER MODEL {'IF EXISTS ' if e.args.get('exists') else ''}{self.sql(e, 'this')} "
                                     f"SET OPTIONS({self.expressions(e, flat=True)})"),
    }


class Predserve(BigQuery):
    """BigQuery, as predserve reads it."""

    Parser = PredserveParser
    Generator = PredserveGenerator


DIALECT = Predserve()


# ---- scripts -------------------------------------------------------------------------------
@dataclass
class Statement:
    tree: exp.Expression
    text: str  # the statement as written, for messages
    number: int
    total: int

    def describe(self) -> str:
        snippet = " ".join(self.text.split())
        snippet = snippet if len(snippet) <= 80 else snippet[:77] + "..."
        where = f"statement {self.number} of {self.total}" if self.total > 1 else "statement"
        return f"{where} ({snippet!r})"


def parse_script(sql: str) -> list[Statement]:
    """Read a script into its statements, one tree each. The script is cut at top-level
    semicolons as sqlglot's parser itself does, so each statement keeps its text."""
    try:
        tokens = DIALECT.tokenize(sql)
    except TokenError:
        whole = Statement(exp.Command(this=""), sql, 1, 1)
        raise SQLError(f"{whole.describe()}: syntax error: a string, quoted name or comment is not closed") from None
    chunks: list[list[Token]] = [[]]
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            chunks.append([])
        else:
            chunks[-1].append(token)
    chunks = [c for c in chunks if c]
    statements = []
    for number, chunk in enumerate(chunks, 1):
        text = sql[chunk[0].start:chunk[-1].end + 1]
        statement = Statement(exp.Command(this=""), text, number, len(chunks))
        statement.tree = _parse_tokens(chunk, sql, statement)
        statements.append(statement)
    return statements


def _parse_tokens(tokens: list[Token], sql: str, statement: Statement) -> exp.Expression:
    located = syntax.Located(statement.text, tokens[0].start, sql)
    refused = syntax.first_word_error(tokens, located)
    if refused:
        raise SQLError(f"{statement.describe()}: {refused}")
    parser = DIALECT.parser(error_level=ErrorLevel.IMMEDIATE)
    try:
        trees = parser.parse(tokens, sql)
    except ParseError as exc:
        err = exc.errors[0] if exc.errors else {}
        at, after = parser.failed_at, parser.failed_after
        if at is None and after is None:  # not raised through raise_error: sqlglot's own position
            at = next((t for t in tokens if t.line == err.get("line") and t.col == err.get("col")), None)
        description = syntax.describe(str(err.get("description", exc)), at, after, located)
        raise SQLError(f"{statement.describe()}: syntax error at {located.at(at, after)}: {description}") from None
    if len(trees) != 1 or trees[0] is None:
        raise SQLError(f"{statement.describe()}: expected one statement")
    return trees[0]


def parse_table_name(sql: str) -> exp.Table:
    """A model or table name given outside a statement (the API, the CLI)."""
    try:
        return DIALECT.parse_into(exp.Table, sql)[0]  # type: ignore[return-value]
    except (ParseError, TokenError):
        raise SQLError(f"cannot read the name {sql!r}: write it as name, dataset.name or `project.dataset.name`") from None
