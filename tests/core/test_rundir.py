"""The run-dir schema (edgebot.rundir): one validation for the trainer, the converter, the bench and the factory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from edgebot.errors import BundleError
from edgebot.features import featurizer_info
from edgebot.jsonsafe import dumps, jsonable
from edgebot.rundir import RUN_SCHEMA_VERSION, RunDir, RunSpec, read_spec, write_spec
from edgebot.statefiles import staged_dir


def _spec(**changes) -> dict:
    info = featurizer_info()
    n = info["n_features"]
    spec = {"featurizer": info, "scaler": {"min": [0.0] * n, "max": [1.0] * n}, "window": 4,
            "fuser_raw_features": list(info["feature_names"][:2]), "ae_threshold": np.float32(0.25),
            "fused_threshold": 0.5, "hybrid_threshold": np.float64(0.4), "versions": {"edgebot": "x"},
            "seed": np.int64(3), "label_mode": "binary"}
    spec.update(changes)
    return spec


def test_written_spec_reads_back_the_same(tmp_path: Path) -> None:
    written = write_spec(tmp_path, _spec())
    data = json.loads((tmp_path / "spec.json").read_text())
    assert next(iter(data)) == "schema_version" and data["schema_version"] == RUN_SCHEMA_VERSION
    read = read_spec(tmp_path)
    assert read == written
    assert read.window == 4 and read.seed == 3 and read.ae_threshold == pytest.approx(0.25)
    assert read.input_shape() == (4, read.n_features)
    assert read.installed_profile().hash == read.featurizer_hash


@pytest.mark.parametrize("change, field", [
    ({"window": 0}, "field window must be an integer"),
    ({"ae_threshold": -1.0}, "field ae_threshold must be a positive finite number"),
    ({"fused_threshold": float("nan")}, "field fused_threshold must be a finite number"),
    ({"fuser_raw_features": ["no_such_feature"]}, "field fuser_raw_features must be names from"),
    ({"scaler": {"min": [0.0], "max": [1.0]}}, "field scaler.min must be a list of"),
    ({"versions": []}, "field versions must be an object"),
])
def test_a_bad_field_is_one_line_naming_it(tmp_path: Path, change: dict, field: str) -> None:
    with pytest.raises(BundleError) as info:
        write_spec(tmp_path, _spec(**change))
    message = str(info.value)
    assert field in message and "\n" not in message and message.endswith("retrain the run with this edgebot")
    assert not (tmp_path / "spec.json").exists()  # the trainer never writes what the converter refuses


def test_missing_keys_and_newer_schema_are_refused() -> None:
    spec = _spec()
    del spec["hybrid_threshold"], spec["versions"]
    with pytest.raises(BundleError, match="spec.json lacks hybrid_threshold, versions"):
        RunSpec.validate(jsonable(spec))
    with pytest.raises(BundleError, match="upgrade edgebot"):
        RunSpec.validate(jsonable({**_spec(), "schema_version": RUN_SCHEMA_VERSION + 1}))
    assert RunSpec.validate(jsonable(_spec())).schema_version == 1  # runs from before the field


def test_open_names_the_missing_model(tmp_path: Path) -> None:
    write_spec(tmp_path, _spec())
    with pytest.raises(BundleError, match=r"has no cnn_lstm.keras, autoencoder.keras, fuser.json, data.npz \(model"):
        RunDir.open(tmp_path)


def test_jsonable_is_strict_json() -> None:
    data = {"a": np.float32(1.5), "b": [np.int64(2), float("inf")], "c": np.arange(3), 4: (np.bool_(True),)}
    plain = jsonable(data)
    assert plain == {"a": 1.5, "b": [2, None], "c": [0, 1, 2], 4: [True]}
    assert json.loads(dumps(data)) == {"a": 1.5, "b": [2, None], "c": [0, 1, 2], "4": [True]}
    assert not any(isinstance(v, float) and math.isnan(v) for v in plain["b"])


def test_staged_dir_publishes_only_when_complete(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with staged_dir(out) as tmp:
        (tmp / "a").write_text("1")
    assert (out / "a").read_text() == "1"
    with pytest.raises(RuntimeError):
        with staged_dir(out) as tmp:
            (tmp / "a").write_text("2")
            raise RuntimeError("interrupted")
    assert (out / "a").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    with staged_dir(out) as tmp:
        (tmp / "b").write_text("3")
    assert sorted(p.name for p in out.iterdir()) == ["b"]  # the previous run is replaced whole
