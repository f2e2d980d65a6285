"""The TensorFlow side of ``edgebot bench``, run as ``python -m edgebot.convert.bench_worker`` in a subprocess.

:mod:`edgebot.edge.bench` never imports TensorFlow; it starts this worker for what needs it:

``latency``
    Load ``cnn_lstm.keras`` and ``autoencoder.keras`` from a run dir, time them per batch
    size on the windows the parent saved (``model(x, training=False)`` eagerly, the same
    call compiled with ``tf.function``, and ``model.predict``), and convert both to float32 TFLite files (dynamic batch) that the
    parent times on the gateway interpreter. Raw per-call seconds go back in the JSON.
``startup``
    A process as a user would write it: import TensorFlow, load both Keras models, score
    one window; reports ``time.time()`` stamps (the parent computes start-up from its own
    ``--t0``) and the peak RSS.

Each mode writes one JSON object to ``--out``; exit code 2 with ``{"error": ...}`` for a
reported problem.
"""

from __future__ import annotations

import time

T_MAIN = time.time()  # noqa: E402  (first thing: the start-up clock)

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

log = logging.getLogger(__name__)


def _peak_rss_mb() -> float:
    from edgebot.edge.summary import peak_rss_mb

    return peak_rss_mb()


def _time_calls(fn, repeat: int, warmup: int) -> list[float]:
    from edgebot.timing import time_calls

    return time_calls(fn, repeat, warmup)


def _convert_float(model) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    return converter.convert()


def mode_latency(args: argparse.Namespace) -> dict:
    """Keras per-call latency per batch size, and float TFLite conversions."""
    import numpy as np
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    hybrid = keras.models.load_model(args.run_dir / "cnn_lstm.keras", compile=False)
    ae = keras.models.load_model(args.run_dir / "autoencoder.keras", compile=False)
    windows = np.load(args.windows).astype(np.float32)
    batches = [int(b) for b in args.batch.split(",")]
    result: dict = {"versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
                    "threads": args.threads, "call": {}, "graph": {}, "predict": {}}
    warm = max(2, min(20, args.repeat // 10))
    T, F = windows.shape[1], windows.shape[2]
    hybrid_graph = tf.function(lambda x: hybrid(x, training=False),
                               input_signature=[tf.TensorSpec([None, T, F], tf.float32)])
    ae_graph = tf.function(lambda x: ae(x, training=False), input_signature=[tf.TensorSpec([None, F], tf.float32)])
    for b in batches:
        W = windows[:b]
        last = np.ascontiguousarray(W[:, -1, :])

        def call(W: np.ndarray = W, last: np.ndarray = last) -> None:
            np.asarray(hybrid(W, training=False))
            np.asarray(ae(last, training=False))

        def graph(W: np.ndarray = W, last: np.ndarray = last) -> None:
            hybrid_graph(W).numpy()
            ae_graph(last).numpy()

        def predict(W: np.ndarray = W, last: np.ndarray = last, b: int = b) -> None:
            hybrid.predict(W, batch_size=max(b, 1), verbose=0)
            ae.predict(last, batch_size=max(b, 1), verbose=0)

        result["call"][str(b)] = _time_calls(call, args.repeat, warm)
        result["graph"][str(b)] = _time_calls(graph, args.repeat, warm)
        result["predict"][str(b)] = _time_calls(predict, max(5, min(args.repeat, 50)), 3)
    try:
        paths = {}
        for key, model in (("hybrid", hybrid), ("autoencoder", ae)):
            path = args.float_out / f"{key}.float.tflite"
            path.write_bytes(_convert_float(model))
            paths[key] = str(path)
        result["float_models"] = paths
    except Exception as exc:  # the converter raises many types; the parent reports the skip
        result["float_models"] = None
        result["float_error"] = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return result


def mode_startup(args: argparse.Namespace) -> dict:
    """Import TensorFlow, load the Keras models, score one window."""
    import numpy as np
    import keras
    import tensorflow as tf

    t_imported = time.time()
    hybrid = keras.models.load_model(args.run_dir / "cnn_lstm.keras", compile=False)
    ae = keras.models.load_model(args.run_dir / "autoencoder.keras", compile=False)
    t_loaded = time.time()
    shape = tuple(int(d) for d in hybrid.input_shape[1:])
    W = np.zeros((1, *shape), dtype=np.float32)
    np.asarray(hybrid(W, training=False))
    np.asarray(ae(np.ascontiguousarray(W[:, -1, :]), training=False))
    t_first = time.time()
    return {"t_main": T_MAIN, "t_imported": t_imported, "t_loaded": t_loaded, "t_first_score": t_first,
            "peak_rss_mb": _peak_rss_mb(), "versions": {"tensorflow": tf.__version__, "keras": keras.__version__}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgebot.convert.bench_worker", description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("latency", "startup"))
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--windows", type=Path, help="latency: (n, T, F) float32 .npy of scaled windows")
    parser.add_argument("--batch", default="1,32,256")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow intra-op threads.")
    parser.add_argument("--float-out", type=Path, help="latency: directory for the float .tflite files")
    parser.add_argument("--t0", type=float, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        result = mode_latency(args) if args.mode == "latency" else mode_startup(args)
    except (OSError, ValueError) as exc:
        args.out.write_text(json.dumps({"error": f"{exc.__class__.__name__}: {exc}"[:300]}) + "\n", encoding="utf-8")
        return 2
    args.out.write_text(json.dumps(result) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
