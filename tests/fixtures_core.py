"""Fixtures over the bundled real data, shared by the core tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebot import datasets
REPO = Path(__file__).resolve().parents[1]
DATA = datasets.data_root()
MIRAI_34_1 = datasets.iot23("34-1")
HAKAI_8_1 = datasets.iot23("8-1")
MIRAI_44_1 = datasets.iot23("44-1")
HONEYPOT_4_1 = datasets.iot23("4-1")
HONEYPOT_5_1 = datasets.iot23("5-1")
PCAP_MIRAI = datasets.pcap("mirai_34_1")
PCAP_HUE = datasets.pcap("hue_4_1")


@pytest.fixture(scope="session")
def iot23_flows():
    """Real labeled flows: 44-1 (Mirai, small) and 4-1 (benign), plus 3,000 rows of 34-1."""
    from itertools import islice

    from edgebot.readers import open_flows

    flows = list(open_flows(MIRAI_44_1)) + list(open_flows(HONEYPOT_4_1))
    flows += list(islice(open_flows(MIRAI_34_1), 3000))
    return flows


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The whole demo (quick training, int8 conversion, three pcap replays), run once per session.

    Needs TensorFlow (the train extra); tests using it are marked ``tf``.
    """
    import io

    pytest.importorskip("tensorflow", reason="the demo trains a model (pip install 'edgebot[train]')")
    from edgebot.demo import run_demo

    out = tmp_path_factory.mktemp("demo")
    buf = io.StringIO()
    result = run_demo(out, quick=True, stream=buf)
    result["printed"] = buf.getvalue()
    result["out"] = out
    return result


@pytest.fixture(scope="session")
def demo_bundle(demo_run):
    """The int8 bundle the demo converted (read-only by convention)."""
    from pathlib import Path as _Path

    return _Path(demo_run["bundle"])
