"""IPv4 fragment reassembly for the flow meter, with memory bounded by bytes, datagrams and pieces."""

from __future__ import annotations

import logging
import struct
from typing import Dict, List, Optional

logger = logging.getLogger(__name__)

__all__ = [
    "FragmentReassembler",
    "DEFAULT_MAX_FRAGMENT_BYTES",
    "DEFAULT_MAX_FRAGMENTED",
    "DEFAULT_MAX_FRAGMENTS_PER_DATAGRAM",
    "DEFAULT_FRAGMENT_TIMEOUT",
]

#: Bytes held for datagrams being reassembled, all datagrams together (Linux's
#: ``ipfrag_high_thresh`` is 4 MiB too). Bookkeeping counts ``PIECE_OVERHEAD`` per piece.
DEFAULT_MAX_FRAGMENT_BYTES = 4 * 1024 * 1024
#: Datagrams being reassembled at once.
DEFAULT_MAX_FRAGMENTED = 1000
#: Fragments one datagram may arrive in (a 64 KiB datagram over a 576-byte MTU takes 119;
#: FreeBSD's ``maxfragsperpacket`` is 16). More, including duplicates and overlaps, drops it.
DEFAULT_MAX_FRAGMENTS_PER_DATAGRAM = 128
#: Seconds after its first fragment an incomplete datagram is given up (Zeek's
#: ``frag_timeout`` is off by default; Linux uses 30 s).
DEFAULT_FRAGMENT_TIMEOUT = 60.0
#: What one stored piece costs beyond its payload (list slot, bytes object), counted in the cap.
PIECE_OVERHEAD = 100
#: The largest IPv4 datagram (``total length`` is 16 bits).
MAX_DATAGRAM = 65535


class _Datagram:
    """A datagram being reassembled: fragments stored without overlap, first arrival wins."""

    __slots__ = ("first_seen", "header", "size", "pieces", "held", "arrivals")

    def __init__(self, ts: float) -> None:
        self.first_seen = ts
        self.header: Optional[bytes] = None  # the IP header of the offset-0 fragment
        self.size: Optional[int] = None  # payload length, known once the last fragment came
        self.pieces: List[list] = []  # [start, data] sorted by start, never overlapping
        self.held = 0  # bytes charged to the reassembler's cap
        self.arrivals = 0


class FragmentReassembler:
    """Collect IPv4 fragments and hand back each datagram once it is complete.

    Follows Zeek's ``FragReassembler``: datagrams are keyed by (source, destination, IP id,
    protocol); the first bytes to arrive at a position win over later overlapping ones; the
    header is the offset-0 fragment's and the length comes from the fragment without More
    Fragments. The reassembled datagram gets a fresh total length, no fragment bits and a
    correct header checksum.

    Every table here is bounded, and each bound has a counter in :attr:`stats`:

    * ``max_bytes`` (default :data:`DEFAULT_MAX_FRAGMENT_BYTES`): bytes held for all pending
      datagrams together; the oldest datagrams are evicted to make room (``evicted``).
    * ``max_datagrams`` (default :data:`DEFAULT_MAX_FRAGMENTED`): pending datagrams; the
      oldest is evicted (``evicted``).
    * ``max_fragments`` (default :data:`DEFAULT_MAX_FRAGMENTS_PER_DATAGRAM`): fragments per
      datagram, counting duplicates and overlaps; beyond it the datagram is dropped
      (``too_many_fragments``).
    * a datagram that would reassemble past 65,535 bytes is dropped at the fragment that
      says so (``oversized``); as pieces never overlap, one datagram holds at most 64 KiB.
    * ``timeout`` (default :data:`DEFAULT_FRAGMENT_TIMEOUT`): a datagram still incomplete this
      long after its first fragment is dropped (``timed_out``).

    ``dropped`` is the sum of all five: datagrams given up before they were complete.

    Parameters
    ----------
    max_bytes, max_datagrams, max_fragments : int
        The caps above (positive; ``max_bytes`` at least 128 KiB so one datagram always fits).
    timeout : float
        Seconds, positive.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_FRAGMENT_BYTES, max_datagrams: int = DEFAULT_MAX_FRAGMENTED,
                 max_fragments: int = DEFAULT_MAX_FRAGMENTS_PER_DATAGRAM,
                 timeout: float = DEFAULT_FRAGMENT_TIMEOUT) -> None:
        for name, value, low in (("max_fragment_bytes", max_bytes, 2 * (MAX_DATAGRAM + 1)),
                                 ("max_fragmented", max_datagrams, 1),
                                 ("max_fragments_per_datagram", max_fragments, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0:
            raise ValueError(f"fragment_timeout must be a positive number of seconds, got {timeout!r}")
        self.max_bytes = max_bytes
        self.max_datagrams = max_datagrams
        self.max_fragments = max_fragments
        self.timeout = float(timeout)
        self._pending: Dict[bytes, _Datagram] = {}  # insertion order is first-seen order
        self._held = 0
        self.peak_bytes = 0
        self.evicted = 0
        self.oversized = 0
        self.too_many_fragments = 0
        self.timed_out = 0

    @property
    def pending(self) -> int:
        """Datagrams being reassembled."""
        return len(self._pending)

    @property
    def held_bytes(self) -> int:
        """Bytes charged to ``max_bytes`` right now."""
        return self._held

    @property
    def stats(self) -> Dict[str, int]:
        """Counters (see the class docstring), with the ``fragment`` prefix the meter reports."""
        return {
            "fragments_dropped": self.evicted + self.oversized + self.too_many_fragments + self.timed_out,
            "fragments_evicted": self.evicted,
            "fragments_oversized": self.oversized,
            "fragments_too_many": self.too_many_fragments,
            "fragments_timed_out": self.timed_out,
            "fragments_pending": len(self._pending),
            "fragment_bytes": self._held,
            "fragment_bytes_peak": self.peak_bytes,
        }

    def clear(self) -> None:
        """Forget every pending datagram (end of input); counters stay."""
        self._pending.clear()
        self._held = 0

    def expire(self, now: float) -> None:
        """Drop the datagrams whose first fragment is ``timeout`` seconds older than ``now``."""
        pending = self._pending
        limit = now - self.timeout
        while pending:
            key = next(iter(pending))
            if pending[key].first_seen > limit:
                break
            self._drop(key)
            self.timed_out += 1

    def add(self, buf: bytes, l3: int, ihl: int, total: int, ts: float) -> Optional[bytes]:
        """Take the fragment whose IP header is at ``buf[l3:]``; return the datagram it completes.

        Parameters
        ----------
        buf : bytes
            Buffer holding the fragment, fully captured.
        l3, ihl, total : int
            Offset of its IP header, header length and total length (checked by the caller).
        ts : float
            Its capture time.

        Returns
        -------
        bytes or None
            The reassembled IPv4 datagram, or None while it is incomplete (or was dropped).
        """
        pending = self._pending
        if pending:
            oldest = pending[next(iter(pending))]
            if oldest.first_seen + self.timeout <= ts:
                self.expire(ts)
        key = buf[l3 + 12:l3 + 20] + buf[l3 + 4:l3 + 6] + buf[l3 + 9:l3 + 10]
        entry = pending.get(key)
        offset = (((buf[l3 + 6] & 0x1F) << 8) | buf[l3 + 7]) << 3
        length = total - ihl
        last = not buf[l3 + 6] & 0x20
        if ihl + offset + length > MAX_DATAGRAM:
            # It can never be delivered: drop what was gathered, keep nothing of this one.
            self.oversized += 1
            if entry is not None:
                self._drop(key)
            logger.debug("dropped a fragmented datagram that reassembles past %d bytes", MAX_DATAGRAM)
            return None
        if entry is None:
            if len(pending) >= self.max_datagrams:
                self._drop(next(iter(pending)))
                self.evicted += 1
            entry = pending[key] = _Datagram(ts)
        entry.arrivals += 1
        if entry.arrivals > self.max_fragments:
            self._drop(key)
            self.too_many_fragments += 1
            return None
        if offset == 0 and entry.header is None:
            entry.header = buf[l3:l3 + ihl]
            if not self._charge(entry, key, ihl):
                return None
        if last:
            entry.size = offset + length
        if not self._insert(entry, key, offset, buf, l3 + ihl, l3 + total):
            return None
        header, size = entry.header, entry.size
        if header is None or size is None:
            return None
        reach = 0
        parts = []
        for start, piece in entry.pieces:
            if reach >= size:
                break
            if start > reach:
                return None  # a hole: wait for more
            parts.append(piece)
            reach = start + len(piece)
        if reach < size:
            return None
        self._drop(key)
        if len(header) + size > MAX_DATAGRAM:  # the first fragment's header is longer than this one's
            self.oversized += 1
            return None
        hdr = bytearray(header)
        struct.pack_into("!HHH", hdr, 2, len(hdr) + size, (hdr[4] << 8) | hdr[5], 0)
        struct.pack_into("!H", hdr, 10, 0)
        struct.pack_into("!H", hdr, 10, ~(int.from_bytes(hdr, "big") % 65535) & 0xFFFF)
        return bytes(hdr) + b"".join(parts)[:size]

    # -- internals -------------------------------------------------------------------------

    def _insert(self, entry: _Datagram, key: bytes, start: int, buf: bytes, lo: int, hi: int) -> bool:
        """Store the bytes of ``buf[lo:hi]`` (datagram offset ``start``) not held yet.

        Returns False when the datagram was evicted to respect ``max_bytes``.
        """
        end = start + (hi - lo)
        pieces = entry.pieces
        new: List[list] = []
        pos = start
        for s, piece in pieces:
            e = s + len(piece)
            if e <= pos:
                continue
            if s >= end:
                break
            if s > pos:
                new.append([pos, buf[lo + pos - start:lo + s - start]])
            pos = max(pos, e)
            if pos >= end:
                break
        if pos < end:
            new.append([pos, buf[lo + pos - start:hi]])
        if not new:
            return True
        pieces.extend(new)
        pieces.sort(key=_first)
        return self._charge(entry, key, sum(len(p) + PIECE_OVERHEAD for _, p in new))

    def _charge(self, entry: _Datagram, key: bytes, nbytes: int) -> bool:
        """Count ``nbytes`` more for ``entry``, evicting the oldest other datagrams past the cap.

        Returns False when ``entry`` itself had to go (only possible with a ``max_fragments``
        so large that one datagram's bookkeeping outgrows ``max_bytes``).
        """
        entry.held += nbytes
        self._held += nbytes
        pending = self._pending
        while self._held > self.max_bytes:
            victim = next((k for k, d in pending.items() if d is not entry), key)
            self._drop(victim)
            self.evicted += 1
            if victim == key:
                return False
        if self._held > self.peak_bytes:
            self.peak_bytes = self._held
        return True

    def _drop(self, key: bytes) -> None:
        entry = self._pending.pop(key)
        self._held -= entry.held


def _first(piece: list) -> int:
    return piece[0]
