"""The TFLite interpreter on the gateway: import fallback, int8 (de)quantization, batched int8 models.

The interpreter comes from ``ai_edge_litert`` (preferred: XNNPACK for int8, numpy 2) or else
``tflite_runtime``; TensorFlow is never imported here, so this module works on a Raspberry Pi
that has neither TensorFlow nor Keras.

Batching: a model converted with a dynamic batch dimension accepts any batch size, but
resizing an interpreter costs a re-allocation (and an XNNPACK re-plan, ~50 µs) on every size
change. :class:`Int8Model` therefore keeps one interpreter per power-of-two batch size up
to 32 and per multiple of 32 above that, up to ``max_batch`` ("buckets"), pads a batch to its
bucket, and splits bigger batches into ``max_batch`` chunks; ``benchmarks/batching.py`` holds
the measurement behind that choice.
"""

from __future__ import annotations

import contextlib
import os

import importlib
import logging
import platform
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgebot.errors import BundleError, RuntimeMissingError

log = logging.getLogger(__name__)

#: Interpreter packages in order of preference; never TensorFlow.
RUNTIMES: tuple[str, ...] = ("ai_edge_litert", "tflite_runtime")

_INSTALL_HINT = (
    "no TFLite interpreter found: pip install ai-edge-litert "
    "(or tflite-runtime where ai-edge-litert has no wheel); TensorFlow is never used on the gateway"
)


def find_interpreter(prefer: str | None = None) -> tuple[type, str]:
    """Import the TFLite ``Interpreter`` class from the first runtime that is installed.

    Parameters
    ----------
    prefer
        ``"ai_edge_litert"`` or ``"tflite_runtime"`` to require one runtime; ``None`` tries
        :data:`RUNTIMES` in order.

    Returns
    -------
    tuple
        ``(Interpreter class, runtime name)``.

    Raises
    ------
    RuntimeMissingError
        When no (or not the requested) runtime can be imported.
    """
    if prefer is not None and prefer not in RUNTIMES:
        raise RuntimeMissingError(
            f"unknown TFLite runtime {prefer!r}: choose one of {', '.join(RUNTIMES)}"
        )
    names = (prefer,) if prefer else RUNTIMES
    errors = []
    crash = None
    for name in names:
        if name == "ai_edge_litert" and (crash := litert_cpu_probe_crash()):
            log.warning("%s; trying the next runtime", crash)
            errors.append(f"{name}: {crash}")
            continue
        try:
            module = importlib.import_module(f"{name}.interpreter")
            return module.Interpreter, name
        except ImportError as exc:  # includes sys.modules[name] = None
            errors.append(f"{name}: {exc}")
    log.debug("interpreter imports failed: %s", "; ".join(errors))
    if crash:
        raise RuntimeMissingError(crash)
    if prefer:
        pip_name = prefer.replace("_", "-")
        raise RuntimeMissingError(f"TFLite runtime {prefer} is not installed: pip install {pip_name}")
    raise RuntimeMissingError(_INSTALL_HINT)


def litert_cpu_probe_crash(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """Why ai-edge-litert would crash on this machine, or None (the usual case).

    From 2.2 on, its CPU probe (pytorch/cpuinfo) writes through a NULL L2-cache table on aarch64
    when ``/proc/cpuinfo`` names no ARM CPU part but sysfs lists per-core L2 caches (unfixed
    upstream: pytorch/cpuinfo PR 398 and 418). Real ARM kernels always print ``CPU part``; an x86
    host's file seen through qemu-user emulation does not. 2.1.x runs there (``make pi-check``).
    """
    if platform.machine().lower() not in ("aarch64", "arm64"):
        return None
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as fh:
            if "CPU part" in fh.read():
                return None
    except OSError:
        return None
    version = runtime_version("ai_edge_litert")
    if tuple(int(p) for p in re.findall(r"\d+", version)[:2]) < (2, 2):
        return None
    return (f"ai-edge-litert {version} crashes on this aarch64 system: {cpuinfo} names no ARM CPU part "
            "(an x86 host's, under qemu-user emulation?); pip install 'ai-edge-litert<2.2' or tflite-runtime")


def runtime_version(name: str) -> str:
    """Installed version of a runtime package (``"unknown"`` when it cannot be told)."""
    from importlib import metadata

    dist = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}.get(name, name)
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class QuantParams:
    """Affine int8 quantization of one tensor: ``real = (q - zero_point) * scale``."""

    scale: float
    zero_point: int
    dtype: str = "int8"

    def to_dict(self) -> dict:
        return {"scale": float(self.scale), "zero_point": int(self.zero_point), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict) -> "QuantParams":
        return cls(float(d["scale"]), int(d["zero_point"]), str(d.get("dtype", "int8")))

    @classmethod
    def from_details(cls, details: dict) -> "QuantParams":
        """From an interpreter's input/output details."""
        scale, zero_point = details["quantization"]
        return cls(float(scale), int(zero_point), np.dtype(details["dtype"]).name)

    def matches(self, other: "QuantParams", rtol: float = 1e-6) -> bool:
        return (
            self.dtype == other.dtype
            and self.zero_point == other.zero_point
            and abs(self.scale - other.scale) <= rtol * max(abs(self.scale), abs(other.scale))
        )


def quantize(x: np.ndarray, qp: QuantParams) -> np.ndarray:
    """Float to int8: ``clip(round(x / scale + zero_point))``; any shape, returns ``int8``.

    (TFLite rounds ``x / scale`` half away from zero before adding the zero point; ``rint``
    after adding it differs only on exact .5 ties, which float inputs practically never hit.)
    """
    if qp.scale <= 0:
        raise BundleError(f"quantization scale must be positive, got {qp.scale}: reconvert the bundle")
    info = np.iinfo(np.dtype(qp.dtype))
    q = np.multiply(x, np.float32(1.0 / qp.scale), dtype=np.float32)
    q += np.float32(qp.zero_point)
    np.rint(q, out=q)
    np.clip(q, info.min, info.max, out=q)
    return q.astype(qp.dtype)


def dequantize(q: np.ndarray, qp: QuantParams) -> np.ndarray:
    """Int8 to float32: ``(q - zero_point) * scale``; any shape."""
    return (q.astype(np.float32) - np.float32(qp.zero_point)) * np.float32(qp.scale)


#: Above this size buckets grow in steps of this size instead of doubling.
BUCKET_STEP = 32
#: Batch buckets grow by this factor (1, 4, 16, 64, 256): each bucket is one cached interpreter per
#: model (about 0.5 MB of tensor arena each), so few buckets keep the agent's memory flat whatever
#: the batch sizes traffic produces; padding a small batch to its bucket costs less than one
#: interpreter re-allocation (benchmarks/batching.py).
BUCKET_GROWTH = 4


def batch_bucket(n: int, max_batch: int) -> int:
    """Interpreter batch size used for ``n`` windows: the next power of :data:`BUCKET_GROWTH`,
    capped at ``max_batch`` (larger inputs are scored in chunks of ``max_batch``)."""
    b = 1
    while b < n and b < max_batch:
        b *= BUCKET_GROWTH
    return min(b, max_batch)


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence what native code writes to fd 2 meanwhile (LiteRT's "Created ... XNNPACK delegate").

    Error messages of edgebot itself are one line on stderr; the interpreter's INFO banner would
    make them two. Python-level writes to ``sys.stderr`` are not affected unless they share fd 2.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (e.g. a daemon without stderr)
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


class Int8Model:
    """One full-integer TFLite model with a dynamic batch dimension: float32 in, float32 out.

    Parameters
    ----------
    model_content
        The ``.tflite`` file's bytes.
    name
        Shown in error messages (e.g. ``"hybrid.tflite"``).
    interpreter_cls
        From :func:`find_interpreter`.
    num_threads
        Interpreter threads; 1 is fastest for these small models at gateway batch sizes.
    max_batch
        Biggest interpreter batch; larger inputs are scored in chunks of this size.
    """

    def __init__(self, model_content: bytes, name: str, interpreter_cls: type, *,
                 num_threads: int = 1, max_batch: int = 256):
        if max_batch < 1 or (max_batch > BUCKET_STEP and max_batch % BUCKET_STEP):
            raise ValueError(f"max_batch must be a power of two up to {BUCKET_STEP} or a multiple of it, got {max_batch}")
        self.name = name
        self.num_threads = num_threads
        self.max_batch = max_batch
        self._content = model_content
        self._cls = interpreter_cls
        self._interpreters: dict[int, tuple[Any, int, int]] = {}
        try:
            with quiet_native_stderr():
                probe = interpreter_cls(model_content=model_content, num_threads=num_threads)
        except Exception as exc:  # the runtimes raise ValueError/RuntimeError with long text
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BundleError(f"{name} is not a TFLite model this runtime can load ({first}): reconvert the bundle") from None
        inp = probe.get_input_details()
        out = probe.get_output_details()
        if len(inp) != 1 or len(out) != 1:
            raise BundleError(f"{name} must have one input and one output, has {len(inp)} and {len(out)}: reconvert the bundle")
        self.input_signature = tuple(int(d) for d in inp[0].get("shape_signature", inp[0]["shape"]))
        self.output_signature = tuple(int(d) for d in out[0].get("shape_signature", out[0]["shape"]))
        self.input_qp = QuantParams.from_details(inp[0])
        self.output_qp = QuantParams.from_details(out[0])
        if self.input_qp.dtype != "int8" or self.output_qp.dtype != "int8":
            raise BundleError(
                f"{name} has {self.input_qp.dtype} input and {self.output_qp.dtype} output, "
                "expected int8 for both: reconvert with `edgebot convert`"
            )
        if self.input_signature[0] != -1:
            raise BundleError(
                f"{name} has a fixed batch of {self.input_signature[0]}; it needs a dynamic batch "
                "dimension: reconvert with `edgebot convert`"
            )
        self.input_shape = self.input_signature[1:]
        self.output_shape = self.output_signature[1:]
        probe.resize_tensor_input(inp[0]["index"], [1, *self.input_shape])
        with quiet_native_stderr():
            probe.allocate_tensors()
        self._interpreters[1] = (probe, inp[0]["index"], out[0]["index"])

    def _interpreter(self, batch: int) -> tuple[Any, int, int]:
        entry = self._interpreters.get(batch)
        if entry is None:
            with quiet_native_stderr():
                it = self._cls(model_content=self._content, num_threads=self.num_threads)
                i = it.get_input_details()[0]["index"]
                o = it.get_output_details()[0]["index"]
                it.resize_tensor_input(i, [batch, *self.input_shape])
                it.allocate_tensors()
            entry = (it, i, o)
            self._interpreters[batch] = entry
        return entry

    def run_int8(self, q: np.ndarray) -> np.ndarray:
        """Run on already-quantized input ``(n, *input_shape) int8``; returns ``(n, *output_shape) int8``."""
        n = len(q)
        out = np.empty((n, *self.output_shape), dtype=np.int8)
        start = 0
        while start < n:
            size = min(n - start, self.max_batch)
            bucket = batch_bucket(size, self.max_batch)
            it, i, o = self._interpreter(bucket)
            chunk = q[start:start + size]
            if bucket != size:
                padded = np.full((bucket, *self.input_shape), self.input_qp.zero_point, dtype=np.int8)
                padded[:size] = chunk
                chunk = padded
            it.set_tensor(i, np.ascontiguousarray(chunk))
            it.invoke()
            out[start:start + size] = it.get_tensor(o)[:size]
            start += size
        return out

    def run(self, x: np.ndarray) -> np.ndarray:
        """Quantize, run and dequantize.

        Parameters
        ----------
        x
            ``(n, *input_shape) float32`` (for the hybrid ``(n, T, F)``, the autoencoder ``(n, F)``).

        Returns
        -------
        np.ndarray
            ``(n, *output_shape) float32``.
        """
        x = np.asarray(x)
        if x.ndim != len(self.input_signature) or tuple(x.shape[1:]) != self.input_shape:
            raise BundleError(
                f"{self.name} expects input (n, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}: check the window length and feature count"
            )
        return dequantize(self.run_int8(quantize(x, self.input_qp)), self.output_qp)

