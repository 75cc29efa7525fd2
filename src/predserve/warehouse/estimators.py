"""The estimators behind each model type, configured from BigQuery ML options.

Returns (fitted estimator, ML.TRAINING_INFO rows). Linear models train by batch gradient
descent (gradient_descent.py) or, for linear_reg when optimize_strategy picks it, by the
normal equation (scikit-learn's exact least squares); either way the result is a
``LinearModel`` (its weights). Boosted trees and random forests train with XGBoost and give
``BoostedTrees`` (its Booster, trees.py). kmeans is in kmeans.py. Each result stores itself as plain data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.metrics import mean_squared_error

from predserve.errors import ModelError
from predserve.warehouse import gradient_descent
from predserve.warehouse.gradient_descent import LinearModel
from predserve.warehouse.trees import XGBOOST_THREADS, BoostedTrees

Info = list[dict[str, Any]]
HeldOut = tuple[np.ndarray, np.ndarray] | None  # the evaluation rows (features, targets), for eval_loss


def _class_weights(options: dict[str, Any], classes: list[Any]) -> dict[int, float] | str | None:
    if options.get("auto_class_weights") and options.get("class_weights"):
        raise ModelError("set auto_class_weights or class_weights, not both")
    if options.get("auto_class_weights"):
        return "balanced"
    given = options.get("class_weights")
    if not given:
        return None
    weights = {}
    for entry in given:
        # STRUCT('label', weight): a tuple from the statement, a list once stored (warm start)
        fields = tuple(entry.values()) if isinstance(entry, dict) else tuple(entry) if isinstance(entry, list) else entry
        if not isinstance(fields, tuple) or len(fields) != 2 or not isinstance(fields[1], (int, float)):
            raise ModelError(f"class_weights must be an array of STRUCT('label', weight), got {given!r}")
        label, weight = fields
        matches = [i for i, c in enumerate(classes) if str(c) == str(label)]
        if not matches:
            raise ModelError(f"class_weights names label {label!r}, which is not in the training labels {classes}")
        weights[matches[0]] = float(weight)
    if len(weights) != len(classes):
        missing = [c for i, c in enumerate(classes) if i not in weights]
        raise ModelError(f"class_weights needs a weight for every label; missing: {missing}")
    return weights


def fit_classifier(model_type: str, options: dict[str, Any], x: np.ndarray, y: np.ndarray, classes: list[Any],
                   held_out: HeldOut = None, initial: Any = None, instance_weight: np.ndarray | None = None) -> tuple[Any, Info]:
    """``initial``: for a warm start, the (coef, intercept) to continue from.
    ``instance_weight``: boosted trees' INSTANCE_WEIGHT_COL values."""
    weights = _class_weights(options, classes)
    if model_type == "logistic_reg":
        # BigQuery ML trains logistic regression with batch gradient descent only.
        return gradient_descent.fit("logistic", options, x, y, len(classes), _sample_weights(weights, y, len(classes)),
                                    held_out, initial)
    return _fit_xgboost(model_type, options, x, y, held_out, num_classes=len(classes), class_weight=weights,
                        instance_weight=instance_weight)


def row_class_weights(options: dict[str, Any], classes: list[Any], y: np.ndarray) -> np.ndarray | None:
    """Each training row's weight from auto_class_weights or class_weights (None: unweighted)."""
    return _sample_weights(_class_weights(options, classes), y, len(classes))


def _sample_weights(class_weight: dict[int, float] | str | None, y: np.ndarray, num_classes: int) -> np.ndarray | None:
    """Per-row weights from auto_class_weights ('balanced': n / (rows of the class * classes)) or class_weights."""
    if class_weight == "balanced":
        counts = np.bincount(y, minlength=num_classes)
        return (len(y) / (num_classes * np.maximum(counts, 1)))[y]
    if class_weight:
        return np.array([class_weight.get(i, 1.0) for i in range(num_classes)])[y]
    return None


NORMAL_EQUATION_MAX_FEATURES = 10_000


def linear_strategy(options: dict[str, Any], rows: int, features: int) -> str:
    """optimize_strategy, with AUTO_STRATEGY resolved by BigQuery ML's documented rules."""
    strategy = options["optimize_strategy"]
    if strategy == "NORMAL_EQUATION" and features > NORMAL_EQUATION_MAX_FEATURES:
        raise ModelError(f"optimize_strategy='NORMAL_EQUATION' cannot be used with more than {NORMAL_EQUATION_MAX_FEATURES:,} "
                         f"features after encoding (this model has {features:,}); use 'BATCH_GRADIENT_DESCENT'")
    if strategy != "AUTO_STRATEGY":
        return strategy
    if options["l1_reg"] or options["warm_start"] or features > NORMAL_EQUATION_MAX_FEATURES or rows < 10 * features:
        return "BATCH_GRADIENT_DESCENT"
    return "NORMAL_EQUATION"


def fit_regressor(model_type: str, options: dict[str, Any], x: np.ndarray, y: np.ndarray,
                  held_out: HeldOut = None, initial: Any = None, instance_weight: np.ndarray | None = None) -> tuple[Any, Info]:
    if model_type != "linear_reg":
        return _fit_xgboost(model_type, options, x, y, held_out, instance_weight=instance_weight)
    if linear_strategy(options, *x.shape) == "BATCH_GRADIENT_DESCENT":
        return gradient_descent.fit("linear", options, x, y, held_out=held_out, initial=initial)
    # The least-squares solution (with l2_reg as the ridge penalty), in one step.
    l2, intercept = options["l2_reg"], options["fit_intercept"]
    est: Any = Ridge(alpha=l2, fit_intercept=intercept) if l2 > 0 else LinearRegression(fit_intercept=intercept)
    est.fit(x, y)
    weights = LinearModel("linear", np.asarray(est.coef_, dtype=np.float64).reshape(1, -1),
                          np.atleast_1d(np.asarray(est.intercept_, dtype=np.float64)))
    eval_loss = float(mean_squared_error(held_out[1], weights.predict(held_out[0]))) if held_out else None
    return weights, [{"iteration": 0, "loss": float(mean_squared_error(y, weights.predict(x))), "eval_loss": eval_loss,
                      "learning_rate": None}]


def _relative_progress_stop(min_rel_progress: float, watched: str) -> Any:
    """An XGBoost callback: stop after the first round whose loss improves by less than
    ``min_rel_progress`` (BigQuery ML's early_stop), keeping that round's trees."""
    import xgboost as xgb

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
    if model_type.startswith("random_forest"):
        return {**params, "n_estimators": 1, "learning_rate": 1.0, "booster": "gbtree"}
    return {
        **params, "n_estimators": options["max_iterations"], "learning_rate": options["learn_rate"],
        "booster": options["booster_type"].lower(),
        **({"rate_drop": options["dropout"], "normalize_type": options["dart_normalize_type"].lower()}
           if options["booster_type"] == "DART" else {}),
    }


def _fit_xgboost(model_type: str, options: dict[str, Any], x: np.ndarray, y: np.ndarray, held_out: HeldOut,
                 num_classes: int = 0, class_weight: Any = None, instance_weight: np.ndarray | None = None) -> tuple[Any, Info]:
    import xgboost as xgb

    classifier = model_type.endswith("classifier")
    params = xgboost_parameters(model_type, options)
    if options["early_stop"] and params["n_estimators"] > 1:
        # Watch the evaluation rows when there are some (eval_set's last entry), else the training rows.
        params["callbacks"] = [_relative_progress_stop(options["min_rel_progress"], "validation_1" if held_out else "validation_0")]
    sample_weight = instance_weight if instance_weight is not None else (
        _sample_weights(class_weight, y, num_classes) if classifier else None)
    est: Any = xgb.XGBClassifier(**params) if classifier else xgb.XGBRegressor(**params)
    eval_set = [(x, y)] + ([held_out] if held_out else [])
    est.fit(x, y, sample_weight=sample_weight, eval_set=eval_set, verbose=False)
    results = est.evals_result()
    history = next(iter(results.get("validation_0", {}).values()), [])
    eval_history = next(iter(results.get("validation_1", {}).values()), [None] * len(history))
    rate = options.get("learn_rate")  # random forests have none
    info = [{"iteration": i, "loss": float(v), "eval_loss": None if e is None else float(e), "learning_rate": rate}
            for i, (v, e) in enumerate(zip(history, eval_history))]
    return BoostedTrees(est.get_booster(), num_classes if classifier else 0), info
