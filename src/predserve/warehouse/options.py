"""CREATE MODEL options: which exist for each model type, their types, defaults and checks.

Options follow BigQuery ML's CREATE MODEL reference. An option that is unknown for the model
type, or has a value of the wrong type or out of range, is an error, never ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timezone
from typing import Any, Callable

import sqlglot.expressions as exp

from predserve.errors import ModelError

MODEL_TYPES = ("linear_reg", "logistic_reg", "boosted_tree_classifier", "boosted_tree_regressor", "random_forest_classifier",
               "random_forest_regressor", "kmeans")


@dataclass(frozen=True)
class Option:
    kind: type | tuple[type, ...]
    default: Any
    check: Callable[[Any], bool] | None = None
    choices: tuple[str, ...] | None = None
    help: str = ""


def _positive(v: Any) -> bool:
    return v > 0


def _non_negative(v: Any) -> bool:
    return v >= 0


def _fraction(v: Any) -> bool:
    return 0 < v < 1


def _unit(v: Any) -> bool:
    return 0 < v <= 1


SPLIT_METHODS = ("AUTO_SPLIT", "RANDOM", "CUSTOM", "SEQ", "NO_SPLIT")

COMMON: dict[str, Option] = {
    "model_type": Option(str, None, choices=MODEL_TYPES),
    "input_label_cols": Option(list, None),
    "data_split_method": Option(str, "AUTO_SPLIT", choices=SPLIT_METHODS),
    "data_split_eval_fraction": Option(float, 0.2, _fraction, help="between 0 and 1"),
    "data_split_col": Option(str, None),
    "max_iterations": Option(int, 20, _positive, help="a positive integer"),
    "early_stop": Option(bool, True),
    "min_rel_progress": Option(float, 0.01, _non_negative, help="zero or more"),
}

LINEAR: dict[str, Option] = {
    "l1_reg": Option(float, 0.0, _non_negative, help="zero or more"),
    "l2_reg": Option(float, 0.0, _non_negative, help="zero or more"),
    "optimize_strategy": Option(str, "AUTO_STRATEGY", choices=("AUTO_STRATEGY", "BATCH_GRADIENT_DESCENT", "NORMAL_EQUATION")),
    "learn_rate_strategy": Option(str, "LINE_SEARCH", choices=("LINE_SEARCH", "CONSTANT")),
    # None: not given. It may only be given with learn_rate_strategy='CONSTANT' (then default 0.1).
    "learn_rate": Option(float, None, _positive, help="positive"),
    "ls_init_learn_rate": Option(float, 0.1, _positive, help="positive"),
    "fit_intercept": Option(bool, True),
    "warm_start": Option(bool, False),
    "calculate_p_values": Option(bool, False),
    "enable_global_explain": Option(bool, False),
    "category_encoding_method": Option(str, "ONE_HOT_ENCODING", choices=("ONE_HOT_ENCODING", "DUMMY_ENCODING")),
}

CLASSIFIER: dict[str, Option] = {
    "auto_class_weights": Option(bool, False),
    "class_weights": Option(list, None),
}

TREES: dict[str, Option] = {
    "booster_type": Option(str, "GBTREE", choices=("GBTREE", "DART")),
    "num_parallel_tree": Option(int, 1, _positive, help="a positive integer"),
    "tree_method": Option(str, "AUTO", choices=("AUTO", "EXACT", "APPROX", "HIST")),
    "min_tree_child_weight": Option(float, 1.0, _non_negative, help="zero or more"),
    "colsample_bytree": Option(float, 1.0, _unit, help="in (0, 1]"),
    "colsample_bylevel": Option(float, 1.0, _unit, help="in (0, 1]"),
    "colsample_bynode": Option(float, 1.0, _unit, help="in (0, 1]"),
    "min_split_loss": Option(float, 0.0, _non_negative, help="zero or more"),
    "max_tree_depth": Option(int, 6, _positive, help="a positive integer"),
    "subsample": Option(float, 1.0, _unit, help="in (0, 1]"),
    "l1_reg": Option(float, 0.0, _non_negative, help="zero or more"),
    "l2_reg": Option(float, 1.0, _non_negative, help="zero or more"),
    "learn_rate": Option(float, 0.3, _positive, help="positive"),
    "enable_global_explain": Option(bool, False),
    "approx_global_feature_contrib": Option(bool, False),
    "category_encoding_method": Option(str, "LABEL_ENCODING", choices=("LABEL_ENCODING", "TARGET_ENCODING", "ONE_HOT_ENCODING")),
    "dart_normalize_type": Option(str, "TREE", choices=("TREE", "FOREST")),
    "dropout": Option(float, 0.0, lambda v: 0 <= v <= 1, help="between 0 and 1"),
    "instance_weight_col": Option(str, None),
    "xgboost_version": Option(str, "0.9", choices=("0.9", "1.1")),
}

# Random forests: XGBoost's random-forest mode (one round of num_parallel_tree trees, each on a
# subsample of the rows, splitting on a sample of the columns at each node), with BigQuery ML's
# random forest options and defaults, which differ from boosted trees' (no max_iterations or
# learn_rate; deeper trees; subsample and colsample_bynode below 1).
FOREST: dict[str, Option] = {
    **{name: TREES[name] for name in ("l1_reg", "l2_reg", "tree_method", "colsample_bytree", "colsample_bylevel", "min_split_loss",
                                      "instance_weight_col", "xgboost_version", "enable_global_explain")},
    "num_parallel_tree": Option(int, 100, lambda v: v >= 2, help="an integer of at least 2"),
    "max_tree_depth": Option(int, 15, _positive, help="a positive integer"),
    "min_tree_child_weight": Option(int, 1, _non_negative, help="zero or more"),
    "colsample_bynode": Option(float, 0.8, _unit, help="in (0, 1]"),
    "subsample": Option(float, 0.8, _fraction, help="greater than 0 and less than 1"),
    # None: TRUE when enable_global_explain is TRUE and num_parallel_tree >= 50 (BigQuery ML's default)
    "approx_global_feature_contrib": Option(bool, None),
}
FOREST_COMMON = {name: option for name, option in COMMON.items() if name != "max_iterations"}  # one round, always

KMEANS: dict[str, Option] = {
    "num_clusters": Option(int, None, lambda v: 2 <= v <= 100, help="between 2 and 100"),
    "kmeans_init_method": Option(str, "RANDOM", choices=("RANDOM", "KMEANS++", "CUSTOM")),
    "kmeans_init_col": Option(str, None),
    "distance_type": Option(str, "EUCLIDEAN", choices=("EUCLIDEAN", "COSINE")),
    "standardize_features": Option(bool, True),
    "max_iterations": Option(int, 20, _positive, help="a positive integer"),
    "early_stop": Option(bool, True),
    "min_rel_progress": Option(float, 0.01, _non_negative, help="zero or more"),
    "warm_start": Option(bool, False),
    "model_type": COMMON["model_type"],
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

SPECS: dict[str, dict[str, Option]] = {
    "linear_reg": {**COMMON, **LINEAR},
    "logistic_reg": {**COMMON, **LINEAR, **CLASSIFIER},
    "boosted_tree_classifier": {**COMMON, **TREES, **CLASSIFIER},
    "boosted_tree_regressor": {**COMMON, **TREES},
    "random_forest_classifier": {**FOREST_COMMON, **FOREST, **CLASSIFIER},
    "random_forest_regressor": {**FOREST_COMMON, **FOREST},
    "kmeans": KMEANS,
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
        raise ModelError("CREATE MODEL needs OPTIONS(model_type='...'); supported: " + ", ".join(MODEL_TYPES))
    if not isinstance(model_type, str) or model_type.lower() not in SPECS:
        raise ModelError(f"unknown model_type {model_type!r}; supported: " + ", ".join(MODEL_TYPES))
    model_type = model_type.lower()
    spec = SPECS[model_type]
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
    if model_type in ("linear_reg", "logistic_reg"):
        _check_glm(resolved)
    if model_type.startswith(("boosted_tree", "random_forest")):
        _check_trees(resolved)
    return resolved


def _check_trees(options: dict[str, Any]) -> None:
    """Combinations BigQuery ML's boosted tree and random forest references reject."""
    if options.get("approx_global_feature_contrib") is None:
        options["approx_global_feature_contrib"] = bool(options["enable_global_explain"] and options["num_parallel_tree"] >= 50)
    if options.get("dropout") and options["booster_type"] != "DART":
        raise ModelError("option dropout only applies with booster_type='DART'")
    if options["instance_weight_col"] and (options.get("auto_class_weights") or options.get("class_weights")):
        raise ModelError("instance_weight_col cannot be combined with auto_class_weights or class_weights")


def _check_glm(options: dict[str, Any]) -> None:
    """Combinations BigQuery ML's CREATE MODEL reference for linear models rejects."""
    if options["learn_rate_strategy"] == "LINE_SEARCH":
        if options["learn_rate"] is not None:
            raise ModelError("option learn_rate only applies with learn_rate_strategy='CONSTANT'; "
                             "with 'LINE_SEARCH' (the default) set ls_init_learn_rate instead")
    elif options["learn_rate"] is None:
        options["learn_rate"] = 0.1
    if options["optimize_strategy"] == "NORMAL_EQUATION":
        if options["model_type"] == "logistic_reg":
            raise ModelError("optimize_strategy='NORMAL_EQUATION' only applies to linear_reg; "
                             "logistic_reg trains with 'BATCH_GRADIENT_DESCENT'")
        if options["l1_reg"] or options["warm_start"]:
            raise ModelError("optimize_strategy='NORMAL_EQUATION' cannot be used with "
                             f"{'l1_reg' if options['l1_reg'] else 'warm_start'}; use 'BATCH_GRADIENT_DESCENT' or 'AUTO_STRATEGY'")


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
