"""``edgebot bench``: latency, throughput, memory and start-up of the gateway path, beside Keras under TensorFlow.

:func:`run_bench` measures, in one run (all figures in one dict, see :data:`RESULT_KEYS`):

1. **model**, per batch size: the int8 networks on the installed interpreter (hybrid +
   autoencoder, quantization included), the whole bundle (networks + fuser), the fuser
   alone, the featurizer alone, and, when the run dir and TensorFlow are there, the same
   networks as float TFLite (on the same interpreter) and as Keras models under TensorFlow.
   Latency per call (p50/p95/p99) and windows per second at the median.
2. **pipeline** (with a pcap): end-to-end replay through the agent (meter, featurizer,
   windows, scoring, incidents, sink) in a fresh process pinned to one core, with a null
   and a JSON-lines sink: packets/s, flows/s, flow-end-to-verdict latency.
3. **memory**: peak RSS and start-up-to-first-score of the agent in a fresh process where
   TensorFlow, Keras, scikit-learn and pandas cannot be imported (the edge extra only), and
   of a process that imports TensorFlow and loads the Keras models.
4. **ratios** and **machine** (CPU, cores, load, Python, package versions, interpreter and
   its delegate).

Where the time goes when nothing else runs in this process: the Keras, float-conversion
and TensorFlow-memory parts run in ``python -m edgebot.convert.bench_worker`` (it imports
TensorFlow); the agent parts in ``edgebot.edge.bench_worker`` with the training stack
blocked. This module never imports TensorFlow.

Finding the Keras models: the bundle manifest does not record the run dir it came from, so
``run_dir`` is taken from the caller (``--run-dir``), else from the first of these that
holds ``cnn_lstm.keras``, ``autoencoder.keras`` and a ``spec.json`` whose window, featurizer
hash and thresholds equal the bundle's: ``<bundle>/../run`` (the layout ``make demo``
writes), then the bundle path without a ``-bundle`` / ``_bundle`` suffix
(``runs/x-bundle`` -> ``runs/x``). Without one, the float and Keras parts are skipped with
a note.

The package, one module per part: ``run`` (:func:`run_bench`), ``model`` (model level and
ratios), ``pipeline`` (end-to-end replays), ``memory`` (RSS and start-up), ``workers`` (the
worker processes), ``inputs``, ``timing``, ``machine`` (machine and run dir) and ``report``
(:func:`format_bench`).
"""

from __future__ import annotations

from .inputs import bench_windows, decompressed_copy, pcap_flows, synthetic_flows
from .machine import delegate_info, find_run_dir, machine_info, tensorflow_available
from .memory import measure_agent_process, measure_tf_process
from .model import KERAS_PATHS, MODEL_KINDS, compute_ratios, fastest_keras
from .pipeline import measure_pipeline
from .report import format_bench
from .run import BENCH_SCHEMA, RESULT_KEYS, run_bench
from edgebot.timing import STAT_KEYS, call_stats, percentiles_ms, time_calls
from .workers import EDGE_BOOT, edge_worker_cmd

__all__ = [
    "BENCH_SCHEMA", "EDGE_BOOT", "KERAS_PATHS", "MODEL_KINDS", "RESULT_KEYS", "STAT_KEYS",
    "bench_windows", "call_stats", "compute_ratios", "decompressed_copy", "delegate_info", "edge_worker_cmd",
    "fastest_keras", "find_run_dir", "format_bench", "machine_info", "measure_agent_process",
    "measure_pipeline", "measure_tf_process", "pcap_flows", "percentiles_ms", "run_bench",
    "synthetic_flows", "tensorflow_available", "time_calls",
]
