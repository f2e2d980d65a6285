"""The test session's fixtures, registered once here (pytest builds a fixture once per definition).

- brokers.py: a real Mosquitto on a free port (``mosquitto``, ``mosquitto_auth``,
  ``mosquitto_factory``), TLS material (``tls_certs``), a QoS 1 collector (``mqtt_collector``),
  a tiny filesystem to fill (``tiny_tmpfs``);
- fixtures_core.py: the demo run and its bundle, real IoT-23 flows;
- conftest_bundle.py: a real int8 bundle and its run dir, copies to tamper with, a fake bundle;
- conftest_train.py: quick training runs; conftest_syslog.py: a real rsyslogd.

Tests live by wing in core/, edge/, train/ and convert/ (each with its conftest.py marking them).
Helpers that are not fixtures are imported from their modules (``from brokers import free_port``).
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Load the Hypothesis profile (``ci`` unless ``HYPOTHESIS_PROFILE`` names another)."""
    import hypothesis_profiles

    hypothesis_profiles.load()

# Session fixtures live in helper modules and are registered here, once: a fixture imported into a
# test module would be a second definition, built a second time (the demo trains for a minute).
from fixtures_core import demo_bundle, demo_run, iot23_flows  # noqa: E402, F401
from conftest_bundle import bundle_copy, fake_bundle, int8_bundle, int8_run_dir  # noqa: E402, F401
from conftest_train import crafted_files, quick_run, tiny_runs  # noqa: E402, F401
from conftest_syslog import rsyslog, rsyslog_factory  # noqa: E402, F401
from brokers import mosquitto, mosquitto_auth, mosquitto_factory, mqtt_collector, tiny_tmpfs, tls_certs  # noqa: E402, F401
