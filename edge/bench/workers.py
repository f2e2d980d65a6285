"""The bench's worker processes: an edge worker with the training stack blocked, and the TensorFlow
worker of ``edgebot.convert`` for the Keras models (this package never imports TensorFlow)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from edgebot.errors import EdgebotError
from edgebot.lean import TRAINING_STACK

log = logging.getLogger(__name__)

#: Python snippet that starts an edge worker with the training stack blocked, so that an
#: import of any of it fails as on a gateway that never installed it.
EDGE_BOOT = (
    "import sys\n"
    f"for _m in {TRAINING_STACK!r}:\n"
    "    sys.modules[_m] = None\n"
    "from edgebot.edge.bench_worker import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
WORKER_TIMEOUT_S = 1800.0


def _run_worker(cmd: list[str], what: str, timeout: float = WORKER_TIMEOUT_S,
                env: Optional[dict] = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONDONTWRITEBYTECODE="1")
    if env:
        full_env.update(env)
    log.info("bench: %s", what)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)


def _worker_json(proc: subprocess.CompletedProcess, out: Path, what: str) -> dict:
    if proc.returncode == 0 and out.is_file():
        return json.loads(out.read_text(encoding="utf-8"))
    tail = [line for line in (proc.stderr or "").strip().splitlines() if line.strip()]
    reason = tail[-1][:300] if tail else f"exit code {proc.returncode}"
    if out.is_file():
        try:
            reason = json.loads(out.read_text(encoding="utf-8")).get("error", reason)
        except ValueError:
            pass
    raise EdgebotError(f"benchmark worker for {what} failed: {reason}")


def edge_worker_cmd(mode: str, *args: str) -> list[str]:
    """Command of an edge worker (training stack blocked before edgebot is imported)."""
    return [sys.executable, "-c", EDGE_BOOT, mode, *args]


def run_keras_worker(run_dir: Path, windows: np.ndarray, batch_sizes: Sequence[int], repeat: int,
                     workdir: Path, threads: int = 1) -> dict:
    """Time the Keras models under TensorFlow and convert them to float TFLite (subprocess)."""
    np.save(workdir / "windows.npy", windows)
    out = workdir / "keras.json"
    cmd = [sys.executable, "-m", "edgebot.convert.bench_worker", "latency", "--run-dir", str(run_dir),
           "--windows", str(workdir / "windows.npy"), "--batch", ",".join(map(str, batch_sizes)),
           "--repeat", str(repeat), "--threads", str(threads), "--float-out", str(workdir), "--out", str(out)]
    return _worker_json(_run_worker(cmd, "Keras latency and float conversion"), out, "Keras latency")
