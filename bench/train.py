"""Training and scoring benchmark (warehouse stage).

1. CREATE MODEL logistic_reg on 1,000,000 rows x 20 numeric features (BigQuery ML's batch
   gradient descent with its defaults), against the same-run baseline of scikit-learn's
   LogisticRegression fitted directly on the same standardized matrix (target: at most 1.5x).
   Both report their iterations and final training log loss, so the speed is not bought
   with a worse fit.
2. ML.PREDICT over 10,000,000 rows (streamed, aggregated in SQL), against the baseline of
   reading the same table in Arrow batches and calling predict_proba directly; each in its own
   process so peak RSS is its own (target: under 2 GB for ML.PREDICT).
3. Loading a stored model, which ML.PREDICT does on every call (the data-only format is read
   and checked, never unpickled): the logistic model and a 50-round boosted tree classifier,
   the first load in a process and the median of later ones, against the same-run baseline of
   scoring one 65,536-row batch with the model.
4. CREATE MODEL random_forest_classifier with BigQuery ML's defaults (100 trees of depth 15,
   subsample and colsample_bynode 0.8) on the first 20,000 rows, against the same-run
   baseline of XGBoost's XGBRFClassifier with the same parameters fitted directly on the same
   matrix (target: at most 1.5x, as for the other training figures).

    .venv/bin/python bench/train.py [--train-rows 1000000] [--predict-rows 10000000] [--forest-rows 20000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

from common import OUT, peak_rss_mb

FEATURES = [f"f{i}" for i in range(20)]


def make_table(path: str, rows: int) -> None:
    from predserve import Warehouse

    cols = ", ".join(f"((hash(i * {k + 1}) % 10000) / 5000.0 - 1.0) AS f{k}" for k in range(20))
    signal = " + ".join(f"{(-1) ** k * (k % 5 + 1) / 10} * f{k}" for k in range(20))
    with Warehouse(path) as wh:
        wh.sql(f"CREATE OR REPLACE TABLE t AS SELECT i AS id, {cols} FROM range({rows}) r(i)")
        wh.sql(f"CREATE OR REPLACE TABLE data AS SELECT *, CASE WHEN {signal} + (hash(id * 77) % 1000) / 500.0 - 1.0 > 0 THEN 1 ELSE 0 END AS label FROM t")


def create_model(path: str, model: str, model_type: str, table: str) -> dict:
    """CREATE MODEL through the warehouse, timed; its ML.TRAINING_INFO iterations and final loss.

    The training modules (scikit-learn, SciPy, XGBoost: about 1.5 s) are imported before the
    clock starts, as the baselines import theirs: the figure is the training's, not the imports'.
    """
    import predserve.warehouse.models.catalog  # noqa: F401  (the models and what they import)
    from predserve import Warehouse

    with Warehouse(path) as wh:
        started = time.perf_counter()
        wh.sql(f"CREATE OR REPLACE MODEL {model} OPTIONS(model_type='{model_type}', input_label_cols=['label'], "
               f"data_split_method='NO_SPLIT') AS SELECT {', '.join(FEATURES)}, label FROM {table}")
        seconds = round(time.perf_counter() - started, 2)
        info = wh.sql(f"SELECT iteration, loss FROM ML.TRAINING_INFO(MODEL {model}) ORDER BY iteration").to_pylist()
        return {"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "iterations": len(info), "log_loss": round(info[-1]["loss"], 5)}


def train_ours(path: str) -> dict:
    return create_model(path, "m", "logistic_reg", "data")


def features_and_labels(path: str, table_name: str) -> tuple[np.ndarray, np.ndarray]:
    """The table's features as a matrix and its labels, as a direct baseline reads them."""
    import duckdb

    con = duckdb.connect(path, read_only=True)
    table = con.sql(f"SELECT {', '.join(FEATURES)}, label FROM {table_name}").to_arrow_table()
    return np.column_stack([table.column(f).to_numpy() for f in FEATURES]), table.column("label").to_numpy()


def log_loss(y: np.ndarray, probability: np.ndarray) -> float:
    p = np.clip(probability, 1e-15, 1 - 1e-15)
    return round(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))), 5)


def train_direct(path: str) -> dict:
    from sklearn.linear_model import LogisticRegression

    x, y = features_and_labels(path, "data")
    started = time.perf_counter()
    x = (x - x.mean(axis=0)) / x.std(axis=0, ddof=1)
    est = LogisticRegression(C=np.inf, max_iter=1000).fit(x, y)
    seconds = round(time.perf_counter() - started, 2)
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "iterations": int(est.n_iter_[0]),
            "log_loss": log_loss(y, est.predict_proba(x)[:, 1])}


def forest_ours(path: str) -> dict:
    return create_model(path, "forest", "random_forest_classifier", "forest_data")


def forest_direct(path: str) -> dict:
    import xgboost as xgb

    x, y = features_and_labels(path, "forest_data")
    started = time.perf_counter()
    est = xgb.XGBRFClassifier(n_estimators=100, max_depth=15, subsample=0.8, colsample_bynode=0.8, reg_lambda=1.0,
                              tree_method="hist", random_state=0, n_jobs=2).fit(x, y)
    seconds = round(time.perf_counter() - started, 2)
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "log_loss": log_loss(y, est.predict_proba(x)[:, 1])}


def predict_ours(path: str) -> dict:
    from predserve import Warehouse

    with Warehouse(path) as wh:
        started = time.perf_counter()
        out = wh.sql("SELECT count(*) AS n, avg(predicted_label) AS positive FROM ML.PREDICT(MODEL m, TABLE big)").to_pylist()[0]
        return {"seconds": round(time.perf_counter() - started, 2), "peak_rss_mb": peak_rss_mb(), **out}


def predict_direct(path: str) -> dict:
    import duckdb

    from predserve import Warehouse

    with Warehouse(path, read_only=True) as wh:
        model = wh.model("m")
    est, feats = model.estimator, model.encoder.features
    con = duckdb.connect(path, read_only=True)
    started = time.perf_counter()
    n = positive = 0
    for batch in con.sql(f"SELECT {', '.join(FEATURES)} FROM big").to_arrow_reader(65_536):
        x = np.column_stack([(batch.column(f.name).to_numpy() - f.mean) / f.stddev for f in feats])
        p = est.predict_proba(x)[:, 1]
        n += len(p)
        positive += int((p > 0.5).sum())
    return {"seconds": round(time.perf_counter() - started, 2), "peak_rss_mb": peak_rss_mb(), "n": n, "positive": positive / n}


def load_ours(path: str) -> dict:
    from predserve import Warehouse

    out = {}
    with Warehouse(path, read_only=True) as wh:
        batch = wh.sql(f"SELECT {', '.join(FEATURES)} FROM big LIMIT 65536").combine_chunks().to_batches()[0]
        for name in ("m", "trees"):
            started = time.perf_counter()
            model = wh.model(name)
            first = time.perf_counter() - started
            loads, scores = [], []
            for _ in range(20):
                started = time.perf_counter()
                wh.model(name)
                loads.append(time.perf_counter() - started)
            for _ in range(5):
                started = time.perf_counter()
                model.predict_batch(batch)
                scores.append(time.perf_counter() - started)
            out[name] = {"first_load_ms": round(first * 1000, 1), "load_ms": round(float(np.median(loads)) * 1000, 1),
                         "score_batch_ms": round(float(np.median(scores)) * 1000, 1)}
    return out


def child(mode: str, path: str) -> None:
    print(json.dumps({"train_ours": train_ours, "train_direct": train_direct, "load_ours": load_ours,
                      "predict_ours": predict_ours, "predict_direct": predict_direct, "forest_ours": forest_ours,
                      "forest_direct": forest_direct}[mode](path)))


def run(mode: str, path: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--path", path], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-rows", type=int, default=1_000_000)
    parser.add_argument("--predict-rows", type=int, default=10_000_000)
    parser.add_argument("--forest-rows", type=int, default=20_000)
    parser.add_argument("--child")
    parser.add_argument("--path")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.path)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    path = str(OUT / "train-bench.duckdb")
    make_table(path, args.train_rows)
    results = {"train_direct": run("train_direct", path), "train_ours": run("train_ours", path)}
    from predserve import Warehouse

    with Warehouse(path) as wh:
        wh.sql(f"CREATE OR REPLACE TABLE big AS SELECT {', '.join(f'({f} * 1.0) AS {f}' for f in FEATURES)} "
               f"FROM (SELECT * FROM data LIMIT {args.train_rows}) CROSS JOIN range({max(1, args.predict_rows // args.train_rows)})")
        wh.sql(f"CREATE OR REPLACE MODEL trees OPTIONS(model_type='boosted_tree_classifier', input_label_cols=['label'], "
               f"max_iterations=50, early_stop=FALSE) AS SELECT {', '.join(FEATURES)}, label FROM data LIMIT 100000")
    results["predict_direct"] = run("predict_direct", path)
    results["predict_ours"] = run("predict_ours", path)
    results["load_ours"] = run("load_ours", path)
    with Warehouse(path) as wh:
        wh.sql(f"CREATE OR REPLACE TABLE forest_data AS SELECT {', '.join(FEATURES)}, label FROM data LIMIT {args.forest_rows}")
    results["forest_direct"] = run("forest_direct", path)
    results["forest_ours"] = run("forest_ours", path)
    (OUT / "train.json").write_text(json.dumps(results, indent=2))
    t, p = results, results
    print(json.dumps(results, indent=2))
    print(f"\nCREATE MODEL logistic_reg, {args.train_rows:,} x 20: {t['train_ours']['seconds']}s vs scikit-learn directly "
          f"{t['train_direct']['seconds']}s -> {t['train_ours']['seconds'] / t['train_direct']['seconds']:.2f}x; "
          f"log loss {t['train_ours']['log_loss']} after {t['train_ours']['iterations']} iterations vs "
          f"{t['train_direct']['log_loss']} after {t['train_direct']['iterations']}")
    print(f"ML.PREDICT over {p['predict_ours']['n']:,} rows: {p['predict_ours']['seconds']}s, peak RSS {p['predict_ours']['peak_rss_mb']} MB "
          f"vs predict_proba directly {p['predict_direct']['seconds']}s, peak RSS {p['predict_direct']['peak_rss_mb']} MB "
          f"-> {p['predict_ours']['seconds'] / p['predict_direct']['seconds']:.2f}x")
    f = results
    print(f"CREATE MODEL random_forest_classifier, {args.forest_rows:,} x 20, 100 trees: {f['forest_ours']['seconds']}s vs "
          f"XGBRFClassifier directly {f['forest_direct']['seconds']}s -> {f['forest_ours']['seconds'] / f['forest_direct']['seconds']:.2f}x; "
          f"training log loss {f['forest_ours']['log_loss']} vs {f['forest_direct']['log_loss']}")
    for name, what in (("m", "logistic_reg"), ("trees", "boosted_tree_classifier, 50 rounds")):
        load = results["load_ours"][name]
        print(f"loading {what}: {load['load_ms']} ms (first in the process {load['first_load_ms']} ms) vs scoring one "
              f"65,536-row batch {load['score_batch_ms']} ms -> {load['load_ms'] / load['score_batch_ms']:.2f}x")


if __name__ == "__main__":
    main()
