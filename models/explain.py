"""Per-feature contributions of a LightGBM model (TreeSHAP), exactly as LightGBM's
`pred_contrib=True` computes them, many times faster on large frames.

Generic: any booster and feature matrix; nothing here knows about churn.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np


def _tree_nodes(node: dict, found: list[dict]) -> None:
    if "split_feature" not in node:
        return
    found.append(node)
    _tree_nodes(node["left_child"], found)
    _tree_nodes(node["right_child"], found)


# LightGBM treats |x| <= kZeroThreshold as zero in a split with missing_type 'Zero'.
_LGBM_ZERO = 1e-35


def _goes_left(column: np.ndarray, node: dict) -> np.ndarray:
    """LightGBM's NumericalDecision for every row: True where the row goes left."""
    missing = node["missing_type"]
    nan = np.isnan(column)
    value = np.where(nan, 0.0, column) if missing != "NaN" else column
    left = value <= float(node["threshold"])
    if missing == "Zero":
        default = (value >= -_LGBM_ZERO) & (value <= _LGBM_ZERO)
    elif missing == "NaN":
        default = nan
    else:
        return left
    return np.where(default, bool(node["default_left"]), left)


def _category_digits(column: np.ndarray) -> tuple[np.ndarray, int]:
    """A small non-negative integer per distinct category code (NaN its own)."""
    nan = np.isnan(column)
    finite = column[~nan]
    if finite.size and (
        finite.min() < 0 or np.any(finite != np.floor(finite)) or finite.max() > 1e6
    ):
        _, digits = np.unique(np.where(nan, -1.0, column), return_inverse=True)
        return digits.astype(np.int64), int(digits.max()) + 1
    top = int(finite.max()) + 1 if finite.size else 0
    return np.where(nan, top, column).astype(np.int64), top + 1


def _group_rows(key: np.ndarray, radix: int) -> tuple[np.ndarray, np.ndarray]:
    """(one row of each distinct key, the group of every row)."""
    n_rows = key.size
    if radix <= max(4 * n_rows, 1 << 16):
        present = np.zeros(radix, dtype=bool)
        present[key] = True
        labels = np.cumsum(present) - 1
        inverse = labels[key]
        first_row = np.empty(int(labels[-1]) + 1, dtype=np.int64)
        first_row[inverse] = np.arange(n_rows)  # any row of a group stands for it
        return first_row, inverse
    _, first_row, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first_row, inverse.reshape(-1)


def tree_contributions(
    booster: lgb.Booster, matrix: np.ndarray, num_iteration: int, num_threads: int = 1
) -> np.ndarray:
    """Exactly LightGBM's `pred_contrib=True` output, computed many times faster.

    TreeSHAP values of one tree depend on a row only through the side it takes at
    each of that tree's splits. Rows are therefore grouped per tree by their
    decisions at every split (LightGBM's own rule: threshold, missing type and
    default direction; categorical splits group by the category code itself);
    LightGBM computes the contributions once per group and tree, and the per-tree
    results are added up (SHAP values are additive over trees).
    """
    n_rows, n_features = matrix.shape
    trees = booster.dump_model(num_iteration=num_iteration)["tree_info"]
    columns: dict[int, np.ndarray] = {}
    digits: dict[int, tuple[np.ndarray, int]] = {}

    def column(feature: int) -> np.ndarray:
        if feature not in columns:
            columns[feature] = np.ascontiguousarray(matrix[:, feature], dtype=np.float64)
        return columns[feature]

    total = np.zeros((n_features + 1, n_rows))  # transposed: contiguous row adds
    for tree_index, tree in enumerate(trees):
        nodes: list[dict] = []
        _tree_nodes(tree["tree_structure"], nodes)
        key = np.zeros(n_rows, dtype=np.int64)
        radix = 1
        categorical = sorted({n["split_feature"] for n in nodes if n["decision_type"] != "<="})
        parts = [
            (_goes_left(column(n["split_feature"]), n), 2)
            for n in nodes
            if n["decision_type"] == "<="
        ]
        for feature in categorical:
            if feature not in digits:
                digits[feature] = _category_digits(column(feature))
            parts.append(digits[feature])
        for values, n_values in parts:
            if radix > np.iinfo(np.int64).max // max(n_values, 1):
                raise OverflowError("too many split groups to key in int64")
            key += values.astype(np.int64) * radix
            radix *= n_values
        first_row, inverse = _group_rows(key, radix)
        per_group = booster.predict(
            matrix[first_row],
            start_iteration=tree_index,
            num_iteration=1,
            pred_contrib=True,
            num_threads=num_threads,
        )
        # Only the tree's own split features (and the expected value) are non-zero.
        for feature in [*sorted({n["split_feature"] for n in nodes}), n_features]:
            total[feature] += per_group[:, feature][inverse]
    return total.T
