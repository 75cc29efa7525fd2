"""Tree models (boosted trees and random forests): an XGBoost Booster, stored in XGBoost's own
JSON model format.

XGBoost's model loader trusts its input: a tree whose child index points outside the tree,
a split on a feature that does not exist or a class index beyond the model's classes makes
the process read out of bounds and crash (tried: a segmentation fault), and its binary
UBJSON loader crashes on a crafted length before any check could run. So a stored booster is
JSON, and ``check_xgboost_model`` checks it before XGBoost sees it: exactly the objects and
keys XGBoost writes for the models CREATE MODEL trains (gbtree or DART, numeric splits, one
output per tree; a random forest is a gbtree of num_parallel_tree trees per round), sizes that
agree with each other, and trees that are trees (each node's
children come after it, inside the tree, each node but the root has exactly one parent).
XGBoost then reads the checked document as we re-serialise it, so it sees exactly what was
checked.

The same check runs when a model is saved, so a change in XGBoost's format shows at
CREATE MODEL (and in the tests), not on a user's warehouse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import orjson

from predserve.warehouse.models.storage import StoredModelError, dict_field, int_field

XGBOOST_THREADS = 2
ROOT_PARENT = 2147483647  # XGBoost's "no parent" marker
OBJECTIVES = {"regression": "reg:squarederror", "binary": "binary:logistic", "multiclass": "multi:softprob"}
TREE_INT_ARRAYS = ("left_children", "right_children", "parents", "split_indices", "split_type", "default_left")
TREE_FLOAT_ARRAYS = ("base_weights", "loss_changes", "split_conditions", "sum_hessian")
TREE_EMPTY_LISTS = ("categories", "categories_nodes", "categories_segments", "categories_sizes")


def objective_for(num_classes: int) -> str:
    """XGBoost's objective for a model of ``num_classes`` classes (0: regression)."""
    return OBJECTIVES["regression" if not num_classes else "binary" if num_classes == 2 else "multiclass"]


@dataclass
class BoostedTrees:
    """A boosted tree or random forest classifier or regressor: XGBoost's Booster (for predictions, and for
    anything else XGBoost computes from it, such as feature contributions) and the number of
    classes (0 for regression)."""

    booster: Any  # xgboost.Booster
    num_classes: int = 0

    def get_booster(self) -> Any:
        return self.booster

    @property
    def objective(self) -> str:
        return objective_for(self.num_classes)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The regression value, or the positive class's probability (binary), as float32 (as
        XGBoost's scikit-learn wrapper predicts)."""
        return self.booster.inplace_predict(x, predict_type="value", missing=np.nan, validate_features=False)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(rows, classes) probabilities; binary models give [1 - p, p] as XGBClassifier does."""
        p = self.predict(x)
        return p if p.ndim == 2 else np.vstack((1.0 - p, p)).transpose()

    # ---- storage --------------------------------------------------------------------------
    def to_data(self) -> dict[str, Any]:
        model = json.loads(bytes(self.booster.save_raw("json")))
        check_xgboost_model(model, self.objective, self.num_classes, self.booster.num_features())
        return {"num_classes": self.num_classes, "xgboost_model": model}

    @classmethod
    def from_data(cls, data: dict[str, Any], num_classes: int, num_features: int) -> "BoostedTrees":
        if int_field(data, "num_classes", 0, 2**31) != num_classes:
            raise StoredModelError(f"the trees were stored for {data['num_classes']} classes, the model has {num_classes}")
        # orjson writes a non-finite number as null, which the check then refuses
        document = orjson.dumps(dict_field(data, "xgboost_model"))
        return cls(_load_booster(document, objective_for(num_classes), num_classes, num_features), num_classes)


@lru_cache(maxsize=32)
def _load_booster(document: bytes, objective: str, num_classes: int, num_features: int) -> Any:
    """The Booster XGBoost reads from ``document`` once it passed the check. Cached by the
    document's bytes, so a model that ML.PREDICT loads again is neither checked nor parsed
    again; a cached Booster is only ever used to predict, which XGBoost allows concurrently."""
    import xgboost as xgb  # imported when used, as everywhere: XGBoost alone takes a second to import

    check_xgboost_model(orjson.loads(document), objective, num_classes, num_features)
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(document))
    except xgb.core.XGBoostError as exc:
        raise StoredModelError(f"XGBoost cannot read the stored trees ({str(exc).splitlines()[0]})") from None
    booster.set_param({"nthread": XGBOOST_THREADS})
    return booster


# ---- the check ---------------------------------------------------------------------------------
def _keys(obj: Any, keys: set[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict) or set(obj) != keys:
        found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise StoredModelError(f"XGBoost model: {where} should have exactly {sorted(keys)}, found {found}")
    return obj


def _count(text: Any, where: str, low: int, high: int) -> int:
    """XGBoost writes its counts as decimal strings."""
    if not (isinstance(text, str) and text.isascii() and text.isdigit() and len(text) <= 12) or not low <= int(text) <= high:
        raise StoredModelError(f"XGBoost model: {where} is {text!r}; expected an integer in [{low}, {high}]")
    return int(text)


def _number_text(text: Any, where: str) -> None:
    try:
        if isinstance(text, str):
            float(text)
            return
    except ValueError:
        pass
    raise StoredModelError(f"XGBoost model: {where} is {text!r}; expected a number")


def _array(values: Any, length: int, kinds: str, where: str, what: str) -> np.ndarray:
    try:
        array = np.array(values) if isinstance(values, list) else None
    except (ValueError, OverflowError):
        array = None
    if array is None or array.shape != (length,) or (length and array.dtype.kind not in kinds):
        raise StoredModelError(f"XGBoost model: {where} should be {length} {what}")
    return array


def _ints(values: Any, length: int, where: str) -> np.ndarray:
    return _array(values, length, "i", where, "integers")


def _numbers(values: Any, length: int, where: str) -> None:
    if not np.isfinite(_array(values, length, "if", where, "finite numbers")).all():
        raise StoredModelError(f"XGBoost model: {where} should be {length} finite numbers")


def check_xgboost_model(model: Any, objective: str, num_classes: int, num_features: int) -> None:
    """Refuse (StoredModelError) anything but a well-formed model of the expected kind."""
    _keys(model, {"learner", "version"}, "the document")
    version = model["version"]
    if not (isinstance(version, list) and len(version) == 3 and all(isinstance(v, int) for v in version)):
        raise StoredModelError(f"XGBoost model: version is {version!r}")
    learner = _keys(model["learner"], {"attributes", "feature_names", "feature_types", "gradient_booster",
                                       "learner_model_param", "objective"}, "learner")
    if learner["attributes"] != {} or learner["feature_names"] != [] or learner["feature_types"] != []:
        raise StoredModelError("XGBoost model: attributes, feature_names and feature_types should be empty")
    groups = max(num_classes, 1) if objective == OBJECTIVES["multiclass"] else 1
    params = _keys(learner["learner_model_param"], {"base_score", "boost_from_average", "num_class", "num_feature", "num_target"},
                   "learner_model_param")
    if (_count(params["num_class"], "num_class", 0, 2**31) != (num_classes if groups > 1 else 0)
            or _count(params["num_feature"], "num_feature", 0, 2**31) != num_features
            or _count(params["num_target"], "num_target", 1, 1) != 1 or params["boost_from_average"] not in ("0", "1")):
        raise StoredModelError(f"XGBoost model: learner_model_param {params} does not match a model of "
                               f"{num_features} features and {num_classes} classes")
    base = params["base_score"]
    if not (isinstance(base, str) and base.startswith("[") and base.endswith("]")) or len(base[1:-1].split(",")) != groups:
        raise StoredModelError(f"XGBoost model: base_score is {base!r}; expected {groups} numbers in brackets")
    for value in base[1:-1].split(","):
        _number_text(value, "base_score")
    _check_objective(learner["objective"], objective, num_classes)
    booster = learner["gradient_booster"]
    if isinstance(booster, dict) and booster.get("name") == "dart":
        _keys(booster, {"name", "gbtree", "weight_drop"}, "the DART booster")
        booster_model = _keys(booster["gbtree"], {"name", "model"}, "the DART booster's gbtree")
        trees = _check_gbtree(booster_model, groups, num_features)
        _numbers(booster["weight_drop"], trees, "weight_drop")
    else:
        _check_gbtree(booster, groups, num_features)


def _check_objective(stored: Any, objective: str, num_classes: int) -> None:
    if objective == OBJECTIVES["multiclass"]:
        param = _keys(stored, {"name", "softmax_multiclass_param"}, "objective")
        _keys(param["softmax_multiclass_param"], {"num_class"}, "softmax_multiclass_param")
        if param["softmax_multiclass_param"]["num_class"] != str(num_classes):
            raise StoredModelError(f"XGBoost model: the objective is for {param['softmax_multiclass_param']['num_class']} classes")
    else:
        param = _keys(stored, {"name", "reg_loss_param"}, "objective")
        _keys(param["reg_loss_param"], {"scale_pos_weight"}, "reg_loss_param")
        _number_text(param["reg_loss_param"]["scale_pos_weight"], "scale_pos_weight")
    if param["name"] != objective:
        raise StoredModelError(f"XGBoost model: objective {param['name']!r}; this model type needs {objective!r}")


def _check_gbtree(booster: Any, groups: int, num_features: int) -> int:
    """Check a gbtree's trees; return how many there are."""
    _keys(booster, {"name", "model"}, "gradient_booster")
    if booster["name"] != "gbtree":
        raise StoredModelError(f"XGBoost model: booster {booster['name']!r}; expected gbtree or dart")
    model = _keys(booster["model"], {"cats", "gbtree_model_param", "iteration_indptr", "tree_info", "trees"}, "the gbtree model")
    if model["cats"] != {"enc": [], "feature_segments": [], "sorted_idx": []}:
        raise StoredModelError("XGBoost model: categorical encodings are not used by predserve's models")
    param = _keys(model["gbtree_model_param"], {"num_parallel_tree", "num_trees"}, "gbtree_model_param")
    trees = model["trees"]
    if not isinstance(trees, list) or _count(param["num_trees"], "num_trees", 0, 2**31) != len(trees):
        raise StoredModelError("XGBoost model: num_trees does not match the trees stored")
    per_iteration = groups * _count(param["num_parallel_tree"], "num_parallel_tree", 1, 2**31)
    indptr = _ints(model["iteration_indptr"], len(trees) // per_iteration + 1, "iteration_indptr")
    if len(trees) % per_iteration or (indptr != np.arange(len(indptr)) * per_iteration).any():
        raise StoredModelError("XGBoost model: iteration_indptr does not match the trees stored")
    tree_info = _ints(model["tree_info"], len(trees), "tree_info")
    if len(trees) and ((tree_info < 0) | (tree_info >= groups)).any():
        raise StoredModelError(f"XGBoost model: tree_info names an output beyond the model's {groups}")
    for index, tree in enumerate(trees):
        _check_tree(tree, index, num_features)
    return len(trees)


def _check_tree(tree: Any, index: int, num_features: int) -> None:
    where = f"tree {index}"
    _keys(tree, {"id", "tree_param", *TREE_INT_ARRAYS, *TREE_FLOAT_ARRAYS, *TREE_EMPTY_LISTS}, where)
    param = _keys(tree["tree_param"], {"num_deleted", "num_feature", "num_nodes", "size_leaf_vector"}, f"{where}'s tree_param")
    if (tree["id"] != index or param["num_deleted"] != "0" or param["size_leaf_vector"] != "1"
            or _count(param["num_feature"], f"{where}'s num_feature", 0, 2**31) != num_features):
        raise StoredModelError(f"XGBoost model: {where}'s id or tree_param is not one predserve writes")
    n = _count(param["num_nodes"], f"{where}'s num_nodes", 1, 2**31)
    if any(tree[name] != [] for name in TREE_EMPTY_LISTS):
        raise StoredModelError(f"XGBoost model: {where} has categorical splits, which predserve's models do not use")
    left, right, parents, features, split_type, default_left = (_ints(tree[name], n, f"{where}'s {name}") for name in TREE_INT_ARRAYS)
    for name in TREE_FLOAT_ARRAYS:
        _numbers(tree[name], n, f"{where}'s {name}")
    if (split_type != 0).any() or ((default_left != 0) & (default_left != 1)).any():
        raise StoredModelError(f"XGBoost model: {where} has split types or default directions predserve does not write")
    if ((features < 0) | (features >= num_features)).any():
        raise StoredModelError(f"XGBoost model: {where} splits on a feature beyond the model's {num_features}")
    leaf = left == -1
    nodes = np.arange(n)
    inner, lo, hi = nodes[~leaf], left[~leaf], right[~leaf]
    children = np.concatenate([lo, hi])
    if ((right == -1) != leaf).any() or ((lo <= inner) | (hi <= inner) | (lo >= n) | (hi >= n)).any() \
            or len(np.unique(children)) != n - 1 or parents[0] != ROOT_PARENT \
            or (parents[lo] != inner).any() or (parents[hi] != inner).any():
        raise StoredModelError(f"XGBoost model: {where} is not a tree (its child and parent links disagree)")
