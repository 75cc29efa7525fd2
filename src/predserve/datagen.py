"""A deterministic synthetic dataset: users of a subscription product, with a churn label, and
the ratings some of them gave the product's catalogue.

Churn has a real signal: it rises with support tickets and days since last login, falls with
tenure and monthly usage, and differs by plan and by country. Ratings have one too: each user
has hidden tastes and each product hidden traits and a quality, and a rating (1 to 5) is high
when they match, so a factorization of the ratings can recommend what a user has not rated yet.
The same seed gives the same rows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

PLANS = np.array(["free", "basic", "pro", "enterprise"])
COUNTRIES = np.array(["US", "DE", "IN", "BR", "JP", "FR"])


def users_table(rows: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    plan = rng.choice(PLANS, size=rows, p=[0.45, 0.3, 0.2, 0.05])
    country = rng.choice(COUNTRIES, size=rows)
    tenure_months = rng.integers(0, 72, size=rows)
    monthly_hours = np.round(rng.gamma(2.0, 6.0, size=rows), 2)
    support_tickets = rng.poisson(1.2, size=rows)
    days_since_login = rng.integers(0, 60, size=rows)
    monthly_spend = np.round(np.select(
        [plan == "free", plan == "basic", plan == "pro"], [0.0, 9.99, 29.99], 99.0
    ) * rng.uniform(0.9, 1.1, size=rows), 2)
    logit = (
        -1.0
        + 0.45 * support_tickets
        + 0.05 * days_since_login
        - 0.04 * tenure_months
        - 0.06 * monthly_hours
        + np.select([plan == "free", plan == "enterprise"], [0.8, -1.0], 0.0)
        + np.where(country == "IN", 0.4, 0.0)
    )
    churned = rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))
    return pa.table({
        "user_id": np.arange(1, rows + 1, dtype=np.int64),
        "plan": plan,
        "country": country,
        "tenure_months": tenure_months,
        "monthly_hours": monthly_hours,
        "support_tickets": support_tickets,
        "days_since_login": days_since_login,
        "monthly_spend": monthly_spend,
        "churned": churned.astype(np.int64),
    })


RATED_USERS = 20_000  # the first users rate the catalogue; the others have not rated anything
PRODUCTS = 200
RATINGS_PER_USER = 10
TASTES = 4  # hidden dimensions of taste (the demo's model fits 8 factors, more than it needs)


def ratings_table(rated_users: int = RATED_USERS, seed: int = 7) -> pa.Table:
    """``RATINGS_PER_USER`` distinct products rated 1-5 by each of users 1..``rated_users``.

    Its own random stream (from ``seed``), so the users table is the same with or without it.
    """
    rng = np.random.default_rng([seed, 1])
    tastes = rng.normal(size=(rated_users, TASTES))
    traits = rng.normal(size=(PRODUCTS, TASTES))
    quality = rng.normal(0.0, 0.5, size=PRODUCTS)
    # each user's products: the RATINGS_PER_USER smallest of one random number per product
    rated = np.argpartition(rng.random((rated_users, PRODUCTS)), RATINGS_PER_USER, axis=1)[:, :RATINGS_PER_USER]
    users = np.repeat(np.arange(rated_users), RATINGS_PER_USER)
    products = rated.ravel()
    affinity = np.einsum("ij,ij->i", tastes[users], traits[products]) / np.sqrt(TASTES)
    score = 3.0 + 1.2 * affinity + quality[products] + rng.normal(0.0, 0.4, size=users.size)
    return pa.table({
        "user_id": (users + 1).astype(np.int64),
        "product_id": (products + 1).astype(np.int64),
        "rating": np.clip(np.rint(score), 1, 5).astype(np.int64),
    })


TRAIN_SQL = """
CREATE OR REPLACE MODEL {model}
OPTIONS(model_type='logistic_reg', input_label_cols=['churned']) AS
SELECT plan, country, tenure_months, monthly_hours, support_tickets, days_since_login, monthly_spend, churned
FROM users
"""

PREDICT_SQL = """
SELECT user_id, predicted_churned, predicted_churned_probs
FROM ML.PREDICT(MODEL {model}, TABLE users)
"""

# l2_reg=5 rather than the default 1: with ten ratings a user, 8 factors overfit at 1 (what it
# recommends has a lower true score, by the generator's tastes: 4.8 against 5.2 of at most 5.6).
RECOMMENDER_SQL = """
CREATE OR REPLACE MODEL {model}
OPTIONS(model_type='matrix_factorization', user_col='user_id', item_col='product_id', rating_col='rating',
        num_factors=8, l2_reg=5.0) AS
SELECT user_id, product_id, rating FROM ratings
"""

# Each rated user's top N products among those they have not rated, as one list (a body of
# ARRAY<STRUCT<product_id, predicted_rating>>) per user.
RECOMMEND_SQL = """
SELECT user_id,
       ARRAY_AGG(STRUCT(product_id, ROUND(predicted_rating, 3) AS predicted_rating)
                 ORDER BY predicted_rating DESC, product_id LIMIT {top}) AS recommendations
FROM ML.RECOMMEND(MODEL {model}) AS scored
WHERE NOT EXISTS (SELECT 1 FROM ratings AS seen WHERE seen.user_id = scored.user_id AND seen.product_id = scored.product_id)
GROUP BY user_id
"""

# A broken export of a model: the right rows and columns, every predicted label flipped and each
# label's probability swapped. The drift gates refuse it (the tests, benchmarks and docs show that).
INVERTED_PREDICT_SQL = """
SELECT user_id, 1 - predicted_churned AS predicted_churned,
       [STRUCT(CAST(0 AS INT64) AS label, p[OFFSET(1)].prob AS prob), STRUCT(CAST(1 AS INT64) AS label, p[OFFSET(0)].prob AS prob)]
         AS predicted_churned_probs
FROM (SELECT user_id, predicted_churned, predicted_churned_probs AS p FROM ML.PREDICT(MODEL {model}, TABLE users))
"""


def create_users(warehouse: "object", rows: int, seed: int = 7) -> None:
    """Create (or replace) the ``users`` table in a Warehouse from generated rows."""
    _create_table(warehouse, "users", users_table(rows, seed))


def create_ratings(warehouse: "object", rated_users: int = RATED_USERS, seed: int = 7) -> None:
    """Create (or replace) the ``ratings`` table in a Warehouse from generated rows."""
    _create_table(warehouse, "ratings", ratings_table(rated_users, seed))


def _create_table(warehouse: "object", name: str, table: pa.Table) -> None:
    """Create (or replace) table ``name`` of a Warehouse's DuckDB from an Arrow table."""
    con = warehouse.con  # type: ignore[attr-defined]
    con.register(f"generated_{name}", table)
    try:
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM generated_{name}")
    finally:
        con.unregister(f"generated_{name}")
