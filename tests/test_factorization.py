"""The ALS core behind MATRIX_FACTORIZATION (warehouse/models/factorization.py): each half-step is the
exact least-squares solution a direct dense solve gives, explicit ALS recovers a low-rank
matrix's held-out ratings, implicit weighted ALS ranks held-out positives first, top-k agrees
with a full sort, and a model survives the plain-data storage format."""

from __future__ import annotations

import numpy as np
import pytest

from predserve.warehouse.models import storage
from predserve.warehouse.models.factorization import (
    Factorization, Ratings, _explicit_half_step, _grouped, _implicit_half_step, fit,
)


def low_rank(seed: int = 1, users: int = 300, items: int = 120, rank: int = 3, observed: float = 0.4):
    rng = np.random.default_rng(seed)
    truth = (3.0 + rng.normal(0, 0.5, (users, 1)) + rng.normal(0, 0.5, (1, items))
             + rng.normal(0, 1, (users, rank)) @ rng.normal(0, 1, (rank, items)) / np.sqrt(rank))
    mask = rng.random((users, items)) < observed
    u, i = np.nonzero(mask)
    noisy = truth[u, i] + rng.normal(0, 0.05, len(u))
    return truth, mask, Ratings(u, i, noisy, users, items)


def test_explicit_als_recovers_held_out_ratings() -> None:
    truth, mask, ratings = low_rank()
    model = fit(ratings, num_factors=3, l2_reg=0.1, max_iterations=40, early_stop=False)
    hu, hi = np.nonzero(~mask)
    rmse = float(np.sqrt(np.mean((model.predict(hu, hi) - truth[hu, hi]) ** 2)))
    baseline = float(np.sqrt(np.mean((ratings.values.mean() - truth[hu, hi]) ** 2)))
    assert rmse < 0.15 < baseline, (rmse, baseline)
    assert all(b <= a * (1 + 1e-9) for a, b in zip(model.losses, model.losses[1:]))  # ALS never increases its loss


def test_explicit_loss_is_the_squared_error_plus_penalty_over_every_rating() -> None:
    """The loss is computed from the normal equations, not a prediction per rating: it must
    still equal the loss written out, after every iteration (repeated pairs included)."""
    _, _, ratings = low_rank(users=60, items=40)
    ratings = Ratings(np.r_[ratings.users, ratings.users[:25]], np.r_[ratings.items, ratings.items[:25]],
                      np.r_[ratings.values, ratings.values[:25] + 0.5], 61, 40)  # user 60 has no rating
    for iterations in (1, 2, 5):
        model = fit(ratings, num_factors=3, l2_reg=0.3, max_iterations=iterations, early_stop=False)
        residual = ratings.values - model.predict(ratings.users, ratings.items)
        penalty = sum(float((a * a).sum()) for a in (model.user_factors, model.item_factors,
                                                     model.user_intercepts, model.item_intercepts))
        assert len(model.losses) == iterations
        assert model.losses[-1] == pytest.approx(float(residual @ residual) + 0.3 * penalty, rel=1e-9)


def test_early_stop_ends_when_progress_is_small() -> None:
    _, _, ratings = low_rank()
    stopped = fit(ratings, num_factors=3, l2_reg=0.1, max_iterations=50, min_rel_progress=0.05)
    assert 2 <= len(stopped.losses) < 50
    assert (stopped.losses[-2] - stopped.losses[-1]) / stopped.losses[-2] < 0.05


def test_explicit_half_step_is_each_users_ridge_regression() -> None:
    _, _, ratings = low_rank(users=40, items=30)
    model = fit(ratings, num_factors=2, l2_reg=0.5, max_iterations=1, early_stop=False)
    _explicit_half_step(model, _grouped(ratings.users, ratings.items, ratings.values, ratings.num_users, ratings.num_items), True, 0.5)
    for user in (0, 7, 39):
        rows = ratings.users == user
        features = np.column_stack([model.item_factors[ratings.items[rows]], np.ones(rows.sum())])
        target = ratings.values[rows] - model.global_mean - model.item_intercepts[ratings.items[rows]]
        direct = np.linalg.solve(features.T @ features + 0.5 * np.eye(3), features.T @ target)
        np.testing.assert_allclose(np.r_[model.user_factors[user], model.user_intercepts[user]], direct, rtol=1e-9, atol=1e-12)


def test_implicit_half_step_is_the_dense_weighted_solution() -> None:
    rng = np.random.default_rng(3)
    users, items, k, alpha, lam = 25, 40, 4, 40.0, 0.7
    u, i = np.nonzero(rng.random((users, items)) < 0.2)
    r = rng.integers(1, 5, len(u)).astype(float)
    y = rng.normal(0, 0.3, (items, k))
    x = _implicit_half_step(_grouped(u, i, r, users, items), y, lam, alpha)
    for user in range(users):
        c = np.ones(items)
        p = np.zeros(items)
        c[i[u == user]] += alpha * r[u == user]
        p[i[u == user]] = 1.0
        direct = np.linalg.solve(y.T @ (c[:, None] * y) + lam * np.eye(k), y.T @ (c * p))
        np.testing.assert_allclose(x[user], direct, rtol=1e-8, atol=1e-12)


def test_implicit_als_ranks_held_out_positives_first() -> None:
    # two communities: users 0-99 watch items 0-49, users 100-199 items 50-99
    rng = np.random.default_rng(5)
    pairs = [(u, it) for u in range(200) for it in range(100) if (u < 100) == (it < 50) and rng.random() < 0.3]
    pairs = np.array(pairs)
    held = np.zeros(len(pairs), dtype=bool)
    for user in range(200):  # one random item of each user's is held out
        held[rng.choice(np.flatnonzero(pairs[:, 0] == user))] = True
    train = pairs[~held]
    model = fit(Ratings(train[:, 0], train[:, 1], np.ones(len(train)), 200, 100), feedback_type="IMPLICIT",
                num_factors=4, l2_reg=1.0, wals_alpha=10.0, max_iterations=15)
    assert model.feedback_type == "IMPLICIT" and not model.user_intercepts.any() and model.global_mean == 0
    scores = model.scores(np.arange(200))
    # AUC: the share of the other community's items that score below the user's held-out item
    auc = [np.mean(scores[u, it] > scores[u, (50 if u < 100 else 0):(100 if u < 100 else 50)]) for u, it in pairs[held]]
    assert np.mean(auc) > 0.95
    assert all(b <= a * (1 + 1e-9) for a, b in zip(model.losses, model.losses[1:]))


def test_top_k_matches_a_full_sort() -> None:
    _, _, ratings = low_rank(users=50, items=70)
    model = fit(ratings, num_factors=3, max_iterations=3)
    users = np.arange(50)
    best, best_scores = model.top_k(users, 10, chunk=16)
    full = model.scores(users)
    np.testing.assert_array_equal(best_scores, -np.sort(-full, axis=1)[:, :10])
    np.testing.assert_array_equal(np.take_along_axis(full, best, axis=1), best_scores)
    assert model.top_k(users, 500)[0].shape == (50, 70)  # k above the item count: every item


def test_a_model_is_stored_as_plain_data_and_checked_on_load() -> None:
    _, _, ratings = low_rank(users=20, items=10)
    model = fit(ratings, num_factors=2, max_iterations=2)
    payload = storage.dump({"factorization": model.to_data()})
    assert b"pickle" not in payload and payload.startswith(b"predserve-model\n")
    loaded = Factorization.from_data(storage.load(payload)["factorization"])
    np.testing.assert_array_equal(loaded.scores(np.arange(20)), model.scores(np.arange(20)))
    broken = model.to_data() | {"user_intercepts": storage.array_to_data(np.zeros(3))}
    with pytest.raises(storage.StoredModelError, match="inconsistent"):
        Factorization.from_data(broken)


def test_bad_settings_are_refused() -> None:
    _, _, ratings = low_rank(users=10, items=10)
    with pytest.raises(ValueError, match="feedback_type must be one of EXPLICIT, IMPLICIT"):
        fit(ratings, feedback_type="both")
    with pytest.raises(ValueError, match="num_factors"):
        fit(ratings, num_factors=0)
