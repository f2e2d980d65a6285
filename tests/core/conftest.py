"""Tests of the core package edgebot/: features, windows, readers, bundle and manifest, incidents, site, CLI.

Session fixtures (the demo run, the int8 bundle, brokers, rsyslog) come from tests/conftest.py and
are built once per session; every test here is marked ``core`` (``pytest -m core``).
"""

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = __file__.rsplit("/", 1)[0]
    for item in items:
        if str(item.fspath).startswith(here + "/"):
            item.add_marker(pytest.mark.core)
