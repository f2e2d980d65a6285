"""The TensorFlow side of ``edgebot convert``, run as ``python -m edgebot.convert.worker`` in a subprocess.

The TFLite converter can crash the whole process (a segfault on an LSTM that is not
unrolled), so the parent (:mod:`edgebot.convert.bundle_writer`) never imports TensorFlow: it
starts this worker, which

1. loads ``cnn_lstm.keras`` and ``autoencoder.keras`` from the run dir,
2. converts each to full-integer int8 TFLite (int8 input and output, TFLITE_BUILTINS_INT8,
   dynamic batch), calibrated on the run's ``calib_windows`` (the autoencoder on their last
   rows; under the feature-axis layout ``(n, F, 1)`` of the cicflowmeter profile, each flow),
3. checks each result loads in the gateway interpreter with int8 tensors and a dynamic batch,
4. scores the run's ``test_windows`` with the float Keras models (``float_outputs.npz``),
5. writes ``worker.json`` (versions, quantization, ops) into ``--out``.

Progress lines ``edgebot-worker stage: ...`` on stderr tell the parent where a crash happened.
Exit codes: 0 done, 2 a problem reported in ``worker.json`` (``{"error": "..."}``), anything
else (or a signal) a crash.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from edgebot.rundir import read_spec

log = logging.getLogger(__name__)

STAGE_PREFIX = "edgebot-worker stage: "
RESULT_FILE = "worker.json"
FLOAT_OUTPUTS = "float_outputs.npz"


class WorkerError(Exception):
    """A problem the worker reports to the parent as one line (exit code 2)."""


def stage(text: str) -> None:
    """Tell the parent what the worker is doing (read back when the process crashes)."""
    sys.stderr.write(f"{STAGE_PREFIX}{text}\n")
    sys.stderr.flush()


def _representative(samples: np.ndarray) -> Iterator[list[np.ndarray]]:
    for i in range(len(samples)):
        yield [samples[i:i + 1].astype(np.float32)]


def convert_int8(model, calib: np.ndarray) -> bytes:
    """Full-integer int8 conversion of a Keras model with a dynamic batch dimension.

    Parameters
    ----------
    model
        A Keras 3 model (LSTMs unrolled).
    calib
        ``(m, ...)`` float32 representative inputs (one model input per row).

    Returns
    -------
    bytes
        The ``.tflite`` flatbuffer.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: _representative(calib)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def check_tflite(content: bytes, name: str, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> dict:
    """Load a converted model in the gateway interpreter and check its tensors and ops.

    Returns
    -------
    dict
        ``input`` / ``output`` (shape signature, dtype, scale, zero point) and sorted ``ops``.
    """
    from edgebot.runtime import Int8Model, find_interpreter

    cls, runtime = find_interpreter()
    try:
        model = Int8Model(content, name, cls)
    except Exception as exc:  # BundleError from the runtime checks
        raise WorkerError(f"{name}: {exc}") from None
    if model.input_signature != input_shape or model.output_signature != output_shape:
        raise WorkerError(
            f"{name}: converted tensors {list(model.input_signature)} -> {list(model.output_signature)}, "
            f"expected {list(input_shape)} -> {list(output_shape)}"
        )
    ops = _builtin_ops(content, cls)
    flex = [op for op in ops if op.startswith("Flex") or op == "CUSTOM"]
    if flex:
        raise WorkerError(f"{name}: needs non-builtin ops {flex}; build the LSTM with unroll=True")
    return {
        "input": {"shape": list(model.input_signature), **model.input_qp.to_dict()},
        "output": {"shape": list(model.output_signature), **model.output_qp.to_dict()},
        "ops": ops,
        "runtime": runtime,
    }


def _builtin_ops(content: bytes, interpreter_cls: type) -> list[str]:
    """Operator names of a model as stored (no delegate folds them into ``DELEGATE``)."""
    module = sys.modules[interpreter_cls.__module__]
    kwargs = {}
    resolver = getattr(module, "OpResolverType", None)
    if resolver is not None:
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = interpreter_cls(model_content=content, **kwargs)
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


def _first_error(exc: Exception) -> str:
    """The first ``error:`` line of a converter exception, shortened."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "error:" in line:
            text = line.split("error:", 1)[1].strip()
            if text.startswith("loc(") and "): " in text:  # MLIR location prefix
                text = text.rsplit("): ", 1)[1]
            return text[:160]
    return (lines[0][:160] if lines else type(exc).__name__)


def _load_keras(path: Path):
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise WorkerError(f"cannot load {path.name} ({text}); retrain the run with `edgebot train`") from None


def _shape(tensor_shape) -> tuple[int, ...]:
    return tuple(-1 if d is None else int(d) for d in tensor_shape)


def run(run_dir: Path, out: Path, threads: int, calib_limit: int) -> dict:
    """Convert both networks and score the test split with the float models (see module doc)."""
    stage("importing TensorFlow")
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
    stage("reading data.npz")
    with np.load(run_dir / "data.npz", allow_pickle=False) as data:
        calib = np.asarray(data["calib_windows"], dtype=np.float32)
        test = np.asarray(data["test_windows"], dtype=np.float32)
    if calib_limit and len(calib) > calib_limit:
        idx = np.unique(np.linspace(0, len(calib) - 1, calib_limit).round().astype(np.int64))
        calib = calib[idx]
    # host windows (n, T, F); the feature-axis layout (n, F, 1) has its flow along axis 1
    feature_axis = read_spec(run_dir).sequence == "feature-axis"
    _, T, C = calib.shape
    F = T if feature_axis else C

    def flows_of(windows: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(windows[:, :, 0] if feature_axis else windows[:, -1, :])

    result: dict = {"versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
                    "calibration_samples": int(len(calib)), "models": {}, "seconds": {}}
    stage("loading cnn_lstm.keras")
    hybrid = _load_keras(run_dir / "cnn_lstm.keras")
    stage("loading autoencoder.keras")
    ae = _load_keras(run_dir / "autoencoder.keras")
    if _shape(hybrid.input_shape) != (-1, T, C) or _shape(hybrid.output_shape) != (-1, 1):
        raise WorkerError(
            f"cnn_lstm.keras maps {list(_shape(hybrid.input_shape))} -> {list(_shape(hybrid.output_shape))}, "
            f"expected [-1, {T}, {C}] -> [-1, 1] (dynamic batch, one sigmoid output)"
        )
    if _shape(ae.input_shape) != (-1, F) or _shape(ae.output_shape) != (-1, F):
        raise WorkerError(
            f"autoencoder.keras maps {list(_shape(ae.input_shape))} -> {list(_shape(ae.output_shape))}, "
            f"expected [-1, {F}] -> [-1, {F}]"
        )
    jobs = (
        ("hybrid", hybrid, calib, "hybrid.tflite", (-1, T, C), (-1, 1)),
        ("autoencoder", ae, flows_of(calib), "autoencoder.tflite", (-1, F), (-1, F)),
    )
    for key, model, samples, filename, in_shape, out_shape in jobs:
        stage(f"converting {key} to int8 TFLite")
        t0 = time.monotonic()
        try:
            content = convert_int8(model, samples)
        except Exception as exc:  # tf.lite's ConverterError and friends: keep the first real error line
            raise WorkerError(
                f"the TFLite converter refused {key} ({_first_error(exc)}); build LSTMs with unroll=True and a "
                "dynamic batch, as edgebot.train does"
            ) from None
        result["seconds"][f"convert_{key}"] = round(time.monotonic() - t0, 2)
        stage(f"checking {filename}")
        info = check_tflite(content, filename, in_shape, out_shape)
        (out / filename).write_bytes(content)
        result["models"][key] = {"file": filename, **info}

    stage("scoring the test split with the float models")
    t0 = time.monotonic()
    if len(test):
        hybrid_prob = np.asarray(hybrid.predict(test, batch_size=2048, verbose=0), dtype=np.float32)[:, 0]
        recon = np.asarray(ae.predict(flows_of(test), batch_size=2048, verbose=0),
                           dtype=np.float32)
    else:
        hybrid_prob, recon = np.zeros(0, np.float32), np.zeros((0, F), np.float32)
    np.savez(out / FLOAT_OUTPUTS, hybrid=hybrid_prob, recon=recon)
    result["seconds"]["float_scoring"] = round(time.monotonic() - t0, 2)
    stage("done")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgebot.convert.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, type=Path, help="Run dir written by `edgebot train`.")
    parser.add_argument("--out", required=True, type=Path, help="Existing directory for the .tflite files and results.")
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow threads.")
    parser.add_argument("--calib-limit", type=int, default=2000, help="At most this many calibration windows.")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        result = run(args.run_dir, args.out, args.threads, args.calib_limit)
    except WorkerError as exc:
        (args.out / RESULT_FILE).write_text(json.dumps({"error": str(exc)}) + "\n", encoding="utf-8")
        return 2
    (args.out / RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
