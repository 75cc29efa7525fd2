"""The SQL front end: BigQuery's dialect parsed into sqlglot trees (dialect, syntax), names and
scopes resolved (names, scopes), scripts run statement by statement (scripting), and the
rewrites and functions that make DuckDB answer as BigQuery does (geography, hashing,
information_schema, messages)."""
