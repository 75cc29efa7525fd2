"""A deterministic synthetic dataset: users of a subscription product, with a churn label.

Churn has a real signal: it rises with support tickets and days since last login, falls with
tenure and monthly usage, and differs by plan and by country. The same seed gives the same rows.
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
    table = users_table(rows, seed)
    con = warehouse.con  # type: ignore[attr-defined]
    con.register("generated_users", table)
    try:
        con.execute("CREATE OR REPLACE TABLE users AS SELECT * FROM generated_users")
    finally:
        con.unregister("generated_users")
