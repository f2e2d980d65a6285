"""Which batching strategy scores an int8 TFLite model fastest for batch sizes 1..1024.

Strategies, each fed a stream of batches whose size changes from call to call (as the
gateway's micro-batches do):

- ``resize``: one interpreter, ``resize_tensor_input`` + ``allocate_tensors`` whenever the size changes;
- ``buckets``: one interpreter per power-of-two size up to 32 then per multiple of 32 up to 256,
  batches padded to their bucket,
  bigger ones split in 256 chunks (what :class:`edgebot.runtime.Int8Model` does);
- ``chunk64``: one interpreter of batch 64, every batch padded/split to 64.

Usage: ``python benchmarks/batching.py MODEL.tflite [--repeat 50] [--threads 1]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from edgebot.runtime import Int8Model, find_interpreter, runtime_version

SIZES = (1, 2, 7, 16, 33, 64, 100, 256, 513, 1024)


class ResizeOnChange:
    def __init__(self, content: bytes, cls: type, threads: int):
        self.it = cls(model_content=content, num_threads=threads)
        self.i = self.it.get_input_details()[0]
        self.o = self.it.get_output_details()[0]["index"]
        self.shape = tuple(self.i["shape_signature"][1:])
        self.size = None

    def run_int8(self, q: np.ndarray) -> np.ndarray:
        if len(q) != self.size:
            self.it.resize_tensor_input(self.i["index"], [len(q), *self.shape])
            self.it.allocate_tensors()
            self.size = len(q)
        self.it.set_tensor(self.i["index"], q)
        self.it.invoke()
        return self.it.get_tensor(self.o)


class FixedChunk:
    def __init__(self, content: bytes, cls: type, threads: int, chunk: int = 64):
        self.inner = ResizeOnChange(content, cls, threads)
        self.chunk = chunk

    def run_int8(self, q: np.ndarray) -> np.ndarray:
        outs = []
        for s in range(0, len(q), self.chunk):
            part = q[s:s + self.chunk]
            pad = np.zeros((self.chunk, *part.shape[1:]), dtype=np.int8)
            pad[:len(part)] = part
            outs.append(self.inner.run_int8(pad)[:len(part)])
        return np.concatenate(outs)


def measure(models: dict, sizes, shape, repeat: int, seed: int = 0) -> dict[str, dict[int, float]]:
    """Median µs per call; strategies are interleaved call by call so machine noise hits all alike."""
    rng = np.random.default_rng(seed)
    batches = {n: rng.integers(-128, 128, (n, *shape), dtype=np.int8) for n in sizes}
    for model in models.values():  # warm-up (creates cached interpreters)
        for n in sizes:
            model.run_int8(batches[n])
    times = {k: {n: [] for n in sizes} for k in models}
    for _ in range(repeat):
        for n in rng.permutation(sizes):  # the size changes between consecutive calls
            for k, model in models.items():
                t0 = time.perf_counter()
                model.run_int8(batches[int(n)])
                times[k][int(n)].append(time.perf_counter() - t0)
    return {k: {n: float(np.median(v)) * 1e6 for n, v in t.items()} for k, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    cls, name = find_interpreter()
    content = open(args.model, "rb").read()
    buckets = Int8Model(content, args.model, cls, num_threads=args.threads)
    shape = buckets.input_shape
    strategies = {
        "resize": ResizeOnChange(content, cls, args.threads),
        "buckets": buckets,
        "chunk64": FixedChunk(content, cls, args.threads),
    }
    result = {"machine": platform.machine(), "python": platform.python_version(),
              "runtime": f"{name} {runtime_version(name)}", "threads": args.threads,
              "model": args.model, "median_us": {}}
    result["median_us"] = measure(strategies, SIZES, shape, args.repeat)
    print(f"median µs per call ({result['runtime']}, {args.threads} thread(s), {platform.machine()})")
    print(f"{'batch':>6} " + " ".join(f"{k:>10}" for k in strategies))
    for n in SIZES:
        print(f"{n:>6} " + " ".join(f"{result['median_us'][k][n]:>10.1f}" for k in strategies))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
