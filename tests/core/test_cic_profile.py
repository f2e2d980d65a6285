"""The cicflowmeter feature profile end to end: featurizer, trainer, converter, bundle, eval and agent."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from edgebot import datasets
from edgebot.cli import main
from edgebot.errors import DataError, SourceError
from edgebot.features import (
    CIC_FEATURE_NAMES,
    CIC_PROFILE,
    CIC_VALUE_CAP,
    FEATURIZER_HASH,
    ZEEK_PROFILE,
    featurize_cic,
    featurizer_info,
    get_profile,
    profile_for_records,
)
from edgebot.flow import CicFlowRecord, FlowRecord
from edgebot.readers import read_flows
from edgebot.windows import last_rows, model_sequences

REPO = Path(__file__).resolve().parents[2]
CIC_WESTERN = datasets.path(datasets.CICIDS2017_CSVS["western"])
CIC_DDOS = datasets.path(datasets.CICIDS2017_CSVS["ddos"])
ZEEK_FILE = datasets.iot23("44-1")

#: The zeek profile's hash: existing bundles must keep loading, so it must never change.
ZEEK_HASH = "dfae3f64b2792731"


def _row(values: dict, names=CIC_FEATURE_NAMES) -> CicFlowRecord:
    return CicFlowRecord(values=tuple(values.get(n, 0.0) for n in names), label="benign", source="x.csv", line=2,
                         feature_names=tuple(names))


# ----------------------------------------------------------------------------------- profiles


def test_zeek_profile_hash_is_pinned():
    assert FEATURIZER_HASH == ZEEK_PROFILE.hash == featurizer_info()["hash"] == ZEEK_HASH
    assert featurizer_info()["profile"] == "zeek" and featurizer_info()["sequence"] == "host-windows"
    assert get_profile(None) is ZEEK_PROFILE and get_profile("cicflowmeter") is CIC_PROFILE


def test_profile_registry_and_shapes():
    assert CIC_PROFILE.n_features == len(CIC_FEATURE_NAMES) == 77 == len(set(CIC_FEATURE_NAMES))
    assert "Destination Port" not in CIC_FEATURE_NAMES and "Fwd Header Length.1" in CIC_FEATURE_NAMES
    assert CIC_PROFILE.hash != ZEEK_PROFILE.hash
    assert set(CIC_PROFILE.fuser_raw_features) <= set(CIC_FEATURE_NAMES)
    assert set(ZEEK_PROFILE.fuser_raw_features) <= set(ZEEK_PROFILE.feature_names)
    assert CIC_PROFILE.input_shape(8) == (77, 1) and ZEEK_PROFILE.input_shape(8) == (8, 45)
    with pytest.raises(DataError, match="unknown feature profile"):
        get_profile("netflow")


@pytest.mark.parametrize("path", [CIC_WESTERN, CIC_DDOS], ids=["western", "ddos"])
def test_cic_featurize_real_rows_is_finite(path):
    records, _ = read_flows([path])
    X = CIC_PROFILE.featurize(records)
    assert X.shape == (len(records), 77) and X.dtype == np.float32
    assert np.isfinite(X).all()
    assert profile_for_records(records) is CIC_PROFILE


def test_cic_columns_are_picked_by_name():
    """The DDoS file has Destination Port first; the Western subset lacks it: same features either way."""
    ddos, _ = read_flows([CIC_DDOS])
    rec = ddos[0]
    assert rec.feature_names[0] == "Destination Port"
    reordered = _row(dict(zip(rec.feature_names, rec.values)))
    assert np.array_equal(featurize_cic([rec]), featurize_cic([reordered]))


def test_cic_nan_infinity_and_sign():
    x = featurize_cic([_row({"Flow Duration": 100.0, "Flow Bytes/s": math.inf, "Flow Packets/s": -math.inf,
                             "Flow IAT Min": -3.0, "Fwd IAT Min": math.nan})])[0]
    col = dict(zip(CIC_FEATURE_NAMES, x.tolist()))
    assert np.isclose(col["Flow Duration"], np.log1p(100.0))
    assert np.isclose(col["Flow Bytes/s"], np.log1p(CIC_VALUE_CAP))
    assert np.isclose(col["Flow Packets/s"], -np.log1p(CIC_VALUE_CAP))
    assert np.isclose(col["Flow IAT Min"], -np.log1p(3.0))
    assert col["Fwd IAT Min"] == 0.0


def test_cic_refuses_missing_columns_and_zeek_flows():
    with pytest.raises(DataError, match="missing"):
        featurize_cic([_row({}, names=CIC_FEATURE_NAMES[:-1])])
    zeek = FlowRecord(ts=0.0, orig_h="10.0.0.1", orig_p=1, resp_h="10.0.0.2", resp_p=80, proto="tcp")
    with pytest.raises(DataError, match="cicflowmeter profile"):
        featurize_cic([zeek])
    with pytest.raises(DataError, match="mixed"):
        profile_for_records([zeek, _row({})])


def test_feature_axis_sequences():
    X = np.random.default_rng(0).random((5, 77), dtype=np.float32)
    W = model_sequences(X, "feature-axis")
    assert W.shape == (5, 77, 1) and np.array_equal(last_rows(W, "feature-axis"), X)
    H = model_sequences(X[:, :45], "host-windows", ["a"] * 5, np.arange(5.0), 3)
    assert H.shape == (5, 3, 45) and np.array_equal(last_rows(H, "host-windows"), X[:, :45])


def test_load_flows_cic_uses_file_order_and_one_capture_per_file():
    from edgebot.train.data import load_flows, make_split

    table = load_flows([CIC_WESTERN, CIC_DDOS], progress=False)
    assert table.profile == "cicflowmeter" and table.X.shape[1] == 77
    assert set(table.captures.tolist()) == {"WesternOC2_CICIDS2017_sample_subset6311",
                                            "MachineLearningCVE_Friday-WorkingHours-Afternoon-DDos_first9998rows"}
    first = table.captures == table.captures[0]
    assert np.all(np.diff(table.ts[first]) > 0)  # line numbers: file order is time
    split = make_split(table, "stratified")
    assert len(split.test) and table.take(split.test).profile == "cicflowmeter"
    with pytest.raises(DataError, match="zeek profile"):
        load_flows([CIC_WESTERN, ZEEK_FILE], progress=False)


# ----------------------------------------------------------------------------- wrong profile


def test_eval_refuses_a_file_of_another_profile():
    from edgebot.evaluate import evaluate_bundle

    with pytest.raises(DataError, match="cicflowmeter profile.*zeek profile"):
        evaluate_bundle("unused", [CIC_WESTERN], bundle=SimpleNamespace(profile=ZEEK_PROFILE))
    with pytest.raises(DataError, match="zeek profile.*cicflowmeter profile"):
        evaluate_bundle("unused", [ZEEK_FILE], bundle=SimpleNamespace(profile=CIC_PROFILE))


def test_csv_source_refuses_a_file_of_another_profile():
    from edgebot.edge.sources.zeeklog import FlowFileSource

    with pytest.raises(SourceError) as err:
        FlowFileSource(CIC_WESTERN, profile="zeek")
    assert "cicflowmeter profile" in str(err.value) and "zeek profile" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(SourceError, match="zeek profile.*cicflowmeter profile"):
        FlowFileSource(ZEEK_FILE, profile="cicflowmeter")
    rows = iter(FlowFileSource(CIC_WESTERN, profile="cicflowmeter"))
    assert isinstance(next(rows), CicFlowRecord)


def test_cic_bundle_refuses_non_csv_sources():
    from edgebot.edge.sources import build_source

    cfg = SimpleNamespace(source=SimpleNamespace(kind="pcap", pcap="x.pcap"),
                          limits=SimpleNamespace(max_active_flows=10))
    with pytest.raises(SourceError, match="cicflowmeter profile"):
        build_source(cfg, profile="cicflowmeter")


# ------------------------------------------------------------------------ end to end (TF)


@pytest.fixture(scope="module")
def cic_run(tmp_path_factory):
    """One quick, subsampled CIC run and its int8 bundle: ``(run_dir, metrics, bundle_dir, verification)``."""
    pytest.importorskip("tensorflow")
    from edgebot.convert.bundle_writer import convert_run
    from edgebot.train.fit import TrainConfig, train_run

    root = tmp_path_factory.mktemp("cic")
    cfg = replace(TrainConfig.quick(), max_flows_per_capture=2000, epochs=3)
    metrics = train_run([CIC_WESTERN, CIC_DDOS], root / "run", split="stratified", progress=False, config=cfg)
    verification = convert_run(root / "run", root / "bundle")  # default: int8 within 0.5 F1 point
    return root / "run", metrics, root / "bundle", verification


@pytest.mark.tf
def test_cic_run_records_profile_and_feature_axis(cic_run):
    run_dir, metrics, _, _ = cic_run
    spec = json.loads((run_dir / "spec.json").read_text())
    assert spec["featurizer"]["profile"] == "cicflowmeter" and spec["sequence"] == "feature-axis"
    assert spec["featurizer"]["hash"] == CIC_PROFILE.hash and spec["window"] == 1
    assert metrics["config"]["profile"] == "cicflowmeter" and metrics["config"]["sequence"] == "feature-axis"
    with np.load(run_dir / "data.npz") as data:
        assert data["test_windows"].shape[1:] == (77, 1)
    assert "feature axis as the sequence" in (run_dir / "report.md").read_text()
    assert metrics["models"]["xgboost"]["f1"] > 0.9


@pytest.mark.tf
def test_cic_bundle_is_int8_and_close_to_float(cic_run):
    from edgebot.bundle import load_bundle

    _, _, bundle_dir, verification = cic_run
    assert verification["passed"] and verification["f1_drop"] <= 0.005
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["featurizer"]["profile"] == "cicflowmeter"
    assert manifest["featurizer"]["sequence"] == "feature-axis"
    assert manifest["models"]["hybrid"]["input"]["shape"] == [-1, 77, 1]
    assert manifest["models"]["hybrid"]["input"]["dtype"] == "int8"
    bundle = load_bundle(bundle_dir)
    assert bundle.profile is CIC_PROFILE and bundle.sequence == "feature-axis"


@pytest.mark.tf
def test_cic_bundle_with_a_tampered_profile_hash_is_refused(cic_run, tmp_path):
    import shutil

    from edgebot.bundle import load_bundle
    from edgebot.errors import BundleError

    bundle = tmp_path / "b"
    shutil.copytree(cic_run[2], bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["featurizer"]["hash"] = ZEEK_HASH
    from edgebot.manifest import render_manifest, seal

    (bundle / "manifest.json").write_bytes(render_manifest(seal(manifest)))  # resealed: a consistent manifest
    with pytest.raises(BundleError, match=r"installed one has hash .* \(cicflowmeter profile\)"):
        load_bundle(bundle)


@pytest.mark.tf
def test_cic_eval_cli(cic_run):
    bundle_dir = cic_run[2]
    res = CliRunner().invoke(main, ["eval", str(bundle_dir), str(CIC_WESTERN), "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    assert result["flows"]["labeled"] == 6311 and result["flows"]["benign"] == 227
    assert 0.0 < result["f1"] <= 1.0 and result["precision"] > 0.9  # a quick 3-epoch run: not a quality gate
    assert list(result["hosts"]) == ["WesternOC2_CICIDS2017_sample_subset6311|-"]


@pytest.mark.tf
def test_cic_run_csv_jsonl(cic_run, tmp_path):
    out = tmp_path / "incidents.jsonl"
    res = CliRunner().invoke(main, ["run", "--csv", str(CIC_WESTERN), "--bundle", str(cic_run[2]),
                                    "--jsonl", str(out)])
    assert res.exit_code == 0, res.output
    messages = [json.loads(line) for line in out.read_text().splitlines()]
    assert messages and {m["host"] for m in messages} == {"-"}
    assert [m["type"] for m in messages][0] == "new" and messages[-1]["type"] == "end"


@pytest.mark.tf
@pytest.mark.parametrize("command", ["eval", "run"])
def test_wrong_profile_is_a_one_line_error_with_exit_2(cic_run, command, tmp_path):
    bundle_dir = cic_run[2]
    if command == "eval":
        args = ["eval", str(bundle_dir), str(ZEEK_FILE)]
    else:
        args = ["run", "--csv", str(ZEEK_FILE), "--bundle", str(bundle_dir), "--jsonl", str(tmp_path / "x.jsonl")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "zeek profile" in lines[0] and "cicflowmeter profile" in lines[0]
