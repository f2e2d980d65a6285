"""A fast reader for classic libpcap files (gzip/xz transparent), without libpcap or dpkt."""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import lzma
import os
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator, List, Optional, Tuple

from edgebot.errors import SourceError
from edgebot.readers.common import sniff_compression

logger = logging.getLogger(__name__)

#: Link-layer header types (https://www.tcpdump.org/linktypes.html) the meter decodes.
LINKTYPE_NULL = 0  # BSD loopback: 4-byte address family in host byte order
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_OPENBSD = 12  # DLT_RAW on some BSDs
LINKTYPE_RAW_BSD = 14
LINKTYPE_RAW = 101  # raw IPv4 or IPv6, version from the first nibble
LINKTYPE_LOOP = 108  # OpenBSD loopback: 4-byte address family in network byte order
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
SUPPORTED_LINKTYPES = frozenset({
    LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW_OPENBSD, LINKTYPE_RAW_BSD, LINKTYPE_RAW,
    LINKTYPE_LOOP, LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2,
})

_MAGIC_USEC = 0xA1B2C3D4
_MAGIC_NSEC = 0xA1B23C4D
_MAGIC_PCAPNG = 0x0A0D0D0A
_GLOBAL_HEADER_LEN = 24
_RECORD_HEADER_LEN = 16
#: A record claiming more than this many captured bytes means the file is corrupt.
_MAX_RECORD_LEN = 16 * 1024 * 1024
_CHUNK_SIZE = 1 << 20
#: What a broken compressed stream raises while it is read (``EOFError``: it ends early).
_STREAM_ERRORS = (EOFError, lzma.LZMAError, zlib.error, OSError)

#: One packet of a batch: (timestamp, offset of the frame in the batch buffer,
#: captured length, length on the wire).
PacketRef = Tuple[float, int, int, int]


@dataclass
class PcapStats:
    """What a :class:`PcapReader` has read so far."""

    packets: int = 0
    bytes: int = 0  # captured bytes of all records
    truncated_records: int = 0  # a record cut short at the end of the file (0 or 1)
    truncated_stream: int = 0  # the compressed stream ended before its end marker (0 or 1)


def _open_decompressed(path: str) -> Tuple[io.BufferedIOBase, BinaryIO, Optional[str]]:
    """Open ``path`` for binary reading, decompressing gzip, xz or bzip2 by their magic bytes.

    Returns the stream to read, the raw file underneath (both must be closed) and the
    compression's tool name (``"gzip"``, ``"xz"``, ``"bzip2"``) or None.
    """
    try:
        raw = open(path, "rb")
    except FileNotFoundError:
        raise SourceError(f"{path}: no such pcap file") from None
    except IsADirectoryError:
        raise SourceError(f"{path}: is a directory, expected a pcap file") from None
    except PermissionError:
        raise SourceError(f"{path}: permission denied; make the pcap readable by this user") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot open ({exc.strerror or exc})") from None
    head = raw.read(10)
    raw.seek(0)
    compression = sniff_compression(head)
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw, "gzip"
    if compression == "xz":
        return lzma.LZMAFile(raw, mode="rb"), raw, "xz"
    if compression == "bzip2":
        return bz2.BZ2File(raw, mode="rb"), raw, "bzip2"
    return raw, raw, None


class PcapReader:
    """Read packets from a classic libpcap file, fast.

    Handles both byte orders, microsecond and nanosecond timestamps, and gzip, xz or bzip2
    compression (detected from the magic bytes, not the file name). A record cut short at
    the end of the file (a capture that was killed, a copy that was truncated) is tolerated:
    it is counted in ``stats.truncated_records`` and a warning is logged once; so is a
    compressed stream that ends early (``stats.truncated_stream``).

    Corruption (compressed data that does not decompress or fails its checksum, a record
    header claiming more than 16 MiB) ends the iteration of :meth:`batches` with a
    one-line :class:`SourceError` naming the file, raised only after every complete
    packet before the damage was yielded, so that a consumer loses nothing it had.

    Parameters
    ----------
    path : str or os.PathLike
        The capture to read.

    Raises
    ------
    SourceError
        The file is missing, is not a pcap file, is pcapng, or has a link type the meter
        does not decode.

    Examples
    --------
    >>> with PcapReader("trace.pcap") as reader:          # doctest: +SKIP
    ...     for ts, frame in reader:
    ...         ...
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self.stats = PcapStats()
        self._file, self._raw, self.compression = _open_decompressed(self.path)
        try:
            header = self._file.read(_GLOBAL_HEADER_LEN)
        except _STREAM_ERRORS as exc:
            self.close()
            raise SourceError(f"{self.path}: not a pcap file (cannot decompress: {exc})") from None
        try:
            self._parse_global_header(header)
        except SourceError:
            self.close()
            raise

    def _parse_global_header(self, header: bytes) -> None:
        if len(header) < 4:
            raise SourceError(f"{self.path}: not a pcap file (only {len(header)} bytes)")
        magic_le = struct.unpack_from("<I", header)[0]
        if magic_le == _MAGIC_PCAPNG:
            raise SourceError(
                f"{self.path}: is pcapng, which is not supported; convert it with "
                f"`editcap -F pcap {self.path} out.pcap`"
            )
        if magic_le in (_MAGIC_USEC, _MAGIC_NSEC):
            endian = "<"
        elif struct.unpack_from(">I", header)[0] in (_MAGIC_USEC, _MAGIC_NSEC):
            endian = ">"
        else:
            raise SourceError(f"{self.path}: not a pcap file (magic 0x{header[:4].hex()})")
        if len(header) < _GLOBAL_HEADER_LEN:
            raise SourceError(f"{self.path}: not a pcap file (header cut short at {len(header)} bytes)")
        magic, major, minor, _zone, _sigfigs, snaplen, network = struct.unpack(endian + "IHHiIII", header)
        self.byte_order = "little" if endian == "<" else "big"
        self.nanosecond = magic == _MAGIC_NSEC
        self.version = (major, minor)
        self.snaplen = snaplen
        # The upper bits of the link-type field carry FCS information (LINKTYPE_MASK).
        self.linktype = network & 0x0FFFFFFF
        if self.linktype not in SUPPORTED_LINKTYPES:
            raise SourceError(
                f"{self.path}: link type {self.linktype} is not supported "
                f"(supported: {sorted(SUPPORTED_LINKTYPES)}); re-capture on an Ethernet interface"
            )
        self._record = struct.Struct(endian + "IIII")

    # -- reading ---------------------------------------------------------------------------

    def batches(self, chunk_size: int = _CHUNK_SIZE) -> Iterator[Tuple[bytes, List[PacketRef]]]:
        """Yield ``(buffer, packets)`` pairs, reading about ``chunk_size`` bytes at a time.

        ``packets`` lists ``(ts, offset, caplen, wirelen)`` for each complete record whose
        frame lies in ``buffer`` at ``buffer[offset:offset + caplen]``. This is the fast path:
        frames are not copied out of the buffer.
        """
        unpack_from = self._record.unpack_from
        scale = 1e-9 if self.nanosecond else 1e-6
        read1 = self._file.read1
        stats = self.stats
        pending = b""
        broken: Optional[BaseException] = None  # the stream failed to decompress
        bad_record = 0  # caplen of a damaged record header
        last = False
        while not last:
            # read1 decompresses one step at a time: when the stream breaks, the bytes
            # decompressed before the damage are kept (read() would drop the whole chunk).
            parts: List[bytes] = []
            got = 0
            try:
                while got < chunk_size:
                    part = read1(chunk_size - got)
                    if not part:
                        last = True
                        break
                    parts.append(part)
                    got += len(part)
            except EOFError as exc:
                last = True
                stats.truncated_stream = 1
                logger.warning("%s: compressed stream ends early (%s); stopping there", self.path, exc)
            except _STREAM_ERRORS as exc:
                last = True
                broken = exc
            chunk = parts[0] if len(parts) == 1 else b"".join(parts)
            buf = pending + chunk if pending else chunk
            end = len(buf)
            pos = 0
            packets: List[PacketRef] = []
            append = packets.append
            nbytes = 0
            while pos + _RECORD_HEADER_LEN <= end:
                sec, frac, caplen, wirelen = unpack_from(buf, pos)
                stop = pos + _RECORD_HEADER_LEN + caplen
                if stop > end:
                    if caplen > _MAX_RECORD_LEN:
                        bad_record = caplen
                        last = True
                    break
                append((sec + frac * scale, pos + _RECORD_HEADER_LEN, caplen, wirelen))
                nbytes += caplen
                pos = stop
            stats.packets += len(packets)
            stats.bytes += nbytes
            pending = buf[pos:]
            if packets:
                yield buf, packets
        if bad_record:
            raise SourceError(
                f"{self.path}: corrupt record at packet {stats.packets + 1} (claims {bad_record} captured "
                f"bytes); the file is damaged there, the {stats.packets} packets before it were read"
            )
        if broken is not None:
            if self.compression is None:
                raise SourceError(f"{self.path}: cannot read after packet {stats.packets} ({broken})")
            raise SourceError(
                f"{self.path}: compressed data is corrupt after packet {stats.packets} ({broken}); the "
                f"packets before it were read; test the file with `{self.compression} -t {self.path}`"
            )
        if pending:
            stats.truncated_records += 1
            logger.warning(
                "%s: the last record is cut short (%d bytes after packet %d); ignored it",
                self.path, len(pending), stats.packets,
            )

    def __iter__(self) -> Iterator[Tuple[float, bytes]]:
        """Yield ``(timestamp, frame)`` for every packet (convenient, slower than batches)."""
        for buf, packets in self.batches():
            for ts, offset, caplen, _wirelen in packets:
                yield ts, buf[offset:offset + caplen]

    def close(self) -> None:
        """Close the underlying file."""
        self._file.close()
        self._raw.close()

    def __enter__(self) -> "PcapReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
