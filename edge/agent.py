"""The gateway agent: source -> featurizer -> per-host windows -> int8 bundle -> incidents -> sinks."""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from typing import TYPE_CHECKING, Any, Optional

from edgebot.edge.plugins import Sink, Source
from edgebot.flow import FlowRecord
from edgebot.timing import percentiles
from edgebot.windows import HostWindows

from .scorers import Scorer, make_scorer
from .summary import AgentSummary, LatencyRing, current_rss_mb, peak_rss_mb

if TYPE_CHECKING:
    from edgebot.edge.config import AgentConfig

log = logging.getLogger(__name__)

#: Seconds (wall time) between housekeeping steps: allow-rule reloads, site profile saves.
HOUSEKEEPING_S = 1.0
#: Seconds of network time between looks at the meter's unanswered flows in progress (the oneway
#: rule before a flood ends; :meth:`Agent.check_unanswered`).
UNANSWERED_EVERY_S = 5.0
#: Latest flow-end -> verdict latencies kept for the percentiles (a float64 ring: 512 KB).
LATENCY_SAMPLES = 65_536


class Agent:
    """One agent: built from a config, started, run until its source ends or a signal arrives.

    Start-up reads as a list (see :meth:`start`): bundle, incidents, scorer, sinks, source,
    signals; then the sinks start (MQTT connects in the background, never blocking).
    """

    def __init__(self, cfg: AgentConfig, *, bundle: Any = None, sink: Optional[Sink] = None,
                 source: Optional[Source] = None):
        self.cfg = cfg
        self.bundle = bundle
        self.sink: Sink = sink  # type: ignore[assignment]  # None until init_sinks() builds it
        self.source: Source = source  # type: ignore[assignment]  # None until init_source() builds it
        self.windows: Optional[HostWindows] = None
        self.incidents: Any = None  # the judge's incident tracker, set by init_incidents
        self._stop = threading.Event()
        self._pending: list[FlowRecord] = []
        self._pending_t: list[float] = []
        self._latencies = LatencyRing(LATENCY_SAMPLES)
        self._incident_latest: dict[str, dict] = {}
        self.judge: Any = None
        self.site: Any = None
        self.recent: Any = None
        self.commands: Any = None  # operator commands over MQTT (edge/sinks/mqtt_commands.py), set by init_commands
        self._last_housekeeping = 0.0
        self._last_site_save = 0.0
        self._last_unanswered = -float("inf")
        self.scorer: Scorer = None  # type: ignore[assignment]  # one per sequence layout, set by init_scorer
        self._flows = 0
        self._last_stats = 0.0
        self.summary = AgentSummary()

    # ------------------------------------------------------------------------------- start-up
    def start(self) -> None:
        self.init_bundle()
        self.init_incidents()
        self.init_scorer()
        self.init_sinks()
        self.init_commands()
        self.init_source()
        self.init_signals()
        self.init_gc()
        self.start_sinks()

    def init_bundle(self) -> None:
        if self.bundle is None:
            from edgebot.bundle import load_bundle

            if self.cfg.bundle is None:  # validate() refuses such a config; an unvalidated one says so too
                from edgebot.errors import ConfigError

                raise ConfigError("bundle: not set; add bundle = \"path/to/bundle\" to the config file "
                                  "or pass --bundle")
            self.bundle = load_bundle(self.cfg.bundle, trust=self.cfg.trust_key)
        from edgebot.shipped import is_default

        which = " (the default bundle shipped with edgebot; --bundle to use another)" \
            if is_default(getattr(self.bundle, "path", self.cfg.bundle or "")) else ""
        log.info("bundle %s (%s)%s loaded: window %d, threshold %.4f, runtime %s", self.bundle.bundle_id,
                 self.bundle.version, which, self.bundle.window, self.threshold, getattr(self.bundle, "runtime", "?"))

    @property
    def threshold(self) -> float:
        override = self.cfg.scoring.threshold
        return float(override) if override is not None else float(self.bundle.threshold)

    def init_scorer(self) -> None:
        """The scorer of the bundle's sequence layout (:mod:`edgebot.edge.scorers`), fed by the judge."""
        self.windows = HostWindows(self.bundle.window, self.bundle.n_features, max_hosts=self.cfg.limits.max_hosts)
        self.scorer = make_scorer(self.bundle, self.windows, self.judge)

    def init_incidents(self) -> None:
        """The evidence rule, the site profile (learning) and the operator's allow rules: one :class:`FlowJudge`."""
        from edgebot.allow import AllowList
        from edgebot.judge import FlowJudge
        from edgebot.site import SiteProfile

        cfg = self.cfg
        inc = cfg.incidents
        state_dir = cfg.state_path()
        settings = cfg.site.settings()
        if self._persist_site and settings.learn_s + settings.device_learn_s > 0:
            site = SiteProfile.load(state_dir, self.bundle.bundle_id, self.bundle.threshold, settings)
        else:
            site = SiteProfile(self.bundle.bundle_id, self.bundle.threshold, settings)
        self.judge = FlowJudge.build(
            cfg.gateway_id, {"id": self.bundle.bundle_id, "version": self.bundle.version}, self.threshold,
            inc.rule(), update_interval_s=inc.update_interval_s, quiet_period_s=inc.quiet_period_s,
            max_peers_listed=inc.max_peers, site=site, allow=AllowList(state_dir))
        self.incidents = self.judge.tracker
        self.site = self.judge.site
        from edgebot.site import RecentIncidents

        self.recent = RecentIncidents(state_dir)
        if self.site is not None:
            log.info("site learning: %s, %d device(s) known, profile %s", "on", len(self.site.devices),
                     "kept in " + str(state_dir) if self._persist_site else "not kept (file replay)")

    @property
    def _persist_site(self) -> bool:
        return self.cfg.persist_site()

    def init_sinks(self) -> None:
        if self.sink is None:
            from edgebot.edge.sinks import build_sinks

            self.sink = build_sinks(self.cfg)

    def init_commands(self) -> None:
        """MQTT sinks take operator commands (``<prefix>/<gw>/cmd``); they are carried out in :meth:`housekeeping`."""
        from edgebot.edge.sinks.mqtt_commands import attach_commands

        self.commands = attach_commands(self.sink, self.judge, self.cfg.state_path(), self._publish)

    def init_source(self) -> None:
        if self.source is None:
            from edgebot.edge.sources import build_source

            profile = getattr(self.bundle, "profile", None)
            self.source = build_source(self.cfg, profile=profile.name if profile is not None else None)
        self.summary.source = getattr(self.source, "description", type(self.source).__name__)

    def init_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def init_gc(self) -> None:
        """Move what lives as long as the agent (modules, bundle, config) out of the cyclic
        collector's way, so its full collections during a run scan only what the run made."""
        gc.freeze()

    def start_sinks(self) -> None:
        self.sink.start()

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        log.warning("signal %d: flushing and stopping", signum)
        self.summary.stopped_by_signal = True
        self._stop.set()
        stop = getattr(self.source, "stop", None)
        if stop is not None:
            stop()

    def stop(self) -> None:
        """Ask the run loop to finish (thread-safe)."""
        self._stop.set()
        stop = getattr(self.source, "stop", None)
        if stop is not None:
            stop()

    # ----------------------------------------------------------------------------------- loop
    def run(self) -> AgentSummary:
        """Consume the source until it ends or :meth:`stop` is called; returns the summary."""
        batch_size = self.cfg.scoring.batch_size
        max_delay = self.cfg.scoring.max_batch_delay_s
        stats_every = self._stats_interval()
        t0 = time.perf_counter()
        self._last_stats = t0
        try:
            for item in self.source:
                now = time.perf_counter()
                if item is None:  # a tick: the source is idle or goes back to work; score what waits
                    self.score_pending()
                    self.check_unanswered()
                else:
                    self._pending.append(item)
                    self._pending_t.append(now)
                    if len(self._pending) >= batch_size or now - self._pending_t[0] >= max_delay:
                        self.score_pending()
                if now - self._last_housekeeping >= HOUSEKEEPING_S:
                    self.housekeeping(now)
                if stats_every and now - self._last_stats >= stats_every:
                    self.publish_stats(now - t0)
                if self._stop.is_set():
                    break
            self.score_pending()
            if self._stop.is_set():  # SIGINT/SIGTERM: no incident stays ON (retained HA state) after we go
                self._publish(self.incidents.close_all("agent stopped"))
            else:
                self._publish(self.incidents.close_all("source ended"))
                self.await_sink()
            self.summary.seconds = time.perf_counter() - t0
        finally:
            self.close()
        return self.summary

    def score_pending(self) -> None:
        """Score the pending micro-batch with the bundle's scorer and publish the incident messages."""
        if not self._pending:
            return
        pending, pending_t = self._pending, self._pending_t
        self._pending, self._pending_t = [], []
        messages = self.scorer.score(pending)
        self._flows += len(pending)
        self._publish(messages)
        # latency: from the source handing over the flow to its verdict being published (or not needed)
        done = time.perf_counter()
        self._latencies.extend(pending_t, done)
        self.sink.check()  # refused credentials or TLS end the run with a clear error

    def check_unanswered(self) -> None:
        """Every :data:`UNANSWERED_EVERY_S` of network time: the oneway rule on the metered source's
        flows still in progress (:meth:`edgebot.edge.meter.FlowMeter.unanswered`), so that a flood is
        reported while it lasts, not when it ends. Sources without a meter (Zeek logs, CSV) have none."""
        meter = getattr(self.source, "meter", None)
        if meter is None or self.judge is None or self.scorer is None or self.scorer.layout != "host-windows":
            return
        clock = meter.clock
        if clock - self._last_unanswered < UNANSWERED_EVERY_S:
            return
        self._last_unanswered = clock
        judge = self.judge
        flows = meter.unanswered(judge.tracker.rule.oneway_pps)
        if not flows:
            return
        self.score_pending()  # the flows that ended before go first
        messages: list[dict] = []
        for u in flows:
            messages.extend(judge.observe_unanswered(u.orig_h, clock, u.resp_h, u.resp_p, u.proto, u.pps, u.start))
        self._publish(messages)

    def housekeeping(self, now: float) -> None:
        """Once a second: carry out MQTT commands, apply changed allow rules, look at the unanswered
        flows in progress; save the site profile every ``site.save_interval_s``."""
        self._last_housekeeping = now
        if self.judge is None:
            return
        self.check_unanswered()
        if self.commands is not None:
            self.commands.run_pending()
        self._publish(self.judge.apply_allow_changes())
        state_dir = self.cfg.state_path()
        if self.site is not None:
            from edgebot.site import take_reset_request

            try:
                hosts = take_reset_request(state_dir)
            except OSError:
                hosts = None
            for host in hosts or []:
                n = self.site.reset(host)
                log.warning("site reset requested: %s (%d device(s) forgotten); learning starts over",
                            host or "whole site", n)
        if self.site is not None and self._persist_site and self.site.dirty and \
                now - self._last_site_save >= self.site.settings.save_interval_s:
            self.save_site(now)
        if self.recent is not None and self.recent.dirty:
            self._save_recent()

    def _save_recent(self) -> None:
        try:
            self.recent.save()
        except OSError as exc:
            log.warning("cannot save recent incidents in %s: %s", self.cfg.state_path(), exc)
            self.recent.dirty = False

    def save_site(self, now: Optional[float] = None) -> None:
        """Write the site profile to the state dir (a failure is logged, never fatal)."""
        self._last_site_save = time.perf_counter() if now is None else now
        try:
            self.site.save(self.cfg.state_path())
        except OSError as exc:
            log.warning("cannot save the site profile in %s: %s", self.cfg.state_path(), exc)

    def _publish(self, messages: list[dict]) -> None:
        for msg in messages:
            self._incident_latest[msg["incident_id"]] = msg
            if msg["type"] == "new" and self.recent is not None:
                self.recent.add(msg)
            log.info("incident %s %s host %s score %.3f flows %d", msg["type"], msg["incident_id"], msg["host"],
                     msg["score"], msg["flows"])
            self.sink.publish_incident(msg)

    def flagged_hosts(self) -> dict[str, dict]:
        """Per flagged host: highest score, first seen, flows and malicious flows over its incidents."""
        hosts: dict[str, dict] = {}
        for msg in self._incident_latest.values():
            h = hosts.setdefault(msg["host"], {"score": 0.0, "first_seen": msg["first_seen"], "flows": 0,
                                               "malicious_flows": 0, "incidents": 0})
            h["score"] = max(h["score"], msg["score"])
            h["first_seen"] = min(h["first_seen"], msg["first_seen"])
            h["flows"] += msg["flows"]
            h["malicious_flows"] += msg["malicious_flows"]
            h["incidents"] += 1
        return hosts

    def _stats_interval(self) -> float:
        return float(self.cfg.mqtt.stats_interval_s)  # in [mqtt], but the stats go to every sink

    def stats(self, elapsed: float) -> dict:
        src = self.source.stats() if hasattr(self.source, "stats") else {}
        sink = self.sink.stats() if hasattr(self.sink, "stats") else {}
        return {
            "gateway_id": self.cfg.gateway_id,
            "flows": self._flows,
            "packets": src.get("packets", 0),
            "flows_per_s": self._flows / elapsed if elapsed > 0 else 0.0,
            "packets_per_s": src.get("packets", 0) / elapsed if elapsed > 0 else 0.0,
            "queue_depth": sink.get("queued", 0),
            "evictions": {"hosts": self.windows.evictions if self.windows is not None else 0,
                          "flows": src.get("flows_evicted", 0)},
            "open_incidents": self.incidents.open_incidents,
            "evidence": self.judge.stats() if self.judge is not None else {},
            "rss_mb": round(current_rss_mb(), 1),
            "time": time.time(),
        }

    def publish_stats(self, elapsed: float) -> None:
        self._last_stats = time.perf_counter()
        self.sink.check()  # refused credentials or TLS end the run with a clear error
        self.sink.publish_stats(self.stats(elapsed))

    #: Seconds to wait at the end of the input for a broker that was reachable to take the queue.
    drain_timeout_s = 30.0
    #: Seconds to wait at the end of the input for the first connection outcome (refused credentials -> exit 2).
    connect_wait_s = 10.0

    def _wait(self, seconds: float, done: Any) -> bool:
        """Call ``done(slice)`` in slices of 0.25 s until it is true, ``seconds`` pass or a signal arrives."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if done(min(0.25, remaining)):
                return True
        return False

    def await_sink(self) -> None:
        """At the end of the input: wait (bounded) for the sink to know whether it can deliver, then
        check it, so that refused credentials end a short run with exit 2 whatever the timing."""
        wait_ready = getattr(self.sink, "wait_ready", None)
        if wait_ready is not None:
            self._wait(self.connect_wait_s, wait_ready)
        self.sink.check()

    def _drain(self) -> None:
        """At the end of the input, give a broker we were connected to time to take the queue.

        A signal stops the wait at once (the queue keeps what is undelivered for the next start).
        """
        if self.summary.stopped_by_signal or self._stop.is_set():
            return
        stats = self.sink.stats()
        parts = stats.get("sinks", [stats]) if isinstance(stats.get("sinks"), list) else [stats]
        if stats.get("queued", 0) and any(p.get("connects", 0) for p in parts if isinstance(p, dict)):
            log.info("waiting up to %.0f s for the broker to take %d queued message(s)", self.drain_timeout_s,
                     stats["queued"])
            if not self._wait(self.drain_timeout_s, self.sink.flush) and self._stop.is_set():
                log.warning("stopped while waiting for the broker; %d message(s) stay queued for the next start",
                            self.sink.stats().get("queued", 0))

    def close(self) -> None:
        """Flush sinks (publishing 'offline'), close the source; fill in the summary."""
        s = self.summary
        s.flows = self._flows
        src = self.source.stats() if self.source is not None and hasattr(self.source, "stats") else {}
        s.source_stats = src
        s.packets = int(src.get("packets", 0))
        s.incidents = dict(self.incidents.counts) if self.incidents else {}
        s.flagged_hosts = self.flagged_hosts()
        s.verdict_latency_ms = percentiles(self._latencies.values())
        s.evictions = {"hosts": self.windows.evictions if self.windows else 0, "flows": src.get("flows_evicted", 0)}
        if self.judge is not None:
            s.evidence = self.judge.stats()
            if self.site is not None and self._persist_site:
                self.save_site()
            if self.recent is not None and self.recent.dirty:
                self._save_recent()
        try:
            if self.sink is not None:
                self._drain()
                self.sink.close(timeout=2.0 if self._stop.is_set() else 5.0)
                s.sink = self.sink.stats() if hasattr(self.sink, "stats") else {}
        finally:
            if self.source is not None and hasattr(self.source, "close"):
                self.source.close()
        s.peak_rss_mb = peak_rss_mb()


def run_agent(cfg: AgentConfig) -> AgentSummary:
    """Build, start and run an agent from a validated config; returns its summary."""
    agent = Agent(cfg)
    agent.start()
    return agent.run()
