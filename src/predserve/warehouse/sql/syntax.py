"""Syntax errors in BigQuery's terms: the word that was unexpected, and where it is.

sqlglot's parser reports a problem in its own words ("Invalid expression / Unexpected token",
"Required keyword: 'expression' missing for <class 'Mul'>") at the *end* column of a token,
counted from the start of the whole script. A user needs what BigQuery says instead: which
word was unexpected (``unexpected identifier "t"``), where it starts within its statement,
and, when a word is a near miss of a keyword (``FORM``, ``SELEC``, ``OPTION``), that keyword.
"""

from __future__ import annotations

import difflib
import re

import sqlglot.expressions as exp
from sqlglot.tokens import Token, TokenType

# Words a statement may start with when sqlglot reads the first one as a plain identifier;
# any other identifier in first place is a syntax error (usually a misspelled SELECT).
STATEMENT_STARTS = ("SELECT", "WITH", "CREATE", "INSERT", "UPDATE", "DELETE", "MERGE", "DROP", "ALTER",
                    "TRUNCATE", "DECLARE", "SET", "DESCRIBE", "EXPORT", "UNDROP", "VALUES")
# BigQuery procedural statements sqlglot reads as identifiers, which predserve does not run.
PROCEDURAL = ("ASSERT", "RAISE", "BREAK", "LEAVE", "CONTINUE", "ITERATE", "RETURN", "IF")
PROCEDURAL_MESSAGE = ("predserve cannot run {word} statements: of BigQuery's procedural language it runs DECLARE "
                      "and SET (not IF, LOOP, BEGIN...END, CALL or EXECUTE IMMEDIATE)")
# Keywords a mistyped word inside a statement is compared with.
CLAUSE_WORDS = ("SELECT", "FROM", "WHERE", "GROUP", "ORDER", "HAVING", "LIMIT", "OFFSET", "QUALIFY", "WINDOW",
                "JOIN", "INNER", "LEFT", "RIGHT", "FULL", "CROSS", "USING", "UNION", "EXCEPT", "INTERSECT",
                "DISTINCT", "OPTIONS", "TRANSFORM", "MODEL", "TABLE", "VIEW", "SCHEMA", "REPLACE", "EXISTS",
                "BETWEEN", "LIKE", "CASE", "WHEN", "THEN", "ELSE", "OVER", "PARTITION", "STRUCT", "UNNEST", "VALUES",
                "INTO", "NULL", "TRUE", "FALSE", "CAST")
GENERIC = "Invalid expression / Unexpected token"
_MISSING = re.compile(r"Required keyword: '\w+' missing for <class '[\w.]*?(\w+)'>")
_EXPECTING = re.compile(r"Expecting (.+)")


def near_keyword(word: str, keywords: tuple[str, ...]) -> str | None:
    """The keyword a word of four letters or more is a likely typo of (FORM -> FROM)."""
    upper = word.upper()
    if len(upper) < 4 or upper in keywords:
        return None
    match = difflib.get_close_matches(upper, keywords, n=1, cutoff=0.75)
    return match[0] if match else None


def token_phrase(token: Token | None) -> str:
    """A token as BigQuery's messages name it: keyword FROM, identifier "t", string 'x'."""
    if token is None or token.token_type == TokenType.SENTINEL:
        return "end of statement"
    if token.token_type in (TokenType.VAR, TokenType.IDENTIFIER):
        return f'identifier "{token.text}"'
    if token.token_type == TokenType.STRING:
        return f"string '{token.text}'"
    if token.token_type == TokenType.NUMBER:
        return f"number {token.text}"
    if token.text.replace("_", "").isalpha():
        return f"keyword {token.text.upper()}"
    return f'"{token.text}"'


def position(text: str, offset: int) -> tuple[int, int]:
    """The 1-based line and column of a character offset into ``text``."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


class Located:
    """Positions of a statement's tokens, counted within the statement as the user sees it."""

    def __init__(self, text: str, start: int, script: str) -> None:
        self.text, self.start, self.script = text, start, script

    def at(self, token: Token | None, after: Token | None, script_line: bool = True) -> str:
        """"line 1, column 15" for a token, or just past ``after`` at the end of the statement; with
        the line in the whole script too when the statement does not start on its first line."""
        offset = (token.start if token is not None and token.token_type != TokenType.SENTINEL
                  else (after.end + 1 if after is not None else len(self.script))) - self.start
        line, column = position(self.text, max(0, min(offset, len(self.text))))
        first_line, _ = position(self.script, self.start)
        in_script = f" (line {first_line + line - 1} of the script)" if first_line > 1 and script_line else ""
        return f"line {line}, column {column}{in_script}"


def describe(description: str, token: Token | None, after: Token | None, located: Located) -> str:
    """sqlglot's description of a parse failure, said in BigQuery's terms."""
    if token is not None and token.token_type == TokenType.SENTINEL:
        token = None
    unexpected = token_phrase(token)
    missing = _MISSING.fullmatch(description)
    expecting = _EXPECTING.fullmatch(description)
    if description == GENERIC:
        message = f"unexpected {unexpected}"
    elif missing:
        node = getattr(exp, missing.group(1), None)
        if isinstance(node, type) and issubclass(node, (exp.Binary, exp.Unary)) and after is not None:
            message = f"unexpected {unexpected}: an expression must follow {after.text}"
        else:
            message = f"unexpected {unexpected}: the {missing.group(1).upper()} clause is incomplete"
    elif expecting:
        message = f"expected {expecting.group(1)} but got {unexpected}"
    else:
        return description  # predserve's own words (dialect.py), already saying what to write
    return message + suggestion(token, after, located)


def suggestion(token: Token | None, after: Token | None, located: Located) -> str:
    """'; did you mean FROM?' when the unexpected word, or the word just before it, is a typo."""
    if token is not None and token.token_type == TokenType.VAR:
        keyword = near_keyword(token.text, CLAUSE_WORDS)
        if keyword:
            return f"; did you mean {keyword}?"
    if after is not None and after.token_type == TokenType.VAR:
        keyword = near_keyword(after.text, CLAUSE_WORDS)
        if keyword:
            return f"; did you mean {keyword} instead of {after.text} (at {located.at(after, None, script_line=False)})?"
    return ""


def first_word_error(tokens: list[Token], located: Located) -> str | None:
    """The error for a statement starting with a word that starts no statement (SELEC), or with a
    procedural statement predserve does not run (ASSERT); None when the first word is fine."""
    first = tokens[0]
    if first.token_type != TokenType.VAR:
        return None
    word = first.text.upper()
    if word in PROCEDURAL:
        return PROCEDURAL_MESSAGE.format(word=word)
    if word in STATEMENT_STARTS:
        return None
    keyword = near_keyword(first.text, STATEMENT_STARTS)
    hint = f"did you mean {keyword}?" if keyword else "a statement starts with SELECT, WITH, CREATE, INSERT, DECLARE, ..."
    return f"syntax error at {located.at(first, None)}: unexpected {token_phrase(first)}; {hint}"
