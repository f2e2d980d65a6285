"""Site learning: each device's own baseline and threshold, learned on the gateway, kept in the state dir.

A gateway first *learns* its site: for ``learn_s`` seconds of flow time from the first flow it
sees (and, for a device first seen later, ``device_learn_s`` from that device's first flow) it
scores everything and records, per device, the score distribution, usual peers, ports,
protocols and rate. It raises no incident for ordinary evidence then, only for high-confidence
evidence (see :class:`edgebot.incidents.EvidenceRule`). High-confidence flows are never learned
as normal: a flow that is confident at the bundle's threshold, or of a host whose evidence is at
incident strength or that has an open incident, is only counted. A device infected on day one is
reported and its C&C never becomes normal.

After learning, a device's threshold covers ``quantile`` of its learned scores (levels reached by
fewer than ``min_support`` flows are outliers), never below the bundle's threshold and never
above the ceiling (where confident flows start); flagged flows to its usual peers are never
*confident*. The profile is one JSON file in the state dir (atomic writes, mode 0600, versioned,
tied to the bundle id), bounded by ``max_devices`` and ``max_peers`` with evictions counted.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)

SCHEMA = "edgebot-site"
SCHEMA_VERSION = 1
PROFILE_FILE = "site-profile.json"

#: Score histogram over logit(score): bins of this width from -LOGIT_SPAN to +LOGIT_SPAN.
LOGIT_STEP = 0.25
LOGIT_SPAN = 12.0
_N_BINS = int(2 * LOGIT_SPAN / LOGIT_STEP)
#: Learned flows to one peer that make it a usual peer (a few early flows of a bot never do).
USUAL_PEER_FLOWS = 3


_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``"6h"``, ``"30m"``, ``"90s"``, ``"1d"`` or plain seconds (``"3600"``) -> seconds.

    Raises
    ------
    ValueError
        Not a non-negative duration; the message says the accepted forms.
    """
    t = str(text).strip().lower()
    unit = next((u for u in sorted(_UNITS, key=len, reverse=True) if t.endswith(u)), "")
    number = t[: len(t) - len(unit)].strip() if unit else t
    try:
        value = float(number) * (_UNITS[unit] if unit else 1.0)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration; use e.g. 6h, 30m, 90s, 1d or seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} is not a duration of zero or more")
    return value


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1.0 - 1e-9)
    return math.log(p / (1.0 - p))


def _bin(score: float) -> int:
    return min(_N_BINS - 1, max(0, int((_logit(score) + LOGIT_SPAN) / LOGIT_STEP)))


def _bin_upper(b: int) -> float:
    """The score at the upper edge of histogram bin ``b``."""
    x = (b + 1) * LOGIT_STEP - LOGIT_SPAN
    return 1.0 / (1.0 + math.exp(-x))


@dataclass(frozen=True)
class SiteSettings:
    """How the site is learned (the agent's ``[site]`` section; one default per setting).

    Attributes
    ----------
    learn_s
        Learning period of the whole site from its first flow (seconds of flow time); 0 disables learning.
    device_learn_s
        Learning period of a device first seen after the site's learning period.
    quantile
        A device's threshold covers this share of its learned scores.
    min_support
        Learned flows that must reach a score level for it to count as the device's normal.
    min_learned_flows
        Flows a device must have learned before its own threshold applies.
    max_threshold
        A learned threshold is never above this.
    max_devices, max_peers
        Devices kept (least recently seen evicted) and usual peers per device (least used evicted).
    save_interval_s
        Seconds of wall time between saves of the profile while running.
    """

    learn_s: float = 6 * 3600.0
    device_learn_s: float = 3600.0
    quantile: float = 0.99
    min_support: int = 5
    min_learned_flows: int = 20
    max_threshold: float = 0.999
    max_devices: int = 2048
    max_peers: int = 64
    save_interval_s: float = 60.0

    def __post_init__(self) -> None:
        if not (self.learn_s >= 0 and self.device_learn_s >= 0):
            raise ValueError("site.learn_s: must be at least 0 (and site.device_learn_s too)")
        if not 0.5 <= self.quantile <= 1.0:
            raise ValueError(f"site.quantile: must be in [0.5, 1], got {self.quantile}")
        if not 0.0 < self.max_threshold < 1.0:
            raise ValueError(f"site.max_threshold: must be in (0, 1), got {self.max_threshold}")
        for name in ("min_support", "min_learned_flows", "max_devices", "max_peers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"site.{name}: must be at least 1, got {getattr(self, name)}")

    @classmethod
    def from_config(cls, cfg: Any) -> "SiteSettings":
        """Settings from an object with the same attribute names (e.g. the agent's ``[site]``)."""
        names = cls.__dataclass_fields__
        return cls(**{n: getattr(cfg, n) for n in names if hasattr(cfg, n)})


@dataclass(slots=True)
class DeviceProfile:
    """What the site learned about one device (a host address)."""

    first_seen: float
    learn_until: float
    last_seen: float = 0.0
    learned_flows: int = 0
    skipped_flows: int = 0
    hist: dict[int, int] = field(default_factory=dict)
    peers: "OrderedDict[str, int]" = field(default_factory=OrderedDict)
    ports: dict[str, int] = field(default_factory=dict)
    protos: dict[str, int] = field(default_factory=dict)
    threshold: float = 0.0

    def to_json(self) -> dict:
        return {"first_seen": self.first_seen, "learn_until": self.learn_until, "last_seen": self.last_seen,
                "learned_flows": self.learned_flows, "skipped_flows": self.skipped_flows,
                "hist": {str(k): v for k, v in sorted(self.hist.items())}, "peers": dict(self.peers),
                "ports": self.ports, "protos": self.protos, "threshold": self.threshold}

    @classmethod
    def from_json(cls, d: dict) -> "DeviceProfile":
        return cls(first_seen=float(d["first_seen"]), learn_until=float(d["learn_until"]),
                   last_seen=float(d["last_seen"]), learned_flows=int(d["learned_flows"]),
                   skipped_flows=int(d.get("skipped_flows", 0)),
                   hist={int(k): int(v) for k, v in d["hist"].items()},
                   peers=OrderedDict((str(k), int(v)) for k, v in d["peers"].items()),
                   ports={str(k): int(v) for k, v in d["ports"].items()},
                   protos={str(k): int(v) for k, v in d["protos"].items()}, threshold=float(d["threshold"]))


class SiteProfile:
    """Per-device baselines and thresholds of one site, for one bundle.

    Parameters
    ----------
    bundle_id
        The bundle the scores come from; a profile of another bundle restarts learning.
    bundle_threshold
        The bundle's threshold (a device's threshold is never below it).
    settings
        :class:`SiteSettings`.
    ceiling
        A learned threshold is never above this (default ``settings.max_threshold``); the
        :class:`edgebot.judge.FlowJudge` lowers it to where the evidence rule's confident flows
        start, so learning absorbs borderline scores only and confident flows always count.
    """

    def __init__(self, bundle_id: str, bundle_threshold: float, settings: Optional[SiteSettings] = None,
                 ceiling: Optional[float] = None):
        self.bundle_id = bundle_id
        self.bundle_threshold = float(bundle_threshold)
        self.settings = settings or SiteSettings()
        self.ceiling = self.settings.max_threshold if ceiling is None else min(float(ceiling),
                                                                               self.settings.max_threshold)
        self.site_start: Optional[float] = None
        self.devices: OrderedDict[str, DeviceProfile] = OrderedDict()
        self.evicted = 0
        self.resets = 0
        self.dirty = False

    # ------------------------------------------------------------------------------ queries
    @property
    def enabled(self) -> bool:
        return self.settings.learn_s > 0 or self.settings.device_learn_s > 0

    def site_learning(self, ts: float) -> bool:
        """True while the site as a whole is in its learning period at flow time ``ts``."""
        return self.site_start is None or ts < self.site_start + self.settings.learn_s

    def learning(self, host: str, ts: float) -> bool:
        """True while ``host`` is learning at flow time ``ts`` (a device not seen yet would be)."""
        if not self.enabled:
            return False
        dev = self.devices.get(host)
        if dev is None:
            return True
        return ts < dev.learn_until

    def threshold(self, host: str, ts: Optional[float] = None) -> float:
        """``host``'s threshold at flow time ``ts`` (its last flow when None): the bundle's while it
        learns (or when it learned too little), then its own."""
        dev = self.devices.get(host)
        if dev is None:
            return self.bundle_threshold
        return self.device_threshold(dev, dev.last_seen if ts is None else ts)

    def device_threshold(self, dev: DeviceProfile, ts: float) -> float:
        """A device's threshold at flow time ``ts`` (see :meth:`threshold`)."""
        if ts < dev.learn_until:
            return self.bundle_threshold
        return max(self.bundle_threshold, dev.threshold)

    def is_usual_peer(self, host: str, peer: str, ts: Optional[float] = None) -> bool:
        """True when ``host`` has finished learning at ``ts`` and talked to ``peer`` (``"ip:port"``) in
        at least :data:`USUAL_PEER_FLOWS` learned flows."""
        dev = self.devices.get(host)
        if dev is None:
            return False
        when = dev.last_seen if ts is None else ts
        return when >= dev.learn_until and dev.peers.get(peer, 0) >= USUAL_PEER_FLOWS

    # ------------------------------------------------------------------------------ learning
    def device(self, host: str, ts: float) -> DeviceProfile:
        """``host``'s profile, created (with its learning window) at its first flow."""
        dev = self.devices.get(host)
        if dev is not None:
            self.devices.move_to_end(host)
            if ts > dev.last_seen:
                dev.last_seen = ts
            return dev
        if self.site_start is None:
            self.site_start = ts
        s = self.settings
        site_end = self.site_start + s.learn_s
        learn_until = site_end if ts < site_end else ts + s.device_learn_s
        dev = self.devices[host] = DeviceProfile(first_seen=ts, learn_until=learn_until, last_seen=ts)
        if len(self.devices) > s.max_devices:
            self._evict_one()
        self.dirty = True
        return dev

    #: Least recently seen devices searched for one that learned little, before the oldest goes.
    EVICTION_SCAN = 64

    def _evict_one(self) -> None:
        """Drop the least recently seen device that learned fewer than ``min_learned_flows`` flows
        (among the :attr:`EVICTION_SCAN` oldest), else the oldest: a flood of one-flow sources churns
        through its own kind and never evicts the devices the site has learned."""
        devices = self.devices
        floor = self.settings.min_learned_flows
        victim = None
        for i, (host, dev) in enumerate(devices.items()):
            if i >= self.EVICTION_SCAN:
                break
            if dev.learned_flows < floor:
                victim = host
                break
        if victim is None:
            victim = next(iter(devices))
        del devices[victim]
        self.evicted += 1

    def learn(self, host: str, ts: float, score: float, dest: str, port: int, proto: str, *, normal: bool) -> None:
        """Record one scored flow of ``host`` at flow time ``ts``.

        ``normal`` is False for a flow that must not be learned (its host's evidence is at incident
        strength or it has an open incident); it is counted as skipped.
        """
        self.learn_into(self.device(host, ts), ts, score, dest, port, proto, normal=normal)

    def learn_into(self, dev: DeviceProfile, ts: float, score: float, dest: str, port: int, proto: str, *,
                   normal: bool) -> None:
        """:meth:`learn` for a profile the caller already holds (from :meth:`device`)."""
        if ts >= dev.learn_until:
            return
        if not normal:
            dev.skipped_flows += 1
            return
        dev.learned_flows += 1
        b = _bin(score)
        dev.hist[b] = dev.hist.get(b, 0) + 1
        key = f"{dest}:{port}"
        peers = dev.peers
        if key in peers:
            peers[key] += 1
            peers.move_to_end(key)
        else:
            if len(peers) >= self.settings.max_peers:
                peers.popitem(last=False)
            peers[key] = 1
        if len(dev.ports) < 4 * self.settings.max_peers or str(port) in dev.ports:
            dev.ports[str(port)] = dev.ports.get(str(port), 0) + 1
        dev.protos[proto] = dev.protos.get(proto, 0) + 1
        dev.threshold = self._learned_threshold(dev)
        self.dirty = True

    def _learned_threshold(self, dev: DeviceProfile) -> float:
        """The level the device's normal flows stay under: all but the top ``max((1 - quantile) * n,
        min_support - 1)`` learned scores (a level reached by fewer than ``min_support`` flows is an
        outlier, not the device's normal), never below the bundle's threshold, at most the ceiling."""
        s = self.settings
        if dev.learned_flows < s.min_learned_flows:
            return self.bundle_threshold
        outliers = max(int((1.0 - s.quantile) * dev.learned_flows), s.min_support - 1)
        keep = dev.learned_flows - outliers
        seen = 0
        level = self.bundle_threshold
        for b in sorted(dev.hist):
            seen += dev.hist[b]
            if seen >= keep:
                level = _bin_upper(b)
                break
        return min(self.ceiling, max(self.bundle_threshold, level))

    def reset(self, host: Optional[str] = None) -> int:
        """Forget one device (it learns again from its next flow) or the whole site; returns devices dropped."""
        self.dirty = True
        self.resets += 1
        if host is not None:
            return 1 if self.devices.pop(host, None) is not None else 0
        n = len(self.devices)
        self.devices.clear()
        self.site_start = None
        return n

    # ------------------------------------------------------------------------------ reports
    def status(self, now: Optional[float] = None) -> dict:
        """Devices, learning state and thresholds (``edgebot site status``)."""
        devices = {}
        for host, dev in self.devices.items():
            ref = dev.last_seen if now is None else now
            span_h = max((min(dev.last_seen, dev.learn_until) - dev.first_seen) / 3600.0, 1e-9)
            devices[host] = {
                "learning": ref < dev.learn_until,
                "learn_until": dev.learn_until,
                "first_seen": dev.first_seen,
                "last_seen": dev.last_seen,
                "learned_flows": dev.learned_flows,
                "skipped_flows": dev.skipped_flows,
                "threshold": round(max(self.bundle_threshold, dev.threshold), 6),
                "own_threshold": dev.learned_flows >= self.settings.min_learned_flows,
                "flows_per_hour": round(dev.learned_flows / span_h, 2) if dev.learned_flows else 0.0,
                "usual_peers": len(dev.peers),
                "top_ports": [p for p, _ in sorted(dev.ports.items(), key=lambda kv: -kv[1])[:5]],
                "protocols": dict(dev.protos),
            }
        return {"bundle_id": self.bundle_id, "bundle_threshold": self.bundle_threshold,
                "site_start": self.site_start,
                "site_learn_until": None if self.site_start is None else self.site_start + self.settings.learn_s,
                "devices": devices, "evicted": self.evicted, "settings": self.settings.__dict__}

    # ------------------------------------------------------------------------------ persistence
    def to_json(self) -> dict:
        return {"schema": SCHEMA, "version": SCHEMA_VERSION, "bundle_id": self.bundle_id,
                "bundle_threshold": self.bundle_threshold, "site_start": self.site_start,
                "saved": time.time(), "evicted": self.evicted,
                "devices": {h: d.to_json() for h, d in self.devices.items()}}

    def save(self, state_dir: Path) -> Path:
        """Write the profile atomically (mode 0600) into ``state_dir``; returns its path."""
        from edgebot.statefiles import atomic_write_private

        path = Path(state_dir) / PROFILE_FILE
        atomic_write_private(path, (json.dumps(self.to_json(), separators=(",", ":")) + "\n").encode())
        self.dirty = False
        return path

    @classmethod
    def load(cls, state_dir: Path, bundle_id: str, bundle_threshold: float,
             settings: Optional[SiteSettings] = None) -> "SiteProfile":
        """The profile in ``state_dir`` for this bundle, or a new one.

        A corrupt, foreign or newer-version file, or one learned with another bundle, is moved
        aside with a one-line warning and learning starts over; never an exception.
        """
        profile = cls(bundle_id, bundle_threshold, settings)
        path = Path(state_dir) / PROFILE_FILE
        if not path.exists():
            return profile
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            problem = _check(data, bundle_id)
            if problem is None:
                profile.site_start = None if data["site_start"] is None else float(data["site_start"])
                profile.evicted = int(data.get("evicted", 0))
                for host, d in data["devices"].items():
                    profile.devices[str(host)] = DeviceProfile.from_json(d)
                while len(profile.devices) > profile.settings.max_devices:
                    profile._evict_one()
                return profile
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            problem = f"unreadable ({type(exc).__name__}: {exc})"
        aside = path.with_name(f"{path.name}.{problem.split()[0].strip(':,()')}-{int(time.time())}")
        try:
            os.replace(path, aside)
        except OSError:
            aside = path
        log.warning("site profile %s %s; moved to %s, learning starts over", path, problem, aside.name)
        return cls(bundle_id, bundle_threshold, settings)


def _check(data: Any, bundle_id: str) -> Optional[str]:
    """Why a loaded profile cannot be used (None when it can)."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return "foreign (not an edgebot site profile)"
    version = data.get("version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        return f"newer (version {version!r}, this edgebot reads {SCHEMA_VERSION})"
    if version < SCHEMA_VERSION:
        return f"older (version {version})"
    if data.get("bundle_id") != bundle_id:
        return f"stale (learned with bundle {data.get('bundle_id')!r}, the agent runs {bundle_id!r})"
    if not isinstance(data.get("devices"), dict):
        return "corrupt (no devices table)"
    return None


# ---------------------------------------------------------------------------------- operator requests
RESET_REQUEST = "site-reset.request.json"
RECENT_INCIDENTS = "incidents-recent.json"
#: Incidents kept in :data:`RECENT_INCIDENTS` (for ``edgebot allow --incident``).
MAX_RECENT_INCIDENTS = 256


def request_reset(state_dir: Path, host: Optional[str] = None) -> bool:
    """Ask for a site (or one device) reset: a request file a running agent applies within a second.

    The saved profile is changed too, for an agent that is not running. Returns True when a saved
    profile was changed.
    """
    from edgebot.statefiles import atomic_write_private

    root = Path(state_dir)
    req_path = root / RESET_REQUEST
    try:
        req = json.loads(req_path.read_text(encoding="utf-8")) if req_path.exists() else {}
    except (OSError, ValueError):
        req = {}
    if not isinstance(req, dict):
        req = {}
    if host is None:
        req = {"all": True}
    elif not req.get("all"):
        req["hosts"] = sorted(set(req.get("hosts", [])) | {host})
    req["requested"] = time.time()
    atomic_write_private(req_path, json.dumps(req).encode())
    path = root / PROFILE_FILE
    if not path.exists():
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if host is None:
            data["devices"], data["site_start"] = {}, None
        elif host in data.get("devices", {}):
            del data["devices"][host]
        else:
            return False
        atomic_write_private(path, (json.dumps(data, separators=(",", ":")) + "\n").encode())
        return True
    except (OSError, ValueError, TypeError, KeyError):
        return False


def take_reset_request(state_dir: Path) -> Optional[list[Optional[str]]]:
    """The pending reset request (``[None]`` = the whole site, else hosts), removed; None if none."""
    path = Path(state_dir) / RESET_REQUEST
    if not path.exists():
        return None
    try:
        req = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        req = {"all": True}
    try:
        path.unlink()
    except OSError:
        pass
    if not isinstance(req, dict) or req.get("all"):
        return [None]
    return [str(h) for h in req.get("hosts", [])]


class RecentIncidents:
    """The last :data:`MAX_RECENT_INCIDENTS` incidents of a gateway, in the state dir (for ``allow --incident``)."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / RECENT_INCIDENTS
        self.items: OrderedDict[str, dict] = OrderedDict()
        self.dirty = False
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            for item in data.get("incidents", [])[-MAX_RECENT_INCIDENTS:]:
                self.items[str(item["incident_id"])] = item
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            pass

    def add(self, msg: dict) -> None:
        self.items[msg["incident_id"]] = {k: msg.get(k) for k in ("incident_id", "host", "opened", "rules", "peers",
                                                                    "severity")}
        self.items.move_to_end(msg["incident_id"])
        while len(self.items) > MAX_RECENT_INCIDENTS:
            self.items.popitem(last=False)
        self.dirty = True

    def save(self) -> None:
        from edgebot.statefiles import atomic_write_private

        atomic_write_private(self.path, json.dumps({"incidents": list(self.items.values())}).encode())
        self.dirty = False


def known_incident(state_dir: Path, incident_id: str) -> Optional[dict]:
    """A recent incident by id (or unique id prefix), None if unknown."""
    items = RecentIncidents(state_dir).items
    if incident_id in items:
        return items[incident_id]
    found = [v for k, v in items.items() if k.startswith(incident_id)]
    return found[0] if len(found) == 1 else None
