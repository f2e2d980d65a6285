"""The agent's scorer hands the judge what the evidence rule needs of each flow (the shipped bundle, real flows)."""

from __future__ import annotations

from edgebot.evidence import responder_only


def test_the_agent_scorer_never_makes_evidence_of_flows_the_host_did_not_send():
    from edgebot import datasets
    from edgebot.bundle import load_bundle
    from edgebot.edge.scorers import make_scorer
    from edgebot.judge import FlowJudge
    from edgebot.readers import read_flows
    from edgebot.shipped import default_bundle
    from edgebot.windows import HostWindows

    records, _ = read_flows([datasets.data_root() / "stratosphere" / "010-zeek-mixed.conn.log.labeled.xz"])
    records.sort(key=lambda r: r.ts)
    bundle = load_bundle(default_bundle())
    judge = FlowJudge.build("gw", {"id": bundle.bundle_id, "version": bundle.version}, bundle.threshold)
    scorer = make_scorer(bundle, HostWindows(bundle.window, bundle.n_features, max_hosts=4096), judge)
    messages = []
    for i in range(0, len(records), 256):  # batches as the agent takes them
        messages += scorer.score(records[i:i + 256])
    silent = sum(responder_only(r.history, r.orig_pkts) for r in records)
    assert silent > 0 and judge.stats()["responder_only_flows"] == silent
    opened = {m["host"] for m in messages if m["type"] == "new"}
    assert "147.32.83.234" not in opened  # the capture's benign Windows host: its flagged flows were backscatter
