"""Replay a pcap file through the flow meter, as fast as the CPU allows, in packet time."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Dict, Iterator, Mapping, Optional

from edgebot.edge.plugins import Flag
from edgebot.edge.sources.base import SOURCES, FlowSource
from edgebot.errors import ConfigError, SourceError
from edgebot.flow import FlowRecord

if TYPE_CHECKING:  # imported where used: the config and `edgebot run --help` load this module
    from edgebot.edge.config import AgentConfig
    from edgebot.edge.meter import FlowMeter

logger = logging.getLogger(__name__)

#: Options a source passes through to :class:`~edgebot.edge.meter.FlowMeter`.
METER_OPTIONS = frozenset({"max_flows", "timeouts", "verify_checksums", "max_fragment_bytes", "max_fragmented",
                           "max_fragments_per_datagram", "fragment_timeout"})


def make_meter(meter_options: Optional[Mapping[str, Any]], source: str) -> FlowMeter:
    """Build a :class:`FlowMeter` from user options, turning mistakes into ``ConfigError``."""
    from edgebot.edge.meter import FlowMeter

    options = dict(meter_options or {})
    unknown = sorted(set(options) - METER_OPTIONS)
    if unknown:
        raise ConfigError(f"unknown meter option(s) {unknown}; known: {sorted(METER_OPTIONS)}")
    try:
        return FlowMeter(source=source, **options)
    except ValueError as exc:
        raise ConfigError(f"meter options: {exc}") from None


#: Bytes of pcap metered per step; smaller steps give the scorer a turn sooner (verdict latency).
CHUNK_BYTES = 256 * 1024


@SOURCES.register
class PcapSource(FlowSource):
    """Flows metered from a classic pcap file (gzip or xz compressed too).

    Time comes from the packet timestamps, so a day of traffic replays in seconds and
    every timeout fires exactly where it would have fired live. Flows are yielded as they
    complete, the remaining ones when the file ends.

    Parameters
    ----------
    path : str or os.PathLike
        The capture.
    meter_options : mapping, optional
        ``max_flows``, ``timeouts`` (e.g. ``{"udp_inactivity": 30}``), ``verify_checksums``, and
        the reassembly caps ``max_fragment_bytes``, ``max_fragmented``,
        ``max_fragments_per_datagram``, ``fragment_timeout`` (see :class:`FlowMeter`).

    Raises
    ------
    SourceError
        The file is missing, not a pcap, pcapng, or of an unsupported link type (raised
        here, not on first iteration). While iterating: the file is corrupt (compressed
        data that does not decompress, a damaged record header); raised only after every
        flow of the packets before the damage was yielded (and, with ``ticks``, a tick, so
        that the agent scores them first).
    ConfigError
        Unknown or invalid meter options.

    Notes
    -----
    Expiry costs one comparison per packet: the meter keeps Zeek's timers in a heap and
    only runs them when packet time passes the earliest one.
    """

    type = "pcap"
    order = 10
    location_doc = "A pcap/pcapng file replayed as fast as the CPU allows."
    flags = (Flag("--pcap", "source.pcap", "Replay a pcap (gz/xz ok) as fast as the CPU allows.", path=True),)

    @classmethod
    def from_config(cls, config: AgentConfig, *, profile: Optional[str] = None) -> PcapSource:
        """Replay ``[source] pcap`` with ``limits.max_active_flows``, yielding a tick after each chunk."""
        return cls(config.source.pcap, meter_options={"max_flows": config.limits.max_active_flows}, ticks=True)

    def __init__(self, path: str | os.PathLike, meter_options: Optional[Mapping[str, Any]] = None,
                 ticks: bool = False) -> None:
        from edgebot.edge.pcapfile import PcapReader

        self.path = os.fspath(path)
        self.ticks = ticks  # yield None after each chunk's flows (the agent scores then; lower latency)
        self._meter = make_meter(meter_options, self.path)
        self._reader = PcapReader(self.path)
        self._done = False
        self._damaged = 0

    @property
    def description(self) -> str:
        return f"pcap {self.path}"

    @property
    def meter(self) -> FlowMeter:
        """The meter (for its counters and settings)."""
        return self._meter

    def __iter__(self) -> Iterator[Optional[FlowRecord]]:
        if self._done:
            return
        meter, reader = self._meter, self._reader
        linktype = reader.linktype
        damage: Optional[SourceError] = None
        try:
            try:
                for buf, packets in reader.batches(chunk_size=CHUNK_BYTES):
                    yield from meter.add_batch(buf, packets, linktype)
                    if self.ticks:  # the consumer scores now instead of waiting through the next chunk,
                        yield None  # and looks at the flows in progress (Agent.check_unanswered)
            except SourceError as exc:  # corrupt file: what was metered before the damage still counts
                damage = exc
                self._damaged = 1
            yield from meter.flush()
            if damage is not None:
                if self.ticks:
                    yield None  # let the consumer score every flow before the error ends its loop
                raise damage
        finally:
            self._done = True
            reader.close()
        stats = self.stats()
        logger.info("%s: %d packets, %d flows (%d evicted, %d non-IP, %d truncated)", self.path,
                    stats["packets"], stats["flows_emitted"], stats["flows_evicted"],
                    stats["non_ip"], stats["truncated"])

    def stats(self) -> Dict[str, Any]:
        reader = self._reader.stats
        return {
            "type": self.type,
            "path": self.path,
            "records_read": reader.packets,
            "truncated_records": reader.truncated_records,
            "truncated_stream": reader.truncated_stream,
            "damaged": self._damaged,
            **self._meter.stats,
        }

    def close(self) -> None:
        self._reader.close()
