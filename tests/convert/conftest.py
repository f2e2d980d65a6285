"""Tests of the converter wing convert/: int8 conversion, verification, the bundle it writes.

Session fixtures (the demo run, the int8 bundle, brokers, rsyslog) come from tests/conftest.py and
are built once per session; every test here is marked ``convert`` (``pytest -m convert``).
"""

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = __file__.rsplit("/", 1)[0]
    for item in items:
        if str(item.fspath).startswith(here + "/"):
            item.add_marker(pytest.mark.convert)
