"""Script variables: DECLARE and SET, as BigQuery's procedural language defines them.

- ``DECLARE name[, ...] [type] [DEFAULT expression]``: NULL without DEFAULT; the type is
  inferred from DEFAULT when omitted (one of the two is required). Declarations come first in
  the script, before any other statement. Names are case-insensitive; declaring a name twice
  is an error.
- ``SET name = expression`` and ``SET (a, b) = (expression, expression)`` or
  ``SET (a, b) = (SELECT AS STRUCT ...)``: the variable must be declared, and the value must
  coerce to its type (BigQuery's coercions: INT64 to NUMERIC or FLOAT64, NUMERIC to FLOAT64,
  a string literal to a date or time type, NULL to anything).
- A variable is used wherever its name appears as a column that is not a column in scope:
  when a variable and a column share a name, the column takes precedence.

Variables live for one ``Warehouse.sql`` call, like a BigQuery multi-statement query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import sqlglot.expressions as exp

from predserve.errors import SQLError
from predserve.warehouse.sql.scopes import Scopes

if TYPE_CHECKING:
    from duckdb.sqltypes import DuckDBPyType

# Evaluates expressions in one SELECT: (value, DuckDB type) for each.
Evaluate = Callable[[list[exp.Expression]], list[tuple[Any, "DuckDBPyType"]]]

_FAMILIES = [
    ("INT64", re.compile(r"^(U?TINYINT|U?SMALLINT|U?INTEGER|U?BIGINT|U?HUGEINT)$")),
    ("NUMERIC", re.compile(r"^DECIMAL")),
    ("FLOAT64", re.compile(r"^(FLOAT|DOUBLE)$")),
    ("STRING", re.compile(r"^VARCHAR$")),
    ("BOOL", re.compile(r"^BOOLEAN$")),
    ("BYTES", re.compile(r"^BLOB$")),
    ("DATE", re.compile(r"^DATE$")),
    ("DATETIME", re.compile(r"^TIMESTAMP(_NS|_MS|_S)?$")),
    ("TIMESTAMP", re.compile(r"^TIMESTAMP WITH TIME ZONE$")),
    ("TIME", re.compile(r"^TIME$")),
    ("ARRAY", re.compile(r"\[\]$")),
    ("STRUCT", re.compile(r"^STRUCT\(")),
    ("NULL", re.compile(r'^"?NULL"?$')),
]
COERCIONS = {("INT64", "NUMERIC"), ("INT64", "FLOAT64"), ("NUMERIC", "FLOAT64")}
LITERAL_COERCIONS = {("STRING", "DATE"), ("STRING", "DATETIME"), ("STRING", "TIMESTAMP"), ("STRING", "TIME")}


def family(duck_type: DuckDBPyType | str) -> str:
    text = str(duck_type)
    return next((name for name, pattern in _FAMILIES if pattern.search(text)), text)


@dataclass
class Variable:
    name: str
    duck_type: DuckDBPyType
    value: Any = None

    def literal(self) -> exp.Expression:
        return exp.Cast(this=python_literal(self.value), to=exp.DataType.build(str(self.duck_type), dialect="duckdb"))


@dataclass
class Script:
    """The variables of one script, and where in the script we are."""

    variables: dict[str, Variable] = field(default_factory=dict)
    declarations_done: bool = False

    # ---- statements -----------------------------------------------------------------------
    def declare(self, node: exp.Declare, evaluate: Evaluate, types: Callable[[exp.DataType], DuckDBPyType]) -> None:
        if self.declarations_done:
            raise SQLError("DECLARE must come before every other statement of the script, as BigQuery requires")
        for item in node.expressions:
            names = [n.name for n in (item.this if isinstance(item.this, list) else [item.this])]
            kind, default = item.args.get("kind"), item.args.get("default")
            if kind is None and not default:
                raise SQLError(f"DECLARE {', '.join(names)} needs a type or a DEFAULT value")
            for name in names:
                if name.lower() in self.variables:
                    raise SQLError(f"variable {name} is already declared")
            declared = types(kind) if kind is not None else None
            value, duck_type = None, declared
            if default:
                value, duck_type = evaluate([default])[0]
                if declared is not None:
                    value = self._coerced(names[0], default, value, duck_type, declared, evaluate)
                    duck_type = declared
            for name in names:
                self.variables[name.lower()] = Variable(name, duck_type, value)

    def set(self, node: exp.Set, evaluate: Evaluate) -> None:
        self.declarations_done = True
        for item in node.expressions:
            assignment = item.this if isinstance(item, exp.SetItem) else None
            if not isinstance(assignment, exp.EQ):
                raise SQLError(f"SET {item.sql('bigquery')}: expected SET name = expression")
            targets = assignment.this.expressions if isinstance(assignment.this, exp.Tuple) else [assignment.this]
            variables = [self._variable(target) for target in targets]
            values = self._assigned_values(assignment.expression, len(variables), evaluate)
            for variable, (expression, (value, duck_type)) in zip(variables, values):
                variable.value = self._coerced(variable.name, expression, value, duck_type, variable.duck_type, evaluate)

    def statement_started(self) -> None:
        self.declarations_done = True

    # ---- references -------------------------------------------------------------------------
    def substitute(self, tree: exp.Expression, scopes: Scopes | None) -> exp.Expression:
        """Replace variable references in ``tree`` by their values (columns win over variables;
        ``scopes`` None: nothing is in scope, as in an ML function's STRUCT of settings)."""
        if not self.variables:
            return tree
        for column in list(tree.find_all(exp.Column)):
            field_of = column.table and not column.args.get("db")  # s.b: field b of STRUCT variable s
            variable = self.variables.get((column.table if field_of else column.name).lower())
            if variable is None or (column.table and not field_of) or (scopes is not None and scopes.resolve(column)[0]):
                continue
            literal = variable.literal()
            if field_of:
                literal = exp.Dot(this=exp.Paren(this=literal), expression=exp.to_identifier(column.name))
            if column is tree:
                return literal
            if isinstance(column.parent, exp.Select) and column.arg_key == "expressions":
                literal = exp.alias_(literal, column.name)  # SELECT x: the column is named after the variable
            column.replace(literal)
        return tree

    # ---- helpers --------------------------------------------------------------------------------
    def _variable(self, target: exp.Expression) -> Variable:
        if isinstance(target, (exp.SessionParameter, exp.Parameter)) or "@@" in target.sql("bigquery"):
            raise SQLError(f"system variables such as {target.sql('bigquery')} are not supported; DECLARE a variable instead")
        if not isinstance(target, exp.Column) or target.table:
            raise SQLError(f"SET {target.sql('bigquery')}: expected a variable name")
        variable = self.variables.get(target.name.lower())
        if variable is None:
            raise SQLError(f"SET {target.name}: the variable is not declared; add DECLARE {target.name} <type> at the start of the script")
        return variable

    @staticmethod
    def _assigned_values(expression: exp.Expression, count: int, evaluate: Evaluate) -> list[tuple[exp.Expression, tuple[Any, DuckDBPyType]]]:
        if count == 1:
            return [(expression, evaluate([expression])[0])]
        if isinstance(expression, exp.Tuple):
            if len(expression.expressions) != count:
                raise SQLError(f"SET assigns {count} variables but gives {len(expression.expressions)} values")
            return list(zip(expression.expressions, evaluate(expression.expressions)))
        value, duck_type = evaluate([expression])[0]  # (SELECT AS STRUCT ...): one field per variable
        fields = list(duck_type.children) if family(duck_type) == "STRUCT" else []
        if len(fields) != count:
            raise SQLError(f"SET assigns {count} variables: give ({', '.join(['value'] * count)}) or (SELECT AS STRUCT ...) with {count} fields")
        row = list((value or {}).values()) if value is not None else [None] * count
        return [(expression, (v, t)) for v, (_, t) in zip(row, fields)]

    @staticmethod
    def _coerced(name: str, expression: exp.Expression, value: Any, duck_type: DuckDBPyType, target: DuckDBPyType,
                 evaluate: Evaluate) -> Any:
        source_family, target_family = family(duck_type), family(target)
        if source_family == target_family and str(duck_type) == str(target):
            return value
        literal_string = isinstance(expression, exp.Literal) and expression.is_string
        allowed = (source_family in ("NULL", target_family) or (source_family, target_family) in COERCIONS
                   or (literal_string and (source_family, target_family) in LITERAL_COERCIONS))
        if not allowed:
            raise SQLError(f"variable {name} is {_bigquery_name(target)}; a {_bigquery_name(duck_type)} value "
                           f"({expression.sql('bigquery')}) cannot be assigned to it. CAST it first.")
        cast = exp.Cast(this=python_literal(value), to=exp.DataType.build(str(target), dialect="duckdb"))
        return evaluate([cast])[0][0]


def _bigquery_name(duck_type: DuckDBPyType | str) -> str:
    return family(duck_type)


def python_literal(value: Any) -> exp.Expression:
    """A SQL literal for a value DuckDB returned (the caller casts it to the exact type)."""
    if isinstance(value, dict):
        return exp.Struct(expressions=[exp.PropertyEQ(this=exp.to_identifier(k), expression=python_literal(v))
                                       for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return exp.Array(expressions=[python_literal(v) for v in value])
    try:
        return exp.convert(value)
    except ValueError:
        raise SQLError(f"a variable cannot hold the value {value!r}") from None
