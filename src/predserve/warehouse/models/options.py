"""CREATE MODEL options: their checks, and the options several model types share.

Options follow BigQuery ML's CREATE MODEL reference. Each model type declares the options it
accepts (``ModelType.options``, in its family's module, built from the shared sets here); an
option that is unknown for the model type, or has a value of the wrong type or out of range,
is an error, never ignored.
"""

from __future__ import annotations

from datetime import timezone
from typing import Any

import sqlglot.expressions as exp

from predserve.errors import ModelError
from predserve.warehouse.models.registry import Option, is_registered, lookup, model_types


def positive(v: Any) -> bool:
    return v > 0


def non_negative(v: Any) -> bool:
    return v >= 0


def fraction(v: Any) -> bool:
    return 0 < v < 1


def unit(v: Any) -> bool:
    return 0 < v <= 1


SPLIT_METHODS = ("AUTO_SPLIT", "RANDOM", "CUSTOM", "SEQ", "NO_SPLIT")

# The options of every supervised model type (a family leaves out what it lacks) ...
COMMON: dict[str, Option] = {
    "model_type": Option(str, None),  # checked against the registry
    "input_label_cols": Option(list, None),
    "data_split_method": Option(str, "AUTO_SPLIT", choices=SPLIT_METHODS),
    "data_split_eval_fraction": Option(float, 0.2, fraction, help="between 0 and 1"),
    "data_split_col": Option(str, None),
    "max_iterations": Option(int, 20, positive, help="a positive integer"),
    "early_stop": Option(bool, True),
    "min_rel_progress": Option(float, 0.01, non_negative, help="zero or more"),
}

# ... and of every classifier.
CLASSIFIER: dict[str, Option] = {
    "auto_class_weights": Option(bool, False),
    "class_weights": Option(list, None),
}

# Options BigQuery ML has that need its service (tuning, Vertex AI, Cloud KMS): named, not "unknown".
UNSUPPORTED = {
    "num_trials": "hyperparameter tuning", "max_parallel_trials": "hyperparameter tuning",
    "hparam_tuning_algorithm": "hyperparameter tuning", "hparam_tuning_objectives": "hyperparameter tuning",
    "data_split_test_fraction": "hyperparameter tuning (the test split)",
    "model_registry": "the Vertex AI Model Registry", "vertex_ai_model_id": "the Vertex AI Model Registry",
    "vertex_ai_model_version_aliases": "the Vertex AI Model Registry",
    "kms_key_name": "Cloud KMS encryption of the model",
}


def literal_value(node: exp.Expression, name: str) -> Any:
    """Turn an OPTIONS value (a SQL literal, array, or negated number) into Python."""
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Neg):
        return -literal_value(node.this, name)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        text = str(node.this)
        return float(text) if any(c in text for c in ".eE") else int(text)
    if isinstance(node, exp.Array):
        return [literal_value(e, name) for e in node.expressions]
    if isinstance(node, exp.Tuple):  # ('key', 'value'): a STRUCT, as in labels=[('team', 'growth')]
        return tuple(literal_value(e, name) for e in node.expressions)
    if isinstance(node, exp.Struct):
        if all(isinstance(e, exp.PropertyEQ) for e in node.expressions):
            return {e.this.name: literal_value(e.expression, name) for e in node.expressions}
        # Unnamed fields, as in class_weights=[STRUCT('label', 0.2)]: the values in order.
        return tuple(literal_value(e.this if isinstance(e, exp.PropertyEQ) else e, name) for e in node.expressions)
    if isinstance(node, (exp.Column, exp.Var, exp.Identifier)):
        raise ModelError(f"OPTIONS({name}=...) must be a literal value, got the name {node.sql('bigquery')}; "
                         f"write a string: {name}='{node.name}'")
    raise ModelError(f"OPTIONS({name}=...) must be a literal value, got {node.sql('bigquery')!r}")


def warm_start_options(previous: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """A warm start trains with the first run's options, except those the statement gives."""
    given = resolve_options(raw)
    if given["model_type"] != previous["model_type"]:
        raise ModelError(f"warm_start keeps the model_type: the model is {previous['model_type']}, not {given['model_type']}")
    explicit = {k.lower() for k in raw}
    merged = {**previous, **{k: v for k, v in given.items() if k in explicit}}
    if merged.get("input_label_cols") != previous.get("input_label_cols"):
        raise ModelError("warm_start keeps the label: input_label_cols must stay " + repr(previous.get("input_label_cols")))
    return merged


def resolve_options(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate the user's OPTIONS and fill in every default for the model type."""
    lowered = {k.lower(): v for k, v in raw.items()}
    model_type = lowered.get("model_type")
    if model_type is None:
        raise ModelError("CREATE MODEL needs OPTIONS(model_type='...'); supported: " + ", ".join(model_types()))
    if not isinstance(model_type, str) or not is_registered(model_type.lower()):
        raise ModelError(f"unknown model_type {model_type!r}; supported: " + ", ".join(model_types()))
    model_type = model_type.lower()
    kind = lookup(model_type)
    spec = kind.options
    resolved: dict[str, Any] = {}
    for name, value in lowered.items():
        option = spec.get(name)
        if option is None and name in UNSUPPORTED:
            raise ModelError(f"option {name!r} belongs to BigQuery ML's {UNSUPPORTED[name]}, which predserve does not offer; remove it")
        if option is None:
            known = ", ".join(sorted(spec))
            raise ModelError(f"option {name!r} is not valid for model_type '{model_type}'. Valid options: {known}")
        resolved[name] = _checked(name, value, option)
    for name, option in spec.items():
        resolved.setdefault(name, option.default)
    resolved["model_type"] = model_type
    if kind.check_options is not None:
        kind.check_options(resolved)
    return resolved


def _checked(name: str, value: Any, option: Option) -> Any:
    kind = option.kind
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = {str: "a string", int: "an integer", float: "a number", bool: "TRUE or FALSE", list: "an array"}
        example = f", e.g. {name}=[{_sql_literal(value)}]" if kind is list and not isinstance(value, list) else ""
        raise ModelError(f"option {name} must be {expected.get(kind, kind)}{example}, got {_sql_literal(value)}")  # type: ignore[call-overload]
    if option.choices is not None:
        if value.upper() not in option.choices and value.lower() not in option.choices:
            raise ModelError(f"option {name}={value!r} is not one of: " + ", ".join(option.choices))
        value = value.lower() if value.lower() in option.choices else value.upper()
    if option.check is not None and not option.check(value):
        raise ModelError(f"option {name}={value!r} is out of range: it must be {option.help}")
    return value


def _sql_literal(value: Any) -> str:
    """A Python option value as the SQL the user wrote."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return "'" + value.replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ", ".join(_sql_literal(v) for v in value) + "]"
    return "NULL" if value is None else str(value)


# ---- ALTER MODEL ---------------------------------------------------------------------------
# ALTER MODEL ... SET OPTIONS: the model metadata BigQuery ML lets it change.
ALTERABLE = ("description", "labels", "expiration_timestamp")
ALTER_UNSUPPORTED = {
    "vertex_ai_model_id": "the Vertex AI Model Registry", "kms_key_name": "Cloud KMS encryption of the model",
    "deploy_model": "Vertex AI endpoints", "endpoint_idle_ttl": "Vertex AI endpoints",
}


def alter_options(values: dict[str, Any]) -> dict[str, Any]:
    """ALTER MODEL's options, checked: description STRING, labels ARRAY<STRUCT<STRING, STRING>>,
    expiration_timestamp TIMESTAMP (stored as ISO text, UTC). NULL clears an option."""
    checked: dict[str, Any] = {}
    for key, value in values.items():
        name = key.lower()
        if name in ALTER_UNSUPPORTED:
            raise ModelError(f"ALTER MODEL option {name} belongs to BigQuery ML's {ALTER_UNSUPPORTED[name]}, which predserve does not offer")
        if name not in ALTERABLE:
            raise ModelError(f"ALTER MODEL cannot set {name!r}; it sets {', '.join(ALTERABLE)} (retrain with "
                             "CREATE OR REPLACE MODEL to change training options)")
        if value is None:
            checked[name] = None
        elif name == "description":
            if not isinstance(value, str):
                raise ModelError(f"ALTER MODEL option description must be a string, got {_sql_literal(value)}")
            checked[name] = value
        elif name == "labels":
            pairs = value if isinstance(value, list) else None
            if pairs is None or not all(isinstance(p, tuple) and len(p) == 2 and all(isinstance(v, str) for v in p) for p in pairs):
                raise ModelError("ALTER MODEL option labels must be an array of STRUCT(key, value) strings, "
                                 "e.g. labels=[('team', 'growth')]")
            checked[name] = {k: v for k, v in pairs}
        else:
            if not hasattr(value, "isoformat") or not getattr(value, "tzinfo", None):
                raise ModelError(f"ALTER MODEL option expiration_timestamp must be a TIMESTAMP, got {value!r}")
            checked[name] = value.astimezone(timezone.utc).isoformat()
    return checked
