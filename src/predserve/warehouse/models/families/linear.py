"""LINEAR_REG and LOGISTIC_REG: linear and logistic regression, as BigQuery ML trains them.

Both train by batch gradient descent (gradient_descent.py); linear_reg takes the normal
equation instead (scikit-learn's exact least squares) when optimize_strategy picks it. Either
way the result is a ``LinearModel``: weights ML.WEIGHTS reports and ML.EXPLAIN_PREDICT
attributes with (``weight * feature value``). With ``calculate_p_values`` the standard errors
of the weights are computed here at CREATE MODEL, for ML.ADVANCED_WEIGHTS:
the inverse of the objective's Hessian at the trained weights, in the encoded space, scaled by
the residual variance for linear_reg (``sigma^2 (X'X + l2_reg I)^-1``, the textbook OLS
standard errors when l2_reg is 0) and as is for logistic_reg (``(X'WX + 2 l2_reg I)^-1``,
W = p(1 - p)). The column DUMMY_ENCODING drops has no standard error.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from predserve.errors import ModelError
from predserve.warehouse.models import gradient_descent, outputs
from predserve.warehouse.models.class_weights import row_class_weights
from predserve.warehouse.models.features import CategoricalFeature, FeatureEncoder
from predserve.warehouse.models.gradient_descent import LinearModel
from predserve.warehouse.models.options import CLASSIFIER, COMMON, non_negative, positive
from predserve.warehouse.models.registry import Encoding, Info, ModelType, Option, Training, register

LINEAR_REG = "linear_reg"
LOGISTIC_REG = "logistic_reg"
NORMAL_EQUATION_MAX_FEATURES = 10_000
MAX_P_VALUE_FEATURES = 1_000  # BigQuery ML: "the total cardinality of training features must be less than 1,000"

OPTIONS: dict[str, Option] = {
    "l1_reg": Option(float, 0.0, non_negative, help="zero or more"),
    "l2_reg": Option(float, 0.0, non_negative, help="zero or more"),
    "optimize_strategy": Option(str, "AUTO_STRATEGY", choices=("AUTO_STRATEGY", "BATCH_GRADIENT_DESCENT", "NORMAL_EQUATION")),
    "learn_rate_strategy": Option(str, "LINE_SEARCH", choices=("LINE_SEARCH", "CONSTANT")),
    # None: not given. It may only be given with learn_rate_strategy='CONSTANT' (then default 0.1).
    "learn_rate": Option(float, None, positive, help="positive"),
    "ls_init_learn_rate": Option(float, 0.1, positive, help="positive"),
    "fit_intercept": Option(bool, True),
    "warm_start": Option(bool, False),
    "calculate_p_values": Option(bool, False),
    "enable_global_explain": Option(bool, False),
    "category_encoding_method": Option(str, "ONE_HOT_ENCODING", choices=("ONE_HOT_ENCODING", "DUMMY_ENCODING")),
}


def _check_options(options: dict[str, Any]) -> None:
    """Combinations BigQuery ML's CREATE MODEL reference for linear models rejects."""
    if options["learn_rate_strategy"] == "LINE_SEARCH":
        if options["learn_rate"] is not None:
            raise ModelError("option learn_rate only applies with learn_rate_strategy='CONSTANT'; "
                             "with 'LINE_SEARCH' (the default) set ls_init_learn_rate instead")
    elif options["learn_rate"] is None:
        options["learn_rate"] = 0.1
    if options["optimize_strategy"] == "NORMAL_EQUATION":
        if options["model_type"] == LOGISTIC_REG:
            raise ModelError(f"optimize_strategy='NORMAL_EQUATION' only applies to {LINEAR_REG}; "
                             f"{LOGISTIC_REG} trains with 'BATCH_GRADIENT_DESCENT'")
        if options["l1_reg"] or options["warm_start"]:
            raise ModelError("optimize_strategy='NORMAL_EQUATION' cannot be used with "
                             f"{'l1_reg' if options['l1_reg'] else 'warm_start'}; use 'BATCH_GRADIENT_DESCENT' or 'AUTO_STRATEGY'")


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


def _normal_equation(options: dict[str, Any], x: np.ndarray, y: np.ndarray, held_out: Any) -> tuple[LinearModel, Info]:
    """The least-squares solution (with l2_reg as the ridge penalty), in one step."""
    # Imported when used: exports and the API load the warehouse without scikit-learn.
    from sklearn.linear_model import LinearRegression, Ridge
    from sklearn.metrics import mean_squared_error

    l2, intercept = options["l2_reg"], options["fit_intercept"]
    est: Any = Ridge(alpha=l2, fit_intercept=intercept) if l2 > 0 else LinearRegression(fit_intercept=intercept)
    est.fit(x, y)
    weights = LinearModel("linear", np.asarray(est.coef_, dtype=np.float64).reshape(1, -1),
                          np.atleast_1d(np.asarray(est.intercept_, dtype=np.float64)))
    eval_loss = float(mean_squared_error(held_out[1], weights.predict(held_out[0]))) if held_out else None
    return weights, [{"iteration": 0, "loss": float(mean_squared_error(y, weights.predict(x))), "eval_loss": eval_loss,
                      "learning_rate": None}]


def _fit_linear(t: Training) -> tuple[LinearModel, Info]:
    assert t.y is not None
    if linear_strategy(t.options, *t.x.shape) == "BATCH_GRADIENT_DESCENT":
        model, info = gradient_descent.fit("linear", t.options, t.x, t.y, held_out=t.held_out, initial=t.initial)
    else:
        model, info = _normal_equation(t.options, t.x, t.y, t.held_out)
    if t.options.get("calculate_p_values"):
        model.standard_errors = standard_errors(t, model, None)
    return model, info


def _fit_logistic(t: Training) -> tuple[LinearModel, Info]:
    assert t.y is not None
    # BigQuery ML trains logistic regression with batch gradient descent only.
    weights = row_class_weights(t.options, t.classes, t.y)
    model, info = gradient_descent.fit("logistic", t.options, t.x, t.y, len(t.classes), weights, t.held_out, t.initial)
    if t.options.get("calculate_p_values"):
        model.standard_errors = standard_errors(t, model, weights)
    return model, info


# ---- standard errors ----------------------------------------------------------------------------
def dropped_columns(encoder: FeatureEncoder) -> np.ndarray:
    """A mask of the encoded columns DUMMY_ENCODING keeps at 0."""
    mask = np.zeros(len(encoder.output_names), dtype=bool)
    pos = 0
    for feature in encoder.processed_features:
        if isinstance(feature, CategoricalFeature) and feature.one_hot and feature.dropped is not None:
            mask[pos + feature.dropped] = True
        pos += len(feature.output_names)
    return mask


def standard_errors(t: Training, estimator: LinearModel, sample_weight: np.ndarray | None) -> np.ndarray:
    """Standard errors of a linear_reg or binary logistic_reg model's weights and intercept
    (NaN where there is none), from its training rows (encoded) and targets."""
    x, y, options = t.x, t.y, t.options
    keep = ~dropped_columns(t.encoder)
    if int(keep.sum()) >= MAX_P_VALUE_FEATURES:
        raise ModelError(f"CREATE MODEL {t.model}: calculate_p_values=TRUE needs fewer than {MAX_P_VALUE_FEATURES:,} "
                         f"features after encoding; this model has {int(keep.sum()):,}")
    fit_intercept = options.get("fit_intercept", True)
    design = np.column_stack([x[:, keep]] + ([np.ones(len(x))] if fit_intercept else []))
    weights = np.ones(len(x)) if sample_weight is None else sample_weight
    penalty = np.diag(np.r_[np.full(int(keep.sum()), 1.0), [0.0] * fit_intercept])
    if t.model_type == LINEAR_REG:
        residual = y - estimator.predict(x)
        dof = max(len(x) - design.shape[1], 1)
        covariance = (residual @ residual / dof) * np.linalg.pinv(design.T @ design + options["l2_reg"] * penalty)
    else:
        if len(t.classes) != 2:
            return np.full(x.shape[1] + 1, np.nan)  # ML.ADVANCED_WEIGHTS does not support multiclass models
        p = estimator.predict_proba(x)[:, 1]
        hessian = design.T @ (design * (weights * p * (1 - p))[:, None]) + 2 * options["l2_reg"] * penalty
        covariance = np.linalg.pinv(hessian)
    diagonal = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    errors = np.full(x.shape[1] + 1, np.nan)
    errors[np.r_[keep, [fit_intercept]]] = diagonal
    return errors


# ---- the model types ----------------------------------------------------------------------------
def _attributions(estimator: LinearModel, x: np.ndarray, target: np.ndarray | None,
                  approx: bool) -> tuple[np.ndarray, np.ndarray]:
    """Shapley values of a linear model: ``weight * feature value``; the baseline is the intercept."""
    coef = np.atleast_2d(estimator.coef_)
    intercept = np.atleast_1d(estimator.intercept_)
    row = target if len(coef) > 1 else np.zeros(len(x), dtype=np.int64)  # one row of weights per class when multiclass
    return x * coef[row], intercept[row].astype(np.float64)


def _warm_start(estimator: LinearModel) -> tuple[np.ndarray, np.ndarray]:
    return np.atleast_2d(estimator.coef_), np.atleast_1d(estimator.intercept_)


def _encoding(options: dict[str, Any]) -> Encoding:
    return Encoding(standardize=True, one_hot=True, timestamp_parts=True,
                    dummy=options.get("category_encoding_method") == "DUMMY_ENCODING")


_SHARED = dict(encoding=_encoding, check_options=_check_options, warm_start=_warm_start, attributions=_attributions,
               functions=frozenset({"WEIGHTS", "ADVANCED_WEIGHTS", "EXPLAIN_PREDICT", "GLOBAL_EXPLAIN"}))
register(
    ModelType(LINEAR_REG, "regression", {**COMMON, **OPTIONS}, fit=_fit_linear, predict=outputs.regression,
              load=lambda data, width, classes: LinearModel.from_data(data, "linear", width, classes), **_SHARED),
    ModelType(LOGISTIC_REG, "classification", {**COMMON, **OPTIONS, **CLASSIFIER}, fit=_fit_logistic,
              predict=outputs.classification,
              load=lambda data, width, classes: LinearModel.from_data(data, "logistic", width, classes), **_SHARED),
)
