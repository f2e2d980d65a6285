"""TensorFlow's C++ start-up lines off the terminal, real errors kept: a filter on file descriptor 2.

TensorFlow prints, before its logging is even initialized, lines such as ``oneDNN custom operations
are on`` or ``NodeDef mentions attribute use_unbounded_threadpool``; ``TF_CPP_MIN_LOG_LEVEL`` does
not reach them. :func:`quiet_tensorflow` routes the process's stderr through a pipe and drops only
lines matching :data:`NOISE`; everything else (tracebacks, real TensorFlow errors, progress bars)
passes through unchanged.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from typing import Iterator

#: Lines TensorFlow writes at start-up that say nothing a user can act on.
NOISE = re.compile(
    rb"All log messages before absl::InitializeLog\(\) is called"
    rb"|oneDNN custom operations are on"
    rb"|NodeDef mentions attribute use_unbounded_threadpool"
    rb"|cpu_feature_guard\.cc"
    rb"|This TensorFlow binary is optimized to use available CPU instructions"
    rb"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
    rb"|Unable to register cu(DNN|FFT|BLAS) factory"
    rb"|TF-TRT Warning: Could not find TensorRT"
)


def _forward(read_fd: int, write_fd: int, dropped: list[int]) -> None:
    """Copy ``read_fd`` to ``write_fd`` line by line (``\\n`` or ``\\r``), dropping :data:`NOISE` lines."""
    pending = b""
    while True:
        try:
            chunk = os.read(read_fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        pending += chunk
        out = []
        start = 0
        for m in re.finditer(rb"[\r\n]", pending):
            line = pending[start:m.end()]
            start = m.end()
            if NOISE.search(line):
                dropped[0] += 1
            else:
                out.append(line)
        pending = pending[start:]
        if len(pending) > 65536:  # no line end for a long time: pass it on as it is
            out.append(pending)
            pending = b""
        if out:
            os.write(write_fd, b"".join(out))
    if pending and not NOISE.search(pending):
        os.write(write_fd, pending)


@contextlib.contextmanager
def quiet_tensorflow(enabled: bool = True) -> Iterator[list[int]]:
    """Within the block, TensorFlow's start-up noise never reaches the terminal; yields ``[dropped lines]``.

    Parameters
    ----------
    enabled
        False passes everything (``--debug`` or ``-v`` on the command line).
    """
    dropped = [0]
    if not enabled:
        yield dropped
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        read_fd, write_fd = os.pipe()
    except (OSError, ValueError):  # no real fd 2 (e.g. captured by a test runner): nothing to filter
        yield dropped
        return
    os.dup2(write_fd, 2)
    os.close(write_fd)
    thread = threading.Thread(target=_forward, args=(read_fd, saved, dropped), name="tf-stderr-filter", daemon=True)
    thread.start()
    try:
        yield dropped
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)  # closes the pipe's last write end: the forwarder drains and stops
        thread.join(timeout=5)
        os.close(read_fd)
        os.close(saved)
