"""Incident messages of the real tracker over real flows, for the sink tests (no model needed).

The first flows of the bundled Mirai 34-1 Zeek log go through :class:`edgebot.judge.FlowJudge`,
scored by their own labels (an oracle scorer: these tests check what a sink writes, not the model).
"""

from __future__ import annotations

from itertools import islice

from edgebot.edge.community_id import flow_community_id
from edgebot.judge import FlowJudge
from fixtures_core import MIRAI_34_1


def real_incidents(n_flows: int = 1500, gateway_id: str = "sample-gw") -> list[dict]:
    """``new``, ``update`` and ``end`` messages (the open ones ended as at the end of a run)."""
    from edgebot.readers import open_flows

    judge = FlowJudge.build(gateway_id, {"id": "oracle", "version": "test"}, 0.5, update_interval_s=30.0)
    messages: list[dict] = []
    for flow in islice(open_flows(MIRAI_34_1), n_flows):
        score = 0.99 if flow.label == "malicious" else 0.01
        messages += judge.observe(flow.orig_h, flow.end_ts, score, flow.resp_h, flow.resp_p, flow.proto,
                                  flow.conn_state, lambda f=flow: flow_community_id(f))
    return messages + judge.tracker.close_all("source ended")
