"""Training/evaluation split, following BigQuery ML's data_split_method rules.

AUTO_SPLIT: fewer than 500 rows -> no split (evaluate on the training rows); 500 to 50,000
rows -> 20% random evaluation rows; more than 50,000 -> 10,000 random evaluation rows.
RANDOM: data_split_eval_fraction random rows. CUSTOM: a BOOL data_split_col, TRUE or NULL =
evaluation. SEQ: sorted by data_split_col, the last data_split_eval_fraction rows (NULLs sort
last) are evaluation.
The random choice is seeded, so the same data gives the same split (BigQuery's is not).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from predserve.errors import ModelError

SEED = 42


def split_rows(table: pa.Table, options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """Return (training row indices, evaluation row indices or None when there is no split)."""
    n = table.num_rows
    method = options.get("data_split_method", "AUTO_SPLIT")
    fraction = options.get("data_split_eval_fraction", 0.2)
    col = options.get("data_split_col")
    everything = np.arange(n)
    if method in ("CUSTOM", "SEQ"):
        if not col or col not in table.schema.names:
            raise ModelError(f"data_split_method='{method}' needs data_split_col naming a column of the training query (got {col!r})")
    elif col:
        raise ModelError("data_split_col is only used with data_split_method='CUSTOM' or 'SEQ'")
    if method == "NO_SPLIT" or (method == "AUTO_SPLIT" and n < 500):
        return everything, None
    if method == "AUTO_SPLIT":
        eval_count = int(round(n * 0.2)) if n <= 50_000 else 10_000
        return _random_split(n, eval_count)
    if method == "RANDOM":
        return _random_split(n, int(round(n * fraction)))
    if method == "CUSTOM":
        flags = table.column(col)
        if not pa.types.is_boolean(flags.type):
            raise ModelError(f"data_split_col {col!r} must be BOOL for CUSTOM splits (TRUE or NULL marks evaluation rows)")
        is_eval = pc.fill_null(flags, True).to_numpy(zero_copy_only=False)
        return everything[~is_eval], everything[is_eval]
    order = pc.sort_indices(table, sort_keys=[(col, "ascending")]).to_numpy()  # NULLs sort last: evaluation
    cut = n - int(round(n * fraction))
    return np.sort(order[:cut]), np.sort(order[cut:])


def _random_split(n: int, eval_count: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    is_eval = np.zeros(n, dtype=bool)
    is_eval[rng.choice(n, size=eval_count, replace=False)] = True
    rows = np.arange(n)
    return rows[~is_eval], rows[is_eval]
