"""The fuser's trees evaluated with numpy: XGBoost's own JSON model, without the xgboost package.

The gateway scores every window with the bundle's XGBoost fuser. Importing xgboost costs the agent
about 30 MB of resident memory (its core imports ``scipy.sparse`` at module level, 23 MB alone),
more than the whole rest of the model path, for a model of a few hundred small trees. This module
reads the same ``fuser.json`` (XGBoost's JSON model format: ``gbtree``, ``binary:logistic``,
numerical splits) and evaluates it the way XGBoost's CPU predictor does:

- a row goes left at a node when ``x < split_condition`` (both float32), a missing value (NaN)
  follows ``default_left``; a leaf's value is its ``split_conditions`` entry;
- the margin is ``logit(base_score)`` plus the leaf values, added tree after tree in float32;
- the probability is the logistic of the margin, in float32 like XGBoost's ``1 / (1 + expf(-x))``.

On the bundles measured, the scores are XGBoost's bit for bit on 99.97-100 % of rows and within one
float32 ulp (1.2e-7) on the rest (``expf`` rounding).

:meth:`TreeEnsemble.inplace_predict` has the signature the bundle uses of ``xgboost.Booster``.
``tests/core/test_trees.py`` checks the scores against xgboost's on every bundle the tests build
and on the shipped one, and ``edgebot bundle verify`` does the same where xgboost is installed.
Anything else (categorical splits, multi-class, other objectives or boosters) is refused with a
one-line :class:`~edgebot.errors.BundleError`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgebot.errors import BundleError
from edgebot.fusion import margin_kind

__all__ = ["TreeEnsemble", "load_trees"]

#: Nodes of one tree; a fuser has a few hundred trees of a few dozen nodes.
_MAX_NODES = 1 << 20


def _fail(path: Path, what: str) -> BundleError:
    return BundleError(f"{path.name}: {what}")


class TreeEnsemble:
    """A binary:logistic gbtree, flattened into node arrays over all trees.

    Parameters
    ----------
    model
        The parsed ``fuser.json`` (XGBoost's JSON model).
    path
        Where it came from, for the error messages.
    """

    def __init__(self, model: Any, path: Path = Path("fuser.json")) -> None:
        try:
            learner = model["learner"]
            objective = learner["objective"]["name"]
            booster = learner["gradient_booster"]
            params = learner["learner_model_param"]
            trees = booster["model"]["trees"]
            n_features = int(params["num_feature"])
            base_score = float(str(params["base_score"]).strip("[]").split(",")[0])
            num_class = int(params.get("num_class", "0"))
            num_target = int(params.get("num_target", "1"))
            attributes = dict(learner.get("attributes") or {})
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise _fail(path, f"not an XGBoost JSON model ({type(exc).__name__}: {exc})") from None
        if booster.get("name") != "gbtree":
            raise _fail(path, f"booster {booster.get('name')!r} is not supported (gbtree only)")
        if objective != "binary:logistic":
            raise _fail(path, f"objective {objective!r} is not supported (binary:logistic only)")
        if num_class > 1 or num_target != 1:
            raise _fail(path, "a multi-class or multi-target model is not supported")
        if not 0.0 < base_score < 1.0:
            raise _fail(path, f"base_score {base_score} is not a probability")
        if not trees:
            raise _fail(path, "the model has no trees")
        self.n_features = n_features
        self.n_trees = len(trees)
        self._attributes = {str(k): str(v) for k, v in attributes.items()}
        lefts, rights, feats, conds, defaults, roots = [], [], [], [], [], []
        offset = 0
        for k, tree in enumerate(trees):
            try:
                left = np.asarray(tree["left_children"], dtype=np.int64)
                right = np.asarray(tree["right_children"], dtype=np.int64)
                feat = np.asarray(tree["split_indices"], dtype=np.int64)
                cond = np.asarray(tree["split_conditions"], dtype=np.float32)
                default = np.asarray(tree["default_left"], dtype=bool)
                split_type = np.asarray(tree.get("split_type", [0] * len(left)), dtype=np.int64)
            except (KeyError, TypeError, ValueError) as exc:
                raise _fail(path, f"tree {k} is malformed ({type(exc).__name__})") from None
            n = len(left)
            if not 0 < n <= _MAX_NODES or not all(len(a) == n for a in (right, feat, cond, default, split_type)):
                raise _fail(path, f"tree {k} has inconsistent node arrays")
            if np.any(split_type != 0):
                raise _fail(path, f"tree {k} has categorical splits, which are not supported")
            leaf = left < 0
            inner = ~leaf
            if np.any((right < 0) != leaf) or np.any(left[inner] >= n) or np.any(right[inner] >= n) \
                    or np.any(left[inner] <= np.flatnonzero(inner)) or np.any(right[inner] <= np.flatnonzero(inner)):
                raise _fail(path, f"tree {k} is not a tree (children out of order or range)")
            if np.any((feat[inner] < 0) | (feat[inner] >= n_features)):
                raise _fail(path, f"tree {k} splits on a feature outside 0..{n_features - 1}")
            # Leaves point at themselves, so a row that reached one stays there.
            here = np.arange(n, dtype=np.int64)
            lefts.append(np.where(leaf, here, left) + offset)
            rights.append(np.where(leaf, here, right) + offset)
            feats.append(np.where(leaf, 0, feat))
            conds.append(cond)
            defaults.append(default)
            roots.append(offset)
            offset += n
        self._left = np.concatenate(lefts)
        self._right = np.concatenate(rights)
        self._feature = np.concatenate(feats)
        self._cond = np.concatenate(conds)
        self._default_left = np.concatenate(defaults)
        self._is_leaf = self._left == np.arange(offset)
        self._roots = np.asarray(roots, dtype=np.int64)
        self._depth = self._max_depth()
        p = np.float32(base_score)
        self._base_margin = np.float32(-np.log(np.float32(1.0) / p - np.float32(1.0)))

    def _max_depth(self) -> int:
        depth = 0
        node = self._roots.copy()
        while not np.all(self._is_leaf[node]):
            # follow both children: the deepest path bounds the loop in inplace_predict
            node = np.unique(np.concatenate([self._left[node], self._right[node]]))
            depth += 1
        return depth

    def num_features(self) -> int:
        """Inputs per row (as ``xgboost.Booster.num_features``)."""
        return self.n_features

    def attr(self, key: str) -> Optional[str]:
        """A learner attribute of the model (as ``xgboost.Booster.attr``), or None."""
        return self._attributes.get(key)

    def inplace_predict(self, X: Any, base_margin: Optional[np.ndarray] = None) -> np.ndarray:
        """Probability of "malicious" for each row of ``X`` (``(n, n_features)``), float32.

        ``base_margin`` ``(n,)``: the margin the trees add to, instead of the model's base_score
        (as XGBoost's ``base_margin``).
        """
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} inputs, got shape {X.shape}")
        if base_margin is not None:
            base_margin = np.asarray(base_margin, dtype=np.float32).reshape(-1)
            if len(base_margin) != len(X):
                raise ValueError(f"base_margin has {len(base_margin)} values for {len(X)} rows")
        n = len(X)
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        rows = np.arange(n)[:, None]
        node = np.broadcast_to(self._roots, (n, self.n_trees)).copy()
        for _ in range(self._depth):
            x = X[rows, self._feature[node]]
            left = np.where(np.isnan(x), self._default_left[node], x < self._cond[node])
            node = np.where(left, self._left[node], self._right[node])
        leaves = self._cond[node]
        margin = (np.full(n, self._base_margin, dtype=np.float32) if base_margin is None
                  else base_margin.copy())
        for t in range(self.n_trees):  # tree after tree, in float32, as XGBoost adds them
            margin += leaves[:, t]
        # expf(-margin) correctly rounded (numpy's float32 exp can be 1 ulp off glibc's), then float32
        # arithmetic: bit for bit XGBoost's 1.0f / (1.0f + expf(-x)).
        e = np.exp(-margin.astype(np.float64)).astype(np.float32)
        return (np.float32(1.0) / (np.float32(1.0) + e)).astype(np.float32)


def load_trees(path: Path, n_inputs: int) -> TreeEnsemble:
    """Read ``fuser.json`` and check it takes ``n_inputs`` columns.

    Raises
    ------
    BundleError
        Unreadable, not an XGBoost JSON model of a supported kind, or another number of inputs.
    """
    path = Path(path)
    try:
        model = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _fail(path, f"unreadable ({type(exc).__name__}: {str(exc)[:120]})") from None
    trees = TreeEnsemble(model, path)
    if trees.n_features != n_inputs:
        raise _fail(path, f"takes {trees.n_features} inputs but the fusion layer gives {n_inputs}")
    try:
        margin_kind(trees)
    except ValueError as exc:
        raise _fail(path, str(exc)) from None
    return trees
