"""How far ordinary retrains of the demo model move each id's numeric prediction, and how far
broken exports move it: the figures behind the ``moved_values`` gate's defaults (issue 21).

    python bench/drift_defaults.py [--rows 200000]

For the demo churn model's probability of churn (a number) and for a regression on the demo
data (``linear_reg`` predicting ``monthly_hours``), each retrain (another sample, half a
sample, other options, another model family) and each break (shuffled across ids, inverted,
collapsed, shifted) is compared id by id with the original: the fraction of ids whose value
moved by more than t standard deviations of the original's values, for several t. All rows
are compared (the export compares its 1,000 sampled ids). docs/pipeline.md shows the table.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from predserve import Warehouse
from predserve.datagen import create_users, users_table

FEATURES = "plan, country, tenure_months, monthly_hours, support_tickets, days_since_login, monthly_spend, churned"
TOLERANCES = (0.1, 0.25, 0.5, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    rows = parser.parse_args().rows
    with tempfile.TemporaryDirectory() as tmp, Warehouse(Path(tmp) / "wh.duckdb") as wh:
        create_users(wh, rows)
        for name, seed in (("a", 11), ("b", 12)):
            wh.con.register("g", users_table(rows, seed=seed))
            wh.con.execute(f"CREATE TABLE {name} AS SELECT * FROM g")
            wh.con.unregister("g")
        wh.con.execute("CREATE TABLE half AS SELECT * FROM b WHERE user_id % 2 = 0")
        classifier = "model_type='logistic_reg', input_label_cols=['churned']"
        regressor = "model_type='linear_reg', input_label_cols=['monthly_hours']"
        models = {
            "base": (classifier, "a"), "another sample": (classifier, "b"), "half a sample": (classifier, "half"),
            "l2_reg=1.0": (classifier + ", l2_reg=1.0, max_iterations=10", "b"),
            "boosted trees": ("model_type='boosted_tree_classifier', input_label_cols=['churned']", "b"),
            "r base": (regressor, "a"), "r another sample": (regressor, "b"), "r half a sample": (regressor, "half"),
            "r l2_reg=1.0": (regressor + ", l2_reg=1.0", "b"),
            "r boosted trees": ("model_type='boosted_tree_regressor', input_label_cols=['monthly_hours']", "b"),
        }
        names = {}
        for i, (label, (options, table)) in enumerate(models.items()):
            names[label] = f"m{i}"
            wh.sql(f"CREATE MODEL m{i} OPTIONS({options}) AS SELECT {FEATURES} FROM {table}")

        def churn_probability(label: str) -> np.ndarray:
            rows_ = wh.sql(f"SELECT predicted_churned_probs FROM ML.PREDICT(MODEL {names[label]}, TABLE users) ORDER BY user_id")
            return np.array([next(p["prob"] for p in r["predicted_churned_probs"] if p["label"] == 1) for r in rows_.to_pylist()])

        def hours(label: str) -> np.ndarray:
            sql = f"SELECT predicted_monthly_hours FROM ML.PREDICT(MODEL {names[label]}, TABLE users) ORDER BY user_id"
            return np.array(wh.sql(sql).column(0).to_pylist())

        rng = np.random.default_rng(0)
        base = churn_probability("base")
        report("P(churn)", base, {label: churn_probability(label) for label in ("another sample", "half a sample", "l2_reg=1.0", "boosted trees")}
               | {"shuffled": rng.permutation(base), "inverted": 1 - base, "collapsed to 0.5": np.full_like(base, 0.5)})
        base = hours("r base")
        report("regression", base, {label[2:]: hours(label) for label in ("r another sample", "r half a sample", "r l2_reg=1.0", "r boosted trees")}
               | {"shuffled": rng.permutation(base), "shifted by 1 sd": base + base.std()})


def report(title: str, base: np.ndarray, cases: dict[str, np.ndarray]) -> None:
    print(f"{title}: standard deviation {base.std():.4f}; fraction of ids moved by more than t standard deviations")
    for name, values in cases.items():
        moved = np.abs(values - base)
        cells = "  ".join(f"t={t}: {(moved > t * base.std()).mean():6.1%}" for t in TOLERANCES)
        print(f"  {name:18s} {cells}  (mean abs. change {moved.mean():.4f})")


if __name__ == "__main__":
    main()
