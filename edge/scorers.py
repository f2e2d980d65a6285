"""One scorer per sequence layout of a bundle: flows in per-host windows, or rows on the feature axis.

A scorer turns one micro-batch of records into incident messages (new / update / end): the
bundle scores the batch, the incident side observes each verdict, and the incident clock
ticks. The agent picks one at start-up (:func:`make_scorer`, by the bundle's ``sequence``)
and owns the rest: pending batches, publishing, latencies and the sink check.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any, Optional, Protocol

from edgebot.evidence import flow_evidence
from edgebot.features import featurize
from edgebot.flow import FlowRecord
from edgebot.windows import HostWindows

log = logging.getLogger(__name__)

#: Host key of rows without a host column (CICFlowMeter CSVs scored by a cicflowmeter bundle).
ROWS_HOST = "-"


class Scorer(Protocol):
    """What the agent needs of a scorer."""

    #: The bundle ``sequence`` layout this scorer serves.
    layout: str

    def score(self, batch: list) -> list[dict]:
        """Score one micro-batch (in hand-over order); return the incident messages it causes."""
        ...


class HostWindowScorer:
    """Zeek-like flows scored in per-host windows (the ``host-windows`` layout).

    The batch is taken in start-time order; each flow's features are pushed onto its
    originator's window and the window is scored. Every verdict goes to the
    :class:`~edgebot.judge.FlowJudge` (evidence rule, site profile, allow rules), and the
    incident clock is flow time: the latest flow end seen.

    Parameters
    ----------
    bundle
        The loaded bundle (``scale``, ``score``).
    windows : HostWindows
        The per-host windows (bounded by ``limits.max_hosts``; the agent reports their evictions).
    judge
        The agent's :class:`~edgebot.judge.FlowJudge`; its ``tracker`` holds the incidents.
    """

    layout = "host-windows"

    def __init__(self, bundle: Any, windows: HostWindows, judge: Any) -> None:
        self.bundle = bundle
        self.windows = windows
        self.judge = judge
        self.flow_clock = 0.0

    def score(self, batch: list[FlowRecord]) -> list[dict]:
        starts = [f.ts for f in batch]
        order = sorted(range(len(batch)), key=starts.__getitem__)
        flows = [batch[i] for i in order]
        X = self.bundle.scale(featurize(flows))
        W = self.windows.push_many([f.orig_h for f in flows], X)
        scores = self.bundle.score(W)
        ends = [f.ts + (f.duration or 0.0) for f in flows]
        latest = max(ends)
        if latest > self.flow_clock:
            self.flow_clock = latest
        observe = self.judge.observe
        messages: list[dict] = []
        for flow, score, end in zip(flows, scores.tolist(), ends):
            silent, oneway = flow_evidence(flow)
            messages.extend(observe(flow.orig_h, end, score, flow.resp_h, flow.resp_p, flow.proto, flow.conn_state,
                                    _CommunityId(flow), silent, oneway))
        messages.extend(self.judge.tracker.tick(self.flow_clock))
        return messages


class FeatureAxisScorer:
    """CICFlowMeter rows scored on their own (the ``feature-axis`` layout of a cicflowmeter bundle).

    The rows have no host, address or time columns: each is scored on its own features, all of
    them belong to the one pseudo-host :data:`ROWS_HOST` (its incident's peers are the files the
    flagged rows came from), and the incident clock is the wall clock.

    Parameters
    ----------
    bundle
        The loaded bundle (``featurize``, ``scale``, ``sequences``, ``score``).
    incidents
        The agent's incident tracker (``judge.tracker``).

    Raises
    ------
    DataError
        From :meth:`score`: a record of another profile (a Zeek-like flow) reached the agent.
    """

    layout = "feature-axis"

    def __init__(self, bundle: Any, incidents: Any) -> None:
        self.bundle = bundle
        self.incidents = incidents
        self.flow_clock = 0.0

    def score(self, batch: list) -> list[dict]:
        bundle = self.bundle
        scores = bundle.score(bundle.sequences(bundle.scale(bundle.featurize(batch))))
        now = time.time()
        self.flow_clock = max(self.flow_clock, now)
        incidents = self.incidents
        threshold = incidents.threshold
        messages: list[dict] = []
        for rec, score in zip(batch, scores.tolist()):
            if score >= threshold:
                messages.extend(incidents.observe(ROWS_HOST, now, score, os.path.basename(rec.source)))
            elif ROWS_HOST in incidents.open_hosts:
                messages.extend(incidents.observe(ROWS_HOST, now, score))
        messages.extend(incidents.tick(self.flow_clock))
        return messages


def make_scorer(bundle: Any, windows: HostWindows, judge: Any) -> Scorer:
    """The scorer for the bundle's ``sequence`` layout (bundles that name none use host windows)."""
    if getattr(bundle, "sequence", "host-windows") == FeatureAxisScorer.layout:
        return FeatureAxisScorer(bundle, judge.tracker)
    return HostWindowScorer(bundle, windows, judge)


class _CommunityId:
    """The Community ID of a flow, computed only if a message names it (it costs ~50 µs)."""

    __slots__ = ("flow",)

    def __init__(self, flow: FlowRecord):
        self.flow = flow

    def __call__(self) -> Optional[str]:
        from edgebot.edge.community_id import community_id, flow_community_id

        flow = self.flow
        try:
            try:  # IPv4 (the usual case) packed here: parsing with ipaddress costs ten times more
                src, dst = socket.inet_pton(socket.AF_INET, flow.orig_h), socket.inet_pton(socket.AF_INET, flow.resp_h)
            except OSError:
                return flow_community_id(flow)
            return community_id(src, dst, flow.proto, flow.orig_p, flow.resp_p)
        except Exception:  # a malformed address must never stop scoring
            return None
