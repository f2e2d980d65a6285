"""The manifest contract: integrity (any changed byte is refused), every field checked by type and range, fuzzing."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest_bundle import edit_manifest, fake_manifest
from edgebot.bundle import load_bundle, load_manifest
from edgebot.errors import BundleError, EdgebotError
from edgebot.manifest import (
    SCHEMA_VERSION,
    Manifest,
    manifest_digest,
    render_manifest,
    seal,
    write_manifest,
)
from hypothesis_profiles import examples


def _refused(bundle: Path, *fragments: str) -> str:
    with pytest.raises(BundleError) as info:
        load_bundle(bundle)
    msg = str(info.value)
    assert "\n" not in msg and info.value.exit_code == 2
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


# ------------------------------------------------------------------------------------ integrity


def test_the_writer_seals_and_the_loader_accepts(fake_bundle):
    raw = (fake_bundle / "manifest.json").read_bytes()
    data = json.loads(raw)
    assert data["schema_version"] == SCHEMA_VERSION == 2
    assert data["bundle_id"] == manifest_digest(data) and len(data["bundle_id"]) == 64
    assert render_manifest(data) == raw
    assert load_manifest(fake_bundle).bundle_id == data["bundle_id"]


def test_a_hand_edited_threshold_is_refused_as_tampering(fake_bundle):
    """Issue 12 item 5: thresholds.fused = 2.0 used to load and raise 0 incidents."""
    edit_manifest(fake_bundle, lambda m: m["thresholds"].update(fused=2.0), reseal=False)
    _refused(fake_bundle, "does not match its bundle_id", "tampered")


def test_a_resealed_out_of_range_threshold_is_refused_by_validation(fake_bundle):
    edit_manifest(fake_bundle, lambda m: m["thresholds"].update(fused=2.0))
    _refused(fake_bundle, "manifest field thresholds.fused must be a number in [0, 1], got 2.0")


def test_a_reformatted_manifest_is_refused(fake_bundle):
    path = fake_bundle / "manifest.json"
    path.write_text(json.dumps(json.loads(path.read_text()), indent=4))  # same content, other bytes
    _refused(fake_bundle, "not in the canonical form")


def test_an_old_schema_is_refused_with_reconvert(fake_bundle):
    edit_manifest(fake_bundle, lambda m: (m.update(schema_version=1), m.pop("bundle_id")))
    _refused(fake_bundle, "bundle schema 1 is older than this edgebot reads (2..2)", "edgebot convert")


def test_a_newer_schema_is_refused_with_upgrade(fake_bundle):
    edit_manifest(fake_bundle, lambda m: m.update(schema_version=SCHEMA_VERSION + 1))
    _refused(fake_bundle, f"bundle schema {SCHEMA_VERSION + 1} is newer", "upgrade edgebot")


def test_nan_and_huge_manifests_are_refused(fake_bundle):
    path = fake_bundle / "manifest.json"
    path.write_text(path.read_text().replace('"fused": 0.5', '"fused": NaN'))
    _refused(fake_bundle, "not valid JSON")
    path.write_bytes(b" " * (2 << 20))
    _refused(fake_bundle, "more than a manifest can be")
    path.write_text("[" * 100_000 + "]" * 100_000)
    _refused(fake_bundle, "not valid JSON")


@examples(150)
@given(data=st.data())
def test_any_changed_byte_is_refused(tmp_path_factory, data):
    bundle = tmp_path_factory.mktemp("b")
    from conftest_bundle import write_fake_bundle

    write_fake_bundle(bundle)
    path = bundle / "manifest.json"
    raw = bytearray(path.read_bytes())
    kind = data.draw(st.sampled_from(["flip", "insert", "delete", "replace"]))
    i = data.draw(st.integers(0, len(raw) - 1))
    if kind == "flip":
        raw[i] ^= data.draw(st.integers(1, 255))
    elif kind == "insert":
        raw[i:i] = data.draw(st.binary(min_size=1, max_size=4))
    elif kind == "delete":
        del raw[i:i + data.draw(st.integers(1, 8))]
    else:
        raw[i:i + 1] = data.draw(st.sampled_from([b" ", b"\n", b"0", b"1", b"-", b".", b"e", b"\\u0041"]))
    if bytes(raw) == path.read_bytes():
        return
    path.write_bytes(bytes(raw))
    with pytest.raises(BundleError):
        load_manifest(bundle)


# ------------------------------------------------------------------ fields: one line naming each

SEVEN = [  # issue 12 item 6: each of these raised a traceback
    ("thresholds as a list", lambda m: m.update(thresholds=[0.5, 0.5, 0.01]), "thresholds must be an object"),
    ("fuser as a list", lambda m: m.update(fuser=["fuser.json"]), "fuser must be an object"),
    ("scaler.min null", lambda m: m["scaler"].update(min=None), "scaler.min must be a list of"),
    ("scaler.min strings", lambda m: m["scaler"].update(min=["a"] * len(m["scaler"]["max"])),
     "scaler.min[0] must be a finite number"),
    ("raw_features an int", lambda m: m["fuser"].update(raw_features=3), "fuser.raw_features must be a list"),
    ("feature_names an int", lambda m: m["featurizer"].update(feature_names=45),
     "featurizer.feature_names must be a list"),
    ("profile a list", lambda m: m["featurizer"].update(profile=["zeek"]), "featurizer.profile must be a non-empty"),
]

RANGES = [
    ("fused negative", lambda m: m["thresholds"].update(fused=-1.0), "thresholds.fused must be a number in [0, 1]"),
    ("hybrid above 1", lambda m: m["thresholds"].update(hybrid=1.5), "thresholds.hybrid must be a number in [0, 1]"),
    ("ae zero", lambda m: m["thresholds"].update(autoencoder=0), "thresholds.autoencoder must be a positive"),
    ("fused a string", lambda m: m["thresholds"].update(fused="0.5"), "thresholds.fused must be a number"),
    ("fused a bool", lambda m: m["thresholds"].update(fused=True), "thresholds.fused must be a number"),
    ("window 0", lambda m: m.update(window=0), "window must be an integer in [1, 4096]"),
    ("window a float", lambda m: m.update(window=4.0), "window must be an integer"),
    ("scaler max below min", lambda m: m["scaler"].update(max=[-1.0] * len(m["scaler"]["max"])),
     "scaler.max[0] must be at least scaler.min[0]"),
    ("scaler too short", lambda m: m["scaler"].update(max=[1.0]), "scaler.max must be a list of 45 numbers"),
    ("scale zero", lambda m: m["models"]["hybrid"]["input"].update(scale=0.0),
     "models.hybrid.input.scale must be a positive"),
    ("zero point 300", lambda m: m["models"]["autoencoder"]["output"].update(zero_point=300),
     "models.autoencoder.output.zero_point must be an integer in [-128, 127]"),
    ("dtype float32", lambda m: m["models"]["hybrid"]["output"].update(dtype="float32"),
     "models.hybrid.output.dtype must be 'int8'"),
    ("fixed batch", lambda m: m["models"]["hybrid"]["input"].update(shape=[1, 4, 45]),
     "models.hybrid.input.shape[0] must be -1"),
    ("shape and window disagree", lambda m: m.update(window=6), "models.hybrid.input.shape must be [-1, 6, 45]"),
    ("model file a path", lambda m: m["models"]["hybrid"].update(file="../x.tflite"),
     "models.hybrid.file must be a plain file name"),
    ("model file unlisted", lambda m: m["models"]["hybrid"].update(file="other.tflite"),
     "models.hybrid.file must be a file listed in files"),
    ("unknown raw feature", lambda m: m["fuser"].update(raw_features=["nope"], inputs=["hybrid_prob", "anomaly_score",
                                                                                        "nope"]),
     "fuser.raw_features must be names from featurizer.feature_names"),
    ("fuser inputs disagree", lambda m: m["fuser"].update(inputs=["a", "b"]), "fuser.inputs must be hybrid_prob"),
    ("names duplicated", lambda m: m["featurizer"]["feature_names"].__setitem__(1, m["featurizer"]["feature_names"][0]),
     "featurizer.feature_names must be a list of distinct strings"),
    ("bad sha256", lambda m: m["files"]["fuser.json"].update(sha256="xyz"), "files.fuser.json.sha256 must be 64"),
    ("bytes negative", lambda m: m["files"]["fuser.json"].update(bytes=-1), "files.fuser.json.bytes must be an integer"),
    ("manifest listed", lambda m: m["files"].update({"manifest.json": m["files"]["fuser.json"]}),
     "files.manifest.json must be a plain file name"),
    ("no files", lambda m: m.update(files={}), "files must be an object of 1 to 64 files"),
    ("versions not strings", lambda m: m.update(versions={"numpy": 2}), "versions.numpy must be a non-empty string"),
    ("label mode", lambda m: m.update(label_mode="multiclass"), "label_mode must be 'binary'"),
    ("failed verification", lambda m: m.update(verification={"passed": False}), "verification.passed must be true"),
    ("sequence unknown", lambda m: m["featurizer"].update(sequence="spiral"), "featurizer.sequence must be"),
    ("missing thresholds.hybrid", lambda m: m["thresholds"].pop("hybrid"), "thresholds.hybrid is missing"),
    ("missing top-level key", lambda m: m.pop("scaler"), "lacks scaler"),
]


@pytest.mark.parametrize("name,edit,message", SEVEN + RANGES, ids=[c[0] for c in SEVEN + RANGES])
def test_every_field_is_checked_with_one_line_naming_it(fake_bundle, name, edit, message):
    edit_manifest(fake_bundle, edit)  # resealed: the integrity check passes, validation must refuse
    msg = _refused(fake_bundle, message)
    assert msg.startswith(("manifest field ", "manifest lacks ")) and "edgebot convert" in msg


def test_the_writer_refuses_what_the_loader_would(tmp_path):
    manifest = fake_manifest(tmp_path)
    manifest["thresholds"]["fused"] = 2.0
    with pytest.raises(BundleError, match="thresholds.fused"):
        write_manifest(tmp_path, manifest)
    assert not (tmp_path / "manifest.json").exists()


def test_manifest_round_trip(tmp_path):
    data = fake_manifest(tmp_path)
    m = Manifest.validate(data)
    assert m.thresholds == {"fused": 0.5, "hybrid": 0.5, "autoencoder": 0.01}
    assert m.window == 4 and m.n_features == len(m.scaler_min) == len(m.feature_names)
    assert Manifest.validate(m.sealed()).bundle_id == m.bundle_id == seal(data)["bundle_id"]


# ----------------------------------------------------------------------------------- fuzzing

_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40),
                       st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
_json_value = st.recursive(_json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                               st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=12)


def _paths(obj, prefix=()):
    """Every (container, key) path of a JSON document."""
    out = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for key, value in items:
        out.append(prefix + (key,))
        out.extend(_paths(value, prefix + (key,)))
    return out


def _mutate(manifest: dict, data) -> dict:
    m = copy.deepcopy(manifest)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(m)
        path = data.draw(st.sampled_from(paths))
        parent = m
        for key in path[:-1]:
            parent = parent[key]
        action = data.draw(st.sampled_from(["replace", "delete", "add", "numeric"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[data.draw(st.text(max_size=8))] = data.draw(_json_value)
        elif action == "numeric":
            parent[path[-1]] = data.draw(st.sampled_from([0, -1, 1, 2.0, -0.0, 1e308, -1e308, 2**63, 0.5, 4096, 4097]))
        else:
            parent[path[-1]] = data.draw(_json_value)
    return m


@examples(300)
@given(data=st.data())
def test_fuzz_mutated_manifests_only_raise_edgebot_errors(tmp_path_factory, data):
    """Random type, value, key and structure mutations of a valid manifest, resealed: nothing but
    an EdgebotError may escape the loader (the placeholder models stop a manifest that passes)."""
    bundle = tmp_path_factory.mktemp("fz")
    manifest = _mutate(fake_manifest(bundle), data)
    (bundle / "manifest.json").write_bytes(render_manifest(seal(manifest)))
    try:
        load_bundle(bundle)
    except EdgebotError as exc:
        assert "\n" not in str(exc)


@pytest.mark.tf
@examples(40)
@given(data=st.data())
def test_fuzz_mutated_real_manifests_load_and_score_or_raise_edgebot_errors(int8_bundle, tmp_path_factory, data):
    """The same mutations on the real bundle: whatever loads must also score (the models run)."""
    import shutil

    import numpy as np

    bundle = tmp_path_factory.mktemp("real") / "b"
    shutil.copytree(int8_bundle, bundle)
    manifest = _mutate(json.loads((bundle / "manifest.json").read_text()), data)
    (bundle / "manifest.json").write_bytes(render_manifest(seal(manifest)))
    try:
        loaded = load_bundle(bundle)
    except EdgebotError as exc:
        assert "\n" not in str(exc)
        return
    scores = loaded.score(np.zeros((2, loaded.window, loaded.n_features), np.float32))
    assert scores.shape == (2,) and 0.0 <= loaded.threshold <= 1.0
