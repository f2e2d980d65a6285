"""`edgebot bench`: the JSON keys are pinned, the figures are sane, and it works with TensorFlow blocked.

Speed and memory targets are not asserted here (they live in benchmarks/RESULTS.md): these
tests check keys, that numbers are positive, and that p50 <= p95 <= p99.
"""

from __future__ import annotations

import json
import lzma
import subprocess
import sys
from pathlib import Path

import pytest


from edgebot.edge.bench import (
    MODEL_KINDS,
    RESULT_KEYS,
    STAT_KEYS,
    call_stats,
    compute_ratios,
    decompressed_copy,
    find_run_dir,
    format_bench,
    tensorflow_available,
)
from edgebot.errors import BundleError
from edgebot.rundir import write_spec
from fixtures_core import PCAP_HUE
PINNED = (
    "ratios.keras_over_int8_batch1",
    "ratios.keras_over_int8_batch256",
    "ratios.tf_rss_over_agent_rss",
    "memory.agent_peak_rss_mb",
    "memory.agent_startup_s",
    "pipeline.packets_per_s",
    "pipeline.flows_per_s",
    "pipeline.verdict_latency_ms.p95",
)


def _get(result: dict, dotted: str):
    node = result
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f"missing key {dotted}"
        node = node[part]
    return node


def _check_stats(stats: dict, batch: int) -> None:
    assert set(STAT_KEYS) <= set(stats)
    assert stats["batch"] == batch and stats["calls"] >= 1
    assert 0 < stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"]
    assert stats["per_s"] > 0 and stats["us_per_item"] > 0


def _check_common(result: dict, batches: list[int]) -> None:
    assert set(result) == set(RESULT_KEYS)  # (the CLI writes keys sorted)
    for key in PINNED:
        _get(result, key)
    model = result["model"]
    assert model["batch_sizes"] == batches
    for kind in ("int8", "bundle", "fuser", "featurizer"):
        assert model[kind]["available"], kind
        for b in batches:
            _check_stats(model[kind]["batch"][str(b)], b)
    assert set(MODEL_KINDS) <= set(model)
    mem = result["memory"]
    assert 0 < mem["agent_peak_rss_mb"] < 2000
    assert 0 < mem["agent_startup_s"] < 60
    agent = mem["agent"]
    assert agent["training_stack_loaded"] == []
    assert set(agent["blocked_modules"]) == {"tensorflow", "keras", "sklearn", "pandas"}
    m = result["machine"]
    for key in ("cpu", "cores", "python", "packages", "interpreter", "load_avg_before", "load_avg_after"):
        assert key in m
    assert m["interpreter"]["runtime"] in ("ai_edge_litert", "tflite_runtime")
    assert m["interpreter"]["delegate"]
    json.dumps(result, allow_nan=False)  # strict JSON


# ------------------------------------------------------------------------------------ helpers


def test_call_stats_orders_percentiles():
    s = call_stats([0.001, 0.002, 0.003, 0.010, 0.002], batch=32)
    _check_stats(s, 32)
    assert s["p50_ms"] == pytest.approx(2.0)
    assert s["per_s"] == pytest.approx(32 / 0.002)
    with pytest.raises(ValueError):
        call_stats([], 1)


def test_ratios_keep_pinned_keys_when_a_side_is_missing():
    int8 = {"batch": {"1": {"p50_ms": 0.1}, "32": {"p50_ms": 0.5}}}
    keras = {"batch": {"1": {"p50_ms": 30.0}, "32": {"p50_ms": 35.0}}}
    r = compute_ratios({"int8": int8, "keras": keras}, {"agent_peak_rss_mb": 100.0, "tf_peak_rss_mb": 700.0}, [1, 32])
    assert r["keras_over_int8_batch1"] == pytest.approx(300.0)
    assert r["keras_over_int8_batch32"] == pytest.approx(70.0)
    assert r["keras_over_int8_batch256"] is None  # not measured, but the key is there
    assert r["tf_rss_over_agent_rss"] == pytest.approx(7.0)
    r = compute_ratios({"int8": int8}, {"agent_peak_rss_mb": 100.0, "tf_peak_rss_mb": None}, [1])
    assert r["keras_over_int8_batch1"] is None and r["tf_rss_over_agent_rss"] is None


def _fake_run(path: Path, manifest: dict) -> Path:
    path.mkdir(parents=True)
    for name in ("cnn_lstm.keras", "autoencoder.keras"):
        (path / name).write_bytes(b"x")
    th = manifest["thresholds"]
    featurizer = {"n_features": 1, "feature_names": ["duration"], **manifest["featurizer"]}
    write_spec(path, {"featurizer": featurizer, "scaler": {"min": [0.0], "max": [1.0]}, "window": manifest["window"],
                      "fuser_raw_features": [], "ae_threshold": th["autoencoder"], "fused_threshold": th["fused"],
                      "hybrid_threshold": 0.5, "versions": {}})
    return path


MANIFEST = {"window": 8, "featurizer": {"hash": "abc"}, "thresholds": {"autoencoder": 0.1, "fused": 0.5}}


def test_run_dir_is_found_beside_the_bundle(tmp_path):
    run = _fake_run(tmp_path / "demo" / "run", MANIFEST)
    found, note = find_run_dir(tmp_path / "demo" / "bundle", MANIFEST)
    assert found == run.resolve() and "found" in note
    run2 = _fake_run(tmp_path / "runs" / "x", MANIFEST)
    found, _ = find_run_dir(tmp_path / "runs" / "x-bundle", MANIFEST)
    assert found == run2.resolve()


def test_run_dir_of_another_model_is_not_used(tmp_path):
    other = {**MANIFEST, "thresholds": {"autoencoder": 0.2, "fused": 0.5}}
    _fake_run(tmp_path / "run", other)
    found, note = find_run_dir(tmp_path / "bundle", MANIFEST)
    assert found is None and "--run-dir" in note


def test_given_run_dir_without_models_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="cnn_lstm.keras"):
        find_run_dir(tmp_path / "bundle", MANIFEST, tmp_path / "empty")


def test_tensorflow_blocked_is_reported_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    ok, note = tensorflow_available()
    assert not ok and "edgebot[train]" in note


def test_compressed_pcap_is_decompressed_once(tmp_path):
    plain = decompressed_copy(PCAP_HUE, tmp_path)
    assert plain.parent == tmp_path and not plain.name.endswith(".xz")
    assert plain.read_bytes() == lzma.open(PCAP_HUE).read()
    assert decompressed_copy(plain, tmp_path / "elsewhere") == plain


# ------------------------------------------------------------------- with a real bundle


NO_TF_SCRIPT = """
import json, sys
for name in ("tensorflow", "keras", "sklearn", "pandas"):
    sys.modules[name] = None
from edgebot.cli import main
try:
    main(["bench", sys.argv[1], "--pcap", sys.argv[2], "--json", sys.argv[3], "--batch", "1,4", "--repeat", "3"])
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
loaded = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "sklearn", "pandas")
                 and sys.modules[m] is not None})
print("LOADED", loaded)
"""


@pytest.mark.tf
@pytest.mark.slow
def test_bench_without_tensorflow_skips_keras_with_a_note(int8_bundle, tmp_path):
    """`edgebot bench` in a process where the training stack cannot be imported (edge extra only)."""
    out = tmp_path / "bench.json"
    res = subprocess.run([sys.executable, "-c", NO_TF_SCRIPT, str(int8_bundle), str(PCAP_HUE), str(out)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "LOADED []" in res.stdout
    assert "packets/s" in res.stdout and "Keras" in res.stdout  # the table was printed
    result = json.loads(out.read_text())
    _check_common(result, [1, 4])
    for kind in ("keras", "keras_eager", "keras_graph", "keras_predict", "float_tflite"):
        assert not result["model"][kind]["available"]
        assert "TensorFlow" in result["model"][kind]["note"]
    assert result["ratios"]["keras_over_int8_batch1"] is None
    assert result["ratios"]["tf_rss_over_agent_rss"] is None
    assert result["memory"]["tf_peak_rss_mb"] is None and "TensorFlow" in result["memory"]["tf"]["note"]
    p = result["pipeline"]
    assert p["available"] and p["packets"] == 21664 and p["flows"] > 0
    assert p["packets_per_s"] > 0 and p["flows_per_s"] > 0
    lat = p["verdict_latency_ms"]
    assert 0 <= lat["p50"] <= lat["p95"] <= lat["p99"]
    assert set(p["sinks"]) == {"null", "jsonl"}
    assert p["compressed_input"]["packets"] == 21664


@pytest.mark.tf
@pytest.mark.slow
def test_bench_with_tensorflow_compares_keras_and_float(int8_bundle, int8_run_dir):
    from edgebot.edge.bench import run_bench

    result = run_bench(int8_bundle, batch_sizes=[1, 8], repeat=3, run_dir=int8_run_dir, pipeline_runs=1,
                       startup_runs=1)
    _check_common(result, [1, 8])
    model = result["model"]
    for kind in ("keras", "keras_eager", "keras_graph", "keras_predict", "float_tflite"):
        assert model[kind]["available"], model[kind].get("note")
        for b in (1, 8):
            _check_stats(model[kind]["batch"][str(b)], b)
    assert model["keras"]["batch"]["1"]["path"] in ("keras_eager", "keras_graph", "keras_predict")
    r = result["ratios"]
    assert r["keras_over_int8_batch1"] > 0 and r["keras_over_int8_batch8"] > 0
    assert r["keras_over_int8_batch256"] is None  # batch 256 was not measured
    mem = result["memory"]
    assert mem["tf_peak_rss_mb"] > 0 and mem["tf_startup_s"] > 0
    assert r["tf_rss_over_agent_rss"] == pytest.approx(mem["tf_peak_rss_mb"] / mem["agent_peak_rss_mb"])
    assert not result["pipeline"]["available"] and result["pipeline"]["packets_per_s"] is None
    text = format_bench(result)
    assert "Keras" in text and "int8" in text and "no pcap given" in text


def test_site_bench_loads_the_profile_it_built(tmp_path):
    """benchmarks/bench_site.py: the agent process really starts with the learned devices (edge extra only)."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_site.py"
    out_json, out_md = tmp_path / "site.json", tmp_path / "SITE.md"
    proc = subprocess.run([sys.executable, str(script), "--devices", "40", "--runs", "1", "--json", str(out_json),
                           "--md", str(out_md)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out_json.read_text())
    assert res["profile"]["devices"] == 40 and res["profile"]["flows_learned"] > 0
    loaded = {label: case["site_devices_at_start"] for label, case in res["cases"].items()}
    assert loaded == {"no site profile": 0, "40-device site profile": 40}
    for case in res["cases"].values():
        run = case["runs"][0]
        assert run["flows"] > 1000 and run["peak_rss_mb"] > 10 and not run["training_stack_loaded"]
    assert "40-device site profile" in out_md.read_text()
