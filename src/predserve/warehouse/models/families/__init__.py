"""The model families: each module registers its model types when imported (registry.py).

The order is BigQuery ML's reference's, the order error messages list the types in. A new
family is a new module here and one line below.
"""

from predserve.warehouse.models.families import linear, boosted_trees, kmeans, matrix_factorization, arima_plus  # noqa: F401  # isort: skip  (importing registers them, in this order)
