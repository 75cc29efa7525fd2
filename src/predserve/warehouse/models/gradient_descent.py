"""Batch gradient descent for linear and logistic regression, as BigQuery ML trains them.

BigQuery ML documents the knobs, not the code, so this follows the documented behaviour:

- Every iteration is one pass over all training rows (``max_iterations``, default 20).
- ``learn_rate_strategy='LINE_SEARCH'`` (default), as the ML.TRAINING_INFO reference
  describes it: each iteration takes four steps from the current weights, with rates 2r, r,
  r/2 and r/4, and keeps the one with the smallest loss; r starts at ``ls_init_learn_rate``
  and is then the rate kept in the previous iteration (so a too-small initial rate doubles
  every iteration). ``'CONSTANT'`` steps with ``learn_rate`` every time.
- ``early_stop`` (default TRUE) stops after the first iteration whose relative loss
  improvement is below ``min_rel_progress`` (default 0.01); iteration 0 is compared with the
  starting weights. The loss watched is the
  evaluation split's when there is one (BigQuery ML uses the evaluation data "to avoid
  overfitting by using early stopping"), else the training loss.
- The objective is the mean loss (squared error, or weighted cross entropy) plus
  ``(l2_reg * |w|^2 + l1_reg * |w|_1) / n``; the intercept is not regularized. L1 uses a
  proximal (soft-threshold) step. With l1_reg=0 this is the objective Ridge(alpha=l2_reg)
  minimizes, so a converged run matches the normal equation.

The fitted ``LinearModel`` has scikit-learn's ``coef_``/``intercept_``/``predict``/
``predict_proba``; the normal equation's result is turned into one too (families/linear.py), so
prediction, evaluation, ML.WEIGHTS and storage treat both solvers alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from predserve.errors import ModelError
from predserve.warehouse.models.storage import StoredModelError, array_field, array_to_data, int_field, str_field


@dataclass
class LinearModel:
    """A linear_reg or logistic_reg model: weights in the encoded feature space, one row of
    ``coef_`` per class (one row for regression and binary classification)."""

    kind: str  # "linear" or "logistic"
    coef_: np.ndarray  # (outputs, encoded features)
    intercept_: np.ndarray  # (outputs,)
    n_classes: int = 0
    # calculate_p_values: the standard error of each weight, then of the intercept, in the
    # encoded (standardized) space; NaN where there is none (families/linear.py computes them)
    standard_errors: np.ndarray | None = None

    def to_data(self) -> dict[str, Any]:
        data = {"kind": self.kind, "coef": array_to_data(self.coef_), "intercept": array_to_data(self.intercept_),
                "n_classes": self.n_classes}
        if self.standard_errors is not None:
            data["standard_errors"] = array_to_data(self.standard_errors)
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any], kind: str, num_features: int, num_classes: int) -> "LinearModel":
        if str_field(data, "kind") != kind or int_field(data, "n_classes", 0, 2**31) != num_classes:
            raise StoredModelError(f"the weights are for a {data['kind']!r} model of {data['n_classes']} classes; "
                                   f"the model is {kind} with {num_classes}")
        coef, intercept = array_field(data, "coef", 2), array_field(data, "intercept", 1)
        outputs = num_classes if num_classes > 2 else 1
        if coef.shape != (outputs, num_features) or intercept.shape != (outputs,):
            raise StoredModelError(f"the weights have shapes {coef.shape} and {intercept.shape}; "
                                   f"the model needs ({outputs}, {num_features}) and ({outputs},)")
        errors = array_field(data, "standard_errors", 1).astype(np.float64) if "standard_errors" in data else None
        if errors is not None and errors.shape != (num_features + 1,):
            raise StoredModelError(f"the standard errors have shape {errors.shape}; the model needs ({num_features + 1},)")
        return cls(kind, coef.astype(np.float64), intercept.astype(np.float64), num_classes, errors)

    def decision(self, x: np.ndarray) -> np.ndarray:
        return x @ self.coef_.T + self.intercept_

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.decision(x)[:, 0]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        # scipy.special is imported where it is used, here and below: at module level it cost
        # every process that loads the model registry (the export's included) 0.15-0.2 s.
        from scipy.special import expit, softmax

        z = self.decision(x)
        if self.n_classes == 2:
            p = expit(z[:, 0])
            return np.column_stack([1.0 - p, p])
        return softmax(z, axis=1)


class _Problem:
    """The smooth part of the objective and its gradient, evaluated from the margins z = xW^T + b."""

    def __init__(self, kind: str, y: np.ndarray, n_classes: int, sample_weight: np.ndarray | None) -> None:
        self.kind, self.n_classes = kind, n_classes
        self.y = y
        self.s = sample_weight  # None: every row weighs 1
        self.s_total = float(len(y) if sample_weight is None else sample_weight.sum())
        if kind == "logistic" and n_classes > 2:
            self.onehot = np.zeros((len(y), n_classes))
            self.onehot[np.arange(len(y)), y] = 1.0

    def loss(self, z: np.ndarray) -> float:
        """Mean (weighted) loss, without regularization: MSE, or cross entropy."""
        from scipy.special import log_softmax

        if self.kind == "linear":
            per_row = (z[:, 0] - self.y) ** 2
        elif self.n_classes == 2:
            # log(1 + e^z) - y z, written stably (and faster than np.logaddexp)
            m = z[:, 0]
            per_row = np.maximum(m, 0.0) - self.y * m + np.log1p(np.exp(-np.abs(m)))
        else:
            per_row = -np.sum(log_softmax(z, axis=1) * self.onehot, axis=1)
        total = per_row.sum() if self.s is None else np.dot(self.s, per_row)
        return float(total / self.s_total)

    def residual(self, z: np.ndarray) -> np.ndarray:
        """d loss / d z, per row (n, k)."""
        from scipy.special import expit, softmax

        if self.kind == "linear":
            r = 2.0 * (z - self.y[:, None])
        elif self.n_classes == 2:
            r = expit(z) - self.y[:, None]
        else:
            r = softmax(z, axis=1) - self.onehot
        return r / self.s_total if self.s is None else r * (self.s / self.s_total)[:, None]


@dataclass
class _Step:
    rate: float
    w: np.ndarray
    b: np.ndarray
    z: np.ndarray
    loss: float  # the mean loss at z, without regularization


def _take_step(problem: _Problem, x: np.ndarray, z: np.ndarray, w: np.ndarray, b: np.ndarray, rate: float,
               l1: float, l2: float, fit_intercept: bool, line_search: bool) -> _Step | None:
    """One (proximal) gradient step from (w, b). With line search, try the rates 2r, r, r/2,
    r/4 and keep the step with the smallest objective (BigQuery ML's documented rule); None
    when no candidate has a finite loss (the rate has grown without bound: separable data)."""
    r = problem.residual(z)
    grad_w = r.T @ x + 2.0 * l2 * w
    grad_b = r.sum(axis=0) if fit_intercept else np.zeros_like(b)
    x_grad = None if l1 else x @ grad_w.T  # without L1 every candidate moves z along one line
    best: tuple[float, _Step] | None = None
    for candidate in (2.0 * rate, rate, rate / 2.0, rate / 4.0) if line_search else (rate,):
        w_new = w - candidate * grad_w
        if l1:
            w_new = np.sign(w_new) * np.maximum(np.abs(w_new) - candidate * l1, 0.0)
            z_new = z + x @ (w_new - w).T - candidate * grad_b
        else:
            z_new = z - candidate * (x_grad + grad_b)
        loss = problem.loss(z_new)
        objective = loss + l2 * float(np.sum(w_new ** 2)) + l1 * float(np.sum(np.abs(w_new)))
        if not line_search and not np.isfinite(objective):
            raise ModelError(f"training diverged with learn_rate={rate}; lower LEARN_RATE or use LEARN_RATE_STRATEGY='LINE_SEARCH'")
        if np.isfinite(objective) and (best is None or objective < best[0]):
            best = (objective, _Step(candidate, w_new, b - candidate * grad_b, z_new, loss))
    return None if best is None else best[1]


def fit(kind: str, options: dict[str, Any], x: np.ndarray, y: np.ndarray, n_classes: int = 0,
        sample_weight: np.ndarray | None = None,
        held_out: tuple[np.ndarray, np.ndarray] | None = None,
        initial: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[LinearModel, list[dict[str, Any]]]:
    """Run batch gradient descent from zero weights, or from ``initial`` (coef, intercept) for a
    warm start; return the model and one ML.TRAINING_INFO row per iteration."""
    n, d = x.shape
    k = 1 if kind == "linear" or n_classes == 2 else n_classes

    def targets(values: np.ndarray) -> np.ndarray:
        return values.astype(np.float64) if k == 1 else values

    problem = _Problem(kind, targets(y), n_classes, sample_weight)
    eval_problem = _Problem(kind, targets(held_out[1]), n_classes, None) if held_out is not None else None
    l1, l2 = options["l1_reg"] / n, options["l2_reg"] / n
    line_search = options["learn_rate_strategy"] == "LINE_SEARCH"
    model = LinearModel(kind, np.zeros((k, d)), np.zeros(k), n_classes)
    if initial is not None:
        model.coef_, model.intercept_ = np.array(initial[0], dtype=np.float64).reshape(k, d), np.array(initial[1], dtype=np.float64).reshape(k)
    z = model.decision(x)
    loss = problem.loss(z)

    def watched(eval_loss: float | None) -> float:
        """The loss early stopping watches: the evaluation split's, else the training objective."""
        if eval_loss is not None:
            return eval_loss
        w = model.coef_
        return loss + l2 * float(np.sum(w ** 2)) + l1 * float(np.sum(np.abs(w)))

    previous = watched(eval_problem.loss(model.decision(held_out[0])) if eval_problem else None)
    rate = options["ls_init_learn_rate"] if line_search else options["learn_rate"]
    info: list[dict[str, Any]] = []
    started = time.time()
    # A too-large rate overflows: _take_step skips such candidates, or reports divergence for CONSTANT.
    with np.errstate(over="ignore", invalid="ignore"):
        for iteration in range(options["max_iterations"]):
            step = _take_step(problem, x, z, model.coef_, model.intercept_, rate, l1, l2,
                              options.get("fit_intercept", True), line_search)
            if step is None:
                break
            rate, model.coef_, model.intercept_, z, loss = step.rate, step.w, step.b, step.z, step.loss
            eval_loss = eval_problem.loss(model.decision(held_out[0])) if eval_problem else None
            info.append({"iteration": iteration, "loss": loss, "eval_loss": eval_loss, "learning_rate": rate,
                         "duration_ms": int((time.time() - started) * 1000)})
            started = time.time()
            current = watched(eval_loss)
            progress = (previous - current) / abs(previous) if previous else 0.0
            if options["early_stop"] and progress < options["min_rel_progress"]:
                break
            previous = current
    if not info:
        info.append({"iteration": 0, "loss": loss, "eval_loss": None, "learning_rate": rate, "duration_ms": 0})
    return model, info
