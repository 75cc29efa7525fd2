"""MATRIX_FACTORIZATION: BigQuery ML's recommendation model (factorization.py holds the ALS).

The training query gives ``user_col``, ``item_col`` and ``rating_col`` (BigQuery's defaults:
``user``, ``item``, ``rating``); ids are INT64 or STRING, kept as vocabularies in first-seen
order. ML.RECOMMEND scores every user with every item, or the users, items or pairs of an
input table, as ``predicted_<rating_col>`` (explicit) or ``predicted_<rating_col>_confidence``
(implicit); an id the model never saw gets NULL. ML.WEIGHTS gives each user's and item's
factor vector and intercept; ML.EVALUATE the regression metrics (explicit) or the ranking
metrics BigQuery ML names for implicit feedback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from predserve.errors import ModelError
from predserve.warehouse.models import metrics
from predserve.warehouse.models.factorization import FEEDBACK_TYPES, Factorization, Ratings, fit
from predserve.warehouse.models.options import COMMON, non_negative, positive
from predserve.warehouse.models.registry import Encoding, ModelType, Option, fits_rows_only, register
from predserve.warehouse.models.storage import StoredModelError, dict_field, values_field, values_to_data

MATRIX_FACTORIZATION = "matrix_factorization"
RECOMMEND_BATCH_USERS = 1024  # users scored per record batch when ML.RECOMMEND has no input


@dataclass
class Recommender:
    """The factorization and the two id vocabularies (row i of the factors is ids[i])."""

    factorization: Factorization
    users: list[Any]
    user_type: pa.DataType
    items: list[Any]
    item_type: pa.DataType

    def to_data(self) -> dict[str, Any]:
        return {"factorization": self.factorization.to_data(), "users": values_to_data(self.users, self.user_type),
                "items": values_to_data(self.items, self.item_type)}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "Recommender":
        users, user_type = values_field(data, "users")
        items, item_type = values_field(data, "items")
        model = cls(Factorization.from_data(dict_field(data, "factorization")), users, user_type, items, item_type)
        if (len(users), len(items)) != (len(model.factorization.user_factors), len(model.factorization.item_factors)):
            raise StoredModelError(f"{len(users)} users and {len(items)} items for factors of "
                                   f"{model.factorization.user_factors.shape} and {model.factorization.item_factors.shape}")
        return model

    def index(self, ids: pa.Array | pa.ChunkedArray, users: bool) -> np.ndarray:
        """Each id's row in the factors, -1 for an id the model never saw (or NULL)."""
        vocabulary = pa.array(self.users if users else self.items, self.user_type if users else self.item_type)
        ids = ids.cast(vocabulary.type) if ids.type != vocabulary.type else ids
        return pc.fill_null(pc.index_in(ids, value_set=vocabulary), -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _vocabulary(column: pa.ChunkedArray, name: str) -> tuple[np.ndarray, list[Any], pa.DataType]:
    if not (pa.types.is_integer(column.type) or pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise ModelError(f"MATRIX_FACTORIZATION: column {name} must be INT64 or STRING, not {column.type}")
    if column.null_count:
        raise ModelError(f"MATRIX_FACTORIZATION: column {name} has NULLs; filter them out of the training query")
    kind = pa.int64() if pa.types.is_integer(column.type) else pa.string()
    column = column.cast(kind)
    encoded = pc.dictionary_encode(column).combine_chunks()
    return encoded.indices.to_numpy().astype(np.int64), encoded.dictionary.to_pylist(), kind


def _columns(options: dict[str, Any]) -> tuple[str, str, str]:
    return options["user_col"], options["item_col"], options["rating_col"]


def _fit(name: str, options: dict[str, Any], table: pa.Table) -> tuple[Recommender, list[dict[str, Any]], dict[str, Any]]:
    user_col, item_col, rating_col = _columns(options)
    missing = [c for c in (user_col, item_col, rating_col) if c not in table.schema.names]
    if missing:
        raise ModelError(f"CREATE MODEL {name}: the training query has no column {', '.join(missing)} "
                         f"(user_col={user_col!r}, item_col={item_col!r}, rating_col={rating_col!r})")
    ratings = table.column(rating_col)
    if not (pa.types.is_integer(ratings.type) or pa.types.is_floating(ratings.type) or pa.types.is_decimal(ratings.type)):
        raise ModelError(f"CREATE MODEL {name}: rating column {rating_col} must be numeric, not {ratings.type}")
    table = table.filter(pc.is_valid(ratings))
    users, user_ids, user_type = _vocabulary(table.column(user_col), user_col)
    items, item_ids, item_type = _vocabulary(table.column(item_col), item_col)
    values = table.column(rating_col).cast(pa.float64()).to_numpy()
    feedback = options["feedback_type"].upper()
    if feedback == "IMPLICIT" and (values < 0).any():
        raise ModelError(f"CREATE MODEL {name}: implicit feedback needs ratings of at least 0 (counts, durations)")
    factorization = fit(Ratings(users, items, values, len(user_ids), len(item_ids)), feedback_type=feedback,
                        num_factors=options["num_factors"], l2_reg=options["l2_reg"],
                        max_iterations=options["max_iterations"], wals_alpha=options["wals_alpha"],
                        early_stop=options["early_stop"], min_rel_progress=options["min_rel_progress"])
    model = Recommender(factorization, user_ids, user_type, item_ids, item_type)
    info = [{"iteration": i, "loss": loss} for i, loss in enumerate(factorization.losses)]
    return model, info, _evaluation(model, options, users, items, values)


# ---- ML.RECOMMEND ----------------------------------------------------------------------------------
def output_name(options: dict[str, Any]) -> str:
    rating = options["rating_col"]
    return f"predicted_{rating}" if options["feedback_type"].upper() == "EXPLICIT" else f"predicted_{rating}_confidence"


def recommend_all(model: Recommender, options: dict[str, Any]) -> pa.RecordBatchReader:
    """Every user with every item, streamed a block of users at a time."""
    user_col, item_col, _ = _columns(options)
    schema = pa.schema([(output_name(options), pa.float64()), (user_col, model.user_type), (item_col, model.item_type)])
    users, items = pa.array(model.users, model.user_type), pa.array(model.items, model.item_type)
    n_items = len(model.items)

    def batches() -> Iterator[pa.RecordBatch]:
        for first in range(0, len(model.users), RECOMMEND_BATCH_USERS):
            block = np.arange(first, min(first + RECOMMEND_BATCH_USERS, len(model.users)))
            scores = model.factorization.scores(block)
            yield pa.RecordBatch.from_arrays([pa.array(scores.ravel()), users.take(pa.array(np.repeat(block, n_items))),
                                              items.take(pa.array(np.tile(np.arange(n_items), len(block))))], schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def recommend_rows(model: Recommender, options: dict[str, Any], table: pa.Table) -> pa.Table:
    """The input's users (with every item), items (with every user) or user-item pairs."""
    user_col, item_col, _ = _columns(options)
    has_user, has_item = user_col in table.schema.names, item_col in table.schema.names
    if not (has_user or has_item):
        raise ModelError(f"ML.RECOMMEND: the input needs the user column {user_col!r}, the item column {item_col!r} or both")
    name = output_name(options)
    if has_user and has_item:
        u, i = model.index(table.column(user_col), True), model.index(table.column(item_col), False)
        known = (u >= 0) & (i >= 0)
        scores = np.full(len(u), np.nan)
        scores[known] = model.factorization.predict(u[known], i[known])
        out = pa.table({name: pa.array(scores, mask=~known)})
        for column in table.schema.names:
            out = out.append_column(column, table.column(column))
        return out
    if has_user:
        own, other_ids, other_type, other_col = model.index(table.column(user_col), True), model.items, model.item_type, item_col
        given_col = user_col
    else:
        own, other_ids, other_type, other_col = model.index(table.column(item_col), False), model.users, model.user_type, user_col
        given_col = item_col
    own_rows = np.flatnonzero(own >= 0)
    others = len(other_ids)
    fac = model.factorization
    block = fac.scores(own[own_rows]) if has_user else fac.scores(np.arange(others))[:, own[own_rows]].T
    given = table.column(given_col).take(pa.array(np.repeat(own_rows, others)))
    other = pa.array(other_ids, other_type).take(pa.array(np.tile(np.arange(others), len(own_rows))))
    columns = {name: pa.array(block.ravel()), user_col: given if has_user else other, item_col: other if has_user else given}
    return pa.table(columns)


# ---- ML.WEIGHTS -------------------------------------------------------------------------------------
FACTOR_WEIGHTS = pa.list_(pa.struct([("factor", pa.int64()), ("weight", pa.float64())]))


def weights_table(model: Recommender, options: dict[str, Any]) -> pa.Table:
    """processed_input (the user or item column), feature (the id as STRING), factor_weights
    (ARRAY<STRUCT<factor, weight>>, factors numbered from 1) and intercept."""
    user_col, item_col, _ = _columns(options)
    fac = model.factorization
    rows = []
    for column, ids, factors, intercepts in ((user_col, model.users, fac.user_factors, fac.user_intercepts),
                                             (item_col, model.items, fac.item_factors, fac.item_intercepts)):
        for value, vector, intercept in zip(ids, factors, intercepts):
            rows.append({"processed_input": column, "feature": str(value),
                         "factor_weights": [{"factor": k + 1, "weight": float(w)} for k, w in enumerate(vector)],
                         "intercept": float(intercept)})
    schema = pa.schema([("processed_input", pa.string()), ("feature", pa.string()), ("factor_weights", FACTOR_WEIGHTS),
                        ("intercept", pa.float64())])
    return pa.Table.from_pylist(rows, schema=schema)


# ---- ML.EVALUATE -------------------------------------------------------------------------------------
def _evaluation(model: Recommender, options: dict[str, Any], users: np.ndarray, items: np.ndarray,
                values: np.ndarray) -> dict[str, Any]:
    fac = model.factorization
    predicted = fac.predict(users, items)
    if options["feedback_type"].upper() == "EXPLICIT":
        return metrics.regression(values, predicted)
    return implicit_metrics(fac, users, items, values)


def implicit_metrics(fac: Factorization, users: np.ndarray, items: np.ndarray, values: np.ndarray) -> dict[str, Any]:
    """BigQuery ML's implicit-feedback metrics over the evaluation rows, each user's items ranked
    by predicted confidence among every item: mean_average_precision (rows with a rating above 0
    are the relevant ones), mean_squared_error (of the confidence against the preference, 1 for
    a rating above 0), normalized_discounted_cumulative_gain (the ratings as gains) and
    average_rank (Hu, Koren and Volinsky's expected percentile rank, weighted by rating; 0 is
    the top)."""
    preference = (values > 0).astype(np.float64)
    mse = float(np.mean((preference - fac.predict(users, items)) ** 2))
    n_items = fac.item_factors.shape[0]
    ap, ndcg, rank_sum, weight_sum = [], [], 0.0, 0.0
    order = np.argsort(users, kind="stable")
    for group in np.split(order, np.flatnonzero(np.diff(users[order])) + 1):
        scores = fac.scores(users[group[:1]])[0]
        position = np.empty(n_items, np.int64)
        position[np.argsort(-scores, kind="stable")] = np.arange(n_items)
        ranks = position[items[group]]
        gains = values[group]
        relevant = np.sort(ranks[gains > 0])
        if len(relevant):
            ap.append(float(np.mean(np.arange(1, len(relevant) + 1) / (relevant + 1))))
        by_score = gains[np.argsort(ranks)]
        ideal = np.sort(gains)[::-1]
        discounts = 1.0 / np.log2(np.arange(2, len(gains) + 2))
        if ideal @ discounts > 0:
            ndcg.append(float(by_score @ discounts / (ideal @ discounts)))
        rank_sum += float(gains @ (ranks / max(n_items - 1, 1)))
        weight_sum += float(gains.sum())
    return {"mean_average_precision": float(np.mean(ap)) if ap else None, "mean_squared_error": mse,
            "normalized_discounted_cumulative_gain": float(np.mean(ndcg)) if ndcg else None,
            "average_rank": rank_sum / weight_sum if weight_sum else None}


def evaluate_rows(model: Recommender, options: dict[str, Any], table: pa.Table, settings: dict[str, Any]) -> pa.Table:
    user_col, item_col, rating_col = _columns(options)
    missing = [c for c in (user_col, item_col, rating_col) if c not in table.schema.names]
    if missing:
        raise ModelError(f"ML.EVALUATE: the input needs the columns {user_col}, {item_col} and {rating_col}; "
                         f"it lacks {', '.join(missing)}")
    table = table.filter(pc.is_valid(table.column(rating_col)))
    u, i = model.index(table.column(user_col), True), model.index(table.column(item_col), False)
    known = (u >= 0) & (i >= 0)
    if not known.any():
        raise ModelError("ML.EVALUATE: none of the input's users and items were in the training data")
    values = table.column(rating_col).cast(pa.float64()).to_numpy()[known]
    return pa.Table.from_pylist([_evaluation(model, options, u[known], i[known], values)])


def _predict(model: Any, x: np.ndarray, threshold: float | None) -> Any:
    raise ModelError(f"ML.PREDICT does not apply to matrix factorization models; use ML.RECOMMEND(MODEL {model.name}"
                     "[, TABLE users_or_items])")


OPTIONS: dict[str, Option] = {
    "model_type": COMMON["model_type"],
    "user_col": Option(str, "user"),
    "item_col": Option(str, "item"),
    "rating_col": Option(str, "rating"),
    "feedback_type": Option(str, "EXPLICIT", choices=FEEDBACK_TYPES),
    "num_factors": Option(int, 10, lambda v: 2 <= v <= 200, help="between 2 and 200"),
    "l2_reg": Option(float, 1.0, non_negative, help="zero or more"),
    "wals_alpha": Option(float, 40.0, non_negative, help="zero or more"),
    "max_iterations": Option(int, 20, positive, help="a positive integer"),
    "early_stop": Option(bool, True),
    "min_rel_progress": Option(float, 0.01, non_negative, help="zero or more"),
}


def _check(options: dict[str, Any]) -> None:
    if len({options["user_col"], options["item_col"], options["rating_col"]}) < 3:
        raise ModelError("user_col, item_col and rating_col must name three different columns")


register(ModelType(
    MATRIX_FACTORIZATION, "recommendation", OPTIONS, fit=fits_rows_only,
    load=lambda data, width, classes: Recommender.from_data(data), predict=_predict,
    encoding=lambda options: Encoding(standardize=False, one_hot=False), check_options=_check,
    functions=frozenset({"RECOMMEND", "WEIGHTS"}), fit_rows=_fit, evaluate_rows=evaluate_rows,
))
