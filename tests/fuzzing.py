"""Hypothesis budgets for the fuzz tests: a fixed, derandomized ``ci`` profile and a long ``fuzz`` one.

``make test`` runs the ``ci`` profile: every run tests the same examples (``derandomize``), so
CI is deterministic. ``make fuzz`` sets ``HYPOTHESIS_PROFILE=fuzz``: fresh random examples,
``FUZZ_SCALE`` times as many. Only tests that use :func:`fuzz_settings` are affected; the
other property tests of the suite keep their own settings.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

#: How many times more examples the long profile runs.
FUZZ_SCALE = 20
#: Per-example deadline (ms): a hang shows as a failure, not as a stuck CI job.
DEADLINE_MS = 5000

settings.register_profile("ci", derandomize=True, database=None, deadline=DEADLINE_MS, print_blob=True)
settings.register_profile("fuzz", derandomize=False, deadline=DEADLINE_MS, print_blob=True)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE not in ("ci", "fuzz"):
    raise ValueError(f"HYPOTHESIS_PROFILE must be 'ci' or 'fuzz', got {PROFILE!r}")


def fuzz_settings(examples: int) -> settings:
    """Settings for a fuzz test that runs ``examples`` cases under ``ci`` (more under ``fuzz``)."""
    scale = FUZZ_SCALE if PROFILE == "fuzz" else 1
    return settings(settings.get_profile(PROFILE), max_examples=examples * scale,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])
