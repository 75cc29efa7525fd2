"""The registry of model types (warehouse/models/registry.py): each name written in one module,
entries checked when registered, and the ML functions refusing in terms of what is registered."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from predserve import Warehouse
from predserve.errors import ModelError
from predserve.warehouse.models import registry

SRC = Path(__file__).resolve().parents[1] / "src" / "predserve"


def test_each_model_type_name_is_written_in_one_family_module() -> None:
    """As a string in code, that is: SQL examples (``model_type='logistic_reg'``) do not count."""
    sources = {path: path.read_text() for path in SRC.rglob("*.py")}
    for name in registry.model_types():
        literal = re.compile(rf"""(?<!model_type=)["']{re.escape(name)}["']""")
        holders = sorted(str(path.relative_to(SRC)) for path, text in sources.items() if literal.search(text))
        assert len(holders) == 1 and holders[0].startswith("warehouse/models/families/"), (name, holders)


def test_model_types_are_listed_in_the_reference_order() -> None:
    assert registry.model_types()[:7] == ("linear_reg", "logistic_reg", "boosted_tree_classifier", "boosted_tree_regressor",
                                          "random_forest_classifier", "random_forest_regressor", "kmeans")


def test_a_name_registered_twice_is_refused_and_nothing_is_added() -> None:
    before = registry.model_types()
    fresh = dataclasses.replace(registry.lookup("kmeans"), name="kmeans_copy")
    with pytest.raises(ValueError, match="registered twice: linear_reg"):
        registry.register(fresh, registry.lookup("linear_reg"))
    assert registry.model_types() == before


def test_an_entry_claiming_what_it_cannot_do_is_refused() -> None:
    kmeans = registry.lookup("kmeans")
    with pytest.raises(ValueError, match="explaining predictions needs attributions"):
        dataclasses.replace(kmeans, functions=frozenset({"EXPLAIN_PREDICT"}))
    with pytest.raises(ValueError, match="unknown ML functions"):
        dataclasses.replace(kmeans, functions=frozenset({"GENERATE_TEXT"}))


def test_an_unknown_model_type_lists_the_registered_ones(wh: Warehouse) -> None:
    supported = ", ".join(registry.model_types())
    with pytest.raises(ModelError, match=re.escape(f"unknown model_type 'dnn_classifier'; supported: {supported}")):
        wh.sql("CREATE MODEL m OPTIONS(model_type='dnn_classifier', input_label_cols=['y']) AS SELECT x1, y FROM people")


def test_the_ml_functions_refuse_naming_the_types_that_support_them(wh: Warehouse) -> None:
    wh.sql("CREATE MODEL km OPTIONS(model_type='kmeans', num_clusters=2) AS SELECT x1, x2 FROM people")
    wh.sql("CREATE MODEL bt OPTIONS(model_type='boosted_tree_regressor', input_label_cols=['y'], max_iterations=2) "
           "AS SELECT x1, y FROM people")
    refusals = {
        "ML.WEIGHTS(MODEL km)": "ML.WEIGHTS supports linear_reg, logistic_reg and matrix_factorization models; km is kmeans",
        "ML.ADVANCED_WEIGHTS(MODEL bt)": "ML.ADVANCED_WEIGHTS supports linear_reg and logistic_reg models; bt is boosted_tree_regressor",
        "ML.CENTROIDS(MODEL bt)": "describes kmeans models; bt is boosted_tree_regressor",
        "ML.FEATURE_IMPORTANCE(MODEL km)": "supports boosted tree and random forest models; km is kmeans",
        "ML.EXPLAIN_PREDICT(MODEL km, TABLE people)": "explains supervised models (linear, logistic, boosted tree, random forest); km is kmeans",
        "ML.ROC_CURVE(MODEL bt)": "evaluates binary classification models; bt is boosted_tree_regressor",
        "ML.DETECT_ANOMALIES(MODEL bt, STRUCT(0.1 AS contamination), TABLE people)":
            "predserve detects anomalies with kmeans or arima_plus models; bt is boosted_tree_regressor",
    }
    for call, message in refusals.items():
        with pytest.raises(ModelError, match=re.escape(message)):
            wh.sql(f"SELECT * FROM {call}")


def test_a_regressor_given_categories_names_the_classifiers(wh: Warehouse) -> None:
    classifiers = [t.name for t in registry.where(lambda t: t.classifies)]
    expected = f"use {', '.join(classifiers[:-1])} or {classifiers[-1]} for categories"
    with pytest.raises(ModelError, match=re.escape(expected)):
        wh.sql("CREATE MODEL m OPTIONS(model_type='linear_reg', input_label_cols=['color']) AS SELECT x1, color FROM people")
