"""Hypothesis profiles for the whole suite: ``ci`` (bounded, derandomized; the default) and ``fuzz`` (long, random).

``tests/conftest.py`` calls :func:`load` once. Choose a profile with the environment variable
``HYPOTHESIS_PROFILE`` (``make fuzz`` sets ``fuzz``). A property test states its bounded size
with ``@settings(parent=examples(N))`` or simply ``@examples(N)``: ``N`` examples in ``make test``,
``FUZZ_FACTOR * N`` (with random seeds, so each run explores new inputs) under ``fuzz``.
Registration is idempotent, so other modules may import this one too.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

#: How many times more examples every property test runs under ``HYPOTHESIS_PROFILE=fuzz``.
FUZZ_FACTOR = int(os.environ.get("EDGEBOT_FUZZ_FACTOR", "50"))
_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True, suppress_health_check=_SUPPRESS)
settings.register_profile("fuzz", derandomize=False, deadline=None, print_blob=True,
                          suppress_health_check=_SUPPRESS)


def profile_name() -> str:
    """The profile in force: ``$HYPOTHESIS_PROFILE`` or ``ci``."""
    return os.environ.get("HYPOTHESIS_PROFILE", "ci") or "ci"


def load() -> str:
    """Load the profile named by ``HYPOTHESIS_PROFILE`` (``ci`` by default); returns its name."""
    name = profile_name()
    settings.load_profile(name)
    return name


def examples(n: int) -> settings:
    """Settings for a property test of ``n`` examples (``FUZZ_FACTOR * n`` under the fuzz profile)."""
    factor = FUZZ_FACTOR if profile_name() == "fuzz" else 1
    return settings(max_examples=max(1, n * factor))
