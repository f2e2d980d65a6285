"""Model-level figures per batch size: int8 networks, bundle, fuser, featurizer, float TFLite, Keras; and the ratios."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .inputs import synthetic_flows
from edgebot.timing import call_stats, time_calls

#: Model-level measurements, in the order they are printed.
MODEL_KINDS: tuple[str, ...] = (
    "int8", "float_tflite", "keras", "keras_eager", "keras_graph", "keras_predict", "bundle", "fuser", "featurizer",
)
#: The Keras paths timed by the TensorFlow worker: result key -> (worker key, how it is called).
KERAS_PATHS: dict[str, tuple[str, str]] = {
    "keras_eager": ("call", "model(x, training=False), eager"),
    "keras_graph": ("graph", "the same call compiled with tf.function (dynamic batch signature)"),
    "keras_predict": ("predict", "model.predict(x, verbose=0)"),
}


def _skipped(note: str) -> dict:
    return {"available": False, "note": note, "batch": {}}


class FloatTFLite:
    """A float TFLite model with a dynamic batch, one interpreter per batch size (as :class:`Int8Model` does)."""

    def __init__(self, path: Path, interpreter_cls: type, num_threads: int = 1):
        from edgebot.runtime import quiet_native_stderr

        self._content = path.read_bytes()
        self._cls = interpreter_cls
        self._threads = num_threads
        self._quiet = quiet_native_stderr
        self._its: dict[int, tuple] = {}
        with quiet_native_stderr():
            probe = interpreter_cls(model_content=self._content, num_threads=num_threads)
        self.input_shape = tuple(int(d) for d in probe.get_input_details()[0]["shape_signature"][1:])

    def run(self, x: np.ndarray) -> np.ndarray:
        entry = self._its.get(len(x))
        if entry is None:
            with self._quiet():
                it = self._cls(model_content=self._content, num_threads=self._threads)
                i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
                it.resize_tensor_input(i, [len(x), *self.input_shape])
                it.allocate_tensors()
            entry = self._its[len(x)] = (it, i, o)
        it, i, o = entry
        it.set_tensor(i, np.ascontiguousarray(x, dtype=np.float32))
        it.invoke()
        return it.get_tensor(o)


def _networks_fn(hybrid_run: Callable, ae_run: Callable, W: np.ndarray) -> Callable[[], Any]:
    last = np.ascontiguousarray(W[:, -1, :])

    def call() -> None:
        hybrid_run(W)
        ae_run(last)

    return call


def measure_int8(bundle: Any, windows: np.ndarray, batch_sizes: Sequence[int], repeat: int) -> dict:
    """The int8 networks (hybrid + autoencoder, with (de)quantization) per batch size."""
    out: dict = {"available": True, "note": f"{bundle.runtime} {bundle.runtime_version}, 1 thread; hybrid + autoencoder",
                 "batch": {}}
    for b in batch_sizes:
        fn = _networks_fn(bundle._hybrid.run, bundle._autoencoder.run, windows[:b])
        out["batch"][str(b)] = call_stats(time_calls(fn, repeat), b)
    return out


def measure_bundle(bundle: Any, windows: np.ndarray, batch_sizes: Sequence[int], repeat: int) -> dict:
    """``Bundle.score_components``: networks, reconstruction error and the XGBoost fuser."""
    out: dict = {"available": True, "note": "Bundle.score_components: int8 networks + fuser", "batch": {}}
    for b in batch_sizes:
        out["batch"][str(b)] = call_stats(time_calls(partial(bundle.score_components, windows[:b]), repeat), b)
    return out


def measure_fuser(bundle: Any, windows: np.ndarray, batch_sizes: Sequence[int], repeat: int) -> dict:
    """The fuser alone (:class:`edgebot.trees.TreeEnsemble` ``inplace_predict`` on its input matrix)."""
    from edgebot.fusion import fused_probability, fuser_inputs

    out: dict = {"available": True, "note": "the fuser's trees in numpy (edgebot.trees, XGBoost's JSON model), "
                                            "1 thread", "batch": {}}
    comps = bundle.score_components(windows[: max(batch_sizes)])
    last = np.ascontiguousarray(windows[:, -1, :])
    for b in batch_sizes:
        Z = fuser_inputs(comps["hybrid"][:b], comps["anomaly"][:b], last[:b], bundle._raw_index)
        out["batch"][str(b)] = call_stats(time_calls(partial(fused_probability, bundle._booster, Z, bundle._margin), repeat), b)
    return out


def measure_featurizer(bundle: Any, flows: list, batch_sizes: Sequence[int], repeat: int) -> dict:
    """``featurize`` + the bundle's scaler, per batch of flow records."""
    from edgebot.features import featurize

    out: dict = {"available": True, "note": "featurize + min-max scaling of flow records (unit: flows)", "batch": {}}
    need = max(batch_sizes)
    pool = (flows * (-(-need // len(flows))))[:need] if flows else synthetic_flows(need)

    def scaled(part: list) -> Any:
        return bundle.scale(featurize(part))

    for b in batch_sizes:
        out["batch"][str(b)] = call_stats(time_calls(partial(scaled, pool[:b]), repeat), b)
    return out


def measure_float_tflite(paths: dict, windows: np.ndarray, batch_sizes: Sequence[int], repeat: int,
                         runtime: Optional[str]) -> dict:
    """The float32 TFLite conversions of the run's Keras models on the gateway interpreter."""
    from edgebot.runtime import find_interpreter, runtime_version

    cls, name = find_interpreter(runtime)
    hybrid = FloatTFLite(Path(paths["hybrid"]), cls)
    ae = FloatTFLite(Path(paths["autoencoder"]), cls)
    out: dict = {"available": True, "note": f"float32 TFLite (converted from the run's Keras models) on {name} "
                                            f"{runtime_version(name)}, 1 thread", "batch": {}}
    for b in batch_sizes:
        fn = _networks_fn(hybrid.run, ae.run, windows[:b])
        out["batch"][str(b)] = call_stats(time_calls(fn, repeat), b)
    return out


def fastest_keras(model: dict, batch_sizes: Sequence[int], note: str) -> dict:
    """Per batch size, the Keras path with the lowest median latency (its name in ``path``).

    The Keras figure that the ratios use: the best a user gets from the Keras model under
    TensorFlow, so that no ratio is flattered by a slow calling convention.
    """
    out: dict = {"available": True, "batch": {},
                 "note": f"{note}; per batch size the fastest of eager call, tf.function and predict"}
    for b in batch_sizes:
        best_kind = min(KERAS_PATHS, key=lambda kind: model[kind]["batch"][str(b)]["p50_ms"])
        out["batch"][str(b)] = {**model[best_kind]["batch"][str(b)], "path": best_kind}
    return out


def compute_ratios(model: dict, memory: dict, batch_sizes: Sequence[int]) -> dict:
    """Keras / int8 and float / int8 median latency per batch, TF / agent RSS and start-up.

    ``keras_over_int8_batchN`` uses the fastest Keras path at that batch size (see
    :func:`fastest_keras`); ``keras_eager_...``, ``keras_graph_...`` and ``keras_predict_...``
    give each path. A ratio is None when one side was not measured. Pinned keys: ``keras_over_int8_batch1``,
    ``keras_over_int8_batch256``, ``tf_rss_over_agent_rss`` (present even when None).
    """
    def over(kind: str, b: int) -> Optional[float]:
        num = model.get(kind, {}).get("batch", {}).get(str(b))
        den = model.get("int8", {}).get("batch", {}).get(str(b))
        if not num or not den or den["p50_ms"] <= 0:
            return None
        return num["p50_ms"] / den["p50_ms"]

    ratios: dict = {}
    for b in sorted(set(batch_sizes) | {1, 256}):
        ratios[f"keras_over_int8_batch{b}"] = over("keras", b)
        for kind in KERAS_PATHS:
            ratios[f"{kind}_over_int8_batch{b}"] = over(kind, b)
        ratios[f"float_tflite_over_int8_batch{b}"] = over("float_tflite", b)
    agent_rss, tf_rss = memory.get("agent_peak_rss_mb"), memory.get("tf_peak_rss_mb")
    ratios["tf_rss_over_agent_rss"] = tf_rss / agent_rss if agent_rss and tf_rss else None
    agent_st, tf_st = memory.get("agent_startup_s"), memory.get("tf_startup_s")
    ratios["tf_startup_over_agent_startup"] = tf_st / agent_st if agent_st and tf_st else None
    return ratios
