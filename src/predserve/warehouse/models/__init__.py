"""Models: the registry of model types and their families, training, storage.

Importing any part of this package loads every family (``families``), so the registry is
complete whenever it is asked.
"""

from predserve.warehouse.models import families  # noqa: F401  (registers every model type)
from predserve.warehouse.models.trained import TrainedModel, with_input_columns
from predserve.warehouse.models.training import train

__all__ = ["TrainedModel", "train", "with_input_columns"]
