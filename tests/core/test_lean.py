"""The gateway's lean xgboost import, and the trainer's full one after it in the same process."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("sklearn", reason="the trainer's xgboost wrappers need scikit-learn (the train extra)")

_SCRIPT = """
import sys
import numpy as np
from edgebot.lean import import_xgboost, import_xgboost_sklearn
import_xgboost()
assert sys.modules.get("sklearn") is None, "the lean import loaded scikit-learn"
xgb = import_xgboost_sklearn()
model = xgb.XGBClassifier(n_estimators=3, max_depth=2, n_jobs=1, random_state=0)
x = np.random.default_rng(0).random((64, 3)); y = (x[:, 0] > 0.5).astype(int)
model.fit(x, y)
print(round(float(model.predict_proba(x)[:, 1][y == 1].mean() - model.predict_proba(x)[:, 1][y == 0].mean()), 3))
"""


def test_trainer_wrappers_work_after_the_gateway_import_in_one_process():
    # The demo loads the shipped bundle (lean import), then trains: XGBClassifier must still fit.
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip()) > 0.2  # the model separates the classes it was fit on
