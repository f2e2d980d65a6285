"""Fixtures over the bundled real data, shared by the core tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
MIRAI_34_1 = DATA / "iot23" / "CTU-IoT-Malware-Capture-34-1.conn.log.labeled.xz"
HAKAI_8_1 = DATA / "iot23" / "CTU-IoT-Malware-Capture-8-1conn.log.labeled.csv.xz"
MIRAI_44_1 = DATA / "iot23" / "CTU-IoT-Malware-Capture-44-1conn.log.labeled.csv.xz"
HONEYPOT_4_1 = DATA / "iot23" / "CTU-Honeypot-Capture-4-1.conn.log.labeled.xz"
HONEYPOT_5_1 = DATA / "iot23" / "CTU-Honeypot-Capture-5-1.conn.log.labeled.xz"
PCAP_MIRAI = DATA / "pcaps" / "iot23_CTU-IoT-Malware-Capture-34-1_2018-12-21-15-50-14-192.168.1.195.irc.pcap.xz"
PCAP_HUE = DATA / "pcaps" / "iot23_CTU-Honeypot-Capture-4-1_2018-10-25-14-06-32-192.168.1.132.pcap.xz"


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
