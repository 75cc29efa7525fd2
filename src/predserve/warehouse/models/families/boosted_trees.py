"""BOOSTED_TREE_CLASSIFIER / _REGRESSOR and RANDOM_FOREST_CLASSIFIER / _REGRESSOR: XGBoost.

Boosted trees train ``max_iterations`` rounds with BigQuery ML's early stopping; a random
forest is XGBoost's random-forest mode: one round of ``num_parallel_tree`` trees, each on a
subsample of the rows, splitting on a sample of the columns at each node, with BigQuery ML's
random forest options and defaults, which differ from boosted trees' (no max_iterations or
learn_rate; deeper trees; subsample and colsample_bynode below 1). Either gives
``BoostedTrees`` (the Booster, trees.py), which ML.EXPLAIN_PREDICT attributes with tree SHAP
and ML.FEATURE_IMPORTANCE reads the split statistics of.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from predserve.errors import ModelError
from predserve.warehouse.models import outputs
from predserve.warehouse.models.class_weights import class_weights, sample_weights
from predserve.warehouse.models.options import CLASSIFIER, COMMON, fraction, non_negative, positive, unit
from predserve.warehouse.models.registry import Encoding, HeldOut, Info, ModelType, Option, Task, Training, register
from predserve.warehouse.models.trees import XGBOOST_THREADS, BoostedTrees

BOOSTED_TREE_CLASSIFIER = "boosted_tree_classifier"
BOOSTED_TREE_REGRESSOR = "boosted_tree_regressor"
RANDOM_FOREST_CLASSIFIER = "random_forest_classifier"
RANDOM_FOREST_REGRESSOR = "random_forest_regressor"
FORESTS = (RANDOM_FOREST_CLASSIFIER, RANDOM_FOREST_REGRESSOR)

BOOSTED: dict[str, Option] = {
    "booster_type": Option(str, "GBTREE", choices=("GBTREE", "DART")),
    "num_parallel_tree": Option(int, 1, positive, help="a positive integer"),
    "tree_method": Option(str, "AUTO", choices=("AUTO", "EXACT", "APPROX", "HIST")),
    "min_tree_child_weight": Option(float, 1.0, non_negative, help="zero or more"),
    "colsample_bytree": Option(float, 1.0, unit, help="in (0, 1]"),
    "colsample_bylevel": Option(float, 1.0, unit, help="in (0, 1]"),
    "colsample_bynode": Option(float, 1.0, unit, help="in (0, 1]"),
    "min_split_loss": Option(float, 0.0, non_negative, help="zero or more"),
    "max_tree_depth": Option(int, 6, positive, help="a positive integer"),
    "subsample": Option(float, 1.0, unit, help="in (0, 1]"),
    "l1_reg": Option(float, 0.0, non_negative, help="zero or more"),
    "l2_reg": Option(float, 1.0, non_negative, help="zero or more"),
    "learn_rate": Option(float, 0.3, positive, help="positive"),
    "enable_global_explain": Option(bool, False),
    "approx_global_feature_contrib": Option(bool, False),
    "category_encoding_method": Option(str, "LABEL_ENCODING", choices=("LABEL_ENCODING", "TARGET_ENCODING", "ONE_HOT_ENCODING")),
    "dart_normalize_type": Option(str, "TREE", choices=("TREE", "FOREST")),
    "dropout": Option(float, 0.0, lambda v: 0 <= v <= 1, help="between 0 and 1"),
    "instance_weight_col": Option(str, None),
    "xgboost_version": Option(str, "0.9", choices=("0.9", "1.1")),
}

FOREST: dict[str, Option] = {
    **{name: BOOSTED[name] for name in ("l1_reg", "l2_reg", "tree_method", "colsample_bytree", "colsample_bylevel", "min_split_loss",
                                        "instance_weight_col", "xgboost_version", "enable_global_explain")},
    "num_parallel_tree": Option(int, 100, lambda v: v >= 2, help="an integer of at least 2"),
    "max_tree_depth": Option(int, 15, positive, help="a positive integer"),
    "min_tree_child_weight": Option(int, 1, non_negative, help="zero or more"),
    "colsample_bynode": Option(float, 0.8, unit, help="in (0, 1]"),
    "subsample": Option(float, 0.8, fraction, help="greater than 0 and less than 1"),
    # None: TRUE when enable_global_explain is TRUE and num_parallel_tree >= 50 (BigQuery ML's default)
    "approx_global_feature_contrib": Option(bool, None),
}
FOREST_COMMON = {name: option for name, option in COMMON.items() if name != "max_iterations"}  # one round, always


def _check_options(options: dict[str, Any]) -> None:
    """Combinations BigQuery ML's boosted tree and random forest references reject."""
    if options.get("approx_global_feature_contrib") is None:
        options["approx_global_feature_contrib"] = bool(options["enable_global_explain"] and options["num_parallel_tree"] >= 50)
    if options.get("dropout") and options["booster_type"] != "DART":
        raise ModelError("option dropout only applies with booster_type='DART'")
    if options["instance_weight_col"] and (options.get("auto_class_weights") or options.get("class_weights")):
        raise ModelError("instance_weight_col cannot be combined with auto_class_weights or class_weights")


def _relative_progress_stop(min_rel_progress: float, watched: str) -> Any:
    """An XGBoost callback: stop after the first round whose loss improves by less than
    ``min_rel_progress`` (BigQuery ML's early_stop), keeping that round's trees."""
    import xgboost as xgb  # imported when used, as everywhere: XGBoost alone takes a second to import

    class RelativeProgressStop(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
            history = next(iter(evals_log[watched].values()))
            return len(history) >= 2 and history[-2] - history[-1] < min_rel_progress * history[-2]

    return RelativeProgressStop()


def xgboost_parameters(model_type: str, options: dict[str, Any]) -> dict[str, Any]:
    """XGBoost's scikit-learn parameters for a boosted tree or random forest model's options.
    A random forest is XGBoost's random-forest mode: one round of ``num_parallel_tree`` trees
    with learning rate 1, as XGBRFClassifier/XGBRFRegressor train them."""
    params: dict[str, Any] = dict(
        max_depth=options["max_tree_depth"],
        subsample=options["subsample"],
        reg_alpha=options["l1_reg"],
        reg_lambda=options["l2_reg"],
        min_child_weight=options["min_tree_child_weight"],
        gamma=options["min_split_loss"],
        colsample_bytree=options["colsample_bytree"],
        colsample_bylevel=options["colsample_bylevel"],
        colsample_bynode=options["colsample_bynode"],
        num_parallel_tree=options["num_parallel_tree"],
        tree_method="hist" if options["tree_method"] == "AUTO" else options["tree_method"].lower(),
        random_state=0,
        n_jobs=XGBOOST_THREADS,
    )
    if model_type in FORESTS:
        return {**params, "n_estimators": 1, "learning_rate": 1.0, "booster": "gbtree"}
    return {
        **params, "n_estimators": options["max_iterations"], "learning_rate": options["learn_rate"],
        "booster": options["booster_type"].lower(),
        **({"rate_drop": options["dropout"], "normalize_type": options["dart_normalize_type"].lower()}
           if options["booster_type"] == "DART" else {}),
    }


def fit_xgboost(model_type: str, options: dict[str, Any], x: np.ndarray, y: np.ndarray, held_out: HeldOut = None,
                classes: list[Any] | None = None, instance_weight: np.ndarray | None = None) -> tuple[BoostedTrees, Info]:
    """Train a tree model; ``classes``: a classifier's training labels (None: a regressor).
    ``instance_weight``: INSTANCE_WEIGHT_COL's values, else the class weights' (classifiers)."""
    import xgboost as xgb  # imported when used, as everywhere: XGBoost alone takes a second to import

    num_classes = len(classes) if classes is not None else 0
    params = xgboost_parameters(model_type, options)
    if options["early_stop"] and params["n_estimators"] > 1:
        # Watch the evaluation rows when there are some (eval_set's last entry), else the training rows.
        params["callbacks"] = [_relative_progress_stop(options["min_rel_progress"], "validation_1" if held_out else "validation_0")]
    weights = class_weights(options, classes) if classes is not None else None
    sample_weight = instance_weight if instance_weight is not None else (
        sample_weights(weights, y, num_classes) if classes is not None else None)
    est: Any = xgb.XGBClassifier(**params) if classes is not None else xgb.XGBRegressor(**params)
    eval_set = [(x, y)] + ([held_out] if held_out else [])
    est.fit(x, y, sample_weight=sample_weight, eval_set=eval_set, verbose=False)
    results = est.evals_result()
    history = next(iter(results.get("validation_0", {}).values()), [])
    eval_history = next(iter(results.get("validation_1", {}).values()), [None] * len(history))
    rate = options.get("learn_rate")  # random forests have none
    info = [{"iteration": i, "loss": float(v), "eval_loss": None if e is None else float(e), "learning_rate": rate}
            for i, (v, e) in enumerate(zip(history, eval_history))]
    return BoostedTrees(est.get_booster(), num_classes), info


def _fit(t: Training) -> tuple[BoostedTrees, Info]:
    assert t.y is not None
    classes = t.classes if t.model_type in (BOOSTED_TREE_CLASSIFIER, RANDOM_FOREST_CLASSIFIER) else None
    return fit_xgboost(t.model_type, t.options, t.x, t.y, t.held_out, classes, t.instance_weights)


def _attributions(estimator: BoostedTrees, x: np.ndarray, target: np.ndarray | None,
                  approx: bool) -> tuple[np.ndarray, np.ndarray]:
    """Tree SHAP from XGBoost (``pred_contribs``; Saabas's approximation with ``approx``); the
    baseline is XGBoost's bias term, the expected output over the training data."""
    import xgboost as xgb  # imported when used, as everywhere: XGBoost alone takes a second to import

    raw = np.asarray(estimator.booster.predict(xgb.DMatrix(x, missing=np.nan), pred_contribs=True,
                                               approx_contribs=approx, validate_features=False), dtype=np.float64)
    if raw.ndim == 3:  # multiclass: (rows, classes, features + 1)
        raw = raw[np.arange(len(x)), target]
    return raw[:, :-1], raw[:, -1]


def _encoding(options: dict[str, Any]) -> Encoding:
    return Encoding(standardize=False, one_hot=options.get("category_encoding_method") == "ONE_HOT_ENCODING")


def _model_type(name: str, task: Task, options: dict[str, Option]) -> ModelType:
    return ModelType(name, task, options, fit=_fit, predict=outputs.classification if task == "classification" else outputs.regression,
                     load=lambda data, width, classes: BoostedTrees.from_data(data, classes, width), encoding=_encoding, check_options=_check_options, attributions=_attributions,
                     functions=frozenset({"FEATURE_IMPORTANCE", "EXPLAIN_PREDICT", "GLOBAL_EXPLAIN"}))


register(
    _model_type(BOOSTED_TREE_CLASSIFIER, "classification", {**COMMON, **BOOSTED, **CLASSIFIER}),
    _model_type(BOOSTED_TREE_REGRESSOR, "regression", {**COMMON, **BOOSTED}),
    _model_type(RANDOM_FOREST_CLASSIFIER, "classification", {**FOREST_COMMON, **FOREST, **CLASSIFIER}),
    _model_type(RANDOM_FOREST_REGRESSOR, "regression", {**FOREST_COMMON, **FOREST}),
)
