"""Import optional runtime packages without the heavy extras they pull in when those happen to be installed."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

#: Packages the gateway path must never load (the Pi has none of them).
TRAINING_STACK = ("tensorflow", "keras", "sklearn", "pandas")


def loaded_training_stack() -> list[str]:
    """The packages of :data:`TRAINING_STACK` this process has imported (the gateway: none)."""
    return sorted({m.split(".")[0] for m in list(sys.modules)
                   if m.split(".")[0] in TRAINING_STACK and sys.modules[m] is not None})


def blocked_training_stack() -> list[str]:
    """The packages of :data:`TRAINING_STACK` made unimportable here (``sys.modules[name] = None``)."""
    return sorted(m for m in TRAINING_STACK if m in sys.modules and sys.modules[m] is None)


def import_xgboost() -> ModuleType:
    """Import xgboost as the gateway has it.

    xgboost imports scikit-learn at module level when it is installed (+2 s, +100 MB RSS on a
    desktop with the train extra), only to offer its sklearn wrappers, which the gateway never
    uses. Hide scikit-learn and pandas during the import unless they are already loaded.
    """
    if "xgboost" in sys.modules:
        return sys.modules["xgboost"]
    hidden = [name for name in ("sklearn", "pandas") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` raise ImportError
    try:
        return importlib.import_module("xgboost")
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


#: xgboost's scikit-learn wrappers, rebound on the package by :func:`import_xgboost_sklearn`.
_SKLEARN_WRAPPERS = ("XGBModel", "XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier",
                     "XGBRFRegressor")


def import_xgboost_sklearn() -> ModuleType:
    """Import xgboost with its scikit-learn wrappers, as the trainer needs it.

    If this process already imported xgboost the gateway's way (:func:`import_xgboost`, which hides
    scikit-learn), xgboost has cached "no scikit-learn" and ``XGBClassifier()`` raises ImportError:
    the demo loads the shipped bundle before it trains, and a test session may do the same. Reload
    xgboost's compat and sklearn modules then, so the wrappers get their real base classes.
    """
    xgb = importlib.import_module("xgboost")
    compat = sys.modules.get("xgboost.compat")
    if compat is None or getattr(compat, "SKLEARN_INSTALLED", True):
        return xgb
    try:
        importlib.import_module("sklearn")
    except ImportError:
        return xgb  # XGBClassifier raises xgboost's own "sklearn needs to be installed"
    importlib.reload(compat)
    wrappers = importlib.reload(sys.modules["xgboost.sklearn"])
    for name in _SKLEARN_WRAPPERS:
        if hasattr(wrappers, name):
            setattr(xgb, name, getattr(wrappers, name))
    return xgb
