"""Regenerate the golden flow tables of the small protocol traces: ``python tests/golden/make_golden.py``.

Each table is what the meter writes for one pcap under ``data/pcaps/zeek_traces``, one flow
per line, tab separated, in the order the flows complete. ``tests/edge/test_meter.py`` meters
the same pcaps and compares line by line, so a change in metering shows up as a diff of
these files; regenerate them only after checking that the change is intended.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Tuple

from edgebot import datasets

GOLDEN_DIR = Path(__file__).resolve().parent
REPO = GOLDEN_DIR.parents[1]
TRACES = datasets.path(datasets.ZEEK_TRACES)

COLUMNS = ("ts", "uid", "orig_h", "orig_p", "resp_h", "resp_p", "proto", "duration", "orig_bytes",
           "resp_bytes", "conn_state", "missed_bytes", "history", "orig_pkts", "orig_ip_bytes",
           "resp_pkts", "resp_ip_bytes")

#: (pcap file name in data/pcaps/zeek_traces, meter options, golden file name)
CASES: List[Tuple[str, Dict[str, object], str]] = [
    (name, {}, name.replace(".pcap", ".flows.tsv"))
    for name in (
        "zeek_dhcp_dhcp.pcap",
        "zeek_dns_mdns.pcap",
        "zeek_http_get.pcap",
        "zeek_igmp_home-multicast-short.pcap",
        "zeek_modbus_modbusSmall.pcap",
        "zeek_mqtt.pcap",
        "zeek_ntp_NTP_sync.pcap",
        "zeek_snmp_snmpv1_get.pcap",
    )
] + [
    # The modbus trace has rewritten addresses and stale checksums: Zeek's own tests read
    # it with -C, which is verify_checksums=False here.
    ("zeek_modbus_modbusSmall.pcap", {"verify_checksums": False}, "zeek_modbus_modbusSmall.nochecksum.flows.tsv"),
]


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6f}"
    return "-" if value == "" else str(value)


def meter_table(pcap: Path, options: Dict[str, object]) -> List[str]:
    """Meter ``pcap`` and render its flows as golden-table lines (header first)."""
    from edgebot.edge.sources.pcap import PcapSource

    lines = ["#" + "\t".join(COLUMNS)]
    with PcapSource(pcap, meter_options=options) as source:
        for flow in source:
            lines.append("\t".join(_cell(getattr(flow, column)) for column in COLUMNS))
    return lines


def main() -> int:
    for pcap_name, options, golden_name in CASES:
        lines = meter_table(TRACES / pcap_name, options)
        (GOLDEN_DIR / golden_name).write_text("\n".join(lines) + "\n")
        sys.stdout.write(f"{golden_name}: {len(lines) - 1} flows\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
